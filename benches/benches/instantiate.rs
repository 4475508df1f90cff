//! Instantiate + call from the pool: the per-request cost of strict isolation (a fresh instance
//! per request from a warm pooling-allocator slot), and of the opt-in reuse mode.
//!
//! `cargo bench -p tenantry-benches --bench instantiate`

use std::rc::Rc;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use tenantry_benches::{HELLO_WAT, engine};
use tenantry_core::{Bindings, Limits, Request, Worker, WorkerPool, WorkerSpec};

async fn worker(pool: &WorkerPool, key: &str, reuse: u32) -> Rc<Worker> {
    let engine = engine();
    let cwasm = engine.precompile(HELLO_WAT.as_bytes()).unwrap();
    // SAFETY: the bytes were produced by `precompile` of this very engine, just above.
    let module = unsafe { wasmtime::Module::deserialize(engine.wasmtime(), &cwasm) }.unwrap();
    pool.get_or_load(key, || {
        std::future::ready(Ok(WorkerSpec {
            name: format!("bench/{key}"),
            module,
            bindings: Bindings::default(),
            limits: Limits::DEFAULT,
            reuse_instances: reuse,
            js_bundle: None,
        }))
    })
    .await
    .unwrap()
}

fn bench(c: &mut Criterion) {
    let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .unwrap();
    let pool = WorkerPool::new(engine(), 16);
    let req = Request {
        method: Bytes::from_static(b"GET"),
        host: Bytes::from_static(b"alice.example.test"),
        target: Bytes::from_static(b"/hello"),
        headers: vec![(
            Bytes::from_static(b"user-agent"),
            Bytes::from_static(b"bench"),
        )],
        body: Bytes::new(),
        secure: false,
    };
    let mut group = c.benchmark_group("invoke");
    for (label, reuse) in [("fresh_instance", 0), ("reused_instance", 4)] {
        let w = rt.block_on(worker(&pool, label, reuse));
        group.bench_function(label, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let resp = w.invoke(req.clone(), Limits::DEFAULT).await.unwrap();
                    assert_eq!(resp.status, 200);
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
