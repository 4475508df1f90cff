//! Oracles for the fuzz targets (`fuzz/`) and their smoke tests: each takes arbitrary bytes,
//! drives one input path a client or tenant controls, and panics if an invariant breaks.
//!
//! - [`check_config`]: the config parser never panics on any text.
//! - [`check_upload`]: the admin API's upload parsing (multipart, JSON, raw wasm) answers every
//!   body with an upload or a client error (4xx), never a panic or a server error.
//! - [`check_json_bodies`]: the admin API's JSON bodies (uploads' metadata, KV bulk writes) the
//!   same.
//! - [`check_random_module`]: a random module (`wasm-smith`, shaped like a Worker: exports
//!   `memory` and `tenantry_fetch`, may import any host call) is compiled as an upload would be
//!   and invoked under small limits: it is refused at upload, or it answers, or it faults with a
//!   typed fault; never a panic, a hang, or an internal error.
//!
//! The unit tests below run each oracle over inputs from a seeded generator, so every
//! `scripts/test.sh` is a short, bounded fuzzing smoke; `fuzz/README.md` has the long runs.

use std::path::Path;
use std::sync::OnceLock;

use arbitrary::Unstructured;
use bytes::Bytes;
use tenantry_core::{Engine, EngineSettings, Fault, Limits, Request, Worker, WorkerSpec};

use crate::config::Config;

/// The config parser takes any text.
pub fn check_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Config::parse(text, Path::new("/fuzz/tenantry.toml"));
}

/// Content types an upload may come with; the first input byte picks one.
const CONTENT_TYPES: &[&str] = &[
    "multipart/form-data; boundary=X",
    "multipart/form-data; boundary=\"a b\"",
    "multipart/form-data",
    "application/wasm",
    "application/json",
    "text/plain",
    "",
];

/// Upload bodies: an upload or a 4xx, whatever the bytes.
pub fn check_upload(data: &[u8]) {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let ct = CONTENT_TYPES[usize::from(pick) % CONTENT_TYPES.len()];
    let body = Bytes::copy_from_slice(body);
    let result = block_on(crate::admin::fuzz_parse_upload(ct.as_bytes(), body));
    if let Err(e) = result {
        assert!(
            (400..500).contains(&e.status),
            "upload answered {} ({})",
            e.status,
            e.message
        );
    }
}

/// JSON bodies of the admin API: parsed or refused with a 4xx.
pub fn check_json_bodies(data: &[u8]) {
    for e in crate::admin::fuzz_json_bodies(data) {
        assert!(
            (400..500).contains(&e.status),
            "a JSON body answered {} ({})",
            e.status,
            e.message
        );
    }
}

/// The host functions a random Worker may import (a subset of `tenantry:worker/v1` and WASI,
/// with their real signatures), as `wasm-smith`'s `available_imports` module.
const HOST_IMPORTS: &str = r#"(module
  (import "tenantry:worker/v1" "request_method" (func (param i32 i32 i32) (result i32)))
  (import "tenantry:worker/v1" "request_url" (func (param i32 i32 i32) (result i32)))
  (import "tenantry:worker/v1" "request_header" (func (param i32 i32 i32 i32 i32) (result i32)))
  (import "tenantry:worker/v1" "request_headers" (func (param i32 i32 i32) (result i32)))
  (import "tenantry:worker/v1" "request_body_read" (func (param i32 i32 i32) (result i32)))
  (import "tenantry:worker/v1" "response_set_status" (func (param i32 i32) (result i32)))
  (import "tenantry:worker/v1" "response_header_set" (func (param i32 i32 i32 i32 i32) (result i32)))
  (import "tenantry:worker/v1" "response_header_append" (func (param i32 i32 i32 i32 i32) (result i32)))
  (import "tenantry:worker/v1" "response_body_write" (func (param i32 i32 i32) (result i32)))
  (import "tenantry:worker/v1" "env_get" (func (param i32 i32 i32 i32) (result i32)))
  (import "tenantry:worker/v1" "env_kind" (func (param i32 i32) (result i32)))
  (import "tenantry:worker/v1" "log" (func (param i32 i32 i32) (result i32)))
  (import "tenantry:worker/v1" "request_new" (func (result i32)))
  (import "tenantry:worker/v1" "request_clone" (func (param i32) (result i32)))
  (import "tenantry:worker/v1" "request_set_method" (func (param i32 i32 i32) (result i32)))
  (import "tenantry:worker/v1" "request_set_url" (func (param i32 i32 i32) (result i32)))
  (import "tenantry:worker/v1" "request_header_set" (func (param i32 i32 i32 i32 i32) (result i32)))
  (import "tenantry:worker/v1" "request_body_write" (func (param i32 i32 i32) (result i32)))
  (import "tenantry:worker/v1" "fetch_error" (func (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
)"#;

/// The exports every Worker has.
const WORKER_EXPORTS: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "tenantry_fetch") (result i32) i32.const 0)
)"#;

