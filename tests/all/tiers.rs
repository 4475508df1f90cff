//! The baseline compiler tier (`[engine] baseline_compile`): an upload is compiled by Winch and
//! served at once, its Cranelift code is compiled in the background and swapped in as a new
//! generation, and the limits hold alike on both (docs/design.md "Two compiler tiers").

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::admin::{BASE, admin, api, node};
use crate::common::*;

/// How long a test waits for the background compile before it gives up: a hang guard, far
/// above the ~1–5 s the largest test guest takes in a debug build.
const SWAP_GUARD: Duration = Duration::from_secs(180);

fn put(n: &TestNode, name: &str, metadata: Value, module: &[u8]) -> Value {
    let (ct, body) = multipart(&metadata.to_string(), "worker.wasm", module);
    let (status, v) = api(
        admin(n),
        "PUT",
        &format!("{BASE}/customers/scripts/{name}"),
        &ct,
        &body,
    );
    assert_eq!(status, 200, "{v}");
    v["result"].clone()
}

/// The script as the admin API shows it: `compiled_tier` and the `script` object.
fn script(n: &TestNode, name: &str) -> Value {
    let (status, v) = api(
        admin(n),
        "GET",
        &format!("{BASE}/customers/scripts/{name}"),
        "",
        b"",
    );
    assert_eq!(status, 200, "{v}");
    v["result"].clone()
}

