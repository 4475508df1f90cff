//! JavaScript Workers in the artifact store.
//!
//! A JavaScript Worker is stored as a *source bundle* (its modules, as uploaded) and runs on the
//! one JavaScript engine shipped inside this binary (`runtimes/js`, QuickJS-ng built to
//! `wasm32-wasip1`): the engine is a guest like any other, in the same pools and under the same
//! limits, and what makes it a given Worker is that Worker's *compiled bundle*, which it reads
//! through `tenantry:js/v1` `code_read`.
//!
//! ```text
//!  upload ─► SourceBundle ─► artifacts/<id>.jsb                      (kept: the content API, recompiles)
//!                 │
//!                 └─ engine, compile mode (sandboxed: fuel, memory) ─► artifacts/<id>.<compat>.<engine>.jsbc
//!                                                                        bytecode, mapped when served
//!  the engine: embedded .wasm ─ _initialize + wizer.initialize (runtime, context, Web APIs)
//!              ─ snapshot (wasmtime-wizer) ─► artifacts/js-engine.<engine>.<compat>.cwasm
//! ```
//! Compiling at upload means a syntax error or a missing handler is a `400` then, never a
//! failure per request, and no request parses source. Bytecode is only valid for the engine
//! build that wrote it: its file name carries the engine's hash, so a new engine recompiles every
//! JavaScript Worker from its kept sources (`ArtifactStore::ensure`).
//!
//! # Bundle format (`docs/design.md`, "JavaScript Workers"; little-endian)
//! ```text
//!  "TJSB"  version u8 (1)  format u8 (0 ES modules, 1 service worker)  count u32
//!  count × { kind u8, name_len u32, name (UTF-8), data_len u32, data }
//! ```
//! The first part is the main module. Source kinds: [`PartKind`]; the engine's compiled bundle
//! uses the same framing with bytecode kinds of its own (16 module, 17 script).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::task::{Context, Poll, Waker};

use sha2::{Digest, Sha256};
use tenantry_core::{Engine, Limits};
use wasmtime::{Caller, Extern, Instance, Linker, Module, Store, StoreLimits, StoreLimitsBuilder};

use crate::artifacts::ArtifactError;
use crate::fsutil::write_durably;

/// The engine module, built from `runtimes/js` by `scripts/build-js.sh` (run by this crate's
/// build script).
static ENGINE_WASM: &[u8] = include_bytes!(env!("TENANTRY_JS_ENGINE_WASM"));

/// The first bytes of every bundle.
pub const BUNDLE_MAGIC: &[u8; 4] = b"TJSB";
const BUNDLE_VERSION: u8 = 1;

/// Most parts (modules) one Worker may have.
pub const MAX_PARTS: usize = 256;

/// CPU time the engine may spend compiling one upload (parsing, bytecode, evaluating the main
/// module's top level to find its handler): generous for megabytes of source, and a guard
/// against top-level code that loops.
pub const COMPILE_CPU_MS: u32 = 2_000;
/// Wall-clock bound of the same.
pub const COMPILE_WALL_MS: u32 = 10_000;
/// Memory the engine may use while compiling one upload.
pub const COMPILE_MEMORY_BYTES: u64 = 256 << 20;

/// Idle instances kept per core for a JavaScript Worker that does not say (`reuse_instances`).
/// A fresh instance per request, the default for wasm Workers, costs a JavaScript Worker its
/// whole start (loading and evaluating its bundle, then resetting the pages the interpreter
/// dirtied): measured on one core with the hello Worker of `benches/js.sh`, 9.5k requests/s fresh
/// against 31k reused (docs/performance.md), and workerd, which keeps its isolates, does ~12–19k.
/// So JavaScript Workers reuse their instances by default, as Cloudflare keeps its isolates:
/// global state of a Worker survives between *its own* requests (never another Worker's), and an
/// instance that faulted or hit a limit is dropped. `reuse_instances = 0` still means a fresh
/// instance per request.
pub const DEFAULT_REUSE_INSTANCES: u32 = 4;

/// How a Worker's code is shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleFormat {
    /// `export default { fetch(request, env, ctx) }`, with imports between parts.
    Modules = 0,
    /// `addEventListener("fetch", …)`, one script, bindings as globals.
    ServiceWorker = 1,
}

