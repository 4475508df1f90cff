//! Guests written as WAT, run through `Worker::invoke` on a monoio runtime.

use std::cell::Cell;
use std::rc::Rc;

use super::*;
use crate::test_support::{block_on, engine, get, request, small_engine, spec, worker};
use crate::{
    Binding, BindingKind, MAX_RESPONSE_BODY_BYTES, MAX_RESPONSE_HEADER_FIELDS, WorkerPool,
};

/// Every v1 import under a short name, and `$emit`, which appends an i32 (little-endian) to the
/// response body so a test can read back the codes host calls returned.
const PRELUDE: &str = r#"
  (import "tenantry:worker/v1" "request_method" (func $request_method (param i32 i32 i32) (result i32)))
  (import "tenantry:worker/v1" "request_url" (func $request_url (param i32 i32 i32) (result i32)))
  (import "tenantry:worker/v1" "request_header" (func $request_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "tenantry:worker/v1" "request_headers" (func $request_headers (param i32 i32 i32) (result i32)))
  (import "tenantry:worker/v1" "request_body_read" (func $request_body_read (param i32 i32 i32) (result i32)))
  (import "tenantry:worker/v1" "response_set_status" (func $set_status (param i32 i32) (result i32)))
  (import "tenantry:worker/v1" "response_header_set" (func $header_set (param i32 i32 i32 i32 i32) (result i32)))
  (import "tenantry:worker/v1" "response_header_append" (func $header_append (param i32 i32 i32 i32 i32) (result i32)))
  (import "tenantry:worker/v1" "response_body_write" (func $body_write (param i32 i32 i32) (result i32)))
  (import "tenantry:worker/v1" "env_get" (func $env_get (param i32 i32 i32 i32) (result i32)))
  (import "tenantry:worker/v1" "env_kind" (func $env_kind (param i32 i32) (result i32)))
  (import "tenantry:worker/v1" "log" (func $log (param i32 i32 i32) (result i32)))
  (func $emit (param i32)
    (i32.store (i32.const 65532) (local.get 0))
    (drop (call $body_write (i32.const 0) (i32.const 65532) (i32.const 4))))
"#;

/// A module with the prelude, one page of memory and `body`.
fn guest(body: &str) -> String {
    guest_importing("", body)
}

/// [`guest`] with more imports (which must come before the memory).
fn guest_importing(imports: &str, body: &str) -> String {
    format!("(module {imports} {PRELUDE} (memory (export \"memory\") 1) {body})")
}

fn codes(body: &[u8]) -> Vec<i32> {
    body.chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn header<'r>(resp: &'r Response, name: &str) -> Option<&'r [u8]> {
    resp.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, v)| &v[..])
}

fn run(w: &Worker, req: Request) -> Result<Response, Fault> {
    block_on(w.invoke(req, w.limits()))
}

fn run_with(w: &Worker, limits: Limits) -> Result<Response, Fault> {
    block_on(w.invoke(get("/"), limits))
}

#[test]
fn hello() {
    let w = worker(&guest(
        r#"
        (data (i32.const 0) "content-type")
        (data (i32.const 16) "text/plain")
        (data (i32.const 32) "hello, world")
        (func (export "tenantry_fetch") (result i32)
          (drop (call $set_status (i32.const 0) (i32.const 201)))
          (drop (call $header_set (i32.const 0) (i32.const 0) (i32.const 12) (i32.const 16) (i32.const 10)))
          (drop (call $body_write (i32.const 0) (i32.const 32) (i32.const 5)))
          (drop (call $body_write (i32.const 0) (i32.const 37) (i32.const 7)))
          (i32.const 0))"#,
    ));
    let resp = run(&w, get("/")).unwrap();
    assert_eq!(resp.status, 201);
    assert_eq!(header(&resp, "Content-Type"), Some(&b"text/plain"[..]));
    assert_eq!(&resp.body[..], b"hello, world");
    assert_eq!(w.name(), "test/worker");
}

#[test]
fn echo_request_through_host_calls() {
    let w = worker(&guest(
        r#"
        (data (i32.const 0) "x-method")
        (data (i32.const 16) "x-url")
        (data (i32.const 32) "x-echo")
        (func (export "tenantry_fetch") (result i32)
          (local $n i32)
          (local.set $n (call $request_method (i32.const 0) (i32.const 1024) (i32.const 1024)))
          (drop (call $header_set (i32.const 0) (i32.const 0) (i32.const 8) (i32.const 1024) (local.get $n)))
          (local.set $n (call $request_url (i32.const 0) (i32.const 1024) (i32.const 1024)))
          (drop (call $header_set (i32.const 0) (i32.const 16) (i32.const 5) (i32.const 1024) (local.get $n)))
          (local.set $n (call $request_header (i32.const 0) (i32.const 32) (i32.const 6) (i32.const 1024) (i32.const 1024)))
          (drop (call $header_set (i32.const 0) (i32.const 32) (i32.const 6) (i32.const 1024) (local.get $n)))
          ;; all headers, then the body in 3-byte chunks
          (local.set $n (call $request_headers (i32.const 0) (i32.const 1024) (i32.const 4096)))
          (drop (call $body_write (i32.const 0) (i32.const 1024) (local.get $n)))
          (block $done
            (loop $next
              (local.set $n (call $request_body_read (i32.const 0) (i32.const 8192) (i32.const 3)))
              (br_if $done (i32.eqz (local.get $n)))
              (drop (call $body_write (i32.const 0) (i32.const 8192) (local.get $n)))
              (br $next)))
          (i32.const 0))"#,
    ));
    let req = request(
        "POST",
        "/echo?x=1",
        &[("X-Echo", "one"), ("Accept", "*/*"), ("x-echo", "two")],
        "body of ten",
    );
    let resp = run(&w, req).unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(header(&resp, "x-method"), Some(&b"POST"[..]));
    assert_eq!(
        header(&resp, "x-url"),
        Some(&b"http://example.test/echo?x=1"[..])
    );
    assert_eq!(header(&resp, "x-echo"), Some(&b"one, two"[..]));
    assert_eq!(
        std::str::from_utf8(&resp.body).unwrap(),
        "Host: example.test\nX-Echo: one\nAccept: */*\nx-echo: two\nbody of ten"
    );
}

