//! Fair share under overload: requests past a core's admission bounds get `503` with
//! `Retry-After`, a CPU-hungry tenant queues behind itself while others are served, and idle
//! reuse-mode instances give their pool slots up to Workers that need them.

use std::path::Path;
use std::sync::{Arc, Barrier};
use std::thread;

use tenantry::config::Config;
use tenantry::serve::Node;

use crate::common::*;

/// A Worker that counts down `iterations` in a loop (every step observable to fuel and epochs),
/// then answers 200 with an empty body.
fn spinner(iterations: u64) -> String {
    format!(
        r#"(module
  (memory (export "memory") 1)
  (func (export "tenantry_fetch") (result i32)
    (local $i i64)
    (local.set $i (i64.const {iterations}))
    (block $done
      (loop $spin
        (br_if $done (i64.eqz (local.get $i)))
        (local.set $i (i64.sub (local.get $i) (i64.const 1)))
        (br $spin)))
    (i32.const 0)))"#
    )
}

/// Writes `wat` to `dir/name.wat` and returns a `[[worker]]` table in namespace `tenants`.
fn wat_worker(dir: &Path, name: &str, wat: &str, extra: &str) -> String {
    let path = dir.join(format!("{name}.wat"));
    std::fs::write(&path, wat).unwrap();
    format!(
        "[[worker]]\nnamespace = \"tenants\"\nname = \"{name}\"\nmodule = \"{}\"\n{extra}\n",
        path.display()
    )
}

const ROUTE: &str = "[[namespace]]\nname = \"tenants\"\n\
    [[route]]\nhost = \"*.example.test\"\nnamespace = \"tenants\"\nscript_from = \"host_label\"\n";

/// A node started from config `text`, written to `dir/tenantry.toml` (its data dir is relative
/// to it).
fn start_node(dir: &Path, text: &str) -> Node {
    let path = dir.join("tenantry.toml");
    std::fs::write(&path, text).unwrap();
    let config = Config::parse(text, &path).unwrap();
    Node::start(&config).unwrap()
}

/// The shed response: 503, a `Retry-After` in seconds and a message saying what was full.
fn assert_shed(resp: &Resp) {
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert_eq!(resp.header("retry-after"), Some("1"), "{:?}", resp.headers);
    let text = resp.text();
    assert!(
        text.contains("over its share")
            || text.contains("is CPU-bound")
            || text.contains("no capacity")
            || text.contains("over capacity"),
        "{text}"
    );
    assert!(text.contains("Retry after 1 s"), "{text}");
}