/// What one part of a source bundle is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartKind {
    /// ES module source (`application/javascript+module`).
    EsModule = 0,
    /// A service-worker script (`application/javascript`).
    Script = 1,
    /// Imports as a string (`text/plain`): Cloudflare's Text module.
    Text = 2,
    /// Imports as an ArrayBuffer (`application/octet-stream`): Cloudflare's Data module.
    Data = 3,
}

impl PartKind {
    fn from_u8(v: u8) -> Option<PartKind> {
        Some(match v {
            0 => PartKind::EsModule,
            1 => PartKind::Script,
            2 => PartKind::Text,
            3 => PartKind::Data,
            _ => return None,
        })
    }
}

/// One module of a Worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub kind: PartKind,
    /// The upload's part name (`worker.js`, `lib/util.js`).
    pub name: String,
    pub data: Vec<u8>,
}

/// A JavaScript Worker's sources, as uploaded; the first part is the main module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceBundle {
    pub format: BundleFormat,
    pub parts: Vec<Part>,
}

/// Whether `bytes` is a bundle (rather than a wasm module).
pub fn is_bundle(bytes: &[u8]) -> bool {
    bytes.starts_with(BUNDLE_MAGIC)
}

impl SourceBundle {
    /// A service worker: one script.
    pub fn service_worker(name: &str, source: Vec<u8>) -> SourceBundle {
        SourceBundle {
            format: BundleFormat::ServiceWorker,
            parts: vec![Part {
                kind: PartKind::Script,
                name: name.to_string(),
                data: source,
            }],
        }
    }

    /// The main module.
    pub fn main(&self) -> &Part {
        &self.parts[0]
    }

    pub fn encode(&self) -> Vec<u8> {
        let size: usize = self
            .parts
            .iter()
            .map(|p| 9 + p.name.len() + p.data.len())
            .sum();
        let mut out = Vec::with_capacity(10 + size);
        out.extend_from_slice(BUNDLE_MAGIC);
        out.push(BUNDLE_VERSION);
        out.push(self.format as u8);
        out.extend_from_slice(&(self.parts.len() as u32).to_le_bytes());
        for p in &self.parts {
            out.push(p.kind as u8);
            out.extend_from_slice(&(p.name.len() as u32).to_le_bytes());
            out.extend_from_slice(p.name.as_bytes());
            out.extend_from_slice(&(p.data.len() as u32).to_le_bytes());
            out.extend_from_slice(&p.data);
        }
        out
    }

    /// Reads a source bundle; the error says what is wrong with it.
    pub fn decode(bytes: &[u8]) -> Result<SourceBundle, String> {
        let mut r = Reader { bytes, pos: 0 };
        if r.take(4)? != BUNDLE_MAGIC {
            return Err("not a JavaScript bundle".into());
        }
        let version = r.take(1)?[0];
        if version != BUNDLE_VERSION {
            return Err(format!("bundle version {version} is not supported"));
        }
        let format = match r.take(1)?[0] {
            0 => BundleFormat::Modules,
            1 => BundleFormat::ServiceWorker,
            f => return Err(format!("unknown bundle format {f}")),
        };
        let count = r.u32()? as usize;
        if count == 0 || count > MAX_PARTS {
            return Err(format!(
                "a bundle has 1 to {MAX_PARTS} parts, this one {count}"
            ));
        }
        let mut parts = Vec::with_capacity(count);
        for _ in 0..count {
            let kind = r.take(1)?[0];
            let kind =
                PartKind::from_u8(kind).ok_or_else(|| format!("unknown part kind {kind}"))?;
            let len = r.u32()? as usize;
            let name = std::str::from_utf8(r.take(len)?)
                .map_err(|_| "a part name is not UTF-8".to_string())?
                .to_string();
            let len = r.u32()? as usize;
            let data = r.take(len)?.to_vec();
            parts.push(Part { kind, name, data });
        }
        if r.pos != bytes.len() {
            return Err("trailing bytes after the last part".into());
        }
        Ok(SourceBundle { format, parts })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| "the bundle is truncated".to_string())?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// The hash of the embedded engine build (16 hex digits): part of every compiled bundle's name.
pub fn engine_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| hex::encode(&Sha256::digest(ENGINE_WASM)[..8]))
}

/// The pre-initialised engine of one artifact directory, prepared on first use (a few seconds:
/// the snapshot and Cranelift) and kept on disk for the next start.
pub(crate) struct JsEngine {
    dir: PathBuf,
    engine: Engine,
    module: OnceLock<Result<Module, String>>,
}