#[test]
fn env_bindings_and_the_buffer_rule() {
    let engine = engine();
    let mut s = spec(
        &engine,
        &guest(
            r#"
            (data (i32.const 0) "GREETING")
            (data (i32.const 16) "CONFIG")
            (data (i32.const 32) "TOKEN")
            (data (i32.const 48) "NOPE")
            (data (i32.const 1024) "zz")
            (data (i32.const 64) "x-missing")
            (func (export "tenantry_fetch") (result i32)
              (call $emit (call $env_kind (i32.const 0) (i32.const 8)))
              (call $emit (call $env_kind (i32.const 16) (i32.const 6)))
              (call $emit (call $env_kind (i32.const 32) (i32.const 5)))
              (call $emit (call $env_kind (i32.const 48) (i32.const 4)))
              (call $emit (call $env_get (i32.const 48) (i32.const 4) (i32.const 1024) (i32.const 100)))
              (call $emit (call $request_header (i32.const 0) (i32.const 64) (i32.const 9) (i32.const 1024) (i32.const 100)))
              ;; too small: full length back, nothing written ("zz" stays)
              (call $emit (call $env_get (i32.const 0) (i32.const 8) (i32.const 1024) (i32.const 2)))
              (drop (call $body_write (i32.const 0) (i32.const 1024) (i32.const 2)))
              ;; exactly big enough
              (call $emit (call $env_get (i32.const 0) (i32.const 8) (i32.const 1024) (i32.const 5)))
              (drop (call $body_write (i32.const 0) (i32.const 1024) (i32.const 5)))
              (call $emit (call $env_get (i32.const 32) (i32.const 5) (i32.const 1024) (i32.const 100)))
              (drop (call $body_write (i32.const 0) (i32.const 1024) (i32.const 6)))
              (i32.const 0))"#,
        ),
    );
    s.bindings = Bindings::new(vec![
        Binding {
            name: "GREETING".into(),
            kind: BindingKind::PlainText,
            value: "hello".into(),
        },
        Binding {
            name: "CONFIG".into(),
            kind: BindingKind::Json,
            value: r#"{"a":1}"#.into(),
        },
        Binding {
            name: "TOKEN".into(),
            kind: BindingKind::SecretText,
            value: "s3cret".into(),
        },
    ]);
    let w = Worker::new(&engine, s).unwrap();
    let body = run(&w, get("/")).unwrap().body;
    assert_eq!(codes(&body[..24]), [1, 2, 3, -1, -1, -1]);
    assert_eq!(codes(&body[24..28]), [5]);
    assert_eq!(&body[28..30], b"zz");
    assert_eq!(codes(&body[30..34]), [5]);
    assert_eq!(&body[34..39], b"hello");
    assert_eq!(codes(&body[39..43]), [6]);
    assert_eq!(&body[43..], b"s3cret");
}

#[test]
fn invalid_arguments_and_handles() {
    let w = worker(&guest(
        r#"
        (data (i32.const 0) "bad name")
        (data (i32.const 16) "ok\r\nx-injected: 1")
        (data (i32.const 48) "x-ok")
        (data (i32.const 64) "Content-Length")
        (data (i32.const 80) "a log line")
        (func (export "tenantry_fetch") (result i32)
          (call $emit (call $header_set (i32.const 0) (i32.const 0) (i32.const 8) (i32.const 48) (i32.const 4)))
          (call $emit (call $header_set (i32.const 0) (i32.const 48) (i32.const 4) (i32.const 16) (i32.const 18)))
          (call $emit (call $header_append (i32.const 0) (i32.const 48) (i32.const 0) (i32.const 48) (i32.const 4)))
          (call $emit (call $header_set (i32.const 0) (i32.const 64) (i32.const 14) (i32.const 48) (i32.const 4)))
          (call $emit (call $header_set (i32.const 1) (i32.const 48) (i32.const 4) (i32.const 48) (i32.const 4)))
          (call $emit (call $request_method (i32.const 1) (i32.const 1024) (i32.const 16)))
          (call $emit (call $set_status (i32.const 0) (i32.const 99)))
          (call $emit (call $set_status (i32.const 0) (i32.const 1000)))
          (call $emit (call $set_status (i32.const 0) (i32.const -200)))
          (call $emit (call $set_status (i32.const 7) (i32.const 200)))
          (call $emit (call $log (i32.const 9) (i32.const 80) (i32.const 10)))
          (call $emit (call $log (i32.const 1) (i32.const 80) (i32.const 10)))
          (call $emit (call $set_status (i32.const 0) (i32.const 100)))
          (call $emit (call $set_status (i32.const 0) (i32.const 101)))
          (call $emit (call $set_status (i32.const 0) (i32.const 199)))
          (call $emit (call $set_status (i32.const 0) (i32.const 600)))
          (call $emit (call $set_status (i32.const 0) (i32.const 599)))
          (i32.const 0))"#,
    ));
    let resp = run(&w, get("/")).unwrap();
    assert_eq!(
        codes(&resp.body),
        [
            -2, -2, -2, 0, -4, -4, -2, -2, -2, -4, -2, 0, -2, -2, -2, -2, 0
        ]
    );
    assert_eq!(resp.status, 599);
    // Content-Length from the guest is ignored; nothing else got through.
    assert!(resp.headers.is_empty(), "{:?}", resp.headers);
}

