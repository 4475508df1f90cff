//! Tenantry execution: one wasmtime [`Engine`] per process, per-core instance pools, limits and the
//! Worker host API (`tenantry:worker/v1`, see `docs/worker-abi.md`).
//!
//! Lifecycles follow Spin's factors: the [`Engine`] is built once per process; a [`Worker`]
//! (module + bindings + limits) once per deployed script version and core; a store and instance once
//! per request (or, in reuse mode, per pooled instance).
//!
//! ```no_run
//! use tenantry_core::{Bindings, Engine, EngineSettings, Limits, Request, WorkerPool, WorkerSpec};
//! let engine = Engine::new(&EngineSettings::default()).unwrap();
//! engine.start_epoch_ticker(); // wall-clock deadlines and fair yielding need the epoch
//! let wat = b"(module (memory (export \"memory\") 1)
//!     (func (export \"tenantry_fetch\") (result i32) i32.const 0))";
//! let cwasm = engine.precompile(wat).unwrap(); // on a compile thread; stored by the loader
//! # let _ = cwasm;
//!
//! // On each serving core (one monoio runtime per thread):
//! let pool = WorkerPool::new(engine.clone(), 1000);
//! let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new().enable_timer().build().unwrap();
//! // On a miss the spec's future maps the module (serving: `ArtifactStore::load_async`, off
//! // the core); the Worker is then linked on this core and kept in its LRU.
//! let worker = rt
//!     .block_on(pool.get_or_load("ns/hello@v1", || {
//!         std::future::ready(Ok(WorkerSpec {
//!             name: "ns/hello".into(),
//!             module: engine.compile(wat).unwrap(), // serving uses `Engine::load_artifact`
//!             bindings: Bindings::default(),
//!             limits: Limits::DEFAULT,
//!             reuse_instances: 0,
//!             js_bundle: None,
//!         }))
//!     }))
//!     .unwrap();
//! let response = rt.block_on(worker.invoke(Request::default(), worker.limits().min(Limits::DEFAULT)));
//! assert_eq!(response.unwrap().status, 200);
//! ```

mod abi;
mod bindings;
mod engine;
mod fault;
mod guest_mem;
mod host;
mod http;
mod invoke;
pub mod kv;
mod limits;
pub mod nested;
mod pool;
#[cfg(test)]
mod test_support;
mod yielding;

pub use bindings::{Binding, BindingKind, Bindings, DispatchSpec, OutboundSpec};
pub use engine::{
    BASELINE_SLOT_DIVISOR, CompileError, Engine, EngineError, EngineSettings, LoadError,
    MAX_FUNCTION_BODY_BYTES, MAX_FUNCTIONS, Tier,
};
pub use fault::{Fault, OVERLOADED_RETRY_AFTER_S};
pub use http::{FINAL_STATUS_MAX, FINAL_STATUS_MIN, Request, Response, is_final_status, is_tchar};
pub use invoke::{Worker, WorkerSpec};
pub use limits::{
    FUEL_PER_CPU_MS, HANDLE_OVERHEAD_BYTES, HOST_ALLOC_FUEL_PER_BYTE, HOST_COPY_BYTES_PER_FUEL,
    LOG_LINE_FUEL, Limits, MAX_CALL_HANDLES, MAX_LOG_BYTES_PER_INVOCATION, MAX_LOG_LINE_BYTES,
    MAX_RESPONSE_BODY_BYTES, MAX_RESPONSE_HEADER_BYTES, MAX_RESPONSE_HEADER_FIELDS,
};
pub use pool::{IDLE_INSTANCE_TTL, WorkerPool};
