//! The process-wide cache of mapped namespace indexes, and the thread that maps them.
//!
//! ```text
//!  snapshot (per generation, O(1) to clone)      index cache (Mutex, held for a lookup only)
//!  namespaces: name ──► IndexKey ─── hit ───────► Index (one mapping of namespaces/<ns>/index)
//!                                   │ miss (an idle namespace was evicted)
//!                                   ▼
//!  crossbeam queue ──► index loader thread: Index::open = map + header + CRC + bytecheck
//!                          │ insert (LRU; evicted indexes are dropped after the lock is released)
//!  oneshot ◄───────────────┘  monoio's `sync` feature wakes the waiting core
//! ```
//! Every mapped index costs one kernel mapping (VMA), and the kernel allows a process
//! `vm.max_map_count` of them (65530 by default): holding one per namespace for good stopped a node
//! near 63k namespaces (issue 13). So the cache keeps at most
//! [`tenantry_core::EngineSettings::max_mapped_indexes`] of them, counted in
//! [`crate::MappingBudget`]. A publish inserts the index it just wrote, so the namespace a `200`
//! announced is mapped for every core at once; only a namespace that stayed idle long enough to
//! be evicted is mapped again, off the serving threads.
//!
//! Keys name one generation of one *creation* of a namespace ([`IndexKey`]): a namespace deleted
//! and created again restarts at generation 1, and must not be served the old one's index.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use sha2::{Digest, Sha256};

use crate::index::{Index, IndexError};
use crate::jobs::JobThreads;

/// Threads that map indexes for the serving cores. Opening an index maps it and validates it
/// once (5 ms for 100k scripts, `--bench index`; ~17 µs for one script in a debug build,
/// `measure_small_index_open` below): one thread keeps up with the rare misses
/// of idle namespaces.
pub const INDEX_LOADER_THREADS: usize = 1;

/// Memory mappings one open index keeps: the file is mapped once, read-only.
pub const VMAS_PER_INDEX: u64 = 1;

/// One generation of one creation of a namespace's index: what a snapshot names per namespace,
/// and the key of the index cache. Cheap to clone (the name is shared).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IndexKey {
    namespace: Arc<str>,
    generation: u64,
    /// The first 16 bytes of the SHA-256 of the namespace's id, which is random per creation.
    creation: [u8; 16],
}

impl IndexKey {
    /// The key of an open index.
    pub fn of(index: &Index) -> IndexKey {
        let digest = Sha256::digest(index.namespace_id().as_bytes());
        let mut creation = [0u8; 16];
        creation.copy_from_slice(&digest[..16]);
        IndexKey {
            namespace: Arc::from(index.namespace()),
            generation: index.generation(),
            creation,
        }
    }

    /// The key of generation `generation` of the same namespace creation.
    pub(crate) fn at(&self, generation: u64) -> IndexKey {
        IndexKey {
            generation,
            ..self.clone()
        }
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }
}

/// Why an index could not be had for a serving core.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IndexLoadError {
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The index loader thread could not be started or has stopped.
    #[error("the index loader is not running: {0}")]
    LoaderStopped(String),
}

/// The bounded, process-wide set of mapped indexes. Cheap to clone; the loader thread starts on
/// the first miss and stops when the last clone is dropped.
#[derive(Clone)]
pub struct IndexCache {
    inner: Arc<Inner>,
}

struct Inner {
    mapped: Arc<Mapped>,
    loader: OnceLock<Result<Loader, String>>,
}

/// What the loader thread shares with the cache's users.
struct Mapped {
    /// `<data dir>/namespaces`.
    dir: PathBuf,
    indexes: Mutex<lru::LruCache<IndexKey, Index>>,
}

type Reply = futures_channel::oneshot::Sender<Result<Option<Index>, IndexLoadError>>;

impl Mapped {
    fn lock(&self) -> std::sync::MutexGuard<'_, lru::LruCache<IndexKey, Index>> {
        self.indexes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn insert(&self, index: Index) -> IndexKey {
        let key = IndexKey::of(&index);
        // Dropped after the lock is released: the last holder of an index unmaps it.
        let evicted = self.lock().push(key.clone(), index);
        drop(evicted);
        key
    }