#[test]
fn response_limits() {
    let w = worker(&guest(&format!(
        r#"
        (data (i32.const 0) "x-h")
        (func (export "tenantry_fetch") (result i32)
          (local $i i32) (local $ok i32) (local $r i32)
          ;; header fields: count the successes out of 150
          (block $d (loop $l
            (br_if $d (i32.eq (local.get $i) (i32.const 150)))
            (if (i32.eqz (call $header_append (i32.const 0) (i32.const 0) (i32.const 3) (i32.const 0) (i32.const 3)))
              (then (local.set $ok (i32.add (local.get $ok) (i32.const 1)))))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $l)))
          ;; body: 64 KiB writes until one fails
          (local.set $i (i32.const 0))
          (block $d (loop $l
            (local.set $r (call $body_write (i32.const 0) (i32.const 0) (i32.const 65536)))
            (br_if $d (i32.lt_s (local.get $r) (i32.const 0)))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $l)))
          ;; the last bytes that fit exactly: none (the body is full)
          (call $set_status (i32.const 0) (i32.add (i32.const 200) (local.get $ok)))
          (drop)
          (if (i32.ne (local.get $i) (i32.const {chunks})) (then unreachable))
          (if (i32.ne (local.get $r) (i32.const -3)) (then unreachable))
          (i32.const 0))"#,
        chunks = MAX_RESPONSE_BODY_BYTES / 65536
    )));
    let resp = run(&w, get("/")).unwrap();
    assert_eq!(resp.status as usize, 200 + MAX_RESPONSE_HEADER_FIELDS);
    assert_eq!(resp.headers.len(), MAX_RESPONSE_HEADER_FIELDS);
    assert_eq!(resp.body.len(), MAX_RESPONSE_BODY_BYTES);
}

const SPIN: &str =
    r#"(func (export "tenantry_fetch") (result i32) (loop $l (br $l)) (i32.const 0))"#;

#[test]
fn infinite_loop_runs_out_of_fuel() {
    let w = worker(&guest(SPIN));
    let limits = Limits {
        cpu_ms: 5,
        ..Limits::DEFAULT
    };
    assert_eq!(
        run_with(&w, limits).unwrap_err(),
        Fault::OutOfFuel { cpu_ms: 5 }
    );
}

#[test]
fn wall_clock_deadline() {
    let w = worker(&guest(SPIN));
    let limits = Limits {
        cpu_ms: 1_000_000,
        wall_ms: 30,
        ..Limits::DEFAULT
    };
    assert_eq!(
        run_with(&w, limits).unwrap_err(),
        Fault::Deadline { wall_ms: 30 }
    );
}

#[test]
fn memory_grower_hits_the_memory_limit() {
    // Grows one page at a time until refused, then `then` decides what to do about it.
    let grower = |then: &str| {
        guest(&format!(
            r#"(func (export "tenantry_fetch") (result i32)
                (block $d (loop $l
                  (br_if $d (i32.eq (memory.grow (i32.const 1)) (i32.const -1)))
                  (br $l)))
                (call $emit (memory.size))
                {then})"#
        ))
    };
    let limits = Limits {
        memory_bytes: 1 << 20,
        ..Limits::DEFAULT
    };
    let w = worker(&grower("unreachable"));
    assert_eq!(
        run_with(&w, limits).unwrap_err(),
        Fault::MemoryLimit {
            limit_bytes: 1 << 20
        }
    );

    // A refused grow that the guest survives is not a fault: it saw -1 and carried on.
    let w = worker(&grower("(i32.const 0)"));
    assert_eq!(codes(&run_with(&w, limits).unwrap().body), [16]);
}

#[test]
fn initial_memory_over_the_limit_is_a_memory_limit() {
    let w = worker(
        r#"(module (memory (export "memory") 32)
            (func (export "tenantry_fetch") (result i32) (i32.const 0)))"#,
    );
    let limits = Limits {
        memory_bytes: 1 << 20,
        ..Limits::DEFAULT
    };
    assert_eq!(
        run_with(&w, limits).unwrap_err(),
        Fault::MemoryLimit {
            limit_bytes: 1 << 20
        }
    );
}

#[test]
fn deep_recursion_overflows_the_stack() {
    let w = worker(&guest(
        r#"(func $down (param i64) (result i64) (call $down (i64.add (local.get 0) (i64.const 1))))
           (func (export "tenantry_fetch") (result i32) (drop (call $down (i64.const 0))) (i32.const 0))"#,
    ));
    assert_eq!(run(&w, get("/")).unwrap_err(), Fault::StackOverflow);
}

#[test]
fn non_zero_return_and_proc_exit() {
    let w = worker(&guest(
        r#"(func (export "tenantry_fetch") (result i32) (i32.const 7))"#,
    ));
    assert_eq!(run(&w, get("/")).unwrap_err(), Fault::GuestError(7));

    let exit = |code: i32| {
        worker(&format!(
            r#"(module
              (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
              (import "tenantry:worker/v1" "response_body_write" (func $body_write (param i32 i32 i32) (result i32)))
              (memory (export "memory") 1)
              (data (i32.const 0) "bye")
              (func (export "tenantry_fetch") (result i32)
                (drop (call $body_write (i32.const 0) (i32.const 0) (i32.const 3)))
                (call $exit (i32.const {code}))
                (i32.const 1)))"#
        ))
    };
    assert_eq!(run(&exit(3), get("/")).unwrap_err(), Fault::GuestError(3));
    assert_eq!(&run(&exit(0), get("/")).unwrap().body[..], b"bye");
}

