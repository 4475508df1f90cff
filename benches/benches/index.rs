//! A namespace index of 100,000 scripts: opening it (mmap + one full validation) and looking
//! scripts up in place, hits and misses. Criterion reports the means; the percentile table
//! printed at the end (p50/p99/p99.9 of single lookups over random names) is what the p99 target
//! in docs/performance.md refers to.
//!
//! The same with a full delta on top (1023 changes published one by one, as uploads do, just
//! under the default merge threshold): every lookup asks the delta first.
//!
//! `cargo bench -p tenantry-benches --bench index`

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use tenantry_benches::engine;
use tenantry_loader::{
    BindingEntry, DeltaRecord, Index, IndexData, ScriptEntry, ScriptLimits, Store,
};

const SCRIPTS: usize = 100_000;

fn name(i: usize) -> String {
    format!("customer-{i:06}-worker")
}

/// Publishes a 100k-script namespace into `root` and returns the index file's path and the
/// store.
fn build(root: &std::path::Path) -> (std::path::PathBuf, Store) {
    let store = Store::open(root, engine()).unwrap();
    let mut data = IndexData::new("production", 1_700_000_000_000);
    data.scripts = (0..SCRIPTS)
        .map(|i| {
            let entry = ScriptEntry {
                name: name(i),
                artifact: [(i % 251) as u8; 32],
                bindings: vec![BindingEntry {
                    name: "GREETING".into(),
                    kind: 1,
                    value: format!("hello {i}"),
                }],
                tags: vec![format!("customer-{i}"), "plan:free".into()],
                limits: ScriptLimits {
                    cpu_ms: Some(50),
                    wall_ms: None,
                    memory_bytes: None,
                    subrequests: None,
                },
                created_on: 1_700_000_000_000,
                modified_on: 1_700_000_000_000,
                etag: format!("{i:032x}"),
                reuse_instances: 0,
                compatibility_date: String::new(),
                main_module: String::new(),
            };
            (entry.name.clone(), entry)
        })
        .collect::<HashMap<_, _>>();
    store.publish_index("production", &data).unwrap();
    (root.join("namespaces/production/index"), store)
}

/// Publishes `n` changes to the namespace at `path` one by one (each replaces one script, as an
/// upload does) and returns the index with them in its delta.
fn with_delta(store: &Store, path: &std::path::Path, n: usize) -> Index {
    let mut index = Index::open(path, None).unwrap();
    for i in 0..n {
        let old = index.get(&name(i * 97 % SCRIPTS)).unwrap();
        let mut entry: ScriptEntry = rkyv::deserialize::<_, rkyv::rancor::Error>(old).unwrap();
        entry.etag = format!("{i:032x}-changed");
        let change = DeltaRecord {
            upserts: vec![entry],
            deletes: vec![],
        };
        index = store.publish_change(&index, &change).unwrap();
    }
    index
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (path, store) = build(dir.path());
    let size = std::fs::metadata(&path).unwrap().len();
    println!(
        "index of {SCRIPTS} scripts: {} bytes ({} B/script)",
        size,
        size / SCRIPTS as u64
    );

    c.bench_function("index_open_100k", |b| {
        b.iter(|| Index::open(black_box(&path), None).unwrap())
    });

    let index = Index::open(&path, None).unwrap();
    let names: Vec<String> = (0..4096).map(|i| name((i * 7919) % SCRIPTS)).collect();
    let mut i = 0;
    c.bench_function("index_get_hit_100k", |b| {
        b.iter(|| {
            i = (i + 1) % names.len();
            black_box(index.get(&names[i]).is_some())
        })
    });
    c.bench_function("index_get_miss_100k", |b| {
        b.iter(|| black_box(index.get("no-such-customer-worker").is_none()))
    });

    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs each bench once without it.
    let measuring = std::env::args().any(|a| a == "--bench");
    if measuring {
        percentiles("index_get_hit_100k", &index);
    }

    let delta = with_delta(&store, &path, if measuring { 1023 } else { 8 });
    let mut i = 0;
    c.bench_function("index_get_hit_100k_delta_1023", |b| {
        b.iter(|| {
            i = (i + 1) % names.len();
            black_box(delta.get(&names[i]).is_some())
        })
    });
    if measuring {
        percentiles("index_get_hit_100k_delta_1023", &delta);
    }
}

/// Times one million single lookups of pseudo-random names and prints their percentiles.
fn percentiles(case: &str, index: &Index) {
    let mut samples = Vec::with_capacity(1_000_000);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let names: Vec<String> = (0..SCRIPTS).map(name).collect();
    for _ in 0..1_000_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let n = &names[(x % SCRIPTS as u64) as usize];
        let t = Instant::now();
        let hit = index.get(n).is_some();
        samples.push(t.elapsed().as_nanos() as u64);
        assert!(hit);
    }
    samples.sort_unstable();
    let p = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    println!(
        "{case} single lookups (incl. ~20 ns clock overhead): p50 {} ns, p99 {} ns, p99.9 {} ns, max {} ns",
        p(0.50),
        p(0.99),
        p(0.999),
        samples[samples.len() - 1]
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
