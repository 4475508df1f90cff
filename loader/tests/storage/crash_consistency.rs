//! An interrupted publish leaves the old generation or the new one, never a mix; readers of an old
//! generation are never disturbed by a publish.

use std::path::Path;

use tenantry_core::{Engine, EngineSettings};
use tenantry_loader::index::header;
use tenantry_loader::{Index, IndexData, ScriptEntry, ScriptLimits, Store};

fn store(dir: &Path) -> Store {
    let engine = Engine::new(&EngineSettings {
        max_instances: 4,
        ..Default::default()
    })
    .unwrap();
    Store::open(dir, engine).unwrap()
}

fn data(ns: &str, scripts: &[&str]) -> IndexData {
    let mut d = IndexData::new(ns, 1);
    for name in scripts {
        d.scripts.insert(
            name.to_string(),
            ScriptEntry {
                name: name.to_string(),
                artifact: [7; 32],
                bindings: vec![],
                tags: vec![],
                limits: ScriptLimits::default(),
                created_on: 1,
                modified_on: 1,
                etag: format!("etag-{name}"),
                reuse_instances: 0,
                compatibility_date: String::new(),
                main_module: String::new(),
            },
        );
    }
    d
}

/// What a publish writes, without the rename: the state after a crash before `rename`.
fn interrupted_publish(store: &Store, ns: &str, d: &IndexData, generation: u64) {
    let payload = rkyv::to_bytes::<rkyv::rancor::Error>(d).unwrap();
    let dir = store.index_path(ns).parent().unwrap().to_path_buf();
    let mut bytes = header(generation, "0123456789abcdef", &payload).to_vec();
    bytes.extend_from_slice(&payload);
    // Fully written but never renamed, and a torn one that stopped half-way.
    std::fs::write(
        dir.join(format!(".index.tmp-{}-0", std::process::id())),
        &bytes,
    )
    .unwrap();
    std::fs::write(dir.join(".index.tmp-99999-1"), &bytes[..bytes.len() / 2]).unwrap();
}

#[test]
fn a_publish_interrupted_before_rename_leaves_the_old_generation() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    s.publish_index("prod", &data("prod", &["alice"])).unwrap();
    interrupted_publish(&s, "prod", &data("prod", &["alice", "bob"]), 2);

    // A restart: the old generation is served and the leftovers are cleaned up.
    drop(s);
    let s = store(dir.path());
    let index = s.open_index("prod").unwrap().unwrap();
    assert_eq!(index.generation(), 1);
    assert!(index.get("alice").is_some() && index.get("bob").is_none());
    let leftovers: Vec<_> = std::fs::read_dir(s.index_path("prod").parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["index"]);

    // The next publish works and gets the next generation.
    let index = s
        .publish_index("prod", &data("prod", &["alice", "bob"]))
        .unwrap();
    assert_eq!(index.generation(), 2);
    assert!(index.get("bob").is_some());
}

#[test]
fn a_completed_publish_is_seen_whole_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = store(dir.path());
        s.publish_index("prod", &data("prod", &["a"])).unwrap();
        s.publish_index("prod", &data("prod", &["a", "b", "c"]))
            .unwrap();
    }
    let s = store(dir.path());
    let index = s.open_index("prod").unwrap().unwrap();
    assert_eq!((index.generation(), index.len()), (2, 3));
}

#[test]
fn an_open_generation_stays_readable_while_new_ones_are_published() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let old = s.publish_index("prod", &data("prod", &["alice"])).unwrap();
    for i in 0..5 {
        let names: Vec<String> = (0..=i).map(|n| format!("w{n}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        s.publish_index("prod", &data("prod", &refs)).unwrap();
    }
    // The old mapping still shows exactly generation 1.
    assert_eq!(old.generation(), 1);
    assert_eq!(old.len(), 1);
    assert_eq!(old.get("alice").unwrap().etag.as_str(), "etag-alice");
    let current = Index::open(&s.index_path("prod"), None).unwrap();
    assert_eq!((current.generation(), current.len()), (6, 5));
}