/// Waits until the script's optimised code serves; returns its script object then.
fn wait_for_optimised(n: &TestNode, name: &str) -> Value {
    let started = Instant::now();
    loop {
        let s = script(n, name);
        if s["compiled_tier"] == json!("optimised") {
            return s;
        }
        assert!(
            started.elapsed() < SWAP_GUARD,
            "{name} still runs its baseline code: {s}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `.cwasm` files of the node's artifacts whose name starts with the module's hash.
fn compiled_files(n: &TestNode, module: &[u8]) -> usize {
    use sha2::{Digest, Sha256};
    let id = hex::encode(Sha256::digest(module));
    std::fs::read_dir(n.dir.path().join("data").join("artifacts"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|f| f.starts_with(&id) && f.ends_with(".cwasm"))
        .count()
}

#[test]
fn an_upload_serves_at_once_and_its_optimised_code_takes_over() {
    let n = node();
    let module = std::fs::read(guest("regex_json")).unwrap();
    let put = put(&n, "re", json!({"main_module": "worker.wasm"}), &module);
    assert_eq!(put["compiled_tier"], json!("baseline"), "{put}");
    let resp = get(n.addr, "re.example.test", "/");
    assert_eq!(resp.status, 200, "{}", resp.text());
    let answer: Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(
        answer["matches"],
        json!(["hello", "from", "worker", "of", "workers"])
    );

    let optimised = wait_for_optimised(&n, "re");
    // A new version for the data plane (every core loads the new code), the same script.
    assert_ne!(optimised["script"]["etag"], put["etag"]);
    assert_eq!(optimised["script"]["modified_on"], put["modified_on"]);
    // The Winch artifact goes once nothing needs it (just after the republish); the Cranelift
    // one stays.
    let started = Instant::now();
    while compiled_files(&n, &module) != 1 {
        assert!(
            started.elapsed() < SWAP_GUARD,
            "the baseline artifact was not removed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(artifacts_done(&n, &module));
    let again = get(n.addr, "re.example.test", "/");
    assert_eq!((again.status, &again.body), (200, &resp.body));
}

#[test]
fn no_request_fails_across_the_swap() {
    // Requests queue rather than being shed while the background compile (and a loaded CI
    // machine) starves the serving threads: this test is about the swap, not overload.
    let n = TestNode::start(
        "[admission]\nmax_queue_wait_ms = 60000\n[[namespace]]\nname = \"customers\"\n\
         [[route]]\nhost = \"*.example.test\"\nnamespace = \"customers\"\nscript_from = \"host_label\"\n",
    );
    let module = std::fs::read(guest("regex_json")).unwrap();
    let put = put(&n, "re", json!({"main_module": "worker.wasm"}), &module);
    assert_eq!(put["compiled_tier"], json!("baseline"), "{put}");
    let done = AtomicBool::new(false);
    let served = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                let mut conn = Conn::open(n.addr);
                while !done.load(Ordering::Relaxed) {
                    conn.send(b"GET / HTTP/1.1\r\nHost: re.example.test\r\n\r\n");
                    let resp = conn.read_response(false);
                    assert_eq!(resp.status, 200, "{}", resp.text());
                    assert!(resp.text().contains("\"matches\""), "{}", resp.text());
                    served.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        wait_for_optimised(&n, "re");
        // Requests after the swap too, on the connections that started before it.
        let after = served.load(Ordering::Relaxed) + 30;
        while served.load(Ordering::Relaxed) < after {
            std::thread::yield_now();
        }
        done.store(true, Ordering::Relaxed);
    });
}

/// Hostile guests uploaded through the API get the same errors as deployed ones (`hostile.rs`)
/// right after the PUT, which published their baseline code, and again once their optimised
/// code serves. (Which code answered the first request depends on how fast the background
/// compile of these small guests is; `both_tiers_fault_alike` in `tenantry-core` runs each
/// limit on each tier for certain.)
#[test]
fn limits_hold_on_uploaded_workers() {
    let n = node();
    let cases = [
        (
            "spin",
            "spin",
            json!({"cpu_ms": 20}),
            503,
            "CPU time limit of 20 ms".to_string(),
        ),
        (
            "slow",
            "spin",
            json!({"cpu_ms": 100000, "wall_ms": 50}),
            503,
            "wall-clock limit of 50 ms".to_string(),
        ),
        (
            "hog",
            "memory_hog",
            json!({"memory_mb": 16}),
            503,
            format!("memory limit of {} bytes", 16 << 20),
        ),
        (
            "deep",
            "deep_recursion",
            json!({}),
            500,
            "stack".to_string(),
        ),
    ];
    let mut seen = std::collections::HashSet::new();
    for (name, guest_name, limits, status, message) in cases {
        let module = std::fs::read(guest(guest_name)).unwrap();
        let metadata = json!({"main_module": "worker.wasm", "limits": limits});
        let put = put(&n, name, metadata, &module);
        // Bytes uploaded before (and optimised since) are not compiled again.
        let tier = if seen.insert(guest_name) {
            "baseline"
        } else {
            "optimised"
        };
        assert_eq!(put["compiled_tier"], json!(tier), "{put}");
        let resp = get(n.addr, &format!("{name}.example.test"), "/");
        assert_eq!(resp.status, status, "{name}: {}", resp.text());
        assert!(resp.text().contains(&message), "{name}: {}", resp.text());
        wait_for_optimised(&n, name);
        let resp = get(n.addr, &format!("{name}.example.test"), "/");
        assert_eq!(resp.status, status, "{name}: {}", resp.text());
        assert!(resp.text().contains(&message), "{name}: {}", resp.text());
    }
}

#[test]
fn with_the_baseline_tier_off_an_upload_is_optimised_before_the_put_answers() {
    let n = TestNode::start(
        "baseline_compile = false\n[[namespace]]\nname = \"customers\"\n\
         [[route]]\nhost = \"*.example.test\"\nnamespace = \"customers\"\nscript_from = \"host_label\"\n",
    );
    let module = std::fs::read(guest("hello")).unwrap();
    let put = put(&n, "h", json!({"main_module": "worker.wasm"}), &module);
    assert_eq!(put["compiled_tier"], json!("optimised"), "{put}");
    assert_eq!(compiled_files(&n, &module), 1);
    assert_eq!(get(n.addr, "h.example.test", "/").status, 200);
}

/// A node stopped while a script still ran its baseline code (here: the optimised artifact
/// removed and the baseline one put back, as a crash between the two would leave them) compiles
/// the optimised code again in the background after its restart.
#[test]
fn a_restart_finishes_an_interrupted_optimisation() {
    let mut n = node();
    let module = std::fs::read(guest("hello")).unwrap();
    put(&n, "h", json!({"main_module": "worker.wasm"}), &module);
    wait_for_optimised(&n, "h");
    let store = n.node.as_ref().unwrap().control().store().clone();
    let id = tenantry_loader::ArtifactId::of(&module);
    let artifacts = store.artifacts();
    let baseline = artifacts.baseline_path(&id).unwrap();
    let cwasm = artifacts.engine().precompile_baseline(&module).unwrap();
    std::fs::write(&baseline, cwasm).unwrap();
    std::fs::remove_file(artifacts.compiled_path(&id)).unwrap();
    drop(store);
    n.restart(
        "[[namespace]]\nname = \"customers\"\n\
         [[route]]\nhost = \"*.example.test\"\nnamespace = \"customers\"\nscript_from = \"host_label\"\n",
    );
    assert_eq!(get(n.addr, "h.example.test", "/").status, 200);
    let started = Instant::now();
    while !(artifacts_done(&n, &module)) {
        assert!(
            started.elapsed() < SWAP_GUARD,
            "the optimised artifact was not rebuilt"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        wait_for_optimised(&n, "h")["compiled_tier"],
        json!("optimised")
    );
    assert_eq!(get(n.addr, "h.example.test", "/").status, 200);
}

/// Whether only the optimised artifact of `module` is left (the baseline one removed).
fn artifacts_done(n: &TestNode, module: &[u8]) -> bool {
    let id = tenantry_loader::ArtifactId::of(module);
    let store = n.node.as_ref().unwrap().control().store();
    let artifacts = store.artifacts();
    artifacts.compiled_path(&id).exists() && !artifacts.has_baseline(&id)
}