/// Where an engine was last prepared, by compat hash, for every store of the process: a node has
/// one store, but a test binary opens dozens, and each would otherwise pay seconds for the
/// snapshot. A later store links (or copies) that file instead of keeping megabytes in memory.
static PREPARED: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);

/// Held while an engine is prepared, so that stores preparing at once (a test binary's nodes)
/// wait for the first and link its file instead of each spending seconds of Cranelift.
static PREPARING: Mutex<()> = Mutex::new(());

impl JsEngine {
    pub(crate) fn new(dir: &Path, engine: Engine) -> JsEngine {
        JsEngine {
            dir: dir.to_path_buf(),
            engine,
            module: OnceLock::new(),
        }
    }

    fn cwasm_path(&self) -> PathBuf {
        self.dir.join(format!(
            "js-engine.{}.{}.cwasm",
            engine_hash(),
            self.engine.compat_hash()
        ))
    }

    /// The engine module, pre-initialised, mapped.
    pub(crate) fn module(&self) -> Result<Module, ArtifactError> {
        self.module
            .get_or_init(|| self.prepare().map_err(|e| e.to_string()))
            .clone()
            .map_err(ArtifactError::JsEngine)
    }

    fn prepare(&self) -> Result<Module, ArtifactError> {
        let path = self.cwasm_path();
        let _preparing = lock(&PREPARING);
        if !path.exists() && !self.reuse_prepared(&path) {
            let started = std::time::Instant::now();
            let snapshot = self.snapshot()?;
            let cwasm = self
                .engine
                .precompile_js_engine(&snapshot)
                .map_err(|e| ArtifactError::JsEngine(e.to_string()))?;
            write_durably(&path, &[&cwasm]).map_err(|source| ArtifactError::Io {
                path: path.clone(),
                source,
            })?;
            tracing::info!(
                engine = engine_hash(),
                ms = started.elapsed().as_millis() as u64,
                bytes = cwasm.len(),
                "prepared the JavaScript engine"
            );
        }
        lock(&PREPARED)
            .get_or_insert_default()
            .insert(self.engine.compat_hash().to_string(), path.clone());
        // SAFETY: the file was written by `precompile_js_engine` of an engine with this compat
        // hash (it is in the name), renamed into place complete, and never modified afterwards.
        Ok(unsafe {
            self.engine
                .load_artifact(&path, tenantry_core::Tier::Optimised)
        }?)
    }

    /// Links or copies the engine another store of this process prepared to `path`; `false` if
    /// there is none (or it is gone).
    fn reuse_prepared(&self, path: &Path) -> bool {
        let compat = self.engine.compat_hash();
        let Some(from) = lock(&PREPARED).get_or_insert_default().get(compat).cloned() else {
            return false;
        };
        // Named as `write_durably` names its temporaries, so a crash leaves nothing that start-up
        // does not clean.
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let tmp = path.with_file_name(format!(
            ".{}.tmp-{}-link",
            name.unwrap_or_default(),
            std::process::id()
        ));
        let _ = std::fs::remove_file(&tmp);
        let placed = std::fs::hard_link(&from, &tmp)
            .or_else(|_| std::fs::copy(&from, &tmp).map(drop))
            .and_then(|()| std::fs::rename(&tmp, path));
        placed.is_ok()
    }

    /// Runs the engine's `_initialize` and `wizer.initialize` and snapshots the result.
    fn snapshot(&self) -> Result<Vec<u8>, ArtifactError> {
        let fail = |what: &str, e: wasmtime::Error| {
            ArtifactError::JsEngine(format!("pre-initialising the engine: {what}: {e:#}"))
        };
        let mut wizer = wasmtime_wizer::Wizer::new();
        wizer.init_func("wizer.initialize");
        let (cx, instrumented) = wizer
            .instrument(ENGINE_WASM)
            .map_err(|e| fail("instrument", e))?;
        let module =
            Module::new(self.engine.wasmtime(), &instrumented).map_err(|e| fail("compile", e))?;
        let mut store = self.sandbox(Vec::new());
        let instance = sandbox_linker(self.engine.wasmtime(), &module)
            .and_then(|l| l.instantiate(&mut store, &module))
            .map_err(|e| fail("instantiate", e))?;
        for name in ["_initialize", "wizer.initialize"] {
            if let Ok(init) = instance.get_typed_func::<(), ()>(&mut store, name) {
                init.call(&mut store, ()).map_err(|e| fail(name, e))?;
            }
        }
        let mut state = Snapshot {
            store: &mut store,
            instance,
        };
        ready(wizer.snapshot(&cx, &mut state))
            .ok_or_else(|| ArtifactError::JsEngine("the snapshot did not complete".into()))?
            .map_err(|e| fail("snapshot", e))
    }

