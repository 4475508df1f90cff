//! The per-core Worker cache (`tenantry_core::WorkerPool`) at 1k, 10k and 20k Workers, full:
//!
//! - `hit`: a loaded Worker looked up (the hot path of every request);
//! - `miss_evict`: round robin over one Worker more than the cache holds, so every request is a
//!   miss that links a Worker (the module is already mapped) and evicts the least recently used;
//! - `link_only`: `Worker::link` alone (what a miss does besides the cache's work).
//!
//! `miss_evict − link_only` is what the cache costs per miss; it must not grow with its size
//! (issue 13: a scan for the oldest entry cost ~40 µs at 20k).
//!
//! `cargo bench -p tenantry-benches --bench pool`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use tenantry_benches::{HELLO_WAT, engine};
use tenantry_core::{Bindings, Limits, Worker, WorkerPool, WorkerSpec};

const SIZES: [usize; 3] = [1_000, 10_000, 20_000];

fn spec(module: &wasmtime::Module, key: &str) -> WorkerSpec {
    WorkerSpec {
        name: key.into(),
        module: module.clone(),
        bindings: Bindings::default(),
        limits: Limits::DEFAULT,
        reuse_instances: 0,
        js_bundle: None,
    }
}

fn bench(c: &mut Criterion) {
    let engine = engine();
    let module = engine.compile(HELLO_WAT.as_bytes()).unwrap();
    let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("worker_pool");
    group.sample_size(30);
    for size in SIZES {
        let keys: Vec<String> = (0..=size).map(|i| format!("ns/worker-{i:06}")).collect();
        let pool = WorkerPool::new(engine.clone(), size);
        let load = |rt: &mut monoio::Runtime<monoio::time::TimeDriver<monoio::LegacyDriver>>,
                    key: &str| {
            let spec = spec(&module, key);
            rt.block_on(pool.get_or_load(key, move || std::future::ready(Ok(spec))))
                .unwrap()
        };
        for key in &keys[..size] {
            load(&mut rt, key);
        }
        assert_eq!(pool.len(), size);

        let mut i = 0;
        group.bench_function(format!("hit/{size}"), |b| {
            b.iter(|| {
                i = (i + 1) % size;
                black_box(pool.get(&keys[i]).unwrap())
            })
        });
        // Round robin over `size + 1` keys, starting with the one the fill left out, after
        // touching the others in order: the key asked for is always the one evicted longest ago.
        for key in &keys[..size] {
            pool.get(key).unwrap();
        }
        let mut next = size;
        group.bench_function(format!("miss_evict/{size}"), |b| {
            b.iter(|| {
                let worker = load(&mut rt, &keys[next]);
                next = (next + 1) % keys.len();
                black_box(worker)
            })
        });
        assert_eq!(pool.len(), size);
    }
    group.bench_function("link_only", |b| {
        b.iter(|| Worker::link(&engine, spec(&module, "ns/alone")).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
