//! Content-addressed artifacts: the original upload and its compiled `.cwasm`, side by side.
//!
//! ```text
//! artifacts/<sha256 of the upload>.wasm                  the upload, kept to rebuild from
//! artifacts/<sha256 of the upload>.<compat hash>.cwasm   compiled by one engine build/config
//! artifacts/<sha256 of the upload>.<baseline hash>.cwasm compiled by Winch (Tier::Baseline),
//!                                                        until the optimised one is written
//! ```
//! A file is written once (temp + fsync + rename) and never rewritten in place, because
//! `Module::deserialize_file` maps it: changing a mapped file would change code under a running
//! guest. A new engine writes new `.cwasm` names beside the old ones.

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use sha2::{Digest, Sha256};
use tenantry_core::{CompileError, Engine, LoadError, Tier};

use crate::fsutil::write_durably;
use crate::js;
use crate::modules::{Loaded, Loader, ModuleCache};

/// Largest module accepted for upload. Cloudflare's own limit for a compressed Worker is 10 MB
/// (paid plans); uncompressed wasm of big language runtimes (a JS engine) reaches tens of MB, and
/// compiling more than this on a 2-core node would stall deploys for seconds.
pub const MAX_MODULE_BYTES: usize = 50 << 20;

/// The SHA-256 of an uploaded module: its name on disk and in indexes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ArtifactId([u8; 32]);

impl ArtifactId {
    /// The id of these upload bytes.
    pub fn of(wasm: &[u8]) -> ArtifactId {
        ArtifactId(Sha256::digest(wasm).into())
    }

    pub fn from_bytes(bytes: [u8; 32]) -> ArtifactId {
        ArtifactId(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits.
    pub fn parse_hex(s: &str) -> Option<ArtifactId> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(ArtifactId(out))
    }
}

impl fmt::Display for ArtifactId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ArtifactId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ArtifactId({})", self.to_hex())
    }
}