    /// A store for the engine outside a request: fuel, memory and time bounded.
    fn sandbox(&self, code: Vec<u8>) -> Store<Sandbox> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(COMPILE_MEMORY_BYTES as usize)
            .build();
        let mut store = Store::new(
            self.engine.wasmtime(),
            Sandbox {
                code,
                // As for a request: 200 unless the engine sets another.
                status: 200,
                body: Vec::new(),
                limits,
            },
        );
        store.limiter(|s| &mut s.limits);
        let fuel = Limits {
            cpu_ms: COMPILE_CPU_MS,
            ..Limits::DEFAULT
        }
        .fuel();
        // Set on a fresh store of an engine that consumes fuel: cannot fail.
        let _ = store.set_fuel(fuel);
        let tick = self.engine.settings().epoch_tick.as_micros().max(1) as u64;
        store.set_epoch_deadline(u64::from(COMPILE_WALL_MS) * 1000 / tick);
        store
    }

    /// Compiles a source bundle into the engine's compiled bundle, in a sandboxed instance.
    /// `Err(ArtifactError::JsCompile)` carries the engine's message (file, line, column).
    pub(crate) fn compile(&self, sources: &[u8]) -> Result<Vec<u8>, ArtifactError> {
        let module = self.module()?;
        let mut store = self.sandbox(sources.to_vec());
        let run = sandbox_linker(self.engine.wasmtime(), &module)
            .and_then(|l| l.instantiate(&mut store, &module))
            .and_then(|i| i.get_typed_func::<(), i32>(&mut store, "tenantry_js_compile"))
            .and_then(|f| f.call(&mut store, ()));
        match run {
            Ok(0) => {}
            Ok(code) => {
                return Err(ArtifactError::JsEngine(format!(
                    "the engine's compiler returned {code}"
                )));
            }
            Err(e) => {
                let trap = e.downcast_ref::<wasmtime::Trap>();
                return Err(ArtifactError::JsCompile(
                    if trap == Some(&wasmtime::Trap::OutOfFuel) {
                        format!(
                            "compiling and evaluating the Worker's top level took more than \
                         {COMPILE_CPU_MS} ms of CPU"
                        )
                    } else if trap == Some(&wasmtime::Trap::Interrupt) {
                        format!("compiling the Worker took more than {COMPILE_WALL_MS} ms")
                    } else {
                        format!("the Worker failed while compiling: {e:#}")
                    },
                ));
            }
        }
        let state = store.into_data();
        match state.status {
            200 => Ok(state.body),
            _ => Err(ArtifactError::JsCompile(
                String::from_utf8_lossy(&state.body).trim().to_string(),
            )),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Polls a future that cannot wait (it touches only memory) to completion.
fn ready<F: Future>(future: F) -> Option<F::Output> {
    let future = std::pin::pin!(future);
    match future.poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => Some(out),
        Poll::Pending => None,
    }
}

/// What the snapshot reads from the initialised instance.
struct Snapshot<'a> {
    store: &'a mut Store<Sandbox>,
    instance: Instance,
}

impl wasmtime_wizer::InstanceState for Snapshot<'_> {
    async fn global_get(
        &mut self,
        name: &str,
        _type_hint: wasmtime_wizer::ValType,
    ) -> wasmtime_wizer::SnapshotVal {
        use wasmtime::Val;
        use wasmtime_wizer::SnapshotVal;
        // The instrumented module exports every global it asks for, with a core value type.
        let global = self.instance.get_global(&mut *self.store, name);
        match global.map(|g| g.get(&mut *self.store)) {
            Some(Val::I32(x)) => SnapshotVal::I32(x),
            Some(Val::I64(x)) => SnapshotVal::I64(x),
            Some(Val::F32(x)) => SnapshotVal::F32(x),
            Some(Val::F64(x)) => SnapshotVal::F64(x),
            Some(Val::V128(x)) => SnapshotVal::V128(x.as_u128()),
            _ => SnapshotVal::I32(0),
        }
    }

    async fn memory_contents(&mut self, name: &str, contents: impl FnOnce(&[u8]) + Send) {
        match self.instance.get_memory(&mut *self.store, name) {
            Some(memory) => contents(memory.data(&*self.store)),
            None => contents(&[]),
        }
    }
}

