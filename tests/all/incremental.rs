//! The incremental index end to end (docs/design.md "The incremental index"): uploads and
//! deletes append to a namespace's delta, a merge folds it into a new base while traffic goes
//! on, and a restart reads base + delta as one index.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::admin::{BASE, admin, api, get_api};
use crate::common::{TestNode, get, guest};

/// Records before a merge: small, so that a few dozen uploads merge several times.
const MERGE_RECORDS: usize = 8;

fn node() -> TestNode {
    // The body continues the test config's `[engine]` table.
    TestNode::start(&format!(
        "index_merge_records = {MERGE_RECORDS}\n\
         [[namespace]]\nname = \"customers\"\n\
         [[route]]\nhost = \"*.example.test\"\nnamespace = \"customers\"\nscript_from = \"host_label\"\n"
    ))
}

/// The generation in the header of `customers`' base index file.
fn base_generation(n: &TestNode) -> u64 {
    let path = n.dir.path().join("data/namespaces/customers/index");
    let bytes = std::fs::read(&path).unwrap();
    u64::from_le_bytes(bytes[16..24].try_into().unwrap())
}

/// Every script name of `customers`, page by page (`limit` each), in the order listed.
fn list_names(n: &TestNode, limit: usize) -> Vec<String> {
    let (mut names, mut cursor) = (Vec::new(), String::new());
    loop {
        let (s, v) = get_api(
            admin(n),
            &format!("{BASE}/customers/scripts?limit={limit}&cursor={cursor}"),
        );
        assert_eq!(s, 200, "{v}");
        let page = v["result"].as_array().unwrap();
        assert!(page.len() <= limit);
        names.extend(page.iter().map(|s| s["id"].as_str().unwrap().to_string()));
        match v["result_info"]["cursor"].as_str() {
            Some(next) if !next.is_empty() => cursor = next.to_string(),
            _ => return names,
        }
    }
}

fn status(n: &TestNode, name: &str) -> u16 {
    get(n.addr, &format!("{name}.example.test"), "/").status
}

