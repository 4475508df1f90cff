//! Loading a cold Worker: its `.cwasm` mapped from the artifact directory and linked on a core.
//!
//! - `map_inline`: `ArtifactStore::load` on the calling thread — file check and
//!   `Module::deserialize_file`, which is what a serving core did (under the process-wide
//!   cache's lock) before the loader threads.
//! - `link_and_prewarm`: `Worker::new` from a mapped module — what stays on the serving core.
//! - `cold_inline`: both on the calling thread (the old path's latency, and its core time).
//! - `cold_via_loader`: `ArtifactStore::load_async` (a loader thread maps it and wakes the core)
//!   then `Worker::new` on a monoio runtime (the new path's latency; the core only pays the
//!   link, the queue hop and the wake-up).
//!
//! Each iteration starts from an empty module cache (cleared outside the measurement).
//!
//! `cargo bench -p tenantry-benches --bench load`

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use tenantry_benches::{HELLO_WAT, engine};
use tenantry_core::{Bindings, Limits, Worker, WorkerSpec};
use tenantry_loader::ArtifactStore;

fn spec(module: wasmtime::Module) -> WorkerSpec {
    WorkerSpec {
        name: "bench/cold".into(),
        module,
        bindings: Bindings::default(),
        limits: Limits::DEFAULT,
        reuse_instances: 0,
        js_bundle: None,
    }
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine();
    let store = ArtifactStore::open(dir.path(), engine.clone()).unwrap();
    let id = store.put(HELLO_WAT.as_bytes()).unwrap();
    let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .unwrap();
    let cold = || store.clear_cache();

    let mut group = c.benchmark_group("cold_worker");
    group.bench_function("map_inline", |b| {
        b.iter_batched(cold, |()| store.load(&id).unwrap(), BatchSize::PerIteration)
    });
    group.bench_function("link_and_prewarm", |b| {
        b.iter_batched(
            || store.load(&id).unwrap(),
            |module| Worker::new(&engine, spec(module.module)).unwrap(),
            BatchSize::PerIteration,
        )
    });
    group.bench_function("cold_inline", |b| {
        b.iter_batched(
            cold,
            |()| Worker::new(&engine, spec(store.load(&id).unwrap().module)).unwrap(),
            BatchSize::PerIteration,
        )
    });
    group.bench_function("cold_via_loader", |b| {
        b.iter_batched(
            cold,
            |()| {
                rt.block_on(async {
                    let module = store.load_async(&id).await.unwrap();
                    Worker::new(&engine, spec(module.module)).unwrap()
                })
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