/// The state of an engine instance outside a request.
struct Sandbox {
    /// What `code_read` hands out: the source bundle to compile.
    code: Vec<u8>,
    /// The status and body of the compile answer.
    status: i32,
    body: Vec<u8>,
    limits: StoreLimits,
}

/// The compile answer's body may not pass this (a compiled bundle is a few times its source).
const MAX_COMPILED_BYTES: usize = 256 << 20;

const WORKER_V1: &str = "tenantry:worker/v1";
const WASI: &str = "wasi_snapshot_preview1";
const ERRNO_BADF: i32 = 8;
const ERRNO_INVAL: i32 = 28;
const ERRNO_NOSYS: i32 = 52;
const NOT_FOUND: i32 = -1;
const INVALID: i32 = -2;
const LIMIT: i32 = -3;

type Cx<'a> = Caller<'a, Sandbox>;

fn memory<'a>(caller: &'a mut Cx<'_>) -> wasmtime::Result<(&'a mut [u8], &'a mut Sandbox)> {
    let Some(Extern::Memory(mem)) = caller.get_export("memory") else {
        wasmtime::bail!("the engine exports no memory");
    };
    Ok(mem.data_and_store_mut(caller))
}

fn range(mem: &[u8], ptr: i32, len: i32) -> wasmtime::Result<std::ops::Range<usize>> {
    let start = ptr as u32 as usize;
    let end = start.checked_add(len as u32 as usize);
    match end.filter(|&e| e <= mem.len()) {
        Some(end) => Ok(start..end),
        None => wasmtime::bail!("a pointer of the engine is outside its memory"),
    }
}

