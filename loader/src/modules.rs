//! The process-wide cache of mapped modules and the threads that map them.
//!
//! ```text
//!  serving core                       module cache (Mutex, held for a lookup or an insert only)
//!  load_async(id) ── hit ─────────────► Module
//!       │ miss
//!       ▼
//!  crossbeam queue ──► loader thread: file check + Module::deserialize_file (no lock held)
//!                          │ insert (LRU; evicted modules are dropped after the lock is released)
//!  oneshot ◄───────────────┘  monoio's `sync` feature wakes the waiting core
//! ```
//! Each loaded module keeps mappings of its `.cwasm` (counted in [`VMAS_PER_MODULE`]), and the
//! kernel allows a process `vm.max_map_count` of them (65530 by default): the cache is bounded
//! ([`tenantry_core::EngineSettings::max_loaded_modules`]), and [`MappingBudget`] checks at start-up
//! that every holder of modules together stays well below the kernel's limit.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tenantry_core::{Engine, EngineSettings, LoadError, Tier};
use wasmtime::Module;

use crate::artifacts::{ArtifactError, ArtifactId};
use crate::indexes::{INDEX_LOADER_THREADS, VMAS_PER_INDEX};
use crate::jobs::JobThreads;
use crate::js::JsEngine;

/// What a serving core needs to run one artifact: its module and, for a JavaScript Worker, its
/// compiled bundle (the module is then the shared engine). Cheap to clone.
#[derive(Clone)]
pub struct Loaded {
    pub module: Module,
    /// The compiled bundle, mapped from disk; `None` for a wasm Worker.
    pub js_bundle: Option<bytes::Bytes>,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("module", &self.module.name())
            .field("js_bundle_bytes", &self.js_bundle.as_ref().map(|b| b.len()))
            .finish()
    }
}

/// Threads that map modules for the serving cores. Mapping a `.cwasm` costs tens of µs of
/// system calls (a few `mmap`/`mprotect`), so two threads keep up with thousands of cold loads
/// a second while leaving the cores to serve.
pub const MODULE_LOADER_THREADS: usize = 2;

/// When mapping a module fails, the cache evicts `1 / SHED_DIVISOR` of its modules (at least one)
/// before retrying once: enough to free mappings for many loads, few enough that the hot set
/// mostly stays.
const SHED_DIVISOR: usize = 4;

/// A map bounded to `capacity` entries that evicts the least recently used one.
///
/// The recency order is a `BTreeMap` from a use counter to the key, so a use and an eviction each
/// cost O(log n): the cache's lock is held for that and nothing else.
pub struct Lru<K, V> {
    capacity: usize,
    clock: u64,
    entries: HashMap<K, (V, u64)>,
    order: BTreeMap<u64, K>,
}