/// A random Worker-shaped module from `u`.
pub fn random_module(u: &mut Unstructured<'_>) -> arbitrary::Result<Vec<u8>> {
    static SHAPES: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    let (imports, exports) = SHAPES.get_or_init(|| {
        (
            wat::parse_str(HOST_IMPORTS).expect("valid imports module"),
            wat::parse_str(WORKER_EXPORTS).expect("valid exports module"),
        )
    });
    // The proposals the engine runs; sizes from the input, small enough to compile quickly.
    let mut config = wasm_smith::Config {
        available_imports: Some(imports.clone()),
        exports: Some(exports.clone()),
        // The one memory is the exported one; wasm-smith adds the exports' own on top.
        max_memories: 0,
        max_tables: 1,
        max_memory32_bytes: 64 << 20,
        max_funcs: u.int_in_range(1..=40)?,
        max_instructions: u.int_in_range(1..=400)?,
        max_data_segments: u.int_in_range(0..=8)?,
        max_globals: u.int_in_range(0..=16)?,
        max_table_elements: u.int_in_range(0..=20_000)?,
        memory64_enabled: false,
        threads_enabled: false,
        shared_everything_threads_enabled: false,
        exceptions_enabled: false,
        gc_enabled: false,
        compact_imports_enabled: false,
        custom_page_sizes_enabled: false,
        wide_arithmetic_enabled: false,
        ..wasm_smith::Config::default()
    };
    config.simd_enabled = u.arbitrary()?;
    config.relaxed_simd_enabled = config.simd_enabled && u.arbitrary()?;
    config.tail_call_enabled = u.arbitrary()?;
    // Typed function references come with wasm-smith's reference types, and need the GC
    // proposal, which the engine does not enable.
    config.reference_types_enabled = false;
    let module = wasm_smith::Module::new(config, u)?;
    Ok(module.to_bytes())
}

/// The engine and limits random modules run under: small, so a run stays quick.
fn fuzz_engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let engine = Engine::new(&EngineSettings {
            max_instances: 8,
            max_memory_bytes: 64 << 20,
            ..EngineSettings::default()
        })
        .expect("fuzz engine");
        engine.start_epoch_ticker();
        engine
    })
}

const FUZZ_LIMITS: Limits = Limits {
    cpu_ms: 5,
    wall_ms: 200,
    memory_bytes: 16 << 20,
    subrequests: 2,
};

/// What became of a random module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleOutcome {
    /// The input was too short to generate a module.
    NotGenerated,
    /// The upload checks or the compiler refused it.
    Refused,
    /// It ran: an answer or a typed fault.
    Ran,
}

/// A random Worker: refused at upload, or run to an answer or a typed fault.
pub fn check_random_module(data: &[u8]) -> ModuleOutcome {
    let mut u = Unstructured::new(data);
    let Ok(wasm) = random_module(&mut u) else {
        return ModuleOutcome::NotGenerated;
    };
    check_module(&wasm)
}