#[test]
fn past_the_queue_bound_requests_get_503_with_retry_after() {
    let wat = tempfile::tempdir().unwrap();
    // One request of `slow` at a time per core and no queue: concurrent ones are shed at once.
    let body = format!(
        "[admission]\nmax_in_flight_per_worker = 1\nmax_queued_per_worker = 0\n{ROUTE}{}{}",
        wat_worker(
            wat.path(),
            "slow",
            &spinner(100_000_000),
            "limits = { cpu_ms = 30000 }"
        ),
        worker("tenants", "hello", "hello", ""),
    );
    let node = TestNode::start(&body);
    let addr = node.addr;
    let clients = 12;
    let start = Arc::new(Barrier::new(clients));
    let statuses: Vec<Resp> = (0..clients)
        .map(|_| {
            let start = start.clone();
            thread::spawn(move || {
                start.wait();
                get(addr, "slow.example.test", "/")
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    let (ok, shed): (Vec<_>, Vec<_>) = statuses.iter().partition(|r| r.status == 200);
    // Two cores run one each; at least one of twelve arrivals overlapped a running one.
    assert!(!ok.is_empty(), "nothing was admitted");
    assert!(!shed.is_empty(), "nothing was shed");
    shed.iter().for_each(|r| assert_shed(r));
    // Another Worker is admitted meanwhile and after.
    assert_eq!(get(addr, "hello.example.test", "/").status, 200);
}

#[test]
fn a_queued_request_is_shed_after_the_maximum_wait() {
    let wat = tempfile::tempdir().unwrap();
    let body = format!(
        "[admission]\nmax_in_flight_per_worker = 1\nmax_queue_wait_ms = 1\n{ROUTE}{}",
        wat_worker(
            wat.path(),
            "slow",
            &spinner(100_000_000),
            "limits = { cpu_ms = 30000 }"
        ),
    );
    let node = TestNode::start(&body);
    let addr = node.addr;
    let clients = 12;
    let start = Arc::new(Barrier::new(clients));
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let start = start.clone();
            thread::spawn(move || {
                start.wait();
                get(addr, "slow.example.test", "/")
            })
        })
        .collect();
    let resps: Vec<Resp> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let shed: Vec<_> = resps.iter().filter(|r| r.status == 503).collect();
    assert!(!shed.is_empty(), "nothing waited past 1 ms");
    for r in shed {
        assert_shed(r);
        assert!(r.text().contains("within 1 ms"), "{}", r.text());
    }
}

#[test]
fn a_cpu_hog_tenant_does_not_stop_another_tenants_requests() {
    let wat = tempfile::tempdir().unwrap();
    let body = format!(
        "{ROUTE}{}{}",
        wat_worker(
            wat.path(),
            "hog",
            &spinner(20_000_000),
            "limits = { cpu_ms = 30000 }"
        ),
        worker("tenants", "alice", "hello", ""),
    );
    let node = TestNode::start(&body);
    let addr = node.addr;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Far more hog requests at once than the cores' shares.
    let hogs: Vec<_> = (0..48)
        .map(|_| {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut seen = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let resp = get(addr, "hog.example.test", "/");
                    if resp.status == 503 {
                        assert_shed(&resp);
                    }
                    seen.push(resp.status);
                }
                seen
            })
        })
        .collect();
    for _ in 0..50 {
        let resp = get(addr, "alice.example.test", "/");
        assert_eq!(
            (resp.status, resp.text().as_str()),
            (200, "hello from tenantry\n")
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let statuses: Vec<u16> = hogs.into_iter().flat_map(|h| h.join().unwrap()).collect();
    assert!(
        statuses.iter().all(|&s| s == 200 || s == 503),
        "{statuses:?}"
    );
    assert!(statuses.contains(&200), "the hog was never admitted");
}

/// Once a Worker is known to be CPU-bound on a core, every request of it there counts against
/// `max_cpu_bound_per_worker`, also those that have not yet run long enough to show it: a burst of
/// them runs one at a time, and with no queue the rest is shed — never several admitted at once
/// because they had not yet shown they were CPU-bound. Short requests of another Worker are not
/// held to that share.
#[test]
fn a_cpu_bound_worker_runs_its_share_at_a_time() {
    let wat = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "data_dir = \"data\"\n[server]\nlisten = \"127.0.0.1:0\"\nthreads = 1\n\
         [admin]\nenabled = false\n\
         [admission]\nmax_in_flight_per_worker = 16\nmax_cpu_bound_per_worker = 1\n\
         max_queued_per_worker = 0\n{ROUTE}{}{}",
        wat_worker(
            wat.path(),
            "hog",
            &spinner(20_000_000),
            "limits = { cpu_ms = 30000 }"
        ),
        worker("tenants", "alice", "hello", ""),
    );
    let node = start_node(dir.path(), &text);
    let addr = node.local_addr();

    // The core learns that `hog` is CPU-bound: its request runs many ticks.
    assert_eq!(get(addr, "hog.example.test", "/").status, 200);
    let burst = |host: &'static str| -> Vec<Resp> {
        let clients = 12;
        let start = Arc::new(Barrier::new(clients));
        (0..clients)
            .map(|_| {
                let start = start.clone();
                thread::spawn(move || {
                    start.wait();
                    get(addr, host, "/")
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect()
    };
    let resps = burst("hog.example.test");
    let (ok, shed): (Vec<_>, Vec<_>) = resps.iter().partition(|r| r.status == 200);
    assert!(!ok.is_empty(), "nothing was admitted");
    assert!(!shed.is_empty(), "twelve at once all ran");
    for r in shed {
        assert_shed(r);
        // The 503 says how many of the Worker's requests ran on the core when it was shed.
        assert!(r.text().contains(": 1 of its requests run"), "{}", r.text());
    }
    // Short requests: the share of CPU-bound requests does not apply.
    for r in burst("alice.example.test") {
        assert_eq!(r.status, 200, "{}", r.text());
    }
    node.shutdown();
}

/// A CPU-bound Worker's requests past its share of a core queue while it has the core to itself,
/// but not while another Worker's requests arrive there: then the one that does not fit is shed
/// at once instead of waiting out the other's run time.
#[test]
fn a_cpu_bound_worker_queues_only_on_a_core_it_has_to_itself() {
    let wat = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "data_dir = \"data\"\n[server]\nlisten = \"127.0.0.1:0\"\nthreads = 1\n\
         [admin]\nenabled = false\n\
         [admission]\nmax_cpu_bound_per_worker = 1\nmax_queue_wait_ms = 60000\n{ROUTE}{}{}",
        wat_worker(
            wat.path(),
            "hog",
            &spinner(300_000_000),
            "limits = { cpu_ms = 30000, wall_ms = 60000 }"
        ),
        worker("tenants", "alice", "hello", ""),
    );
    let node = start_node(dir.path(), &text);
    let addr = node.local_addr();
    // The core learns that `hog` is CPU-bound.
    assert_eq!(get(addr, "hog.example.test", "/").status, 200);
    let two_hogs = |between: &dyn Fn()| -> Vec<Resp> {
        let first = thread::spawn(move || get(addr, "hog.example.test", "/"));
        between();
        let second = get(addr, "hog.example.test", "/");
        vec![first.join().unwrap(), second]
    };

    // Alone on the core: the second waits for the first and both are answered.
    for r in two_hogs(&|| {}) {
        assert_eq!(r.status, 200, "{}", r.text());
    }

    // Another tenant's request arrives meanwhile: whichever of the two overlapping hog requests
    // came second is shed, with a message saying why.
    let resps = two_hogs(&|| assert_eq!(get(addr, "alice.example.test", "/").status, 200));
    let (ok, shed): (Vec<_>, Vec<_>) = resps.iter().partition(|r| r.status == 200);
    assert_eq!(
        (ok.len(), shed.len()),
        (1, 1),
        "{:?}",
        resps.iter().map(Resp::text).collect::<Vec<_>>()
    );
    assert_shed(shed[0]);
    assert!(
        shed[0]
            .text()
            .contains("is CPU-bound and already runs 1 of its requests"),
        "{}",
        shed[0].text()
    );
    node.shutdown();
}

#[test]
fn idle_reuse_instances_give_their_slots_to_another_worker() {
    let wat = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Four pool slots on one core, all of which `keeper` may keep idle.
    let text = format!(
        "data_dir = \"data\"\n[server]\nlisten = \"127.0.0.1:0\"\nthreads = 1\n\
         [admin]\nenabled = false\n\
         [engine]\nmax_instances = 4\nmax_idle_instances = 4\n\
         [admission]\nmax_in_flight = 4\nmax_in_flight_per_worker = 4\nmax_cpu_bound_per_worker = 4\n\
         {ROUTE}{}{}",
        wat_worker(
            wat.path(),
            "keeper",
            &spinner(100_000_000),
            "limits = { cpu_ms = 30000 }\nreuse_instances = 4"
        ),
        wat_worker(wat.path(), "other", &spinner(1), ""),
    );
    let node = start_node(dir.path(), &text);
    let addr = node.local_addr();
    let plane = node.plane().clone();

    // Four requests of `keeper` at once leave four idle instances pinning every slot. Their
    // arrivals must overlap; try a few bursts until they did.
    for _ in 0..20 {
        let start = Arc::new(Barrier::new(4));
        let burst: Vec<_> = (0..4)
            .map(|_| {
                let start = start.clone();
                thread::spawn(move || {
                    start.wait();
                    get(addr, "keeper.example.test", "/").status
                })
            })
            .collect();
        for h in burst {
            assert_eq!(h.join().unwrap(), 200);
        }
        if plane.idle_instances() == 4 {
            break;
        }
    }
    assert_eq!(plane.idle_instances(), 4, "the bursts never overlapped");

    // `other` needs a slot: the idle instances are evicted and it is served.
    let resp = get(addr, "other.example.test", "/");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(plane.idle_instances() < 4);
    node.shutdown();
}

#[test]
fn idle_instances_stay_under_the_node_wide_cap() {
    let wat = tempfile::tempdir().unwrap();
    // max_instances = 64 (the test node's), so the default cap is 16 idle instances.
    let body = format!(
        "[admission]\nmax_in_flight_per_worker = 16\nmax_cpu_bound_per_worker = 16\n{ROUTE}{}",
        wat_worker(
            wat.path(),
            "keeper",
            &spinner(20_000_000),
            "limits = { cpu_ms = 30000 }\nreuse_instances = 64"
        ),
    );
    let node = TestNode::start(&body);
    let addr = node.addr;
    let start = Arc::new(Barrier::new(32));
    let burst: Vec<_> = (0..32)
        .map(|_| {
            let start = start.clone();
            thread::spawn(move || {
                start.wait();
                get(addr, "keeper.example.test", "/").status
            })
        })
        .collect();
    for h in burst {
        let status = h.join().unwrap();
        assert!(status == 200 || status == 503, "{status}");
    }
    let plane = node.node.as_ref().unwrap().plane();
    assert!(plane.idle_instances() <= 16, "{}", plane.idle_instances());
}

#[test]
fn behind_a_dispatcher_the_share_is_the_customer_workers() {
    let wat = tempfile::tempdir().unwrap();
    // The dispatcher routes both tenants by host label; `hog` may run one request per core and
    // queue none, so concurrent hog calls are shed — by the customer's share, not the
    // dispatcher's, so `alice` behind the same dispatcher is served.
    let body = format!(
        "[admission]\nmax_in_flight_per_worker = 1\nmax_queued_per_worker = 0\n\
         [[namespace]]\nname = \"tenants\"\n{}{}\
         [[platform_worker]]\nname = \"dispatcher\"\nmodule = \"{}\"\n\
         bindings = [{{ type = \"dispatch_namespace\", name = \"CUSTOMERS\", namespace = \"tenants\" }}]\n\
         [[route]]\nhost = \"*.example.test\"\nworker = \"dispatcher\"\n",
        wat_worker(
            wat.path(),
            "hog",
            &spinner(100_000_000),
            "limits = { cpu_ms = 30000 }"
        ),
        worker("tenants", "alice", "hello", ""),
        guest("dispatcher").display(),
    );
    let node = TestNode::start(&body);
    let addr = node.addr;
    let clients = 12;
    let start = Arc::new(Barrier::new(clients));
    let hogs: Vec<_> = (0..clients)
        .map(|_| {
            let start = start.clone();
            thread::spawn(move || {
                start.wait();
                get(addr, "hog.example.test", "/")
            })
        })
        .collect();
    for _ in 0..10 {
        let resp = get(addr, "alice.example.test", "/");
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
    let resps: Vec<Resp> = hogs.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(
        resps.iter().any(|r| r.status == 200),
        "no hog call was admitted"
    );
    let shed: Vec<_> = resps.iter().filter(|r| r.status == 503).collect();
    assert!(!shed.is_empty(), "no hog call was shed");
    for r in shed {
        // The dispatcher forwards the shed response, Retry-After included.
        assert_shed(r);
        assert!(r.text().contains("tenants/hog"), "{}", r.text());
    }
}