/// Why an artifact could not be stored or loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArtifactError {
    /// The upload is larger than [`MAX_MODULE_BYTES`].
    #[error("module is {size} bytes, more than the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    /// The upload is not a valid Worker module.
    #[error(transparent)]
    Compile(#[from] CompileError),
    /// Neither the compiled artifact nor the original upload is on disk.
    #[error("artifact {0} is missing from the data directory")]
    Missing(ArtifactId),
    #[error("cannot load artifact: {0}")]
    Load(#[from] LoadError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Compiling took longer than the compiler's timeout. The compile thread finishes the job in
    /// the background (Cranelift cannot be interrupted) and its result is dropped.
    #[error("compiling the module took longer than the limit of {} s", .0.as_secs_f64())]
    Timeout(std::time::Duration),
    /// The compile thread died (a compiler bug); the upload may be retried.
    #[error("the compiler failed unexpectedly: {0}")]
    Internal(String),
    /// A JavaScript Worker did not compile: the engine's message names the file, line and
    /// column (a syntax error, an unresolvable import, no fetch handler).
    #[error("{0}")]
    JsCompile(String),
    /// The JavaScript engine itself could not be prepared (a build or node problem, not the
    /// upload's).
    #[error("the JavaScript engine is unavailable: {0}")]
    JsEngine(String),
    /// The module loader threads could not be started or have stopped.
    #[error("the module loader is not running: {0}")]
    LoaderStopped(String),
}

/// Makes existing artifact files young again: the index about to name them must find them
/// (`Store::collect_artifacts`).
fn touch(paths: &[&Path]) -> Result<(), ArtifactError> {
    for path in paths {
        let touched = std::fs::File::options()
            .write(true)
            .open(path)
            .and_then(|f| f.set_modified(std::time::SystemTime::now()));
        if let Err(e) = touched
            && e.kind() != std::io::ErrorKind::NotFound
        {
            return Err(io(path)(e));
        }
    }
    Ok(())
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ArtifactError + '_ {
    move |source| ArtifactError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The artifact directory of one data directory, for one engine. Cheap to clone.
#[derive(Clone)]
pub struct ArtifactStore {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    engine: Engine,
    /// Modules already mapped, shared by every core and bounded (LRU). Cores keep their own LRU
    /// of ready Workers and come here only on a miss; the lock is held for a lookup or an
    /// insert, never while a module is mapped.
    modules: Arc<ModuleCache>,
    /// The threads that map modules for serving cores, started on the first
    /// [`ArtifactStore::load_async`] (the admin API and tests never need them).
    loader: OnceLock<Result<Loader, String>>,
}

impl ArtifactStore {
    /// Uses (and creates) `dir` for artifacts compiled by `engine`. Keeps at most
    /// `engine.settings().max_loaded_modules` modules mapped.
    pub fn open(dir: &Path, engine: Engine) -> Result<ArtifactStore, ArtifactError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        Ok(ArtifactStore {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                modules: Arc::new(ModuleCache::new(dir.to_path_buf(), engine.clone())),
                engine,
                loader: OnceLock::new(),
            }),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Where the original upload of `id` is kept.
    pub fn original_path(&self, id: &ArtifactId) -> PathBuf {
        self.inner.dir.join(format!("{id}.wasm"))
    }

    /// Where the `.cwasm` of `id` for this engine lives.
    pub fn compiled_path(&self, id: &ArtifactId) -> PathBuf {
        self.inner.modules.compiled_path(id)
    }

    /// Where the Winch artifact of `id` lives; `None` when the baseline tier is off.
    pub fn baseline_path(&self, id: &ArtifactId) -> Option<PathBuf> {
        self.inner.modules.baseline_path(id)
    }

    /// Where the sources of JavaScript Worker `id` are kept (a [`js::SourceBundle`]).
    pub fn js_original_path(&self, id: &ArtifactId) -> PathBuf {
        self.inner.dir.join(format!("{id}.jsb"))
    }

    /// Where the compiled bundle of JavaScript Worker `id` lives for this engine and this build
    /// of the JavaScript engine.
    pub fn js_compiled_path(&self, id: &ArtifactId) -> PathBuf {
        self.inner.modules.js_compiled_path(id)
    }

    /// The original upload of `id`: wasm bytes or a JavaScript source bundle.
    pub fn original(&self, id: &ArtifactId) -> Result<Vec<u8>, ArtifactError> {
        for path in [self.original_path(id), self.js_original_path(id)] {
            match std::fs::read(&path) {
                Ok(bytes) => return Ok(bytes),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&path)(e)),
            }
        }
        Err(ArtifactError::Missing(*id))
    }

    /// Prepares the JavaScript engine now (the snapshot and its compilation take seconds), so
    /// that the first JavaScript upload or request does not wait for it.
    pub fn prepare_js_engine(&self) -> Result<(), ArtifactError> {
        self.inner.modules.js.module().map(drop)
    }

    /// Validates, compiles and stores an upload; returns its id. Already-stored uploads are not
    /// compiled again. Runs Cranelift: call it from a compile thread ([`crate::Compiler`]).
    pub fn put(&self, wasm: &[u8]) -> Result<ArtifactId, ArtifactError> {
        if wasm.len() > MAX_MODULE_BYTES {
            return Err(ArtifactError::TooLarge {
                size: wasm.len(),
                limit: MAX_MODULE_BYTES,
            });
        }
        let id = ArtifactId::of(wasm);
        if js::is_bundle(wasm) {
            return self.put_js(id, wasm);
        }
        let compiled = self.compiled_path(&id);
        if compiled.exists() {
            touch(&[&compiled, &self.original_path(&id)])?;
            return Ok(id);
        }
        let cwasm = self.inner.engine.precompile(wasm)?;
        let original = self.original_path(&id);
        if !original.exists() {
            write_durably(&original, &[wasm]).map_err(io(&original))?;
        }
        write_durably(&compiled, &[&cwasm]).map_err(io(&compiled))?;
        Ok(id)
    }

    /// Like [`ArtifactStore::put`], but compiles a new module with Winch ([`Tier::Baseline`],
    /// ~10× faster) and says which tier is stored: `Optimised` when the upload was stored
    /// optimised already (or is JavaScript, which has one tier), `Baseline` when the caller must
    /// have [`ArtifactStore::optimise`] run for it. A module Winch cannot compile (the tier is
    /// off, or a feature Winch lacks) is compiled optimised at once, so the verdict on an
    /// invalid upload is always Cranelift's.
    pub fn put_baseline(&self, wasm: &[u8]) -> Result<(ArtifactId, Tier), ArtifactError> {
        if wasm.len() > MAX_MODULE_BYTES {
            return Err(ArtifactError::TooLarge {
                size: wasm.len(),
                limit: MAX_MODULE_BYTES,
            });
        }
        let id = ArtifactId::of(wasm);
        let compiled = self.compiled_path(&id);
        let Some(baseline) = self.baseline_path(&id) else {
            return Ok((self.put(wasm)?, Tier::Optimised));
        };
        if js::is_bundle(wasm) || compiled.exists() {
            return Ok((self.put(wasm)?, Tier::Optimised));
        }
        let original = self.original_path(&id);
        if baseline.exists() {
            touch(&[&baseline, &original])?;
            return Ok((id, Tier::Baseline));
        }
        let cwasm = match self.inner.engine.precompile_baseline(wasm) {
            Ok(cwasm) => cwasm,
            Err(e) => {
                tracing::debug!(artifact = %id, "no baseline compile ({e}): compiling optimised");
                return Ok((self.put(wasm)?, Tier::Optimised));
            }
        };
        if !original.exists() {
            write_durably(&original, &[wasm]).map_err(io(&original))?;
        }
        write_durably(&baseline, &[&cwasm]).map_err(io(&baseline))?;
        Ok((id, Tier::Baseline))
    }

    /// Compiles the optimised artifact of `id` from its kept original, unless it exists, and
    /// makes the module cache map it from now on. Runs Cranelift: call it from a background
    /// thread. The baseline artifact stays until [`ArtifactStore::drop_baseline`].
    pub fn optimise(&self, id: &ArtifactId) -> Result<(), ArtifactError> {
        let compiled = self.compiled_path(id);
        if !compiled.exists() {
            let wasm = self.original(id)?;
            let cwasm = self.inner.engine.precompile(&wasm)?;
            write_durably(&compiled, &[&cwasm]).map_err(io(&compiled))?;
        }
        self.inner.modules.forget_baseline(id);
        Ok(())
    }

    /// Removes the baseline artifact of `id` once nothing needs it to be loaded again: the
    /// optimised one exists and every index naming `id` was republished. A module still mapped
    /// from it stays valid (unlinking does not change a mapped file).
    pub fn drop_baseline(&self, id: &ArtifactId) -> Result<(), ArtifactError> {
        let Some(path) = self.baseline_path(id) else {
            return Ok(());
        };
        if !self.compiled_path(id).exists() {
            return Ok(());
        }
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&path)(e)),
            _ => Ok(()),
        }
    }

    /// The best tier stored for `id`: what a load maps. `Optimised` too for JavaScript Workers
    /// and for ids with no artifact at all (there is nothing to wait for).
    pub fn tier(&self, id: &ArtifactId) -> Tier {
        if self.compiled_path(id).exists() {
            return Tier::Optimised;
        }
        match self.baseline_path(id) {
            Some(baseline) if baseline.exists() => Tier::Baseline,
            _ => Tier::Optimised,
        }
    }

    /// Whether a baseline artifact of `id` is stored: its optimised artifact is not written
    /// yet, or the Worker naming it was not yet republished with it (a crash in between).
    pub fn has_baseline(&self, id: &ArtifactId) -> bool {
        self.baseline_path(id).is_some_and(|p| p.exists())
    }

    /// Stores a JavaScript Worker: its sources, and the bundle the engine compiles them to.
    fn put_js(&self, id: ArtifactId, sources: &[u8]) -> Result<ArtifactId, ArtifactError> {
        js::SourceBundle::decode(sources).map_err(ArtifactError::JsCompile)?;
        let compiled = self.js_compiled_path(&id);
        let original = self.js_original_path(&id);
        if compiled.exists() {
            touch(&[&compiled, &original])?;
            return Ok(id);
        }
        let bytecode = self.inner.modules.js.compile(sources)?;
        if !original.exists() {
            write_durably(&original, &[sources]).map_err(io(&original))?;
        }
        write_durably(&compiled, &[&bytecode]).map_err(io(&compiled))?;
        Ok(id)
    }

    /// Whether `id` is compiled for this engine (by either tier).
    pub fn contains(&self, id: &ArtifactId) -> bool {
        self.compiled_path(id).exists()
            || self.js_compiled_path(id).exists()
            || self.has_baseline(id)
    }

    /// Makes sure `id` is compiled for this engine, rebuilding it from the kept original when an
    /// engine upgrade (or a lost file) left it missing. A baseline artifact counts: its
    /// optimised one is the caller's to have compiled in the background
    /// ([`ArtifactStore::has_baseline`]).
    pub fn ensure(&self, id: &ArtifactId) -> Result<(), ArtifactError> {
        if self.contains(id) {
            return Ok(());
        }
        let wasm = self.original(id)?;
        tracing::info!(artifact = %id, "recompiling for this engine");
        if js::is_bundle(&wasm) {
            let bytecode = self.inner.modules.js.compile(&wasm)?;
            let compiled = self.js_compiled_path(id);
            return write_durably(&compiled, &[&bytecode]).map_err(io(&compiled));
        }
        let cwasm = self.inner.engine.precompile(&wasm)?;
        let compiled = self.compiled_path(id);
        write_durably(&compiled, &[&cwasm]).map_err(io(&compiled))
    }

    /// The compiled module of `id`, mapped from disk on first use and shared afterwards, on the
    /// calling thread (the admin API and tests; serving cores use [`ArtifactStore::load_async`]).
    pub fn load(&self, id: &ArtifactId) -> Result<Loaded, ArtifactError> {
        self.inner.modules.load(id)
    }

    /// The compiled module of `id`: at once if it is mapped, else mapped by a loader thread
    /// while the caller's core serves other requests (the returned future is woken from that
    /// thread). A failed load is not cached; the next request tries again.
    pub fn load_async(
        &self,
        id: &ArtifactId,
    ) -> impl Future<Output = Result<Loaded, ArtifactError>> + use<> {
        let queued = match self.inner.modules.cached(id) {
            Some(module) => Ok(module),
            None => match self.loader() {
                Ok(loader) => Err(Ok(loader.submit(*id))),
                Err(e) => Err(Err(e)),
            },
        };
        async move {
            match queued {
                Ok(module) => Ok(module),
                Err(Ok(reply)) => reply.await.unwrap_or_else(|_| {
                    Err(ArtifactError::LoaderStopped("a loader thread died".into()))
                }),
                Err(Err(e)) => Err(e),
            }
        }
    }

    fn loader(&self) -> Result<&Loader, ArtifactError> {
        self.inner
            .loader
            .get_or_init(|| Loader::start(&self.inner.modules).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| ArtifactError::LoaderStopped(e.clone()))
    }

    /// Modules mapped by the cache now.
    pub fn loaded_modules(&self) -> usize {
        self.inner.modules.len()
    }

    /// Whether `id` is in the module cache (does not count as a use).
    #[cfg(test)]
    pub(crate) fn inner_cached(&self, id: &ArtifactId) -> bool {
        self.inner.modules.contains(id)
    }

    /// Forgets mapped modules (tests, and a future GC of unused artifacts).
    pub fn clear_cache(&self) {
        self.inner.modules.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tenantry_core::EngineSettings;

    pub(crate) const WAT: &str = r#"(module (memory (export "memory") 1)
        (func (export "tenantry_fetch") (result i32) i32.const 0))"#;

    fn store() -> (tempfile::TempDir, ArtifactStore) {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::new(&EngineSettings {
            max_instances: 4,
            ..Default::default()
        })
        .unwrap();
        let s = ArtifactStore::open(&dir.path().join("artifacts"), engine).unwrap();
        (dir, s)
    }

    #[test]
    fn ids_round_trip_through_hex() {
        let id = ArtifactId::of(b"abc");
        assert_eq!(
            id.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(ArtifactId::parse_hex(&id.to_hex()), Some(id));
        assert_eq!(ArtifactId::parse_hex("xyz"), None);
    }

    #[test]
    fn put_then_load_and_put_is_idempotent() {
        let (_d, s) = store();
        let id = s.put(WAT.as_bytes()).unwrap();
        assert!(s.contains(&id));
        assert!(s.original_path(&id).exists());
        assert_eq!(s.put(WAT.as_bytes()).unwrap(), id);
        let m = s.load(&id).unwrap();
        assert!(m.module.get_export("tenantry_fetch").is_some());
    }

    #[test]
    fn rejects_invalid_and_oversized_uploads() {
        let (_d, s) = store();
        let e = s.put(b"\0asm\x01\0\0\0garbage").unwrap_err();
        assert!(
            matches!(e, ArtifactError::Compile(CompileError::Invalid(_))),
            "{e}"
        );
        let big = vec![0u8; MAX_MODULE_BYTES + 1];
        let e = s.put(&big).unwrap_err();
        assert!(matches!(e, ArtifactError::TooLarge { size, .. } if size == MAX_MODULE_BYTES + 1));
        assert!(e.to_string().contains("more than the limit"));
    }

    #[test]
    fn a_baseline_upload_is_optimised_later_and_loads_use_the_better_code() {
        let (_d, s) = store();
        let (id, tier) = s.put_baseline(WAT.as_bytes()).unwrap();
        assert_eq!(tier, Tier::Baseline);
        assert_eq!(s.tier(&id), Tier::Baseline);
        assert!(s.contains(&id) && s.has_baseline(&id) && !s.compiled_path(&id).exists());
        let m = s.load(&id).unwrap();
        assert_eq!(s.engine().tier_of(&m.module), Tier::Baseline);
        // The same bytes again are not compiled again.
        assert_eq!(
            s.put_baseline(WAT.as_bytes()).unwrap(),
            (id, Tier::Baseline)
        );

        s.optimise(&id).unwrap();
        assert_eq!(s.tier(&id), Tier::Optimised);
        // The cache forgot the Winch module: the next load maps the Cranelift artifact.
        let m = s.load(&id).unwrap();
        assert_eq!(s.engine().tier_of(&m.module), Tier::Optimised);
        s.drop_baseline(&id).unwrap();
        assert!(!s.has_baseline(&id) && s.contains(&id));
        assert_eq!(
            s.put_baseline(WAT.as_bytes()).unwrap(),
            (id, Tier::Optimised)
        );
    }

    #[test]
    fn a_baseline_upload_gets_cranelifts_verdict_and_the_tier_can_be_off() {
        let (_d, s) = store();
        let e = s.put_baseline(b"\0asm\x01\0\0\0garbage").unwrap_err();
        assert!(
            matches!(e, ArtifactError::Compile(CompileError::Invalid(_))),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::new(&EngineSettings {
            max_instances: 4,
            baseline_compile: false,
            ..Default::default()
        })
        .unwrap();
        let s = ArtifactStore::open(dir.path(), engine).unwrap();
        let (id, tier) = s.put_baseline(WAT.as_bytes()).unwrap();
        assert_eq!(tier, Tier::Optimised);
        assert!(s.compiled_path(&id).exists() && s.baseline_path(&id).is_none());
    }

    #[test]
    fn ensure_recompiles_from_the_original() {
        let (_d, s) = store();
        let id = s.put(WAT.as_bytes()).unwrap();
        std::fs::remove_file(s.compiled_path(&id)).unwrap();
        assert!(!s.contains(&id));
        assert!(matches!(s.load(&id), Err(ArtifactError::Missing(_))));
        s.ensure(&id).unwrap();
        assert!(s.load(&id).is_ok());
        std::fs::remove_file(s.compiled_path(&id)).unwrap();
        std::fs::remove_file(s.original_path(&id)).unwrap();
        assert!(matches!(s.ensure(&id), Err(ArtifactError::Missing(m)) if m == id));
    }
}
