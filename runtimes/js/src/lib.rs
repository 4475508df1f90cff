//! Tenantry's JavaScript engine: QuickJS-ng (through `rquickjs`) built to `wasm32-wasip1`,
//! speaking the ordinary `tenantry:worker/v1` ABI. One engine module serves every JS Worker; what
//! is per-Worker is the *bundle* the host hands in through `tenantry:js/v1` `code_read`.
//!
//! ```text
//!  node prepares the engine          upload                         request
//!  ───────────────────────           ──────                         ───────
//!  wizer.initialize                  tenantry_js_compile            tenantry_fetch
//!   runtime + context,                source bundle (code_read)      compiled bundle (code_read,
//!   Web APIs, prelude                 → bytecode, imports checked,    once per instance) → evaluate
//!   → snapshot                        handler checked                → Request → handler → event
//!                                     → 200 compiled bundle           loop → Response → waitUntil
//!                                       or 400 "file:line:col: …"
//! ```
//!
//! Built by `scripts/build-js.sh`; the contract with the host is in `runtimes/js/README.md`.

pub mod bundle;
mod bytecode;
mod compile;
mod engine;
mod error;
mod host;
mod modules;
mod platform;
mod run;

pub use compile::compile;

/// Pre-initialisation (wasmtime-wizer): makes the runtime and context and installs the globals, so
/// the snapshot holds them. Calls no `tenantry:*` import (only WASI clocks, frozen in the snapshot).
// SAFETY (this and the exports below): the names are the contract's entry points and no other
// symbol of the module has them, so the unmangled exports cannot clash.
#[unsafe(export_name = "wizer.initialize")]
pub extern "C" fn wizer_initialize() {
    // A failure here is met again, and logged, by the first request.
    let _ = engine::get();
}

/// One request (run mode). `0`: a response was written (also workerd's `500` for an uncaught
/// exception); non-zero: the host answers `500` itself.
#[unsafe(no_mangle)]
pub extern "C" fn tenantry_fetch() -> i32 {
    run::export()
}

/// Optional, for a host that snapshots an instance per Worker: loads and evaluates the compiled
/// bundle (`code_read`, bindings through `env_list`/`env_kind`/`env_get`) as the first
/// `tenantry_fetch` would, so requests start from an evaluated Worker. Not part of the contract's
/// required exports; a host that does not call it loses nothing.
#[unsafe(no_mangle)]
pub extern "C" fn tenantry_js_preload() -> i32 {
    run::preload()
}

/// Compile mode, at upload: `200` + compiled bundle, or `400` + a one-line reason.
#[unsafe(no_mangle)]
pub extern "C" fn tenantry_js_compile() -> i32 {
    compile::export()
}
