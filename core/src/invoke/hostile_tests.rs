//! Hostile guests against the accounting of host calls (docs/design.md, "Accounting: a tenant
//! pays for everything it causes"): each gets its specific fault, and its log is bounded.

use std::io::Write;
use std::sync::{Arc, Mutex};

use super::*;
use crate::limits::{HOST_ALLOC_FUEL_PER_BYTE, LOG_LINE_OVERHEAD_BYTES};
use crate::test_support::{block_on, get, worker};
use crate::{FUEL_PER_CPU_MS, MAX_LOG_BYTES_PER_INVOCATION, MAX_RESPONSE_BODY_BYTES};

/// The imports these guests use.
const IMPORTS: &str = r#"
  (import "tenantry:worker/v1" "request_new" (func $request_new (result i32)))
  (import "tenantry:worker/v1" "request_clone" (func $request_clone (param i32) (result i32)))
  (import "tenantry:worker/v1" "request_set_url" (func $set_url (param i32 i32 i32) (result i32)))
  (import "tenantry:worker/v1" "request_header_set" (func $req_header_set (param i32 i32 i32 i32 i32) (result i32)))
  (import "tenantry:worker/v1" "request_body_write" (func $req_body_write (param i32 i32 i32) (result i32)))
  (import "tenantry:worker/v1" "response_body_write" (func $body_write (param i32 i32 i32) (result i32)))
  (import "tenantry:worker/v1" "log" (func $log (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
"#;

/// A module with the imports, `pages` of memory and `body`.
fn guest(pages: u32, body: &str) -> String {
    format!("(module {IMPORTS} (memory (export \"memory\") {pages}) {body})")
}

const MIB: usize = 1 << 20;

/// `http://a/` followed by `a` up to `len` bytes at address `at`.
fn fill_url(at: usize, len: usize) -> String {
    format!(
        r#"(memory.fill (i32.const {at}) (i32.const 97) (i32.const {len}))
           (i32.store8 (i32.const {at}) (i32.const 104)) (i32.store8 (i32.const {a1}) (i32.const 116))
           (i32.store8 (i32.const {a2}) (i32.const 116)) (i32.store8 (i32.const {a3}) (i32.const 112))
           (i32.store8 (i32.const {a4}) (i32.const 58)) (i32.store8 (i32.const {a5}) (i32.const 47))
           (i32.store8 (i32.const {a6}) (i32.const 47)) (i32.store8 (i32.const {a8}) (i32.const 47))"#,
        a1 = at + 1,
        a2 = at + 2,
        a3 = at + 3,
        a4 = at + 4,
        a5 = at + 5,
        a6 = at + 6,
        a8 = at + 8,
    )
}

#[test]
fn setting_a_huge_url_again_and_again_runs_out_of_fuel() {
    // 100 MiB of URL, set 50 times: before host calls paid for their bytes, 200 OK after
    // seconds of CPU with `cpu_ms = 50`. Now the first call cannot pay (100 Mi bytes at
    // HOST_ALLOC_FUEL_PER_BYTE is ~70 ms of CPU) and does nothing.
    let url = 100 * MIB;
    let w = worker(&guest(
        (url / 65536 + 1) as u32,
        &format!(
            r#"(func (export "tenantry_fetch") (result i32)
                 (local $h i32) (local $i i32)
                 {fill}
                 (local.set $h (call $request_new))
                 (block $d (loop $l
                   (br_if $d (i32.eq (local.get $i) (i32.const 50)))
                   (drop (call $set_url (local.get $h) (i32.const 0) (i32.const {url})))
                   (local.set $i (i32.add (local.get $i) (i32.const 1)))
                   (br $l)))
                 (i32.const 0))"#,
            fill = fill_url(0, url),
        ),
    ));
    let limits = Limits {
        cpu_ms: 50,
        ..Limits::DEFAULT
    };
    let outcome = block_on(w.invoke(get("/"), limits));
    assert!(
        matches!(outcome, Err(Fault::OutOfFuel { cpu_ms: 50 })),
        "{outcome:?}"
    );
}

/// A guest making `handles` request handles, each with a 1 MiB URL and a 1 MiB header; it
/// ignores the codes the calls return and returns 0.
fn handle_maker(handles: u32) -> Worker {
    let big = MIB;
    worker(&guest(
        (2 * big / 65536 + 1) as u32,
        &format!(
            r#"(data (i32.const {name}) "x-big")
               (func (export "tenantry_fetch") (result i32)
                 (local $h i32) (local $i i32)
                 {fill}
                 (memory.fill (i32.const {value}) (i32.const 118) (i32.const {big}))
                 (block $d (loop $l
                   (br_if $d (i32.eq (local.get $i) (i32.const {handles})))
                   (local.set $h (call $request_new))
                   (drop (call $set_url (local.get $h) (i32.const 0) (i32.const {big})))
                   (drop (call $req_header_set (local.get $h) (i32.const {name}) (i32.const 5)
                     (i32.const {value}) (i32.const {big})))
                   (local.set $i (i32.add (local.get $i) (i32.const 1)))
                   (br $l)))
                 (i32.const 0))"#,
            fill = fill_url(0, big),
            value = big,
            name = 2 * big,
        ),
    ))
}

#[test]
fn request_handles_past_the_host_memory_budget_are_a_memory_limit() {
    // 128 handles of 2 MiB: 256 MiB of host memory if nothing stopped it, against a 16 MiB
    // limit. The guest ignores the `LIMIT` codes and returns 0; the invocation still ends with
    // the memory-limit answer.
    let limits = Limits {
        memory_bytes: 16 * MIB as u64,
        ..Limits::DEFAULT
    };
    let outcome = block_on(handle_maker(128).invoke(get("/"), limits));
    assert!(
        matches!(outcome, Err(Fault::MemoryLimit { limit_bytes }) if limit_bytes == 16 * MIB as u64),
        "{outcome:?}"
    );
    // Within the budget, the same guest is answered.
    let outcome = block_on(handle_maker(4).invoke(get("/"), limits));
    assert!(outcome.is_ok(), "{outcome:?}");
}

#[test]
fn a_response_body_past_the_host_memory_budget_is_a_memory_limit() {
    // 64 KiB writes into the response until one fails; the guest then returns normally.
    let w = worker(&guest(
        1,
        r#"(func (export "tenantry_fetch") (result i32)
             (block $d (loop $l
               (br_if $d (i32.lt_s (call $body_write (i32.const 0) (i32.const 0) (i32.const 65536))
                 (i32.const 0)))
               (br $l)))
             (i32.const 0))"#,
    ));
    let limits = Limits {
        memory_bytes: 4 * MIB as u64,
        ..Limits::DEFAULT
    };
    let outcome = block_on(w.invoke(get("/"), limits));
    assert!(
        matches!(outcome, Err(Fault::MemoryLimit { .. })),
        "{outcome:?}"
    );
}

#[test]
fn building_a_body_by_appends_is_linear() {
    // 32 MiB in 4 KiB appends. Linear, each byte is taken in once: 32 Mi bytes at
    // HOST_ALLOC_FUEL_PER_BYTE, ~22 ms of CPU. Re-copying the body on every append (as before)
    // would copy ~137 G bytes, which at the same per-byte price is ~90 s of CPU: far past the
    // 50 ms allowed here.
    let appends = MAX_RESPONSE_BODY_BYTES / 4096;
    let cpu_ms = 50;
    assert!(
        MAX_RESPONSE_BODY_BYTES as u64 * HOST_ALLOC_FUEL_PER_BYTE * 2
            < u64::from(cpu_ms) * FUEL_PER_CPU_MS,
        "linear appends fit the CPU limit with room to spare"
    );
    let w = worker(&guest(
        1,
        &format!(
            r#"(func (export "tenantry_fetch") (result i32)
                 (local $h i32) (local $i i32) (local $bad i32)
                 (local.set $h (call $request_new))
                 (block $d (loop $l
                   (br_if $d (i32.eq (local.get $i) (i32.const {appends})))
                   (if (i32.ne (call $req_body_write (local.get $h) (i32.const 0) (i32.const 4096))
                         (i32.const 4096))
                     (then (local.set $bad (i32.add (local.get $bad) (i32.const 1)))))
                   (local.set $i (i32.add (local.get $i) (i32.const 1)))
                   (br $l)))
                 ;; full: one more byte is over the body limit
                 (if (i32.ne (call $req_body_write (local.get $h) (i32.const 0) (i32.const 1))
                       (i32.const -3))
                   (then unreachable))
                 ;; a clone freezes the body; appending after it copies it back once (paid)
                 (drop (call $request_clone (local.get $h)))
                 (if (i32.ne (call $req_body_write (local.get $h) (i32.const 0) (i32.const 0))
                       (i32.const 0))
                   (then unreachable))
                 (i32.store (i32.const 8192) (local.get $bad))
                 (drop (call $body_write (i32.const 0) (i32.const 8192) (i32.const 4)))
                 (i32.const 0))"#
        ),
    ));
    let limits = Limits {
        cpu_ms,
        ..Limits::DEFAULT
    };
    let resp = block_on(w.invoke(get("/"), limits)).unwrap();
    assert_eq!(
        &resp.body[..],
        &0i32.to_le_bytes(),
        "every append succeeded"
    );
}