impl<K: Hash + Eq + Clone, V: Clone> Lru<K, V> {
    /// An empty map of at most `capacity` entries (at least one).
    pub fn new(capacity: usize) -> Self {
        Lru {
            capacity: capacity.max(1),
            clock: 0,
            entries: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// The value of `key`, which becomes the most recently used.
    pub fn get(&mut self, key: &K) -> Option<V> {
        let now = self.tick();
        let (value, used) = self.entries.get_mut(key)?;
        self.order.remove(used);
        *used = now;
        self.order.insert(now, key.clone());
        Some(value.clone())
    }

    /// Inserts `value` unless `key` is already present, and returns what `key` now holds (the
    /// older value wins, so concurrent loads of one key converge on one copy), with the entries
    /// evicted to stay within capacity. Drop the evicted values after releasing any lock: for
    /// modules that unmaps them.
    pub fn insert(&mut self, key: K, value: V) -> (V, Vec<V>) {
        if let Some(existing) = self.get(&key) {
            return (existing, vec![value]);
        }
        let now = self.tick();
        self.order.insert(now, key.clone());
        self.entries.insert(key, (value.clone(), now));
        let over = self.entries.len().saturating_sub(self.capacity);
        (value, self.evict_oldest(over))
    }

    /// Removes the `n` least recently used entries, returning them to be dropped outside any
    /// lock.
    pub fn evict_oldest(&mut self, n: usize) -> Vec<V> {
        let mut evicted = Vec::new();
        while evicted.len() < n {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some((v, _)) = self.entries.remove(&oldest) {
                evicted.push(v);
            }
        }
        evicted
    }

    /// Removes every entry, returning them to be dropped outside any lock.
    pub fn clear(&mut self) -> Vec<V> {
        self.order.clear();
        self.entries.drain().map(|(_, (v, _))| v).collect()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether `key` is present (does not count as a use).
    pub fn contains(&self, key: &K) -> bool {
        self.entries.contains_key(key)
    }

    /// Removes `key`, returning its value to be dropped outside any lock.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let (value, used) = self.entries.remove(key)?;
        self.order.remove(&used);
        Some(value)
    }
}

/// The mapped modules and how to map more, shared by the store and its loader threads.
pub(crate) struct ModuleCache {
    dir: PathBuf,
    engine: Engine,
    /// The JavaScript engine every JavaScript Worker runs on.
    pub(crate) js: Arc<JsEngine>,
    modules: Mutex<Lru<ArtifactId, Loaded>>,
}

type Job = (
    ArtifactId,
    futures_channel::oneshot::Sender<Result<Loaded, ArtifactError>>,
);

impl ModuleCache {
    pub(crate) fn new(dir: PathBuf, engine: Engine) -> ModuleCache {
        let capacity = engine.settings().max_loaded_modules;
        ModuleCache {
            js: Arc::new(JsEngine::new(&dir, engine.clone())),
            dir,
            engine,
            modules: Mutex::new(Lru::new(capacity)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru<ArtifactId, Loaded>> {
        self.modules
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn compiled_path(&self, id: &ArtifactId) -> PathBuf {
        self.dir
            .join(format!("{id}.{}.cwasm", self.engine.compat_hash()))
    }

    /// Where the Winch artifact of `id` lives ([`Tier::Baseline`]), when the tier is on. Its
    /// own engine has its own compatibility hash, so the name differs from the optimised one's.
    pub(crate) fn baseline_path(&self, id: &ArtifactId) -> Option<PathBuf> {
        let hash = self.engine.tier_compat_hash(Tier::Baseline)?;
        Some(self.dir.join(format!("{id}.{hash}.cwasm")))
    }

    /// Forgets the mapped module of `id` once its optimised artifact is written, so that the
    /// next load maps that one (Workers holding the baseline module keep it until they go).
    /// Under the cache's lock, which [`ModuleCache::load`] holds to check for the optimised
    /// file before it caches a baseline module: no baseline module is cached after this.
    pub(crate) fn forget_baseline(&self, id: &ArtifactId) {
        let removed = self.lock().remove(id);
        drop(removed);
    }

    /// Where the compiled bundle of JavaScript Worker `id` lives: for this engine configuration
    /// and this build of the JavaScript engine (bytecode is only valid for the build that made it).
    pub(crate) fn js_compiled_path(&self, id: &ArtifactId) -> PathBuf {
        self.dir.join(format!(
            "{id}.{}.{}.jsbc",
            self.engine.compat_hash(),
            crate::js::engine_hash()
        ))
    }

    /// The module of `id` if it is mapped (a use, for the LRU order).
    pub(crate) fn cached(&self, id: &ArtifactId) -> Option<Loaded> {
        self.lock().get(id)
    }

    /// Maps `id` unless it is cached, on the calling thread. The lock is not held while mapping:
    /// two threads may map the same artifact at once, and the second insert keeps the first copy.
    /// A failed load is not cached.
    pub(crate) fn load(&self, id: &ArtifactId) -> Result<Loaded, ArtifactError> {
        if let Some(loaded) = self.cached(id) {
            return Ok(loaded);
        }
        let mut path = self.compiled_path(id);
        let mut tier = Tier::Optimised;
        if !path.exists() {
            match self.baseline_path(id) {
                Some(baseline) if baseline.exists() => {
                    path = baseline;
                    tier = Tier::Baseline;
                }
                _ => return self.load_js(id),
            }
        }
        let module = match self.map(&path, tier) {
            Err(LoadError::Io { message, .. }) => {
                // The likeliest cause is that the process ran out of mappings or memory: the
                // cache then sheds its least recently used quarter and tries once more, so that
                // a node at the limit recovers instead of failing every new Worker for good.
                let shed = {
                    let mut modules = self.lock();
                    let n = (modules.len() / SHED_DIVISOR).max(1);
                    modules.evict_oldest(n)
                };
                tracing::warn!(
                    artifact = %id,
                    evicted = shed.len(),
                    "mapping a module failed ({message}); evicted modules and retrying"
                );
                drop(shed);
                self.map(&path, tier)?
            }
            other => other?,
        };
        let loaded = Loaded {
            module,
            js_bundle: None,
        };
        let mut modules = self.lock();
        // The optimised artifact may have been written while this mapped the baseline one:
        // then that one is loaded instead (see `forget_baseline`).
        if tier == Tier::Baseline && self.compiled_path(id).exists() {
            drop(modules);
            drop(loaded);
            return self.load(id);
        }
        let (loaded, evicted) = modules.insert(*id, loaded);
        drop(modules);
        drop(evicted);
        Ok(loaded)
    }

    /// Maps the compiled bundle of JavaScript Worker `id` (one mapping) and pairs it with the
    /// engine module, which every JavaScript Worker shares.
    fn load_js(&self, id: &ArtifactId) -> Result<Loaded, ArtifactError> {
        let path = self.js_compiled_path(id);
        let file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ArtifactError::Missing(*id));
            }
            Err(source) => return Err(ArtifactError::Io { path, source }),
        };
        // SAFETY: artifact files are created complete by renaming and never modified afterwards,
        // so the mapped bytes cannot change under a reader.
        let map = unsafe { memmap2::Mmap::map(&file) }
            .map_err(|source| ArtifactError::Io { path, source })?;
        let loaded = Loaded {
            module: self.js.module()?,
            js_bundle: Some(bytes::Bytes::from_owner(map)),
        };
        let (loaded, evicted) = self.lock().insert(*id, loaded);
        drop(evicted);
        Ok(loaded)
    }

    fn map(&self, path: &std::path::Path, tier: Tier) -> Result<Module, LoadError> {
        // SAFETY: `path` holds what `Engine::precompile` (or `precompile_baseline`, for the
        // baseline tier) of an engine with this compat hash wrote (the hash is in the name), and
        // artifact files are only ever created by renaming a complete, fsynced temporary file
        // into place, never modified afterwards.
        unsafe { self.engine.load_artifact(path, tier) }
    }

    /// Forgets every mapped module (the last holder unmaps it).
    pub(crate) fn clear(&self) {
        let evicted = self.lock().clear();
        drop(evicted);
    }

    /// Whether `id` is cached (does not count as a use).
    #[cfg(test)]
    pub(crate) fn contains(&self, id: &ArtifactId) -> bool {
        self.lock().contains(id)
    }

    /// Modules in the cache.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

/// The loader threads of one store; they stop when it is dropped.
pub(crate) struct Loader(JobThreads<Job>);

impl Loader {
    pub(crate) fn start(cache: &Arc<ModuleCache>) -> std::io::Result<Loader> {
        let cache = cache.clone();
        JobThreads::start(
            MODULE_LOADER_THREADS,
            "tenantry-load",
            move |(id, reply): Job| {
                // The waiting request may be gone (its client closed): then the module is still
                // cached for the next one.
                let _ = reply.send(cache.load(&id));
            },
        )
        .map(Loader)
    }

    /// Queues a load of `id`; the receiver gets its result.
    pub(crate) fn submit(
        &self,
        id: ArtifactId,
    ) -> futures_channel::oneshot::Receiver<Result<Loaded, ArtifactError>> {
        let (tx, rx) = futures_channel::oneshot::channel();
        self.0.send((id, tx));
        rx
    }
}

/// Memory mappings (VMAs) one loaded module keeps, measured on Linux 6.18 with wasmtime 48 by
/// counting `/proc/self/maps` lines before and after loading 200 modules (3.00 each, all of
/// them of the `.cwasm`: `cargo test -p tenantry-loader measure_mappings -- --ignored
/// --nocapture`): the file is mapped once and its code section made executable, which splits
/// the mapping in three.
pub const VMAS_PER_MODULE: u64 = 3;

/// Mappings one instance slot of the pooling allocator may add once used. Measured: 1.5 per
/// warm slot holding a module's copy-on-write image (0.5 of them of the `.cwasm`; neighbouring
/// slots' mappings merge); counted as the most it can split into: its linear memory (resident
/// part, image, reservation), its table, and its async stack with a guard page.
pub const VMAS_PER_SLOT: u64 = 6;

/// The share of `vm.max_map_count` that modules, instance slots and indexes may plan to use: the
/// rest is for the allocator's large blocks, thread stacks, the io_uring rings and libraries,
/// none of which may be starved (a failing `mmap` inside `malloc` aborts the process). Measured
/// (docs/design.md): an idle node has ~100 such mappings beside its slots' stacks, so the 20%
/// left (13k at the kernel's default) is a wide margin; with 10 000 modules mapped a node had
/// 34.6k mappings in all, of which 30 000 were the modules'.
pub const MAPPING_BUDGET_PERCENT: u64 = 80;

/// The process-wide module cache's size when `[engine] max_loaded_modules` is not configured
/// ([`MappingBudget::auto_loaded_modules`]): what the mapping budget leaves once everything else
/// is counted, but never less than the fixed default of earlier versions (2048; on a kernel limit
/// too low for it the per-core pools shrink, as with any configured size) nor more than 16 384
/// (each mapped module also holds memory: its touched pages and wasmtime's metadata, ~21 KB for
/// a small module, docs/performance.md).
pub const AUTO_LOADED_MODULES: std::ops::RangeInclusive<usize> = 2048..=16_384;

/// Where the kernel states the limit on mappings per process.
pub const MAX_MAP_COUNT_PATH: &str = "/proc/sys/vm/max_map_count";

/// The kernel's default `vm.max_map_count`, assumed when it cannot be read.
pub const DEFAULT_MAX_MAP_COUNT: u64 = 65_530;

/// How many modules can be mapped at once, and what that costs in mappings.
///
/// A module is kept mapped by every holder of its `Module`:
/// - the process-wide cache, at most `max_loaded_modules`;
/// - each core's `WorkerPool`, at most `workers_per_core` Workers per core, which may have been
///   evicted from the process-wide cache meanwhile;
/// - an invocation in flight on a Worker its core has evicted, which holds an instance slot:
///   at most `max_instances`;
/// - warm pool slots hold copy-on-write images of live modules only (dropping a module purges
///   them), so they are counted with the slots.
///
/// - a loader thread, for a moment, one module beyond the cache's bound: at most
///   [`MODULE_LOADER_THREADS`].
///
/// So at most `max_loaded_modules + loader threads + cores × workers_per_core + max_instances`
/// modules are mapped,
/// each with [`VMAS_PER_MODULE`] mappings, beside `max_instances ×` [`VMAS_PER_SLOT`].
///
/// Namespace indexes are counted here too, one mapping each ([`crate::VMAS_PER_INDEX`]): the
/// index cache holds at most `max_mapped_indexes`; an index loader thread and each serving core
/// hold one more for a moment (the one just opened, the one a lookup reads).
/// [`MappingBudget::check`] reserves those first and gives the per-core pools what is left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MappingBudget {
    /// The most modules mapped at once.
    pub modules: u64,
    /// The most namespace indexes mapped at once.
    pub indexes: u64,
    /// The most mappings modules and slots may take.
    pub mappings: u64,
    /// What the kernel allows the whole process.
    pub max_map_count: u64,
}

/// Why the configured pools cannot fit the kernel's mapping limit.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "[engine] max_loaded_modules = {max_loaded_modules}, max_instances = {max_instances} and \
     max_mapped_indexes = {max_mapped_indexes} may need {mappings} memory mappings, more than {MAPPING_BUDGET_PERCENT}% of vm.max_map_count \
     ({max_map_count}): lower them, or raise vm.max_map_count (sysctl -w vm.max_map_count=…)"
)]
pub struct MappingBudgetError {
    pub max_loaded_modules: usize,
    pub max_instances: u32,
    pub max_mapped_indexes: usize,
    pub mappings: u64,
    pub max_map_count: u64,
}

impl MappingBudget {
    /// The kernel's `vm.max_map_count`, or its default if it cannot be read.
    pub fn kernel_max_map_count() -> u64 {
        std::fs::read_to_string(MAX_MAP_COUNT_PATH)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(DEFAULT_MAX_MAP_COUNT)
    }