/// The host calls the engine may make while it is being initialised or compiles an upload: its
/// bundle, its answer, clocks and randomness; logs are dropped (an upload's top level may log)
/// and everything a request would need traps.
fn sandbox_linker(engine: &wasmtime::Engine, module: &Module) -> wasmtime::Result<Linker<Sandbox>> {
    let mut l: Linker<Sandbox> = Linker::new(engine);
    l.func_wrap(
        "tenantry:js/v1",
        "code_read",
        |mut c: Cx<'_>, ptr: i32, cap: i32| -> wasmtime::Result<i32> {
            let (mem, state) = memory(&mut c)?;
            let out = range(mem, ptr, cap)?;
            let n = state.code.len();
            if n <= out.len() {
                mem[out.start..out.start + n].copy_from_slice(&state.code);
            }
            Ok(i32::try_from(n).unwrap_or(LIMIT))
        },
    )?;
    l.func_wrap(
        WORKER_V1,
        "response_set_status",
        |mut c: Cx<'_>, _resp: i32, status: i32| {
            if !(200..=599).contains(&status) {
                return INVALID;
            }
            c.data_mut().status = status;
            0
        },
    )?;
    for name in ["response_header_set", "response_header_append"] {
        l.func_wrap(
            WORKER_V1,
            name,
            |_: Cx<'_>, _: i32, _: i32, _: i32, _: i32, _: i32| 0,
        )?;
    }
    l.func_wrap(
        WORKER_V1,
        "response_body_write",
        |mut c: Cx<'_>, _resp: i32, ptr: i32, len: i32| -> wasmtime::Result<i32> {
            let (mem, state) = memory(&mut c)?;
            let r = range(mem, ptr, len)?;
            if state.body.len() + r.len() > MAX_COMPILED_BYTES {
                return Ok(LIMIT);
            }
            state.body.extend_from_slice(&mem[r]);
            Ok(len)
        },
    )?;
    l.func_wrap(WORKER_V1, "log", |_: Cx<'_>, _: i32, _: i32, _: i32| 0)?;
    l.func_wrap(WORKER_V1, "env_list", |_: Cx<'_>, _: i32, _: i32| 0)?;
    l.func_wrap(WORKER_V1, "env_kind", |_: Cx<'_>, _: i32, _: i32| NOT_FOUND)?;
    l.func_wrap(
        WORKER_V1,
        "env_get",
        |_: Cx<'_>, _: i32, _: i32, _: i32, _: i32| NOT_FOUND,
    )?;
    l.func_wrap(
        WASI,
        "fd_write",
        |mut c: Cx<'_>, _fd: i32, iovs: i32, n: i32, written: i32| -> wasmtime::Result<i32> {
            let (mem, _) = memory(&mut c)?;
            let table = range(mem, iovs, (n as u32).saturating_mul(8) as i32)?;
            let total: u32 = mem[table.clone()]
                .chunks_exact(8)
                .map(|e| u32::from_le_bytes([e[4], e[5], e[6], e[7]]))
                .fold(0u32, u32::wrapping_add);
            let out = range(mem, written, 4)?;
            mem[out].copy_from_slice(&total.to_le_bytes());
            Ok(0)
        },
    )?;
    for name in ["environ_sizes_get", "args_sizes_get"] {
        l.func_wrap(
            WASI,
            name,
            |mut c: Cx<'_>, count: i32, size: i32| -> wasmtime::Result<i32> {
                let (mem, _) = memory(&mut c)?;
                for at in [count, size] {
                    let r = range(mem, at, 4)?;
                    mem[r].fill(0);
                }
                Ok(0)
            },
        )?;
    }
    for name in ["environ_get", "args_get"] {
        l.func_wrap(WASI, name, |_: Cx<'_>, _: i32, _: i32| 0)?;
    }
    l.func_wrap(
        WASI,
        "clock_time_get",
        |mut c: Cx<'_>, id: i32, _precision: i64, out: i32| -> wasmtime::Result<i32> {
            let now = match id {
                0 => std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64),
                1 => monotonic_ns(),
                _ => return Ok(ERRNO_INVAL),
            };
            let (mem, _) = memory(&mut c)?;
            let r = range(mem, out, 8)?;
            mem[r].copy_from_slice(&now.to_le_bytes());
            Ok(0)
        },
    )?;
    l.func_wrap(
        WASI,
        "clock_res_get",
        |mut c: Cx<'_>, _id: i32, out: i32| -> wasmtime::Result<i32> {
            let (mem, _) = memory(&mut c)?;
            let r = range(mem, out, 8)?;
            mem[r].copy_from_slice(&1u64.to_le_bytes());
            Ok(0)
        },
    )?;
    l.func_wrap(
        WASI,
        "random_get",
        |mut c: Cx<'_>, buf: i32, len: i32| -> wasmtime::Result<i32> {
            let (mem, _) = memory(&mut c)?;
            let r = range(mem, buf, len)?;
            Ok(if getrandom::fill(&mut mem[r]).is_ok() {
                0
            } else {
                29
            })
        },
    )?;
    l.func_wrap(WASI, "fd_prestat_get", |_: Cx<'_>, _: i32, _: i32| {
        ERRNO_BADF
    })?;
    l.func_wrap(WASI, "sched_yield", |_: Cx<'_>| 0)?;
    // No timers outside a request.
    l.func_wrap(
        WASI,
        "poll_oneoff",
        |_: Cx<'_>, _: i32, _: i32, _: i32, _: i32| ERRNO_NOSYS,
    )?;
    l.func_wrap(
        WASI,
        "proc_exit",
        |_: Cx<'_>, code: i32| -> wasmtime::Result<()> {
            wasmtime::bail!("the engine exited with code {code}")
        },
    )?;
    l.define_unknown_imports_as_traps(module)?;
    Ok(l)
}

fn monotonic_ns() -> u64 {
    static ORIGIN: OnceLock<std::time::Instant> = OnceLock::new();
    ORIGIN
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_nanos() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundles_round_trip_and_bad_ones_say_why() {
        let b = SourceBundle {
            format: BundleFormat::Modules,
            parts: vec![
                Part {
                    kind: PartKind::EsModule,
                    name: "worker.js".into(),
                    data: b"export default {}".to_vec(),
                },
                Part {
                    kind: PartKind::Data,
                    name: "blob.bin".into(),
                    data: vec![0, 1, 2],
                },
            ],
        };
        let bytes = b.encode();
        assert!(is_bundle(&bytes));
        assert_eq!(SourceBundle::decode(&bytes).unwrap(), b);
        let e = SourceBundle::decode(&bytes[..bytes.len() - 1]).unwrap_err();
        assert!(e.contains("truncated"), "{e}");
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(
            SourceBundle::decode(&extra)
                .unwrap_err()
                .contains("trailing")
        );
        assert!(SourceBundle::decode(b"\0asm").is_err());
    }
}