/// Captures `tracing` output of the current thread while `f` runs.
fn capture_log<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let sink = Sink(Arc::default());
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .with_writer({
            let sink = sink.clone();
            move || sink.clone()
        })
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8_lossy(&sink.0.lock().unwrap()).into_owned();
    (out, text)
}

#[test]
fn logs_past_the_allowance_are_dropped_counted_and_said_once() {
    // 1000 `log` lines and 10 `fd_write`s of 4 KiB each: ~4 MiB against 256 KiB.
    let line = 4096;
    let w = worker(&guest(
        1,
        &format!(
            r#"(func (export "tenantry_fetch") (result i32)
                 (local $i i32)
                 (memory.fill (i32.const 0) (i32.const 76) (i32.const {line}))
                 (i32.store (i32.const 8192) (i32.const 0))
                 (i32.store (i32.const 8196) (i32.const {line}))
                 (block $d (loop $l
                   (br_if $d (i32.eq (local.get $i) (i32.const 1000)))
                   (drop (call $log (i32.const 1) (i32.const 0) (i32.const {line})))
                   (local.set $i (i32.add (local.get $i) (i32.const 1)))
                   (br $l)))
                 (local.set $i (i32.const 0))
                 (block $d (loop $l
                   (br_if $d (i32.eq (local.get $i) (i32.const 10)))
                   (drop (call $fd_write (i32.const 1) (i32.const 8192) (i32.const 1) (i32.const 8200)))
                   (local.set $i (i32.add (local.get $i) (i32.const 1)))
                   (br $l)))
                 (i32.const 0))"#
        ),
    ));
    let (outcome, log) = capture_log(|| block_on(w.invoke(get("/"), Limits::DEFAULT)));
    assert_eq!(outcome.unwrap().status, 200, "answered normally");
    let kept = MAX_LOG_BYTES_PER_INVOCATION / (line + LOG_LINE_OVERHEAD_BYTES);
    let dropped = 1010 - kept;
    let marker = "L".repeat(64);
    assert_eq!(log.lines().filter(|l| l.contains(&marker)).count(), kept);
    let said = format!(
        "dropped {dropped} log lines ({} bytes) of this invocation",
        dropped * line
    );
    assert_eq!(log.matches(&said).count(), 1, "{said}\n{log}");
}