    /// The process-wide module cache's size for `settings` (whose own `max_loaded_modules` is
    /// ignored) with `cores` serving cores keeping `workers_per_core` Workers each: as many
    /// modules as fill the mapping budget beside the pools, the slots and the indexes, within
    /// [`AUTO_LOADED_MODULES`]. At the kernel's default limit (65 530) and the other defaults:
    /// ~11.3k on one core, ~10.3k on two, so a core can take turns over 10 000 distinct Workers
    /// without mapping one again (docs/performance.md); [`MappingBudget::check`] still decides
    /// the per-core pools.
    pub fn auto_loaded_modules(
        settings: &EngineSettings,
        cores: usize,
        workers_per_core: usize,
        max_map_count: u64,
    ) -> usize {
        let planned = Planned::of(settings, cores, 0);
        let pools = planned.cores * workers_per_core as u64 * VMAS_PER_MODULE;
        let room =
            allowed(max_map_count).saturating_sub(planned.mappings + pools) / VMAS_PER_MODULE;
        let room = usize::try_from(room).unwrap_or(usize::MAX);
        room.clamp(*AUTO_LOADED_MODULES.start(), *AUTO_LOADED_MODULES.end())
    }

    /// Checks `settings` with `cores` serving cores against `max_map_count`. Returns the
    /// per-core Worker capacity to use: `workers_per_core`, or less (the caller warns) when
    /// the per-core pools would not fit beside the process-wide cache and the slots. Fails when
    /// even one Worker per core does not fit.
    pub fn check(
        settings: &EngineSettings,
        cores: usize,
        workers_per_core: usize,
        max_map_count: u64,
    ) -> Result<(MappingBudget, usize), MappingBudgetError> {
        let planned = Planned::of(settings, cores, settings.max_loaded_modules);
        let per_core_room = allowed(max_map_count).saturating_sub(planned.mappings)
            / VMAS_PER_MODULE
            / planned.cores;
        if per_core_room == 0 {
            return Err(MappingBudgetError {
                max_loaded_modules: settings.max_loaded_modules,
                max_instances: settings.max_instances,
                max_mapped_indexes: settings.max_mapped_indexes,
                mappings: planned.mappings + planned.cores * VMAS_PER_MODULE,
                max_map_count,
            });
        }
        let workers = (workers_per_core as u64).min(per_core_room).max(1);
        let modules = planned.modules + planned.cores * workers;
        Ok((
            MappingBudget {
                modules,
                indexes: planned.indexes,
                mappings: planned.mappings + planned.cores * workers * VMAS_PER_MODULE,
                max_map_count,
            },
            workers as usize,
        ))
    }
}

/// The mappings a node may take.
fn allowed(max_map_count: u64) -> u64 {
    max_map_count * MAPPING_BUDGET_PERCENT / 100
}

/// What the node maps whatever its per-core pools hold: the process-wide cache, the modules
/// loader threads and invocations in flight hold beyond it, the instance slots and the indexes.
struct Planned {
    /// Modules mapped beside the per-core pools.
    modules: u64,
    indexes: u64,
    /// Their mappings and the slots'.
    mappings: u64,
    /// Serving cores, at least one.
    cores: u64,
}

impl Planned {
    fn of(settings: &EngineSettings, cores: usize, loaded_modules: usize) -> Planned {
        // The baseline tier's pool has slots of its own (EngineSettings::baseline_slots).
        let slots = u64::from(settings.max_instances) + u64::from(settings.baseline_slots());
        let cores = cores.max(1) as u64;
        // Each loader thread may hold one module it just mapped beyond the cache's bound (a
        // duplicate of one another core loaded, or the one whose insert evicts another) until
        // it drops it.
        let modules = loaded_modules as u64 + MODULE_LOADER_THREADS as u64 + slots;
        // A merge thread maps the base it wrote before the cache takes it.
        let indexes = settings.max_mapped_indexes as u64
            + INDEX_LOADER_THREADS as u64
            + crate::merge::MERGE_THREADS as u64
            + cores;
        Planned {
            modules,
            indexes,
            mappings: modules * VMAS_PER_MODULE + slots * VMAS_PER_SLOT + indexes * VMAS_PER_INDEX,
            cores,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_evicts_the_least_recently_used() {
        let mut lru = Lru::new(2);
        assert_eq!(lru.insert("a", 1), (1, vec![]));
        assert_eq!(lru.insert("b", 2), (2, vec![]));
        assert_eq!(lru.get(&"a"), Some(1)); // `b` is now the least recently used
        assert_eq!(lru.insert("c", 3), (3, vec![2]));
        assert!(lru.contains(&"a") && lru.contains(&"c") && !lru.contains(&"b"));
        assert_eq!(lru.get(&"b"), None);
        assert_eq!(lru.insert("b", 4), (4, vec![1]));
        assert_eq!(lru.len(), 2);
        assert_eq!(lru.capacity(), 2);
        assert_eq!(lru.evict_oldest(1), vec![3]); // `c`, older than the new `b`
        assert_eq!(lru.evict_oldest(5), vec![4]);
        assert!(lru.is_empty());
    }

    #[test]
    fn lru_keeps_the_first_copy_of_a_key() {
        let mut lru = Lru::new(2);
        lru.insert("a", 1);
        // A second load of the same key (another core) converges on the cached copy, and the
        // duplicate is handed back to be dropped.
        assert_eq!(lru.insert("a", 9), (1, vec![9]));
        assert_eq!(lru.len(), 1);
    }

    #[test]
    fn lru_stays_bounded_under_many_keys() {
        let mut lru = Lru::new(16);
        let mut evicted = 0;
        for i in 0..10_000u32 {
            evicted += lru.insert(i, i).1.len();
            // Keep one key hot: it is never evicted.
            assert_eq!(lru.get(&0), Some(0));
            assert!(lru.len() <= 16);
        }
        assert_eq!(evicted, 10_000 - 16);
        assert_eq!(lru.order.len(), lru.len());
        assert_eq!(lru.clear().len(), 16);
        assert!(lru.is_empty());
    }

    #[test]
    fn a_zero_capacity_still_holds_one() {
        let mut lru = Lru::new(0);
        lru.insert(1, 1);
        assert_eq!(lru.get(&1), Some(1));
    }

    fn settings(max_loaded_modules: usize, max_instances: u32) -> EngineSettings {
        EngineSettings {
            max_loaded_modules,
            max_instances,
            max_mapped_indexes: 997,
            baseline_compile: false,
            ..Default::default()
        }
    }

    #[test]
    fn the_defaults_fit_the_kernel_default_on_many_cores() {
        let defaults = EngineSettings::default();
        for cores in [1, 2, 16, 64, 256] {
            let (budget, workers) =
                MappingBudget::check(&defaults, cores, 1000, DEFAULT_MAX_MAP_COUNT).unwrap();
            assert!(workers >= 1);
            assert!(budget.mappings <= allowed(DEFAULT_MAX_MAP_COUNT));
        }
    }

    #[test]
    fn per_core_pools_are_clamped_and_an_impossible_budget_is_refused() {
        // 1000 modules + 2 on loader threads + 100 slots: 1102 × 3 + 100 × 6 = 3906, and
        // 997 indexes + 1 on the loader thread + 1 on the merge thread + 2 cores' = 1001 of the
        // 10000 allowed (80% of 12 500), leaving room for 5093 / 3 / 2 = 848 Workers per core.
        let (budget, workers) =
            MappingBudget::check(&settings(1000, 100), 2, 5000, 12_500).unwrap();
        assert_eq!(workers, 848);
        assert_eq!(budget.modules, 1102 + 2 * 848);
        assert_eq!(budget.indexes, 1001);
        assert!(budget.mappings <= 10_000);
        let (_, workers) = MappingBudget::check(&settings(1000, 100), 2, 10, 12_500).unwrap();
        assert_eq!(workers, 10);
        // The baseline tier's 25 slots count as slots: 1127 × 3 + 125 × 6 + 1001 leaves
        // 4868 / 3 / 2 = 811 per core.
        let tiers = EngineSettings {
            baseline_compile: true,
            ..settings(1000, 100)
        };
        let (budget, workers) = MappingBudget::check(&tiers, 2, 5000, 12_500).unwrap();
        assert_eq!(workers, 811);
        assert_eq!(budget.modules, 1127 + 2 * 811);

        let e = MappingBudget::check(&settings(60_000, 1000), 2, 10, 65_530).unwrap_err();
        assert!(e.to_string().contains("vm.max_map_count (65530)"), "{e}");
        // Indexes alone can exhaust the budget too, and the error names their setting.
        let many_indexes = EngineSettings {
            max_mapped_indexes: 60_000,
            ..settings(100, 100)
        };
        let e = MappingBudget::check(&many_indexes, 2, 10, 65_530).unwrap_err();
        assert!(e.to_string().contains("max_mapped_indexes = 60000"), "{e}");
    }

    #[test]
    fn an_unconfigured_module_cache_fills_the_mapping_budget_beside_the_pools() {
        let defaults = EngineSettings::default();
        // The defaults at the kernel's default limit on one core: 80% of 65 530 = 52 424, less
        // (1250 slots + 2) × 3 + 1250 × 6 + (4096 + 1 + 1 + 1) indexes + 1000 Workers × 3
        // = 18 355 leaves 34 069 / 3 = 11 356 modules; on two cores 1000 fewer.
        let one = MappingBudget::auto_loaded_modules(&defaults, 1, 1000, DEFAULT_MAX_MAP_COUNT);
        assert_eq!(one, 11_356);
        let two = MappingBudget::auto_loaded_modules(&defaults, 2, 1000, DEFAULT_MAX_MAP_COUNT);
        assert_eq!(two, 10_356);
        // Whatever it picks passes the check with every core's pool whole.
        for (cores, loaded) in [(1, one), (2, two)] {
            let sized = EngineSettings {
                max_loaded_modules: loaded,
                ..defaults.clone()
            };
            let (budget, workers) =
                MappingBudget::check(&sized, cores, 1000, DEFAULT_MAX_MAP_COUNT).unwrap();
            assert_eq!(workers, 1000);
            assert!(budget.mappings <= allowed(DEFAULT_MAX_MAP_COUNT));
        }
        // Many cores: never below the old fixed default (the pools shrink instead) ...
        let many = MappingBudget::auto_loaded_modules(&defaults, 64, 1000, DEFAULT_MAX_MAP_COUNT);
        assert_eq!(many, *AUTO_LOADED_MODULES.start());
        let sized = EngineSettings {
            max_loaded_modules: many,
            ..defaults.clone()
        };
        let (_, workers) = MappingBudget::check(&sized, 64, 1000, DEFAULT_MAX_MAP_COUNT).unwrap();
        assert!((1..1000).contains(&workers), "{workers}");
        // ... and a kernel that allows a million mappings does not get a million modules.
        let big = MappingBudget::auto_loaded_modules(&defaults, 2, 1000, 1 << 20);
        assert_eq!(big, *AUTO_LOADED_MODULES.end());
    }
}

#[cfg(test)]
pub(crate) mod mapping_tests {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};

    use tenantry_core::{Bindings, Engine, EngineSettings, Limits, Worker, WorkerSpec};

    use crate::ArtifactStore;

    /// A distinct Worker module per `i`, with a data segment (so a copy-on-write memory image).
    fn wat(i: usize) -> String {
        let page = "x".repeat(4096);
        format!(
            r#"(module (memory (export "memory") 1) (data (i32.const 0) "module {i}")
                 (data (i32.const 8192) "{page}")
                 (func (export "tenantry_fetch") (result i32) i32.const {i}))"#
        )
    }

