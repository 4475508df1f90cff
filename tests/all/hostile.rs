//! Hostile guests get their specific status within their limits, and the node keeps serving
//! everyone else meanwhile.

use std::thread;

use crate::common::*;

fn config() -> String {
    format!(
        "[[namespace]]\nname = \"production\"\n{}{}{}{}{}{}\
         [[route]]\nhost = \"*.example.test\"\nnamespace = \"production\"\nscript_from = \"host_label\"\n",
        worker("production", "alice", "hello", ""),
        worker("production", "spin", "spin", "limits = { cpu_ms = 20 }"),
        worker(
            "production",
            "slow",
            "spin",
            "limits = { cpu_ms = 100000, wall_ms = 50 }"
        ),
        worker(
            "production",
            "hog",
            "memory_hog",
            "limits = { memory_mb = 16 }"
        ),
        worker("production", "deep", "deep_recursion", ""),
        worker("production", "fail", "fail", ""),
    )
}

#[test]
fn infinite_loop_hits_the_cpu_limit() {
    let node = TestNode::start(&config());
    let resp = get(node.addr, "spin.example.test", "/");
    assert_eq!(resp.status, 503);
    assert!(
        resp.text().contains("CPU time limit of 20 ms"),
        "{}",
        resp.text()
    );
}

#[test]
fn wall_clock_deadline_stops_a_long_runner() {
    let node = TestNode::start(&config());
    let resp = get(node.addr, "slow.example.test", "/");
    assert_eq!(resp.status, 503);
    assert!(
        resp.text().contains("wall-clock limit of 50 ms"),
        "{}",
        resp.text()
    );
}

#[test]
fn memory_grower_hits_the_memory_limit() {
    let node = TestNode::start(&config());
    let resp = get(node.addr, "hog.example.test", "/");
    assert_eq!(resp.status, 503);
    assert!(
        resp.text()
            .contains(&format!("memory limit of {} bytes", 16 << 20)),
        "{}",
        resp.text()
    );
}

#[test]
fn deep_recursion_overflows_the_stack() {
    let node = TestNode::start(&config());
    let resp = get(node.addr, "deep.example.test", "/");
    assert_eq!(resp.status, 500);
    assert!(resp.text().contains("stack"), "{}", resp.text());
}

#[test]
fn a_failing_worker_is_500() {
    let node = TestNode::start(&config());
    let resp = get(node.addr, "fail.example.test", "/");
    assert_eq!(resp.status, 500);
    assert!(resp.text().contains("failed with code"), "{}", resp.text());
}

#[test]
fn others_are_served_while_hostile_guests_run() {
    let node = TestNode::start(&config());
    let addr = node.addr;
    let hostile: Vec<_> = ["spin", "hog", "deep", "slow"]
        .into_iter()
        .flat_map(|name| (0..3).map(move |_| name))
        .map(|name| thread::spawn(move || get(addr, &format!("{name}.example.test"), "/").status))
        .collect();
    for _ in 0..50 {
        let resp = get(addr, "alice.example.test", "/");
        assert_eq!(
            (resp.status, resp.text().as_str()),
            (200, "hello from tenantry\n")
        );
    }
    for h in hostile {
        let status = h.join().unwrap();
        assert!(status == 503 || status == 500, "hostile guest got {status}");
    }
    // After all that, a fresh request is still served.
    assert_eq!(get(addr, "alice.example.test", "/").status, 200);
}

const MIB: usize = 1 << 20;

/// WAT that writes `http://a/` and then `a`s, `len` bytes in all, at address 0.
fn url_at_zero(len: usize) -> String {
    let mut wat = format!("(memory.fill (i32.const 0) (i32.const 97) (i32.const {len}))");
    for (i, c) in b"http://a/".iter().enumerate() {
        wat.push_str(&format!("(i32.store8 (i32.const {i}) (i32.const {c}))"));
    }
    wat
}

