//! Per-invocation limits and the calibration of CPU milliseconds into wasmtime fuel.

/// Fuel granted per millisecond of CPU time.
///
/// wasmtime charges one unit of fuel per wasm operator (roughly), so this is the number of wasm
/// operators a guest executes per millisecond on the reference machine (2 vCPU, see
/// `docs/performance.md`, "Fuel calibration", reproduced with
/// `cargo run --release -p tenantry-benches --bin fuel-calibrate`): the slowest loop shape
/// measured, 12.5 M/ms, rounded down, so that no shape gets more CPU time than its limit (faster
/// shapes, e.g. memory-bound loops at 20 M/ms, get proportionally less). Fuel makes the CPU limit
/// deterministic: the same guest and input hit it at the same instruction on every machine,
/// unlike a timer.
pub const FUEL_PER_CPU_MS: u64 = 12_000_000;

/// Most header fields a guest may put in one response (`response_header_*` returns `LIMIT` past it).
pub const MAX_RESPONSE_HEADER_FIELDS: usize = 100;

/// Most bytes of header fields in one response, counted as on the wire (`name: value\r\n`).
pub const MAX_RESPONSE_HEADER_BYTES: usize = 64 << 10;

/// Most bytes of one response body (`response_body_write` returns `LIMIT` past it).
pub const MAX_RESPONSE_BODY_BYTES: usize = 32 << 20;

/// Request handles a guest may create, and responses it may receive, per invocation.
pub const MAX_CALL_HANDLES: usize = 128;

/// Bytes one request or response handle counts against the invocation's host memory budget
/// besides its method, URL, headers and body: the `Request`/`Response` value, its header
/// vector and the handle's slot, rounded up. Without it, empty handles would be free.
pub const HANDLE_OVERHEAD_BYTES: usize = 256;

/// KV operations one invocation may make (Cloudflare's limit for paid plans).
pub const MAX_KV_OPS: u32 = 1000;

/// A guest log line (`log`, or one `fd_write` to stdout/stderr) is cut at this many bytes, so a
/// Worker cannot flood the node's log with one call.
pub const MAX_LOG_LINE_BYTES: usize = 4 << 10;

/// Bytes of log lines one invocation may emit (`log` and `fd_write` to stdout/stderr together);
/// lines past it are dropped and counted, and one line at the end of the invocation says how
/// many. 256 KiB, Cloudflare's per-invocation log size limit for Workers Logs.
pub const MAX_LOG_BYTES_PER_INVOCATION: usize = 256 << 10;

/// Each log line counts this many bytes against [`MAX_LOG_BYTES_PER_INVOCATION`] on top of its
/// text: about what the timestamp, level, target and namespace/script fields add to a line of
/// the node's log. It also keeps empty lines from being free.
pub const LOG_LINE_OVERHEAD_BYTES: usize = 64;

/// Fuel one log line costs besides its bytes: formatting the event and queueing it for the log
/// writer takes ~1 µs, i.e. ~12 000 fuel at [`FUEL_PER_CPU_MS`].
pub const LOG_LINE_FUEL: u64 = 12_000;

/// Bytes the host copies into or out of guest memory (or scans) per unit of fuel charged. Host
/// calls run outside wasm, so without this a guest could spend unmetered CPU by asking for a
/// large value again and again. Copying between pages already resident measured 0.14 ns/byte
/// (100 MiB, user + sys time, reference machine, `host-copy-cost` in docs/performance.md),
/// ~1.7 fuel at [`FUEL_PER_CPU_MS`]: one byte per unit of fuel, on the lenient side.
pub const HOST_COPY_BYTES_PER_FUEL: u64 = 1;

/// Fuel per byte a host call copies into memory it allocates for the invocation (a URL, method,
/// header, body or KV value taken from the guest, a header list or joined value built for it, a
/// forwarded body): allocating and filling fresh pages measured 0.64 ns/byte, appending to a
/// growing buffer 0.74 (100 MiB, user + sys time, page faults included, reference machine,
/// `host-copy-cost` in docs/performance.md), ~8 fuel at [`FUEL_PER_CPU_MS`].
/// Setting a 100 MiB URL thus costs ~70 ms of CPU, and is charged as such.
pub const HOST_ALLOC_FUEL_PER_BYTE: u64 = 8;

/// The limits one invocation runs under. The lower of a script's own limits and the per-call (or
/// platform default) limits applies: see [`Limits::min`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// CPU time in milliseconds, enforced with fuel.
    pub cpu_ms: u32,
    /// Wall-clock time in milliseconds, enforced with epoch interruption and a timer.
    pub wall_ms: u32,
    /// Linear memory in bytes, enforced by `StoreLimits` (`memory.grow` fails past it). The same
    /// number is also the budget of host memory the invocation may cause (handles, fetched
    /// responses, the response it builds), counted apart: see `host::budget`.
    pub memory_bytes: u64,
    /// Fetches one invocation may make through its bindings (service and dispatch calls);
    /// the next one fails with `LIMIT`.
    pub subrequests: u32,
}

impl Limits {
    /// Platform defaults: 50 ms CPU, 30 s wall clock, 128 MiB memory (Cloudflare's memory limit),
    /// 50 subrequests (Cloudflare's free-plan limit).
    pub const DEFAULT: Limits = Limits {
        cpu_ms: 50,
        wall_ms: 30_000,
        memory_bytes: 128 << 20,
        subrequests: 50,
    };

    /// No limit at all: the identity of [`Limits::min`], for "no per-call override".
    pub const NONE: Limits = Limits {
        cpu_ms: u32::MAX,
        wall_ms: u32::MAX,
        memory_bytes: u64::MAX,
        subrequests: u32::MAX,
    };

    /// The fuel this limit grants.
    pub fn fuel(&self) -> u64 {
        u64::from(self.cpu_ms).saturating_mul(FUEL_PER_CPU_MS)
    }

    /// The stricter of two limits, field by field.
    pub fn min(self, other: Limits) -> Limits {
        Limits {
            cpu_ms: self.cpu_ms.min(other.cpu_ms),
            wall_ms: self.wall_ms.min(other.wall_ms),
            memory_bytes: self.memory_bytes.min(other.memory_bytes),
            subrequests: self.subrequests.min(other.subrequests),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_takes_the_stricter_field() {
        let a = Limits {
            cpu_ms: 10,
            wall_ms: 5000,
            memory_bytes: 1 << 20,
            subrequests: 3,
        };
        let b = Limits {
            cpu_ms: 50,
            wall_ms: 100,
            memory_bytes: 2 << 20,
            subrequests: 50,
        };
        assert_eq!(
            a.min(b),
            Limits {
                cpu_ms: 10,
                wall_ms: 100,
                memory_bytes: 1 << 20,
                subrequests: 3,
            }
        );
        assert_eq!(a.min(Limits::NONE), a);
        assert_eq!(a.fuel(), 10 * FUEL_PER_CPU_MS);
    }
}