    fn maps() -> Vec<String> {
        std::fs::read_to_string("/proc/self/maps")
            .expect("reading /proc/self/maps")
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Mappings of files under `dir` (the `.cwasm` artifacts of one store).
    fn mappings_under(dir: &std::path::Path) -> usize {
        let dir = dir.display().to_string();
        maps().iter().filter(|l| l.contains(&dir)).count()
    }

    fn store(max_loaded_modules: usize, max_instances: u32) -> (tempfile::TempDir, ArtifactStore) {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::new(&EngineSettings {
            max_instances,
            max_loaded_modules,
            ..Default::default()
        })
        .unwrap();
        let s = ArtifactStore::open(&dir.path().join("artifacts"), engine).unwrap();
        (dir, s)
    }

    /// Polls `future` on this thread, parking until a loader thread wakes it.
    pub(crate) fn block_on<F: std::future::Future>(future: F) -> F::Output {
        struct Unpark(std::thread::Thread);
        impl Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        let mut future = std::pin::pin!(future);
        loop {
            if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
                return v;
            }
            std::thread::park();
        }
    }

    #[test]
    fn evicted_modules_are_unmapped_and_the_cache_stays_bounded() {
        const BOUND: usize = 8;
        let (dir, s) = store(BOUND, 4);
        let ids: Vec<_> = (0..40).map(|i| s.put(wat(i).as_bytes()).unwrap()).collect();
        let mut most = 0;
        for id in &ids {
            let module = block_on(s.load_async(id)).unwrap();
            assert!(module.module.get_export("tenantry_fetch").is_some());
            drop(module);
            assert!(s.loaded_modules() <= BOUND);
            most = most.max(mappings_under(dir.path()));
        }
        assert_eq!(s.loaded_modules(), BOUND);
        assert!(
            most <= BOUND * super::VMAS_PER_MODULE as usize,
            "{most} mappings of artifacts with {BOUND} modules cached"
        );
        s.clear_cache();
        assert_eq!(mappings_under(dir.path()), 0, "cleared modules stay mapped");
        // Loading again after eviction works (and maps again).
        assert!(block_on(s.load_async(&ids[0])).is_ok());
        assert!(mappings_under(dir.path()) > 0);
    }