/// Uploads answer traffic at once while merges run behind them; a delete goes through the
/// delta; list pages come in name order across base and delta; a restart serves every one.
#[test]
fn uploads_merge_under_traffic_and_survive_a_restart() {
    let mut n = node();
    let a = admin(&n);
    let hello = std::fs::read(guest("hello")).unwrap();
    let names: Vec<String> = (0..5 * MERGE_RECORDS).map(|i| format!("w{i:03}")).collect();
    for (i, name) in names.iter().enumerate() {
        let path = format!("{BASE}/customers/scripts/{name}");
        let (s, v) = api(a, "PUT", &path, "application/wasm", &hello);
        assert_eq!(s, 200, "{v}");
        // Routable at once, and every earlier one still is while merges come and go.
        assert_eq!(status(&n, name), 200, "{name}");
        assert_eq!(status(&n, &names[i / 2]), 200, "{}", names[i / 2]);
    }
    // The merge thread folds the delta into the base (waited for, not slept on).
    let deadline = Instant::now() + Duration::from_secs(120);
    // Bound even without the thread: a publish merges in line at `MERGE_BACKLOG` times as many.
    while base_generation(&n) <= 1 {
        assert!(
            Instant::now() < deadline,
            "no merge: base {}",
            base_generation(&n)
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    for gone in ["w005", "w037"] {
        let (s, v) = api(
            a,
            "DELETE",
            &format!("{BASE}/customers/scripts/{gone}"),
            "",
            b"",
        );
        assert_eq!(s, 200, "{v}");
        assert_eq!(status(&n, gone), 404, "{gone}");
        let (s, _) = get_api(a, &format!("{BASE}/customers/scripts/{gone}"));
        assert_eq!(s, 404);
    }
    // A changed script is one record too: its tags show at once.
    let path = format!("{BASE}/customers/scripts/w001/tags");
    let (s, v) = api(
        a,
        "PUT",
        &path,
        "application/json",
        json!(["t"]).to_string().as_bytes(),
    );
    assert_eq!(s, 200, "{v}");
    let live: Vec<String> = names
        .iter()
        .filter(|n| !["w005", "w037"].contains(&n.as_str()))
        .cloned()
        .collect();
    assert_eq!(list_names(&n, 7), live);
    assert_eq!(list_names(&n, 1000), live);
    let (_, v) = get_api(a, &format!("{BASE}/customers/scripts?tags=t:yes"));
    assert_eq!(v["result"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["result_info"]["total_count"], 1);
    let (_, v) = get_api(a, &format!("{BASE}/customers"));
    assert_eq!(v["result"]["script_count"], live.len(), "{v}");

    n.restart(&format!(
        "index_merge_records = {MERGE_RECORDS}\n[[namespace]]\nname = \"customers\"\n\
         [[route]]\nhost = \"*.example.test\"\nnamespace = \"customers\"\nscript_from = \"host_label\"\n"
    ));
    for name in &live {
        assert_eq!(status(&n, name), 200, "{name} after the restart");
    }
    assert_eq!(status(&n, "w005"), 404);
    assert_eq!(list_names(&n, 7), live);
    let (_, v) = get_api(admin(&n), &format!("{BASE}/customers"));
    assert_eq!(v["result"]["script_count"], live.len(), "{v}");
}

/// The namespace as the catalog shows it (`GET …/namespaces/customers` and its entry in the
/// list), the fields a start now reads from the base's stored summary and the delta.
fn catalog(n: &TestNode) -> (serde_json::Value, serde_json::Value) {
    let (s, one) = get_api(admin(n), &format!("{BASE}/customers"));
    assert_eq!(s, 200, "{one}");
    let (s, all) = get_api(admin(n), BASE);
    assert_eq!(s, 200, "{all}");
    let listed = all["result"]
        .as_array()
        .unwrap()
        .iter()
        .find(|ns| ns["namespace_name"] == "customers")
        .cloned()
        .unwrap_or_else(|| panic!("customers is not listed: {all}"));
    (one["result"].clone(), listed)
}

/// A start reads no script for the catalog: a node restarted after uploads, a merge, deletes
/// and more uploads on top of the merged base shows the same namespace (count, times) and the
/// same scripts as before, and its base carries the summary (format 3).
#[test]
fn a_restarted_node_shows_the_catalog_it_had_after_publishes_and_a_merge() {
    let mut n = node();
    let a = admin(&n);
    let hello = std::fs::read(guest("hello")).unwrap();
    let upload = |name: &str| {
        let path = format!("{BASE}/customers/scripts/{name}");
        let (s, v) = api(a, "PUT", &path, "application/wasm", &hello);
        assert_eq!(s, 200, "{v}");
    };
    for i in 0..2 * MERGE_RECORDS {
        upload(&format!("m{i:03}"));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while base_generation(&n) <= 1 {
        assert!(Instant::now() < deadline, "no merge");
        std::thread::sleep(Duration::from_millis(20));
    }
    let merged_at = base_generation(&n);
    // On top of the merged base: deletes (the latest upload among them) and new uploads.
    upload("late-1");
    upload("late-2");
    for gone in ["m003", "late-2"] {
        let path = format!("{BASE}/customers/scripts/{gone}");
        let (s, v) = api(a, "DELETE", &path, "", b"");
        assert_eq!(s, 200, "{v}");
    }
    let before = catalog(&n);
    let names = list_names(&n, 5);
    assert_eq!(names.len(), 2 * MERGE_RECORDS);
    assert_eq!(before.0["script_count"], names.len(), "{:?}", before);
    assert_eq!(before.1["script_count"], names.len(), "{:?}", before);

    n.restart(&format!(
        "index_merge_records = {MERGE_RECORDS}\n[[namespace]]\nname = \"customers\"\n\
         [[route]]\nhost = \"*.example.test\"\nnamespace = \"customers\"\nscript_from = \"host_label\"\n"
    ));
    let index = std::fs::read(n.dir.path().join("data/namespaces/customers/index")).unwrap();
    assert_eq!(u32::from_le_bytes(index[8..12].try_into().unwrap()), 3);
    assert!(base_generation(&n) >= merged_at);
    assert_eq!(catalog(&n), before);
    assert_eq!(list_names(&n, 5), names);
    for name in &names {
        assert_eq!(status(&n, name), 200, "{name} after the restart");
    }
    assert_eq!(status(&n, "late-2"), 404);
}
