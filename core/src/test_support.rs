//! Shared fixtures for unit tests: one small engine per test binary, guests from WAT, a monoio
//! runtime.

use std::future::Future;
use std::sync::OnceLock;

use bytes::Bytes;

use crate::{Bindings, Engine, EngineSettings, Limits, Request, Worker, WorkerSpec};

/// Slots of test engines: each reserves 4 GiB of address space, so keep it small.
pub(crate) const TEST_INSTANCES: u32 = 48;

/// An engine with a small pool and a running epoch ticker, shared by all tests.
pub(crate) fn engine() -> Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let engine = small_engine(TEST_INSTANCES);
            engine.start_epoch_ticker();
            engine
        })
        .clone()
}

/// A separate engine with `max_instances` slots, all of which may idle (no ticker).
pub(crate) fn small_engine(max_instances: u32) -> Engine {
    Engine::new(&EngineSettings {
        max_instances,
        max_idle_instances: Some(max_instances),
        ..EngineSettings::default()
    })
    .expect("test engine")
}

/// The spec of a Worker from WAT text, with default limits and no bindings.
pub(crate) fn spec(engine: &Engine, wat: &str) -> WorkerSpec {
    WorkerSpec {
        name: "test/worker".into(),
        module: engine.compile(wat.as_bytes()).expect("test guest compiles"),
        bindings: Bindings::default(),
        limits: Limits::DEFAULT,
        reuse_instances: 0,
        js_bundle: None,
    }
}

/// A Worker on the shared engine.
pub(crate) fn worker(wat: &str) -> Worker {
    let engine = engine();
    Worker::new(&engine, spec(&engine, wat)).expect("test Worker loads")
}

/// Runs a future on a monoio runtime, as a serving core does.
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    crate::yielding::reset_thread();
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("monoio runtime")
        .block_on(future)
}

/// A request to `http://example.test{target}`.
pub(crate) fn request(method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> Request {
    let mut all = vec![(
        Bytes::from_static(b"Host"),
        Bytes::from_static(b"example.test"),
    )];
    all.extend(headers.iter().map(|(n, v)| {
        (
            Bytes::copy_from_slice(n.as_bytes()),
            Bytes::copy_from_slice(v.as_bytes()),
        )
    }));
    Request {
        method: Bytes::copy_from_slice(method.as_bytes()),
        host: Bytes::from_static(b"example.test"),
        target: Bytes::copy_from_slice(target.as_bytes()),
        headers: all,
        body: Bytes::copy_from_slice(body.as_bytes()),
        secure: false,
    }
}

pub(crate) fn get(target: &str) -> Request {
    request("GET", target, &[], "")
}