/// Compiles `wasm` as an upload would be (the same checks, then Cranelift) and invokes it.
pub fn check_module(wasm: &[u8]) -> ModuleOutcome {
    let engine = fuzz_engine();
    // Refusal at upload is a fine outcome: a clear error, typed.
    let module = match engine.compile(wasm) {
        Ok(module) => module,
        Err(e) => {
            if std::env::var_os("TENANTRY_FUZZ_DEBUG").is_some() {
                eprintln!("refused: {e}");
            }
            return ModuleOutcome::Refused;
        }
    };
    let spec = WorkerSpec {
        name: "fuzz/random".into(),
        module,
        bindings: Default::default(),
        limits: FUZZ_LIMITS,
        reuse_instances: 0,
        js_bundle: None,
    };
    let worker = match Worker::new(engine, spec) {
        Ok(worker) => worker,
        Err(Fault::BadModule(_)) => return ModuleOutcome::Refused,
        Err(fault) => panic!("loading a compiled module failed: {fault:?}"),
    };
    let request = Request {
        method: Bytes::from_static(b"POST"),
        host: Bytes::from_static(b"fuzz.example.test"),
        target: Bytes::from_static(b"/path?q=1"),
        headers: vec![(Bytes::from_static(b"x-a"), Bytes::from_static(b"1"))],
        body: Bytes::from_static(b"body"),
        secure: false,
    };
    let outcome = block_on(worker.invoke(request, FUZZ_LIMITS));
    match outcome {
        Ok(response) => assert!(tenantry_core::is_final_status(response.status)),
        Err(Fault::Trap(message)) => {
            assert_ne!(message, "internal error", "a host call failed unexpectedly")
        }
        Err(_) => {}
    }
    ModuleOutcome::Ran
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("a monoio runtime")
        .block_on(future)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random bytes (xorshift), so a failure reproduces.
    fn inputs(seed: u64, count: usize, max_len: usize) -> impl Iterator<Item = Vec<u8>> {
        let mut state = seed;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        (0..count).map(move |_| {
            let len = (next() % max_len as u64) as usize;
            (0..len).map(|_| next() as u8).collect()
        })
    }

    #[test]
    fn config_parser_smoke() {
        let seeds: &[&[u8]] = &[
            b"data_dir = \"d\"\n[[namespace]]\nname = \"a\"\n",
            b"[server]\nlisten = \"127.0.0.1:0\"\nthreads = 99999999999\n",
            b"[[worker]]\nnamespace = \"a\"\nname = \"w\"\nmodule = \"/dev/null\"\nbindings = [{ type = \"json\", name = \"J\", json = { a = [1, 2] } }]\n",
            b"[[route]]\nhost = \"*.*\"\npath_prefix = \"\"\nscript_from = \"header:\"\n",
        ];
        for seed in seeds {
            check_config(seed);
            for cut in 0..seed.len() {
                check_config(&seed[..cut]);
            }
        }
        for input in inputs(0x5eed_c0f1, 500, 256) {
            check_config(&input);
        }
    }

    #[test]
    fn upload_and_json_smoke() {
        let multipart = b"\x00--X\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\r\n{\"main_module\": \"w.wasm\", \"bindings\": [{\"type\": \"plain_text\", \"name\": \"A\", \"text\": \"b\"}]}\r\n--X\r\nContent-Disposition: form-data; name=\"w.wasm\"; filename=\"w.wasm\"\r\nContent-Type: application/wasm\r\n\r\n\x00asm\x01\x00\x00\x00\r\n--X--\r\n";
        for cut in 0..multipart.len() {
            check_upload(&multipart[..cut]);
        }
        for input in inputs(0x0b5e_55ed, 500, 512) {
            check_upload(&input);
            check_json_bodies(&input);
        }
        check_json_bodies(br#"[{"key": "k", "value": "v", "base64": true}]"#);
        check_json_bodies(br#"{"bindings": [{"type": "x"}], "tags": [1]}"#);
    }

    #[test]
    fn random_module_smoke() {
        // Few and small: each compiles with Cranelift.
        let mut ran = 0;
        for input in inputs(0xdead_beef, 100, 4096) {
            let outcome = check_random_module(&input);
            if std::env::var_os("TENANTRY_FUZZ_DEBUG").is_some() {
                eprintln!("{outcome:?}");
            }
            if outcome == ModuleOutcome::Ran {
                ran += 1;
            }
        }
        assert!(ran >= 50, "only {ran} of 100 random modules ran");
    }
}
