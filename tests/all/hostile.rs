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