#[test]
fn unreachable_is_a_trap_with_a_short_message() {
    let w = worker(&guest(
        r#"(func (export "tenantry_fetch") (result i32) unreachable)"#,
    ));
    let Fault::Trap(message) = run(&w, get("/")).unwrap_err() else {
        panic!("expected a trap")
    };
    assert_eq!(message, "wasm `unreachable` instruction executed");
    assert_eq!(
        Fault::Trap(message).to_string(),
        "Worker raised an exception: wasm `unreachable` instruction executed"
    );
}

#[test]
fn out_of_bounds_pointer_traps() {
    for call in [
        "(call $request_method (i32.const 0) (i32.const 65530) (i32.const 100))",
        "(call $request_method (i32.const 0) (i32.const -1) (i32.const 0))",
        "(call $body_write (i32.const 0) (i32.const 65000) (i32.const 1000))",
        "(call $request_header (i32.const 0) (i32.const 70000) (i32.const 1) (i32.const 0) (i32.const 0))",
        "(call $env_get (i32.const 0) (i32.const 1) (i32.const 0) (i32.const -5))",
        "(call $request_body_read (i32.const 0) (i32.const 65535) (i32.const 2))",
    ] {
        let w = worker(&guest(&format!(
            r#"(func (export "tenantry_fetch") (result i32) (drop {call}) (i32.const 0))"#
        )));
        let fault = run(&w, request("GET", "/", &[], "body")).unwrap_err();
        assert!(
            matches!(&fault, Fault::Trap(m) if m.contains("outside the Worker's memory")),
            "{call}: {fault:?}"
        );
    }
}

const COUNTER: &str = r#"
    (global $count (mut i32) (i32.const 0))
    (data (i32.const 0) "x-fail")
    (func (export "tenantry_fetch") (result i32)
      (global.set $count (i32.add (global.get $count) (i32.const 1)))
      (call $emit (global.get $count))
      (if (i32.ge_s (call $request_header (i32.const 0) (i32.const 0) (i32.const 6) (i32.const 0) (i32.const 0)) (i32.const 0))
        (then unreachable))
      (i32.const 0))"#;

fn count(w: &Worker) -> i32 {
    codes(&run(w, get("/")).unwrap().body)[0]
}

#[test]
fn fresh_mode_never_leaks_state() {
    let w = worker(&guest(COUNTER));
    assert_eq!([count(&w), count(&w), count(&w)], [1, 1, 1]);
    assert_eq!(w.idle_instances(), 0);
}

#[test]
fn reuse_mode_keeps_clean_instances_and_drops_faulted_ones() {
    let engine = engine();
    let mut s = spec(&engine, &guest(COUNTER));
    s.reuse_instances = 1;
    let w = Worker::new(&engine, s).unwrap();
    assert_eq!([count(&w), count(&w), count(&w)], [1, 2, 3]);
    assert_eq!(w.idle_instances(), 1);
    let fault = run(&w, request("GET", "/", &[("x-fail", "1")], "")).unwrap_err();
    assert!(matches!(fault, Fault::Trap(_)), "{fault:?}");
    assert_eq!(w.idle_instances(), 0);
    assert_eq!([count(&w), count(&w)], [1, 2]);

    // An idle instance is dropped once it has been idle long enough, not before.
    assert_eq!(w.expire_idle(std::time::Duration::from_secs(3600)), 1);
    assert_eq!(w.expire_idle(std::time::Duration::ZERO), 0);
    assert_eq!(count(&w), 1);
}

#[test]
fn reuse_mode_drops_an_instance_that_hit_the_memory_limit() {
    let engine = engine();
    let mut s = spec(
        &engine,
        &guest(
            r#"(func (export "tenantry_fetch") (result i32)
                 (call $emit (memory.grow (i32.const 100)))
                 (i32.const 0))"#,
        ),
    );
    s.reuse_instances = 1;
    s.limits.memory_bytes = 1 << 20;
    let w = Worker::new(&engine, s).unwrap();
    // The guest survives the refused grow, but the instance is not kept.
    assert_eq!(codes(&run(&w, get("/")).unwrap().body), [-1]);
    assert_eq!(w.idle_instances(), 0);
}

#[test]
fn initialize_runs_once_per_instance_and_counts() {
    let engine = engine();
    let wat = guest(
        r#"(global $init (mut i32) (i32.const 0))
           (func (export "_initialize") (global.set $init (i32.add (global.get $init) (i32.const 1))))
           (func (export "tenantry_fetch") (result i32) (call $emit (global.get $init)) (i32.const 0))"#,
    );
    let mut s = spec(&engine, &wat);
    s.reuse_instances = 2;
    let w = Worker::new(&engine, s).unwrap();
    assert_eq!([count(&w), count(&w)], [1, 1]);

    // An endless _initialize is stopped by the request's own CPU limit.
    let w = worker(&guest(
        r#"(func (export "_initialize") (loop $l (br $l)))
           (func (export "tenantry_fetch") (result i32) (i32.const 0))"#,
    ));
    let limits = Limits {
        cpu_ms: 2,
        ..Limits::DEFAULT
    };
    assert_eq!(
        run_with(&w, limits).unwrap_err(),
        Fault::OutOfFuel { cpu_ms: 2 }
    );
}