/// A node with `alice` (hello) and the hostile WAT guests of the accounting tests.
fn accounting_node(dir: &std::path::Path) -> TestNode {
    let url = 100 * MIB;
    let url_setter = format!(
        r#"(module
             (import "tenantry:worker/v1" "request_new" (func $new (result i32)))
             (import "tenantry:worker/v1" "request_set_url" (func $set_url (param i32 i32 i32) (result i32)))
             (memory (export "memory") {pages})
             (func (export "tenantry_fetch") (result i32)
               (local $h i32) (local $i i32)
               {fill}
               (local.set $h (call $new))
               (block $d (loop $l
                 (br_if $d (i32.eq (local.get $i) (i32.const 50)))
                 (drop (call $set_url (local.get $h) (i32.const 0) (i32.const {url})))
                 (local.set $i (i32.add (local.get $i) (i32.const 1)))
                 (br $l)))
               (i32.const 0)))"#,
        pages = url / 65536 + 1,
        fill = url_at_zero(url),
    );
    let big = MIB;
    let handle_maker = format!(
        r#"(module
             (import "tenantry:worker/v1" "request_new" (func $new (result i32)))
             (import "tenantry:worker/v1" "request_set_url" (func $set_url (param i32 i32 i32) (result i32)))
             (import "tenantry:worker/v1" "request_header_set" (func $header_set (param i32 i32 i32 i32 i32) (result i32)))
             (memory (export "memory") {pages})
             (data (i32.const {name}) "x-big")
             (func (export "tenantry_fetch") (result i32)
               (local $h i32) (local $i i32)
               {fill}
               (memory.fill (i32.const {big}) (i32.const 118) (i32.const {big}))
               (block $d (loop $l
                 (br_if $d (i32.eq (local.get $i) (i32.const 128)))
                 (local.set $h (call $new))
                 (drop (call $set_url (local.get $h) (i32.const 0) (i32.const {big})))
                 (drop (call $header_set (local.get $h) (i32.const {name}) (i32.const 5)
                   (i32.const {big}) (i32.const {big})))
                 (local.set $i (i32.add (local.get $i) (i32.const 1)))
                 (br $l)))
               (i32.const 0)))"#,
        pages = 2 * big / 65536 + 1,
        fill = url_at_zero(big),
        name = 2 * big,
    );
    // Room for every hostile request at once: these tests are about what each one gets, not
    // about admission (tests/all/admission.rs).
    TestNode::start(&format!(
        "[admission]\nmax_cpu_bound_per_worker = 8\nmax_queue_wait_ms = 20000\n\
         [[namespace]]\nname = \"production\"\n{}{}{}\
         [[route]]\nhost = \"*.example.test\"\nnamespace = \"production\"\nscript_from = \"host_label\"\n",
        worker("production", "alice", "hello", ""),
        wat_worker(
            dir,
            "production",
            "urls",
            &url_setter,
            "limits = { cpu_ms = 50 }"
        ),
        wat_worker(
            dir,
            "production",
            "handles",
            &handle_maker,
            "limits = { memory_mb = 16 }"
        ),
    ))
}

#[test]
fn setting_a_huge_url_fifty_times_hits_the_cpu_limit() {
    let dir = tempfile::tempdir().unwrap();
    let node = accounting_node(dir.path());
    let resp = get(node.addr, "urls.example.test", "/");
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert!(
        resp.text().contains("CPU time limit of 50 ms"),
        "{}",
        resp.text()
    );
    assert_eq!(get(node.addr, "alice.example.test", "/").status, 200);
}

#[test]
fn request_handles_past_the_host_memory_budget_get_the_memory_limit() {
    let dir = tempfile::tempdir().unwrap();
    let node = accounting_node(dir.path());
    let addr = node.addr;
    let hostile: Vec<_> = (0..4)
        .map(|_| thread::spawn(move || get(addr, "handles.example.test", "/")))
        .collect();
    for _ in 0..20 {
        assert_eq!(get(addr, "alice.example.test", "/").status, 200);
    }
    for h in hostile {
        let resp = h.join().unwrap();
        assert_eq!(resp.status, 503, "{}", resp.text());
        assert!(
            resp.text()
                .contains(&format!("memory limit of {} bytes", 16 << 20)),
            "{}",
            resp.text()
        );
    }
    assert_eq!(get(addr, "alice.example.test", "/").status, 200);
}