    /// The current index of the namespace `key` names, mapped on this thread unless `key` is
    /// cached. The file may hold a later generation than `key` (a publish raced the caller's
    /// snapshot): that one is cached and returned, as the caller's next snapshot would name it.
    /// `None`: the namespace is gone.
    fn open(&self, key: &IndexKey) -> Result<Option<Index>, IndexError> {
        if let Some(index) = self.lock().get(key) {
            return Ok(Some(index.clone()));
        }
        let path = self.dir.join(key.namespace()).join("index");
        match Index::open(&path, None) {
            Ok(index) => {
                self.insert(index.clone());
                Ok(Some(index))
            }
            Err(IndexError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

impl IndexCache {
    /// An empty cache of at most `capacity` (at least one) indexes of the namespaces under
    /// `namespaces_dir`.
    pub fn new(namespaces_dir: &Path, capacity: usize) -> IndexCache {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        IndexCache {
            inner: Arc::new(Inner {
                mapped: Arc::new(Mapped {
                    dir: namespaces_dir.to_path_buf(),
                    indexes: Mutex::new(lru::LruCache::new(capacity)),
                }),
                loader: OnceLock::new(),
            }),
        }
    }

    /// Caches `index` (a freshly published generation) as the most recently used, and returns
    /// its key. The least recently used index beyond the bound is dropped.
    pub fn insert(&self, index: Index) -> IndexKey {
        self.inner.mapped.insert(index)
    }

    /// The index `key` names if it is mapped (a use, for the LRU order).
    pub fn cached(&self, key: &IndexKey) -> Option<Index> {
        self.inner.mapped.lock().get(key).cloned()
    }

    /// Forgets `key` (a generation a publish replaced, or a deleted namespace's); whoever still
    /// holds it keeps it mapped until they drop it.
    pub fn remove(&self, key: &IndexKey) {
        let removed = self.inner.mapped.lock().pop(key);
        drop(removed);
    }

    /// The index `key` names, or its namespace's current one if a publish replaced it meanwhile
    /// (`None`: the namespace is gone): at once if it is mapped, else mapped and validated by
    /// the loader thread while the caller's core serves other requests. A failed open is not
    /// cached; the next request tries again.
    pub fn load_async(
        &self,
        key: &IndexKey,
    ) -> impl Future<Output = Result<Option<Index>, IndexLoadError>> + use<> {
        let queued = match self.cached(key) {
            Some(index) => Ok(index),
            None => Err(self.loader().map(|loader| loader.submit(key.clone()))),
        };
        async move {
            match queued {
                Ok(index) => Ok(Some(index)),
                Err(Ok(reply)) => reply.await.unwrap_or_else(|_| {
                    Err(IndexLoadError::LoaderStopped(
                        "the index loader thread died".into(),
                    ))
                }),
                Err(Err(e)) => Err(e),
            }
        }
    }

    /// The index `key` names, opened on the calling thread on a miss (tests and tools; serving
    /// cores use [`IndexCache::load_async`]).
    pub fn load(&self, key: &IndexKey) -> Result<Option<Index>, IndexError> {
        self.inner.mapped.open(key)
    }

    /// Indexes in the cache.
    pub fn len(&self) -> usize {
        self.inner.mapped.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most indexes the cache keeps.
    pub fn capacity(&self) -> usize {
        self.inner.mapped.lock().cap().get()
    }

    fn loader(&self) -> Result<&Loader, IndexLoadError> {
        self.inner
            .loader
            .get_or_init(|| Loader::start(&self.inner.mapped).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| IndexLoadError::LoaderStopped(e.clone()))
    }
}

/// The index loader threads of one cache; they stop when it is dropped.
struct Loader(JobThreads<(IndexKey, Reply)>);

impl Loader {
    fn start(mapped: &Arc<Mapped>) -> std::io::Result<Loader> {
        let mapped = mapped.clone();
        let open = move |(key, reply): (IndexKey, Reply)| {
            let opened = mapped.open(&key).map_err(IndexLoadError::from);
            if let Err(e) = &opened {
                tracing::error!(
                    namespace = key.namespace(),
                    generation = key.generation(),
                    "opening a namespace's index failed: {e}"
                );
            }
            // The waiting request may be gone: the index stays cached for the next one.
            let _ = reply.send(opened);
        };
        JobThreads::start(INDEX_LOADER_THREADS, "tenantry-index", open).map(Loader)
    }

    fn submit(
        &self,
        key: IndexKey,
    ) -> futures_channel::oneshot::Receiver<Result<Option<Index>, IndexLoadError>> {
        let (tx, rx) = futures_channel::oneshot::channel();
        self.0.send((key, tx));
        rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{IndexData, publish};
    use crate::modules::mapping_tests::block_on;

    const HASH: &str = "0123456789abcdef";

    /// Writes generation `generation` of namespace `ns` with one script named after it, as a
    /// publish does, and returns it opened.
    fn write(dir: &Path, ns: &str, data: &IndexData, generation: u64) -> Index {
        let path = dir.join(ns).join("index");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        publish(&path, data, generation, HASH).unwrap();
        Index::open(&path, None).unwrap()
    }

    fn data(ns: &str) -> IndexData {
        let mut data = IndexData::new(ns, 1);
        let mut entry = crate::index::tests::entry(ns, 7);
        entry.etag = format!("etag-of-{ns}");
        data.scripts.insert(ns.to_string(), entry);
        data
    }

    /// Mappings of this cache's index files (`(deleted)` ones too: a replaced file stays
    /// mapped while held).
    fn mapped_under(dir: &Path) -> usize {
        let dir = dir.display().to_string();
        std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .lines()
            .filter(|l| l.contains(&dir))
            .count()
    }

    #[test]
    fn more_namespaces_than_the_bound_are_all_served_within_it() {
        const BOUND: usize = 4;
        const NAMESPACES: usize = 25;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let cache = IndexCache::new(dir, BOUND);
        let names: Vec<String> = (0..NAMESPACES).map(|i| format!("ns-{i:02}")).collect();
        // As at start and at each create: publish, insert, drop.
        let keys: Vec<IndexKey> = names
            .iter()
            .map(|ns| cache.insert(write(dir, ns, &data(ns), 1)))
            .collect();
        assert_eq!(cache.len(), BOUND);
        assert!(mapped_under(dir) <= BOUND);
        let mut most = 0;
        let order: Vec<usize> = (0..NAMESPACES)
            .chain((0..NAMESPACES).rev())
            .chain((0..NAMESPACES).map(|i| i * 7 % NAMESPACES))
            .collect();
        for i in order {
            let index = block_on(cache.load_async(&keys[i]))
                .unwrap()
                .expect("the namespace exists");
            assert_eq!(index.namespace(), names[i]);
            assert_eq!(IndexKey::of(&index), keys[i]);
            let entry = index.get(&names[i]).expect("its script");
            assert_eq!(entry.etag.as_str(), format!("etag-of-{}", names[i]));
            drop(index);
            assert!(cache.len() <= BOUND);
            most = most.max(mapped_under(dir));
        }
        assert!(
            most <= BOUND,
            "{most} index mappings with a bound of {BOUND}"
        );
        assert_eq!(cache.capacity(), BOUND);
    }

    #[test]
    fn a_hot_namespace_stays_mapped() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = IndexCache::new(tmp.path(), 2);
        let hot = cache.insert(write(tmp.path(), "hot", &data("hot"), 1));
        for i in 0..10 {
            let ns = format!("cold-{i}");
            cache.insert(write(tmp.path(), &ns, &data(&ns), 1));
            assert!(cache.cached(&hot).is_some(), "the hot index was evicted");
        }
    }

    #[test]
    fn a_recreated_namespace_is_not_served_its_old_index() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = IndexCache::new(tmp.path(), 8);
        let old = cache.insert(write(tmp.path(), "a", &data("a"), 1));
        // Deleted and created again: generation 1 again, another creation.
        let again = data("a");
        let new = IndexKey::of(&write(tmp.path(), "a", &again, 1));
        assert_eq!(old.generation(), new.generation());
        assert_ne!(old, new);
        let index = cache.load(&new).unwrap().unwrap();
        assert_eq!(index.namespace_id(), again.namespace_id);
        assert_eq!(IndexKey::of(&index), new);
    }

    #[test]
    fn a_generation_replaced_meanwhile_yields_the_current_one() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = IndexCache::new(tmp.path(), 8);
        let d = data("a");
        let first = cache.insert(write(tmp.path(), "a", &d, 1));
        let second = IndexKey::of(&write(tmp.path(), "a", &d, 2));
        cache.remove(&first);
        // A core still on the snapshot naming generation 1 gets the file's generation 2.
        let index = block_on(cache.load_async(&first)).unwrap().unwrap();
        assert_eq!(index.generation(), 2);
        assert!(cache.cached(&second).is_some());
        assert!(cache.cached(&first).is_none());
    }

    #[test]
    fn a_missing_or_corrupt_index_is_reported_and_not_cached() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = IndexCache::new(tmp.path(), 8);
        let key = IndexKey::of(&write(tmp.path(), "a", &data("a"), 1));
        let path = tmp.path().join("a").join("index");
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        let e = block_on(cache.load_async(&key)).unwrap_err();
        assert!(
            matches!(e, IndexLoadError::Index(IndexError::Truncated { .. })),
            "{e}"
        );
        assert!(cache.is_empty());
        std::fs::write(&path, &bytes).unwrap();
        assert!(block_on(cache.load_async(&key)).unwrap().is_some());
        assert_eq!(cache.len(), 1);
        // A deleted namespace is no error: it is gone.
        cache.remove(&key);
        std::fs::remove_dir_all(tmp.path().join("a")).unwrap();
        assert!(block_on(cache.load_async(&key)).unwrap().is_none());
    }

    /// What a miss costs the loader thread for a small namespace (one script): the figure behind
    /// the ~17 µs quoted in `max_mapped_indexes`'s doc. Run with
    /// `cargo test -p tenantry-loader measure_small_index_open -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, not a check"]
    fn measure_small_index_open() {
        const N: u32 = 2000;
        let tmp = tempfile::tempdir().unwrap();
        let key = IndexKey::of(&write(tmp.path(), "a", &data("a"), 1));
        let cache = IndexCache::new(tmp.path(), 1);
        let start = std::time::Instant::now();
        for _ in 0..N {
            cache.remove(&key);
            assert!(cache.load(&key).unwrap().is_some());
        }
        println!(
            "open + validate + insert of a one-script index: {:.1} µs",
            start.elapsed().as_secs_f64() * 1e6 / f64::from(N)
        );
    }
}