#[test]
fn wasi_subset_and_enosys_stubs() {
    let w = worker(
        r#"(module
          (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "path_open"
            (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
          (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
          (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "environ_sizes_get" (func $env_sizes (param i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "sched_yield" (func $yield (result i32)))
          (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
          (import "tenantry:worker/v1" "response_body_write" (func $body_write (param i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 0) "hello from stdout\n")
          (data (i32.const 100) "\00\00\00\00\12\00\00\00")
          (data (i32.const 500) "\ff\ff\ff\ff\ff\ff\ff\ff")
          (func $emit (param i32)
            (i32.store (i32.const 65532) (local.get 0))
            (drop (call $body_write (i32.const 0) (i32.const 65532) (i32.const 4))))
          (func (export "tenantry_fetch") (result i32)
            (call $emit (call $fd_write (i32.const 1) (i32.const 100) (i32.const 1) (i32.const 200)))
            (call $emit (i32.load (i32.const 200)))
            (call $emit (call $fd_write (i32.const 3) (i32.const 100) (i32.const 1) (i32.const 200)))
            (call $emit (call $path_open (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 0)
              (i32.const 0) (i64.const 0) (i64.const 0) (i32.const 0) (i32.const 0)))
            (call $emit (call $fd_close (i32.const 3)))
            (call $emit (call $clock (i32.const 0) (i64.const 0) (i32.const 300)))
            (call $emit (i64.ne (i64.load (i32.const 300)) (i64.const 0)))
            (call $emit (call $clock (i32.const 1) (i64.const 0) (i32.const 300)))
            (call $emit (call $clock (i32.const 9) (i64.const 0) (i32.const 300)))
            (call $emit (call $random (i32.const 400) (i32.const 32)))
            (call $emit (call $env_sizes (i32.const 500) (i32.const 504)))
            (call $emit (i64.eqz (i64.load (i32.const 500))))
            (call $emit (call $yield))
            (call $exit (i32.const 0))
            unreachable))"#,
    );
    let resp = run(&w, get("/")).unwrap();
    assert_eq!(
        codes(&resp.body),
        [0, 18, 8, 52, 52, 0, 1, 0, 28, 0, 0, 1, 0]
    );
}

#[test]
fn overloaded_when_the_pool_is_exhausted() {
    let engine = small_engine(1);
    let wat = guest(r#"(func (export "tenantry_fetch") (result i32) (i32.const 0))"#);
    let mut s = spec(&engine, &wat);
    s.reuse_instances = 1;
    let keeper = Worker::new(&engine, s).unwrap();
    run(&keeper, get("/")).unwrap();
    assert_eq!(
        keeper.idle_instances(),
        1,
        "the idle instance holds the only slot"
    );
    let other = Worker::new(&engine, spec(&engine, &wat)).unwrap();
    assert_eq!(run(&other, get("/")).unwrap_err(), Fault::Overloaded);
    // Evicting the idle instance gives its slot back.
    assert_eq!(engine.idle_instances(), 1);
    assert_eq!(keeper.evict_idle(), 1);
    assert_eq!(engine.idle_instances(), 0);
    assert_eq!(run(&other, get("/")).unwrap().status, 200);
}

/// A CPU-bound guest yields on every epoch tick, so other tasks of the same monoio thread run
/// while it spins. Without yielding, the spinner would hold the thread until its deadline and
/// the other task would count nothing in between.
///
/// Both run as spawned tasks, as connections do on a serving core.
#[test]
fn cpu_hog_yields_to_other_tasks() {
    let w = Rc::new(worker(&guest(SPIN)));
    let limits = Limits {
        cpu_ms: 1_000_000,
        wall_ms: 50,
        ..Limits::DEFAULT
    };
    let (during, fault) = block_on(async move {
        let ticks = Rc::new(Cell::new(0u64));
        let counter = ticks.clone();
        monoio::spawn(async move {
            loop {
                counter.set(counter.get() + 1);
                // A fair yield: monoio would run a task that wakes itself again at once.
                crate::yielding::yield_now(0, true).await;
            }
        });
        monoio::spawn(async move {
            let before = ticks.get();
            let fault = w.invoke(get("/"), limits).await.unwrap_err();
            (ticks.get() - before, fault)
        })
        .await
    });
    assert_eq!(fault, Fault::Deadline { wall_ms: 50 });
    assert!(during > 0, "the other task never ran while the guest spun");
}

/// A short request that runs into an epoch tick goes on instead of yielding (a yield costs a
/// round of the core, more than such a request): thousands of short requests in a row, of
/// which hundreds run into one of the 250 µs ticks, let another task of the thread run hardly
/// ever in between. (Before `MIN_BRIEF_SLICE` each of those hundreds yielded.)
#[test]
fn a_short_request_that_runs_into_a_tick_does_not_yield() {
    // A few µs of guest time: a countdown from 5 000. A reused instance, so that the slice
    // is the guest's call alone (a fresh store's starts before its instantiation, which an
    // unoptimised test build of the host makes slow).
    let engine = engine();
    let mut s = spec(
        &engine,
        &guest(
            r#"(func (export "tenantry_fetch") (result i32) (local $n i32)
                 (local.set $n (i32.const 5000))
                 (loop $l
                   (local.set $n (i32.sub (local.get $n) (i32.const 1)))
                   (br_if $l (local.get $n)))
                 (i32.const 0))"#,
        ),
    );
    s.reuse_instances = 1;
    let w = Rc::new(Worker::new(&engine, s).unwrap());
    const REQUESTS: usize = 20_000;
    let (other_ran, started) = block_on(async move {
        let ran = Rc::new(Cell::new(0u64));
        let counter = ran.clone();
        monoio::spawn(async move {
            loop {
                counter.set(counter.get() + 1);
                crate::yielding::yield_now(0, false).await;
            }
        });
        monoio::spawn(async move {
            // The first request instantiates (its slice includes that): not counted.
            w.invoke(get("/"), Limits::DEFAULT).await.unwrap();
            let started = std::time::Instant::now();
            let before = ran.get();
            for _ in 0..REQUESTS {
                w.invoke(get("/"), Limits::DEFAULT).await.unwrap();
            }
            (ran.get() - before, started.elapsed())
        })
        .await
    });
    // The check means something only if the requests spanned many ticks.
    assert!(
        started > std::time::Duration::from_millis(10),
        "{started:?}"
    );
    // Hundreds of those requests ran into a tick (508 yielded before); a rare slice may still
    // take over `MIN_BRIEF_SLICE` (an interrupt or a page fault charged to it: up to 9 on a
    // loaded machine), an order of magnitude fewer.
    assert!(other_ran <= 50, "short requests yielded {other_ran} times");
}

/// A request that runs longer than `CPU_BOUND_AFTER` counts as CPU-bound while it runs, and its
/// Worker is still known as CPU-bound after it finished (admission counts that Worker's next
/// requests against its CPU-bound share before they have run that long). A request of one
/// instruction leaves its Worker not CPU-bound.
#[test]
fn a_long_running_request_is_cpu_bound() {
    let w = Rc::new(worker(&guest(SPIN)));
    let quick = worker(&guest(
        r#"(func (export "tenantry_fetch") (result i32) (i32.const 0))"#,
    ));
    let limits = Limits {
        cpu_ms: 1_000_000,
        wall_ms: 20,
        ..Limits::DEFAULT
    };
    assert!(!w.is_cpu_bound());
    let (spinner, invoker) = (w.clone(), w.clone());
    let (most_seen, fault) = block_on(async move {
        let seen = Rc::new(Cell::new(0usize));
        let done = Rc::new(Cell::new(false));
        let (observed, stop) = (seen.clone(), done.clone());
        monoio::spawn(async move {
            while !stop.get() {
                observed.set(observed.get().max(spinner.cpu_bound_requests()));
                crate::yielding::yield_now(0, true).await;
            }
        });
        let fault =
            monoio::spawn(async move { invoker.invoke(get("/"), limits).await.unwrap_err() }).await;
        done.set(true);
        (seen.get(), fault)
    });
    assert_eq!(fault, Fault::Deadline { wall_ms: 20 });
    assert_eq!(most_seen, 1, "the spinning request was not counted");
    assert_eq!(w.cpu_bound_requests(), 0, "a finished request still counts");
    assert!(w.is_cpu_bound(), "the Worker's last request was CPU-bound");
    // One instruction.
    assert_eq!(run(&quick, get("/")).unwrap().status, 200);
    assert!(!quick.is_cpu_bound());
}

/// One long slice does not make a request CPU-bound: the thread's CPU clock also counts what the
/// kernel charges to the thread while the guest runs (interrupts, on a kernel without IRQ time
/// accounting), which made a hello look like a hog now and then. Here one host call copies 8 MiB
/// (milliseconds, across epoch ticks, which the guest sees at its next loop header), then the
/// guest finishes in a few instructions: it yields once, and must not count as CPU-bound, or
/// admission would shed its Worker's next requests as a hog's.
#[test]
fn one_long_slice_is_not_cpu_bound() {
    let burst = format!(
        r#"(module {PRELUDE} (memory (export "memory") 128)
        (func (export "tenantry_fetch") (result i32) (local $i i32)
            (drop (call $body_write (i32.const 0) (i32.const 0) (i32.const 8388608)))
            (loop $l
                (local.set $i (i32.add (local.get $i) (i32.const 1)))
                (br_if $l (i32.lt_u (local.get $i) (i32.const 1000))))
            (i32.const 0)))"#
    );
    let w = worker(&burst);
    let limits = Limits {
        cpu_ms: 1_000,
        ..Limits::DEFAULT
    };
    let resp = run_with(&w, limits).unwrap();
    assert_eq!(resp.body.len(), 8 << 20);
    assert!(!w.is_cpu_bound(), "one long slice counted as CPU-bound");
}

#[test]
fn pool_caches_and_evicts_least_recently_used() {
    let engine = engine();
    let pool = WorkerPool::new(engine.clone(), 2);
    let wat = guest(r#"(func (export "tenantry_fetch") (result i32) (i32.const 0))"#);
    let loads = Cell::new(0);
    let load = |key: &str| {
        block_on(pool.get_or_load(key, || {
            loads.set(loads.get() + 1);
            let mut s = spec(&engine, &wat);
            s.name = format!("ns/{key}");
            std::future::ready(Ok(s))
        }))
        .unwrap()
    };
    assert_eq!(load("a").name(), "ns/a");
    load("b");
    load("a"); // hit: `b` is now the least recently used
    assert_eq!(loads.get(), 2);
    load("c");
    assert_eq!(pool.len(), 2);
    assert!(pool.contains("a") && pool.contains("c") && !pool.contains("b"));
    load("b");
    assert_eq!(loads.get(), 4);
    assert!(!pool.contains("a"));

    // A failed load is reported and not cached.
    let err = block_on(pool.get_or_load("d", || std::future::ready(Err(Fault::NotFound)))).err();
    assert_eq!(err, Some(Fault::NotFound));
    assert!(!pool.contains("d"));
    let w =
        block_on(pool.get_or_load("d", || std::future::ready(Ok(spec(&engine, &wat))))).unwrap();
    assert_eq!(&run(&w, get("/")).unwrap().body[..], b"");
}

#[test]
fn request_body_is_read_once_and_headers_are_case_insensitive() {
    let w = worker(&guest(
        r#"(data (i32.const 0) "CONTENT-TYPE")
           (func (export "tenantry_fetch") (result i32)
             (call $emit (call $request_body_read (i32.const 0) (i32.const 1024) (i32.const 100)))
             (call $emit (call $request_body_read (i32.const 0) (i32.const 1024) (i32.const 100)))
             (call $emit (call $request_header (i32.const 0) (i32.const 0) (i32.const 12) (i32.const 1024) (i32.const 0)))
             (i32.const 0))"#,
    ));
    let req = request("POST", "/", &[("content-type", "application/json")], "{}");
    assert_eq!(codes(&run(&w, req).unwrap().body), [2, 0, 16]);
}

#[test]
fn env_list_names_every_binding_and_code_read_hands_out_the_bundle() {
    let engine = engine();
    let text = guest_importing(
        r#"(import "tenantry:worker/v1" "env_list" (func $env_list (param i32 i32) (result i32)))
               (import "tenantry:js/v1" "code_read" (func $code_read (param i32 i32) (result i32)))"#,
        r#"(func (export "tenantry_fetch") (result i32)
                 (local $n i32)
                 ;; too small: the length, nothing written
                 (call $emit (call $env_list (i32.const 1024) (i32.const 1)))
                 (local.set $n (call $env_list (i32.const 1024) (i32.const 100)))
                 (call $emit (local.get $n))
                 (drop (call $body_write (i32.const 0) (i32.const 1024) (local.get $n)))
                 (local.set $n (call $code_read (i32.const 2048) (i32.const 100)))
                 (call $emit (local.get $n))
                 (drop (call $body_write (i32.const 0) (i32.const 2048) (local.get $n)))
                 (i32.const 0))"#,
    );
    let mut s = spec(
        &engine,
        &guest("(func (export \"tenantry_fetch\") (result i32) i32.const 0)"),
    );
    s.bindings = Bindings::new(vec![
        Binding {
            name: "B".into(),
            kind: BindingKind::PlainText,
            value: "x".into(),
        },
        Binding {
            name: "A".into(),
            kind: BindingKind::SecretText,
            value: "y".into(),
        },
    ]);
    // Only the engine may import `tenantry:js/v1`: compiled here without the upload check.
    s.module = wasmtime::Module::new(engine.wasmtime(), wat::parse_str(&text).unwrap()).unwrap();
    s.js_bundle = Some(bytes::Bytes::from_static(b"TJSB-bundle"));
    let w = Worker::new(&engine, s).unwrap();
    let body = run(&w, get("/")).unwrap().body;
    assert_eq!(codes(&body[..8]), [3, 3]);
    assert_eq!(&body[8..11], b"A\nB");
    assert_eq!(codes(&body[11..15]), [11]);
    assert_eq!(&body[15..], b"TJSB-bundle");
}

#[test]
fn uploads_may_not_import_the_engine_interface() {
    let e = engine()
        .compile(
            br#"(module (import "tenantry:js/v1" "code_read" (func (param i32 i32) (result i32)))
                (memory (export "memory") 1)
                (func (export "tenantry_fetch") (result i32) i32.const 0))"#,
        )
        .expect_err("refused");
    assert!(e.to_string().contains("tenantry:js/v1::code_read"), "{e}");
}

/// `poll_oneoff` with one relative monotonic clock subscription of `ns` nanoseconds at 0; the
/// event goes to 256, the count to 512. Emits the errno, the count and the event's userdata.
fn sleeper(ns: u64) -> String {
    guest_importing(
        r#"(import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))"#,
        &format!(
            r#"(func (export "tenantry_fetch") (result i32)
             (i64.store (i32.const 0) (i64.const 77))      ;; userdata
             (i32.store8 (i32.const 8) (i32.const 0))      ;; eventtype clock
             (i32.store (i32.const 16) (i32.const 1))      ;; monotonic
             (i64.store (i32.const 24) (i64.const {ns}))   ;; timeout
             (i32.store16 (i32.const 40) (i32.const 0))    ;; relative
             (call $emit (call $poll (i32.const 0) (i32.const 256) (i32.const 1) (i32.const 512)))
             (call $emit (i32.load (i32.const 512)))
             (call $emit (i32.load (i32.const 256)))
             (i32.const 0))"#
        ),
    )
}

#[test]
fn poll_oneoff_sleeps_on_a_clock_within_the_wall_clock_limit() {
    let w = worker(&sleeper(20_000_000));
    let started = std::time::Instant::now();
    let body = run(&w, get("/")).unwrap().body;
    assert_eq!(codes(&body), [0, 1, 77]);
    assert!(started.elapsed() >= std::time::Duration::from_millis(20));

    // A sleep past the deadline ends the invocation with the wall-clock fault.
    let w = worker(&sleeper(60_000_000_000));
    let limits = Limits {
        wall_ms: 50,
        ..Limits::DEFAULT
    };
    assert_eq!(
        run_with(&w, limits).err(),
        Some(Fault::Deadline { wall_ms: 50 })
    );
}

/// Workers of one module on a core share its link; another module, or the same module running a
/// JavaScript bundle, gets its own; a link lives as long as a Worker uses it, and each Worker
/// still runs with its own name and bindings.
#[test]
fn workers_of_one_module_share_its_link_on_a_core() {
    let engine = engine();
    let hello = guest(r#"(func (export "tenantry_fetch") (result i32) (i32.const 0))"#);
    let first = spec(&engine, &hello);
    let module = first.module.clone();
    let a = Worker::link(&engine, first).unwrap();
    let b = Worker::link(
        &engine,
        WorkerSpec {
            name: "test/other".into(),
            module: module.clone(),
            ..spec(&engine, &hello)
        },
    )
    .unwrap();
    assert!(Rc::ptr_eq(&a.linked, &b.linked), "one module, one link");

    let recompiled = Worker::link(&engine, spec(&engine, &hello)).unwrap();
    assert!(
        !Rc::ptr_eq(&a.linked, &recompiled.linked),
        "another module (same bytes, compiled again) is linked on its own"
    );
    let as_js = Worker::link(
        &engine,
        WorkerSpec {
            js_bundle: Some(bytes::Bytes::from_static(b"bundle")),
            module: module.clone(),
            ..spec(&engine, &hello)
        },
    )
    .unwrap();
    assert!(
        !Rc::ptr_eq(&a.linked, &as_js.linked),
        "a JavaScript Worker of it is not"
    );

    assert_eq!(run(&a, get("/")).unwrap().status, 200);
    assert_eq!(run(&b, get("/")).unwrap().status, 200);
    assert_eq!(b.name(), "test/other");

    let weak = Rc::downgrade(&a.linked);
    drop((a, b));
    assert!(
        weak.upgrade().is_none(),
        "the link goes with its last Worker"
    );
    let again = Worker::link(
        &engine,
        WorkerSpec {
            module,
            ..spec(&engine, &hello)
        },
    )
    .unwrap();
    assert_eq!(run(&again, get("/")).unwrap().status, 200);
}

/// A Worker of `wat` compiled by `tier`'s compiler, on the shared engine.
fn worker_of_tier(wat: &str, tier: crate::Tier) -> Worker {
    let engine = engine();
    let module = match tier {
        crate::Tier::Optimised => engine.compile(wat.as_bytes()),
        crate::Tier::Baseline => engine.compile_baseline(wat.as_bytes()),
    }
    .expect("test guest compiles");
    assert_eq!(engine.tier_of(&module), tier);
    Worker::new(
        &engine,
        WorkerSpec {
            module,
            ..spec(&engine, wat)
        },
    )
    .expect("test Worker loads")
}

/// Winch code (the baseline tier) meets every limit exactly as Cranelift code does: the same
/// fault for fuel, the wall-clock deadline (epochs), memory, the stack, traps and guest errors,
/// and the same answer from host calls (docs/design.md "Two compiler tiers").
#[test]
fn both_tiers_fault_alike() {
    let grower = guest(
        r#"(func (export "tenantry_fetch") (result i32)
            (block $d (loop $l
              (br_if $d (i32.eq (memory.grow (i32.const 1)) (i32.const -1)))
              (br $l)))
            unreachable)"#,
    );
    let recursion = guest(
        r#"(func $down (param i64) (result i64) (call $down (i64.add (local.get 0) (i64.const 1))))
           (func (export "tenantry_fetch") (result i32) (drop (call $down (i64.const 0))) (i32.const 0))"#,
    );
    let echo_method = guest(
        r#"(func (export "tenantry_fetch") (result i32)
            (drop (call $body_write (i32.const 0) (i32.const 100)
              (call $request_method (i32.const 0) (i32.const 100) (i32.const 16))))
            (i32.const 0))"#,
    );
    let cases: Vec<(&str, String, Limits)> = vec![
        (
            "fuel",
            guest(SPIN),
            Limits {
                cpu_ms: 5,
                ..Limits::DEFAULT
            },
        ),
        (
            "deadline",
            guest(SPIN),
            Limits {
                cpu_ms: 1_000_000,
                wall_ms: 30,
                ..Limits::DEFAULT
            },
        ),
        (
            "memory",
            grower,
            Limits {
                memory_bytes: 1 << 20,
                ..Limits::DEFAULT
            },
        ),
        ("stack", recursion, Limits::DEFAULT),
        (
            "trap",
            guest(r#"(func (export "tenantry_fetch") (result i32) unreachable)"#),
            Limits::DEFAULT,
        ),
        (
            "guest error",
            guest(r#"(func (export "tenantry_fetch") (result i32) (i32.const 7))"#),
            Limits::DEFAULT,
        ),
        ("host call", echo_method, Limits::DEFAULT),
    ];
    for (what, wat, limits) in cases {
        let optimised = run_with(&worker_of_tier(&wat, crate::Tier::Optimised), limits);
        let baseline = run_with(&worker_of_tier(&wat, crate::Tier::Baseline), limits);
        match (&optimised, &baseline) {
            (Ok(a), Ok(b)) => {
                assert_eq!((a.status, &a.body), (b.status, &b.body), "{what}");
                assert_eq!(&b.body[..], b"GET", "{what}");
            }
            (a, b) => assert_eq!(a.as_ref().err(), b.as_ref().err(), "{what}"),
        }
        assert!(
            what == "host call" || baseline.is_err(),
            "{what}: {baseline:?}"
        );
    }
}

/// A CPU-bound Winch guest yields at epoch ticks like a Cranelift one, so a timer on the same
/// core fires while it runs (the baseline engine's epoch is ticked too).
#[test]
fn a_baseline_guest_yields_to_other_tasks() {
    let w = worker_of_tier(&guest(SPIN), crate::Tier::Baseline);
    let limits = Limits {
        cpu_ms: 1_000_000,
        wall_ms: 200,
        ..Limits::DEFAULT
    };
    let fired = block_on(async {
        let fired = std::rc::Rc::new(std::cell::Cell::new(false));
        let flag = fired.clone();
        let timer = monoio::spawn(async move {
            monoio::time::sleep(Duration::from_millis(1)).await;
            flag.set(true);
        });
        let fault = w.invoke(get("/"), limits).await.unwrap_err();
        assert_eq!(fault, Fault::Deadline { wall_ms: 200 });
        // Read before awaiting the timer: only a guest that yielded let it run meanwhile.
        let fired_meanwhile = fired.get();
        timer.await;
        fired_meanwhile
    });
    assert!(fired, "the timer never ran while the baseline guest spun");
}