    #[test]
    fn a_failed_mapping_sheds_old_modules_and_is_not_cached() {
        let (_dir, s) = store(8, 4);
        let ids: Vec<_> = (0..9).map(|i| s.put(wat(i).as_bytes()).unwrap()).collect();
        for id in &ids[..8] {
            s.load(id).unwrap();
        }
        assert_eq!(s.loaded_modules(), 8);
        // An artifact that cannot be mapped (here: truncated) fails to load like one the
        // kernel refuses to map; the cache frees a quarter of its mappings for the retry.
        let broken = s.compiled_path(&ids[8]);
        let bytes = std::fs::read(&broken).unwrap();
        std::fs::write(&broken, &bytes[..bytes.len() / 3]).unwrap();
        let e = block_on(s.load_async(&ids[8])).unwrap_err();
        assert!(matches!(e, crate::ArtifactError::Load(_)), "{e}");
        assert_eq!(s.loaded_modules(), 6);
        // The hottest modules stayed; the failure was not cached.
        assert!(s.inner_cached(&ids[7]));
        std::fs::write(&broken, &bytes).unwrap();
        assert!(block_on(s.load_async(&ids[8])).is_ok());
        assert_eq!(s.loaded_modules(), 7);
    }

    #[test]
    fn a_failed_load_is_reported_and_not_cached() {
        let (_dir, s) = store(4, 4);
        let id = s.put(wat(1).as_bytes()).unwrap();
        std::fs::remove_file(s.compiled_path(&id)).unwrap();
        let e = block_on(s.load_async(&id)).unwrap_err();
        assert!(
            matches!(e, crate::ArtifactError::Missing(m) if m == id),
            "{e}"
        );
        assert_eq!(s.loaded_modules(), 0);
        s.ensure(&id).unwrap();
        assert!(block_on(s.load_async(&id)).is_ok());
    }

