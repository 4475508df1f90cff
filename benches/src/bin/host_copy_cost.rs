//! Prices host work in fuel (core/src/limits.rs): measures the CPU time (user + sys, so page
//! faults count and a busy machine does not) of what host calls do with a guest's bytes, per
//! byte, and prints it as fuel at `FUEL_PER_CPU_MS` next to what the host charges.
//!
//! `cargo run --release -p tenantry-benches --bin host-copy-cost`

use std::hint::black_box;

use bytes::Bytes;
use tenantry_core::{FUEL_PER_CPU_MS, HOST_ALLOC_FUEL_PER_BYTE, HOST_COPY_BYTES_PER_FUEL};

const SIZE: usize = 100 << 20;
const ROUNDS: usize = 10;

/// Process CPU time (user + sys) in nanoseconds.
fn cpu_ns() -> u128 {
    // SAFETY: `getrusage` writes one `rusage` into the zeroed value we own.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let ns = |t: libc::timeval| t.tv_sec as u128 * 1_000_000_000 + t.tv_usec as u128 * 1000;
    ns(usage.ru_utime) + ns(usage.ru_stime)
}

fn per_byte(mut work: impl FnMut()) -> f64 {
    let start = cpu_ns();
    for _ in 0..ROUNDS {
        work();
    }
    (cpu_ns() - start) as f64 / (ROUNDS * SIZE) as f64
}

fn main() {
    let source = vec![b'a'; SIZE];
    let mut resident = vec![1u8; SIZE];
    let fuel_per_ns = FUEL_PER_CPU_MS as f64 / 1e6;
    let report = |what: &str, ns: f64, charged: f64| {
        println!(
            "{what:<44} {ns:.3} ns/byte = {:>5.2} fuel/byte (charged {charged})",
            ns * fuel_per_ns
        );
    };
    let copy = per_byte(|| {
        resident.copy_from_slice(black_box(&source));
        black_box(&resident);
    });
    report(
        "copy between resident buffers",
        copy,
        1.0 / HOST_COPY_BYTES_PER_FUEL as f64,
    );
    let alloc = per_byte(|| {
        black_box(Bytes::copy_from_slice(black_box(&source)));
    });
    report(
        "allocate + copy (Bytes::copy_from_slice)",
        alloc,
        HOST_ALLOC_FUEL_PER_BYTE as f64,
    );
    let mut grown = 0;
    let append = per_byte(|| {
        let mut body = Vec::new();
        for chunk in black_box(&source).chunks(4096) {
            body.extend_from_slice(chunk);
        }
        grown += black_box(body).len();
    });
    report(
        "append in 4 KiB chunks to a growing Vec",
        append,
        HOST_ALLOC_FUEL_PER_BYTE as f64,
    );
    let scan = per_byte(|| {
        black_box(
            black_box(&source)
                .iter()
                .fold(false, |bad, &c| bad | (c <= b' ') | (c == 0x7f)),
        );
    });
    report(
        "URL byte check (vectorised fold)",
        scan,
        1.0 / HOST_COPY_BYTES_PER_FUEL as f64,
    );
}
