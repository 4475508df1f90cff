//! Tenantry storage: everything on disk.
//!
//! - [`ArtifactStore`]: uploads compiled into content-addressed `.cwasm` artifacts (the original kept
//!   beside them), mapped at load with `Module::deserialize_file` by loader threads into a
//!   bounded LRU of modules ([`MappingBudget`] keeps every holder of mappings within the kernel's
//!   `vm.max_map_count`).
//! - [`Compiler`]: the compile threads; Cranelift never runs on a serving core.
//! - [`Index`]: a namespace's scripts as an rkyv archive (the base), validated once on open, then
//!   read in place from the mapping (format drawn in [`index`]), with the changes published since
//!   applied on top from the namespace's [`delta`]: a publish appends one checksummed record, and
//!   a merge thread folds a long delta into a new base (crash states drawn in `merge`).
//!   The base ends with a [`Summary`] (script count, latest write, artifacts) that the delta
//!   keeps current, so a start reads no script ([`summary`]).
//! - [`IndexCache`]: the bounded, process-wide set of mapped indexes that serving cores read; an
//!   idle namespace's index is mapped again by a loader thread (one mapping per namespace for
//!   good ran out of `vm.max_map_count` near 63k namespaces).
//! - [`Store`]: a data directory of artifacts and namespace indexes; publishing is
//!   write-temp, fsync, rename, fsync-dir, so a crash leaves the old generation or the new one.
//!
//! ```no_run
//! use tenantry_core::{Engine, EngineSettings};
//! use tenantry_loader::{Compiler, IndexData, ScriptEntry, ScriptLimits, Store};
//!
//! let engine = Engine::new(&EngineSettings::default()).unwrap();
//! let store = Store::open("data".as_ref(), engine).unwrap();
//! let compiler = Compiler::new(store.artifacts().clone(), 2);
//! let id = compiler.compile(std::fs::read("hello.wasm").unwrap()).unwrap();
//!
//! let mut data = IndexData::new("production", 0);
//! data.scripts.insert("hello".into(), ScriptEntry {
//!     name: "hello".into(), artifact: *id.as_bytes(), bindings: vec![], tags: vec![],
//!     limits: ScriptLimits::default(), created_on: 0, modified_on: 0, etag: "v1".into(),
//!     reuse_instances: 0, compatibility_date: String::new(), main_module: "hello.wasm".into(),
//! });
//! let index = store.publish_index("production", &data).unwrap();
//! assert!(index.get("hello").is_some());
//! ```

mod artifacts;
mod compile;
pub mod delta;
mod entry;
mod fsutil;
pub mod index;
mod indexes;
mod jobs;
pub mod js;
pub mod kv;
mod merge;
mod mmap;
mod modules;
pub mod names;
mod store;
pub mod summary;

pub use artifacts::{ArtifactError, ArtifactId, ArtifactStore, MAX_MODULE_BYTES};
pub use compile::{Compiler, DEFAULT_COMPILE_TIMEOUT};
pub use delta::DeltaRecord;
pub use entry::{artifact_id, bindings, limits};
pub use index::{
    ArchivedBindingEntry, ArchivedIndexData, ArchivedScriptEntry, BindingEntry, Index, IndexData,
    IndexError, ScriptEntry, ScriptLimits,
};
pub use indexes::{INDEX_LOADER_THREADS, IndexCache, IndexKey, IndexLoadError, VMAS_PER_INDEX};
pub use merge::MERGE_THREADS;
pub use modules::{
    AUTO_LOADED_MODULES, DEFAULT_MAX_MAP_COUNT, Loaded, Lru, MAPPING_BUDGET_PERCENT,
    MODULE_LOADER_THREADS, MappingBudget, MappingBudgetError, VMAS_PER_MODULE, VMAS_PER_SLOT,
};
pub use names::valid_name;
pub use store::{
    ARTIFACT_GC_INTERVAL, ARTIFACT_GRACE, MERGE_BACKLOG, PLATFORM_NAMESPACE, Store, StoreError,
};
pub use summary::Summary;