    /// Prints the mappings a loaded module, and a Worker instantiated from it, add: the figures
    /// behind `VMAS_PER_MODULE` and `VMAS_PER_SLOT`. Run with
    /// `cargo test -p tenantry-loader measure_mappings -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, not a check"]
    fn measure_mappings_per_module() {
        const N: usize = 200;
        let (dir, s) = store(N, N as u32);
        let ids: Vec<_> = (0..N).map(|i| s.put(wat(i).as_bytes()).unwrap()).collect();
        let before = maps().len();
        let modules: Vec<_> = ids.iter().map(|id| s.load(id).unwrap()).collect();
        let loaded = maps().len();
        let files = mappings_under(dir.path());
        let workers: Vec<_> = modules
            .iter()
            .enumerate()
            .map(|(i, m)| {
                Worker::new(
                    s.engine(),
                    WorkerSpec {
                        name: format!("m/{i}"),
                        module: m.module.clone(),
                        bindings: Bindings::default(),
                        limits: Limits::DEFAULT,
                        reuse_instances: 0,
                        js_bundle: None,
                    },
                )
                .unwrap()
            })
            .collect();
        let warm = maps().len();
        let warm_files = mappings_under(dir.path());
        println!(
            "per module: {:.2} mappings ({:.2} of the .cwasm); per warm slot with its image: \
             {:.2} ({:.2} of the .cwasm)",
            (loaded - before) as f64 / N as f64,
            files as f64 / N as f64,
            (warm - loaded) as f64 / N as f64,
            (warm_files - files) as f64 / N as f64,
        );
        drop(workers);
        drop(modules);
        s.clear_cache();
        println!(
            "after dropping everything: {} mappings more than before, {} of artifacts",
            maps().len() as i64 - before as i64,
            mappings_under(dir.path())
        );
    }
}
