//! A data directory: artifacts plus one index per namespace.
//!
//! ```text
//! <root>/artifacts/…                 see crate::artifacts
//! <root>/namespaces/<ns>/index       the base, see crate::index
//! <root>/namespaces/<ns>/delta       changes since the base, see crate::delta
//! <root>/namespaces/.<ns>.tmp-<pid>-<n>/index
//!                                    a namespace being created (renamed to <ns> when its index
//!                                    is durable); removed at open if a crash left it
//! ```
//! One process owns a data directory; publishes within it are serialised by a mutex. Artifacts
//! that no index names any more are kept (garbage collection is future work).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tenantry_core::Engine;

use crate::artifacts::{ArtifactError, ArtifactId, ArtifactStore};
use crate::delta::{self, DeltaRecord, Record, delta_path};
use crate::fsutil::{is_temporary, sync_dir, temporary_name};
use crate::index::{Index, IndexData, IndexError, publish, publish_since};
use crate::indexes::IndexCache;
use crate::merge::{MergeJob, Merger, Publishing, merge};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("invalid namespace name `{name}`: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("namespace `{0}` already exists")]
    NamespaceExists(String),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error(
        "namespace `{namespace}` changed during this publish (generation {found}, expected {expected})"
    )]
    Stale {
        namespace: String,
        expected: u64,
        found: u64,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub use tenantry_core::nested::PLATFORM_NAMESPACE;

use crate::names::valid_name;

/// A data directory opened for one engine. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    artifacts: ArtifactStore,
    engine: Engine,
    publishing: Arc<Publishing>,
    /// Started at the first merge.
    merger: OnceLock<Result<Merger, String>>,
    /// The mapped indexes the data plane reads, at most `max_mapped_indexes` of them.
    indexes: IndexCache,
}

impl Store {
    /// Opens (creating if needed) the data directory at `root`.
    pub fn open(root: &Path, engine: Engine) -> Result<Store, StoreError> {
        let namespaces = root.join("namespaces");
        std::fs::create_dir_all(&namespaces).map_err(io(&namespaces))?;
        let artifacts_dir = root.join("artifacts");
        std::fs::create_dir_all(&artifacts_dir).map_err(io(&artifacts_dir))?;
        // The data directory holds the secret store, indexes and customers' code: only the
        // node's user may enter it or its directories (files are created 0600).
        #[cfg(unix)]
        for dir in [root, &namespaces, &artifacts_dir] {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io(dir))?;
        }
        let artifacts = ArtifactStore::open(&artifacts_dir, engine.clone())?;
        remove_leftovers(root);
        Ok(Store {
            inner: Arc::new(Inner {
                root: root.to_path_buf(),
                artifacts,
                indexes: IndexCache::new(&namespaces, engine.settings().max_mapped_indexes),
                engine,
                publishing: Arc::new(Publishing::new()),
                merger: OnceLock::new(),
            }),
        })
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    pub fn artifacts(&self) -> &ArtifactStore {
        &self.inner.artifacts
    }

    /// The bounded cache of mapped indexes that serving cores read (see [`IndexCache`]).
    pub fn indexes(&self) -> &IndexCache {
        &self.inner.indexes
    }

    /// The index file of namespace `ns`.
    pub fn index_path(&self, ns: &str) -> PathBuf {
        self.inner.root.join("namespaces").join(ns).join("index")
    }

    /// The lock that serialises what changes the namespaces directory: publishes, creates,
    /// deletes, and the artifact collection that reads what they name.
    fn publishing(&self) -> std::sync::MutexGuard<'_, ()> {
        self.inner.publishing.lock()
    }

    /// Every namespace with an index, sorted.
    pub fn namespaces(&self) -> Result<Vec<String>, StoreError> {
        let dir = self.inner.root.join("namespaces");
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let entry = entry.map_err(io(&dir))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if check_name(&name).is_ok() && self.index_path(&name).is_file() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// Whether namespace `ns` exists (its index file does), without opening or mapping the index.
    pub fn has_namespace(&self, ns: &str) -> Result<bool, StoreError> {
        check_name(ns)?;
        let path = self.index_path(ns);
        match std::fs::metadata(&path) {
            Ok(meta) => Ok(meta.is_file()),
            // `namespaces/<ns>` missing, or a stray file of that name.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// The current index of `ns`, or `None` if the namespace does not exist. A corrupt index is
    /// an error naming the file.
    pub fn open_index(&self, ns: &str) -> Result<Option<Index>, StoreError> {
        check_name(ns)?;
        let path = self.index_path(ns);
        match Index::open(&path, None) {
            Ok(index) => Ok(Some(index)),
            Err(IndexError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Publishes `data` as the next generation of `ns` (creating the namespace) and returns it
    /// opened. Every artifact `data` names must already be stored for this engine.
    ///
    /// This rewrites the whole base, O(scripts): uploads go through [`Store::publish_change`].
    pub fn publish_index(&self, ns: &str, data: &IndexData) -> Result<Index, StoreError> {
        check_name(ns)?;
        let _guard = self.publishing();
        let path = self.index_path(ns);
        let dir = path.parent().expect("index paths have a parent");
        if !dir.exists() {
            return self.create_locked(ns, data);
        }
        // From the old base's header and the delta: opening the base would map and validate
        // every script again. A missing or unreadable base starts the counter again at 1.
        let generation = match crate::index::read_generation(&path) {
            Ok(base) => delta::read(&delta_path(&path), base)?.generation + 1,
            Err(_) => 1,
        };
        self.write_base(&path, data, generation, i64::MIN)
    }

    /// Writes `data` as the base of generation `generation` (its summary's modification time at
    /// least `modified_on`), then drops the delta records it contains. A crash between the two
    /// leaves the new base with records at or below its generation, which reading skips: the
    /// state is the new generation either way.
    fn write_base(
        &self,
        path: &Path,
        data: &IndexData,
        generation: u64,
        modified_on: i64,
    ) -> Result<Index, StoreError> {
        let compat = self.inner.engine.compat_hash();
        publish_since(path, data, generation, compat, modified_on)?;
        delta::drop_merged(&delta_path(path), generation)?;
        Ok(Index::open(path, None)?)
    }

    /// Publishes `change` on top of `current` (the namespace's current generation) as the next
    /// generation and returns it: one record appended to the namespace's delta and fsynced,
    /// O(change) however many scripts the namespace holds. Once the delta holds
    /// `EngineSettings::index_merge_records` records, a merge into a new base is queued for the
    /// merge thread ([`crate::merge`]); should merges fall [`MERGE_BACKLOG`] times behind that,
    /// the publish merges in line (O(scripts)) so the delta stays bounded.
    ///
    /// `current` must hold what is on disk (the caller serialises its read-modify-publish): if
    /// another publish got in between, this fails with [`StoreError::Stale`] and writes nothing.
    pub fn publish_change(
        &self,
        current: &Index,
        change: &DeltaRecord,
    ) -> Result<Index, StoreError> {
        self.publish_change_or_wait(current, change, true)
    }

    /// [`Store::publish_change`]; with `may_wait`, a publish that finds the delta at the backlog
    /// bound while the namespace's merge is running waits for that merge (up to
    /// [`MERGE_WAIT`], without the lock) and tries once more, rather than doing the same
    /// O(scripts) work again in line beside it.
    fn publish_change_or_wait(
        &self,
        current: &Index,
        change: &DeltaRecord,
        may_wait: bool,
    ) -> Result<Index, StoreError> {
        let ns = current.namespace();
        check_name(ns)?;
        let guard = self.publishing();
        let path = self.index_path(ns);
        let base_generation = crate::index::read_generation(&path)?;
        let dpath = delta_path(&path);
        let mut delta = delta::read(&dpath, base_generation)?;
        if delta.merged > 0 {
            // A merge stopped (a crash, an error) after renaming its base: finish its last step.
            delta::drop_merged(&dpath, base_generation)?;
            delta = delta::read(&dpath, base_generation)?;
        }
        let stale = |found| StoreError::Stale {
            namespace: ns.to_string(),
            expected: current.generation(),
            found,
        };
        if delta.generation != current.generation() {
            return Err(stale(delta.generation));
        }
        let reopened;
        let current = if base_generation == current.base_generation() {
            current
        } else {
            // A merge replaced the base after `current` was read (the merge rebases the cached
            // index, and this publish raced it): the same generation, read from disk once.
            reopened = Index::open(&path, None)?;
            if reopened.namespace_id() != current.namespace_id()
                || reopened.generation() != current.generation()
            {
                return Err(stale(reopened.generation()));
            }
            &reopened
        };
        let generation = delta.generation + 1;
        let record = Record::new(generation, change).map_err(|e| IndexError::Invalid {
            path: dpath.clone(),
            message: e.to_string(),
        })?;
        let record = Arc::new(record);
        let next = current.with_record(record.clone());
        let threshold = self.inner.engine.settings().index_merge_records.max(1);
        if delta.records.len() + 1 >= threshold.saturating_mul(MERGE_BACKLOG) {
            if may_wait && self.inner.publishing.merging_now(ns) {
                drop(guard);
                self.inner.publishing.wait_for_merge(ns, MERGE_WAIT);
                return self.publish_change_or_wait(current, change, false);
            }
            // A merge in line: it keeps the delta's latest write, as the merge thread does.
            return self.write_base(&path, &next.to_data(), generation, next.modified_on());
        }
        delta::append(&dpath, delta.valid_len, &record)?;
        if delta.records.len() + 1 >= threshold {
            match self.merger() {
                Ok(merger) => merger.submit(self.merge_job(&next)),
                Err(e) => tracing::error!("the merge thread cannot start: {e}"),
            }
        }
        Ok(next)
    }

    /// Merges the delta of `index` (the namespace's current generation) into a new base on the
    /// calling thread, as the merge thread does; whether it did (not if a publish replaced the
    /// base meanwhile). For tests and tools.
    pub fn merge_delta(&self, index: &Index) -> Result<bool, StoreError> {
        Ok(merge(&self.merge_job(index))?)
    }

    fn merge_job(&self, index: &Index) -> MergeJob {
        MergeJob {
            view: index.clone(),
            path: self.index_path(index.namespace()),
            publishing: self.inner.publishing.clone(),
            indexes: self.inner.indexes.clone(),
        }
    }

    fn merger(&self) -> Result<&Merger, String> {
        self.inner
            .merger
            .get_or_init(|| Merger::start().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Creates namespace `ns` with `data` as its first generation, all or nothing: the index is
    /// written into a temporary directory beside the namespaces, which is then renamed into place
    /// (a rename is atomic, and refuses a non-empty directory or a file of that name). A failure
    /// removes the temporary directory; a crash leaves only it, and [`Store::open`] removes it.
    /// So a failed create never leaves a half-made namespace behind.
    pub fn create_namespace(&self, ns: &str, data: &IndexData) -> Result<Index, StoreError> {
        check_name(ns)?;
        let _guard = self.publishing();
        if self.has_namespace(ns)? {
            return Err(StoreError::NamespaceExists(ns.to_string()));
        }
        self.create_locked(ns, data)
    }

    /// [`Store::create_namespace`] with the publishing lock held.
    fn create_locked(&self, ns: &str, data: &IndexData) -> Result<Index, StoreError> {
        let namespaces = self.inner.root.join("namespaces");
        let tmp = namespaces.join(temporary_name(ns));
        let dir = namespaces.join(ns);
        let result = (|| {
            std::fs::create_dir(&tmp).map_err(io(&tmp))?;
            publish(&tmp.join("index"), data, 1, self.inner.engine.compat_hash())?;
            std::fs::rename(&tmp, &dir).map_err(io(&dir))?;
            sync_dir(&namespaces).map_err(io(&namespaces))
        })();
        if let Err(e) = result {
            if let Err(cleanup) = std::fs::remove_dir_all(&tmp)
                && cleanup.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(dir = %tmp.display(), "removing a failed create's directory: {cleanup}");
            }
            return Err(e);
        }
        Ok(Index::open(&self.index_path(ns), None)?)
    }

    /// Returns `index` ready for this engine: when it was built for another engine (an upgrade),
    /// every artifact is recompiled from its kept original and the same data is republished under
    /// this engine's hash; otherwise any missing `.cwasm` is rebuilt. A base of an older format (no
    /// name table, or no summary) is republished in the current format, once.
    pub fn ensure_compiled(&self, index: Index) -> Result<Index, StoreError> {
        self.ensure_compiled_listing(index, &mut Vec::new())
    }

    /// [`Store::ensure_compiled`], adding to `baseline` the scripts whose artifact still has its
    /// baseline (Winch) file: the node stopped before their optimised code was compiled or
    /// before they were republished with it, and the caller has that finished in the background.
    pub fn ensure_compiled_listing(
        &self,
        index: Index,
        baseline: &mut Vec<(String, ArtifactId)>,
    ) -> Result<Index, StoreError> {
        // Once per distinct artifact, from the index's summary: Workers of the same bytes share
        // one, checking it is a file lookup (1M of them were most of a 2.5 s start,
        // docs/performance.md), and a start reads no script (it walked all 1M, twice).
        let mut pending = std::collections::HashSet::new();
        for id in index.artifacts() {
            self.inner.artifacts.ensure(&id)?;
            if self.inner.artifacts.has_baseline(&id) {
                pending.insert(id);
            }
        }
        // Only when the node stopped while uploads awaited their optimised code are the scripts
        // walked, to name those.
        if !pending.is_empty() {
            for entry in index.scripts() {
                let id = ArtifactId::from_bytes(entry.artifact);
                if pending.contains(&id) {
                    baseline.push((entry.name.to_string(), id));
                }
            }
        }
        if index.compat_hash() == self.inner.engine.compat_hash() && index.is_current_format() {
            return Ok(index);
        }
        let ns = index.namespace().to_string();
        tracing::info!(namespace = %ns, "republishing the index for this engine and format");
        self.publish_index(&ns, &index.to_data())
    }

    /// Removes namespace `ns` and its index. Its artifacts stay (other namespaces may share them).
    pub fn delete_namespace(&self, ns: &str) -> Result<bool, StoreError> {
        check_name(ns)?;
        let _guard = self.publishing();
        let dir = self.inner.root.join("namespaces").join(ns);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {
                sync_dir(&self.inner.root.join("namespaces")).map_err(io(&dir))?;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io(&dir)(e)),
        }
    }
}

/// How many times `index_merge_records` a delta may reach while merges fall behind (a merge
/// of 1M Workers takes seconds) before a publish merges in line instead.
pub const MERGE_BACKLOG: usize = 4;

/// How long a publish at the backlog bound waits for the namespace's running merge before it
/// merges in line itself. While it waits, the merge has the CPU the publishes took (a merge of
/// 1M Workers is ~8 s of CPU); a merge thread starved by serving work, or gone (a panic), is
/// overtaken after this.
pub const MERGE_WAIT: Duration = Duration::from_secs(30);

/// How long an artifact no index names is kept before [`Store::collect_artifacts`] removes it.
/// An upload compiles (or touches) its artifact before publishing the index that names it, so
/// this must exceed the longest compile plus publish: an hour leaves a wide margin.
pub const ARTIFACT_GRACE: Duration = Duration::from_secs(60 * 60);

/// How often a serving node collects unreferenced artifacts.
pub const ARTIFACT_GC_INTERVAL: Duration = Duration::from_secs(10 * 60);

impl Store {
    /// Removes the artifact files (uploads and compiled modules) that no namespace's current index
    /// names and that were last written or used more than `grace` ago; returns how many files
    /// went. Runs under the publishing lock, so no index changes meanwhile; an artifact being
    /// uploaded is younger than `grace` (storing touches an existing one), so it survives until
    /// the index that names it is published. A module still mapped by a serving core stays valid
    /// after its file is removed (the mapping holds the inode).
    pub fn collect_artifacts(&self, grace: Duration) -> Result<usize, StoreError> {
        let _publishing = self.publishing();
        let mut named = std::collections::HashSet::new();
        for ns in self.namespaces()? {
            let Some(index) = self.open_index(&ns)? else {
                continue;
            };
            for id in index.artifacts() {
                named.insert(id.to_hex());
            }
        }
        let dir = self.inner.root.join("artifacts");
        let now = std::time::SystemTime::now();
        let mut removed = 0;
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))?.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some((id, _)) = name.split_once('.') else {
                continue;
            };
            if is_temporary(name) || id.len() != 64 || named.contains(id) {
                continue;
            }
            let age = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|modified| now.duration_since(modified).ok());
            if age.is_some_and(|age| age >= grace) {
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io(&entry.path())(e)),
                }
            }
        }
        if removed > 0 {
            sync_dir(&dir).map_err(io(&dir))?;
            tracing::info!(removed, "removed artifacts no index names");
        }
        Ok(removed)
    }
}

/// Deletes temporary files an interrupted publish left behind (they were never renamed into
/// place, so nothing refers to them). Best effort: a failure only leaves garbage.
fn remove_leftovers(root: &Path) {
    let mut dirs = vec![root.join("artifacts")];
    if let Ok(entries) = std::fs::read_dir(root.join("namespaces")) {
        for entry in entries.flatten() {
            // A namespace whose create was interrupted (see `Store::create_namespace`).
            if entry.file_name().to_str().is_some_and(is_temporary) {
                tracing::info!(dir = %entry.path().display(), "removing an unfinished namespace");
                let _ = std::fs::remove_dir_all(entry.path());
            } else {
                dirs.push(entry.path());
            }
        }
    }
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_str().is_some_and(is_temporary) {
                tracing::info!(file = %entry.path().display(), "removing a leftover temporary file");
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// A namespace's name, as [`valid_name`] has it, or the platform's own namespace.
fn check_name(ns: &str) -> Result<(), StoreError> {
    if ns == PLATFORM_NAMESPACE {
        return Ok(());
    }
    valid_name(ns).map_err(|reason| StoreError::InvalidName {
        name: ns.to_string(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifacts::ArtifactId;
    use crate::delta::DeltaRecord;
    use crate::index::{ScriptEntry, ScriptLimits, publish};
    use tenantry_core::EngineSettings;

    const WAT: &str = r#"(module (memory (export "memory") 1)
        (func (export "tenantry_fetch") (result i32) i32.const 0))"#;

    fn store(dir: &Path) -> Store {
        let engine = Engine::new(&EngineSettings {
            max_instances: 4,
            ..Default::default()
        })
        .unwrap();
        Store::open(dir, engine).unwrap()
    }

    fn data_with(store: &Store, ns: &str) -> IndexData {
        let id = store.artifacts().put(WAT.as_bytes()).unwrap();
        let mut data = IndexData::new(ns, 5);
        data.scripts.insert(
            "hello".into(),
            ScriptEntry {
                name: "hello".into(),
                artifact: *id.as_bytes(),
                bindings: vec![],
                tags: vec![],
                limits: ScriptLimits::default(),
                created_on: 5,
                modified_on: 5,
                etag: "e1".into(),
                reuse_instances: 0,
                compatibility_date: String::new(),
                main_module: String::new(),
            },
        );
        data
    }

    #[test]
    fn generations_increase_and_namespaces_are_listed() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        assert!(s.open_index("production").unwrap().is_none());
        let data = data_with(&s, "production");
        assert_eq!(
            s.publish_index("production", &data).unwrap().generation(),
            1
        );
        assert_eq!(
            s.publish_index("production", &data).unwrap().generation(),
            2
        );
        s.publish_index("staging", &IndexData::new("staging", 0))
            .unwrap();
        assert_eq!(s.namespaces().unwrap(), ["production", "staging"]);
        assert!(s.delete_namespace("staging").unwrap());
        assert!(!s.delete_namespace("staging").unwrap());
        assert_eq!(s.namespaces().unwrap(), ["production"]);
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_create_is_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let namespaces = dir.path().join("namespaces");
        let data = data_with(&s, "production");
        let index = s.create_namespace("production", &data).unwrap();
        assert_eq!((index.generation(), index.len()), (1, 1));
        assert!(s.has_namespace("production").unwrap());
        let e = s.create_namespace("production", &data).unwrap_err();
        assert!(matches!(e, StoreError::NamespaceExists(_)), "{e}");

        // A file where the directory goes: the index is written, the rename into place fails,
        // and nothing of the attempt stays.
        std::fs::write(namespaces.join("clash"), b"x").unwrap();
        let before = entries(&namespaces);
        let e = s.create_namespace("clash", &IndexData::new("clash", 1));
        assert!(matches!(e, Err(StoreError::Io { .. })), "{e:?}");
        assert_eq!(entries(&namespaces), before);
        assert!(!s.has_namespace("clash").unwrap());
        assert_eq!(s.namespaces().unwrap(), ["production"]);
    }

    #[test]
    fn an_interrupted_create_is_removed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let namespaces = dir.path().join("namespaces");
        // What a crash between writing the index and renaming its directory leaves.
        let tmp = namespaces.join(temporary_name("half"));
        std::fs::create_dir(&tmp).unwrap();
        publish(&tmp.join("index"), &IndexData::new("half", 1), 1, "x").unwrap();
        drop(s);
        let s = store(dir.path());
        assert!(
            entries(&namespaces).is_empty(),
            "{:?}",
            entries(&namespaces)
        );
        assert!(s.namespaces().unwrap().is_empty());
    }

    #[test]
    fn unreferenced_artifacts_are_collected_after_the_grace_period() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let data = data_with(&s, "production");
        let kept = ArtifactId::of(WAT.as_bytes());
        let other = WAT.replace("i32.const 0", "i32.const 1");
        let dropped = s.artifacts().put(other.as_bytes()).unwrap();
        s.publish_index("production", &data).unwrap();
        let files = |id: &ArtifactId| {
            [
                s.artifacts().original_path(id),
                s.artifacts().compiled_path(id),
            ]
            .iter()
            .filter(|p| p.exists())
            .count()
        };
        // Within the grace period nothing goes: an upload not yet published looks like this.
        assert_eq!(s.collect_artifacts(ARTIFACT_GRACE).unwrap(), 0);
        assert_eq!(files(&dropped), 2);
        assert_eq!(s.collect_artifacts(Duration::ZERO).unwrap(), 2);
        assert_eq!((files(&kept), files(&dropped)), (2, 0));

        // Storing an artifact that is already there makes it young again.
        let old = std::time::SystemTime::now() - 2 * ARTIFACT_GRACE;
        for path in [
            s.artifacts().original_path(&kept),
            s.artifacts().compiled_path(&kept),
        ] {
            std::fs::File::options()
                .write(true)
                .open(path)
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        s.publish_index("production", &IndexData::new("production", 0))
            .unwrap();
        assert_eq!(s.artifacts().put(WAT.as_bytes()).unwrap(), kept);
        assert_eq!(s.collect_artifacts(ARTIFACT_GRACE).unwrap(), 0);
        assert_eq!(files(&kept), 2);
    }

    #[cfg(unix)]
    #[test]
    fn only_the_owner_may_enter_the_data_directory_or_read_its_files() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        s.publish_index("production", &IndexData::new("production", 0))
            .unwrap();
        for sub in ["", "namespaces", "artifacts"] {
            let mode = std::fs::metadata(dir.path().join(sub))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o700, "{sub}");
        }
        let index = s.index_path("production");
        let mode = std::fs::metadata(index).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn names_are_validated() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        for bad in ["", "../etc", "Prod", "a/b", &"x".repeat(64)] {
            let e = s.publish_index(bad, &IndexData::new(bad, 0)).unwrap_err();
            assert!(matches!(e, StoreError::InvalidName { .. }), "{bad}: {e}");
        }
    }

    fn store_merging_at(dir: &Path, records: usize) -> Store {
        let engine = Engine::new(&EngineSettings {
            max_instances: 4,
            index_merge_records: records,
            ..Default::default()
        })
        .unwrap();
        Store::open(dir, engine).unwrap()
    }

    fn script(name: &str, etag: &str) -> ScriptEntry {
        ScriptEntry {
            name: name.into(),
            artifact: [7; 32],
            bindings: vec![],
            tags: vec![],
            limits: ScriptLimits::default(),
            created_on: 5,
            modified_on: 5,
            etag: etag.into(),
            reuse_instances: 0,
            compatibility_date: String::new(),
            main_module: String::new(),
        }
    }

    fn upsert(name: &str, etag: &str) -> DeltaRecord {
        DeltaRecord {
            upserts: vec![script(name, etag)],
            deletes: vec![],
        }
    }

    fn sorted_names(index: &Index) -> Vec<String> {
        let mut names: Vec<String> = index.scripts().map(|e| e.name.to_string()).collect();
        names.sort();
        names
    }

    /// A change is one record appended to the delta, not a rewrite of the base; a store opened
    /// again (a restart) reads base + delta as the same generation.
    #[test]
    fn changes_append_to_the_delta_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let mut index = s
            .create_namespace("production", &data_with(&s, "production"))
            .unwrap();
        let base = std::fs::read(s.index_path("production")).unwrap();
        for i in 0..5 {
            index = s
                .publish_change(&index, &upsert(&format!("w{i}"), "e"))
                .unwrap();
        }
        let gone = DeltaRecord {
            upserts: vec![],
            deletes: vec!["w3".into()],
        };
        index = s.publish_change(&index, &gone).unwrap();
        assert_eq!((index.generation(), index.base_generation()), (7, 1));
        assert_eq!(std::fs::read(s.index_path("production")).unwrap(), base);
        drop(s);
        let s = store(dir.path());
        let again = s.open_index("production").unwrap().unwrap();
        assert_eq!((again.generation(), again.len()), (7, 5));
        assert_eq!(sorted_names(&again), ["hello", "w0", "w1", "w2", "w4"]);
        assert_eq!(sorted_names(&again), sorted_names(&index));
        // A full publish writes a new base past the delta's generation and drops the delta.
        let full = s.publish_index("production", &again.to_data()).unwrap();
        assert_eq!((full.generation(), full.base_generation()), (8, 8));
        assert!(!delta_path(&s.index_path("production")).exists());
        assert_eq!(sorted_names(&full), sorted_names(&again));
    }

    /// A change computed from an index that is no longer current would drop what was published
    /// since: it is refused, and nothing is written.
    #[test]
    fn a_change_to_a_stale_index_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let first = s
            .create_namespace("production", &data_with(&s, "production"))
            .unwrap();
        let second = s.publish_change(&first, &upsert("a", "1")).unwrap();
        let e = s.publish_change(&first, &upsert("b", "1")).unwrap_err();
        assert!(
            matches!(
                e,
                StoreError::Stale {
                    expected: 1,
                    found: 2,
                    ..
                }
            ),
            "{e}"
        );
        let now = s.open_index("production").unwrap().unwrap();
        assert_eq!(now.generation(), second.generation());
        assert!(now.get("b").is_none());
    }

    /// A merge writes the scripts as a new base of the same generation; a publish that still
    /// holds the old base (it read the index before the merge) continues from disk, and a merge
    /// that a full publish overtook does nothing.
    #[test]
    fn a_merge_keeps_every_change_and_yields_to_a_full_publish() {
        let dir = tempfile::tempdir().unwrap();
        // Large enough that no merge starts on its own here.
        let s = store_merging_at(dir.path(), 1000);
        let path = s.index_path("production");
        let mut index = s
            .create_namespace("production", &data_with(&s, "production"))
            .unwrap();
        for i in 0..10 {
            index = s
                .publish_change(&index, &upsert(&format!("w{i}"), "e"))
                .unwrap();
        }
        assert!(s.merge_delta(&index).unwrap());
        let merged = s.open_index("production").unwrap().unwrap();
        assert_eq!((merged.generation(), merged.base_generation()), (11, 11));
        assert_eq!(merged.delta_records(), 0);
        assert!(!delta_path(&path).exists());
        assert_eq!(sorted_names(&merged), sorted_names(&index));
        // `index` still reads the old base: the next publish takes the merged one from disk.
        let next = s.publish_change(&index, &upsert("w0", "changed")).unwrap();
        assert_eq!((next.generation(), next.base_generation()), (12, 11));
        assert_eq!(next.get("w0").unwrap().etag.as_str(), "changed");
        assert_eq!(next.len(), 11);

        let view = next.clone();
        let full = s.publish_index("production", &IndexData::new("production", 0));
        assert_eq!(full.unwrap().generation(), 13);
        assert!(!s.merge_delta(&view).unwrap());
        let now = s.open_index("production").unwrap().unwrap();
        assert_eq!((now.generation(), now.len()), (13, 0));
    }

    /// What a start reads instead of the scripts: the count and the artifacts, as a walk of
    /// every script finds them, and the latest write (which a delete does not move back).
    fn assert_summary_is_a_walk(index: &Index, modified_on: i64) {
        let walk = crate::Summary::walk(index.created_on(), index.scripts());
        let summary = index.summary();
        assert_eq!(summary.scripts, walk.scripts, "{index:?}");
        assert_eq!(summary.artifacts, walk.artifacts, "{index:?}");
        assert_eq!(summary.modified_on, modified_on, "{index:?}");
        assert_eq!(index.modified_on(), modified_on);
        let artifacts: Vec<[u8; 32]> = index.artifacts().iter().map(|a| *a.as_bytes()).collect();
        assert_eq!(artifacts, walk.artifacts.into_keys().collect::<Vec<_>>());
    }

    /// The summary stored in the base and kept by the delta stays a walk's count and artifacts
    /// through upserts, a script moving to other bytes, deletes (the last script of an artifact
    /// among them), a merge, a restart and a full publish.
    #[test]
    fn the_summary_matches_a_walk_across_publish_delete_merge_and_restart() {
        let dir = tempfile::tempdir().unwrap();
        let s = store_merging_at(dir.path(), 1000);
        let named = |name: &str, artifact: u8, modified_on: i64| DeltaRecord {
            upserts: vec![ScriptEntry {
                artifact: [artifact; 32],
                modified_on,
                ..script(name, &format!("{name}-{modified_on}"))
            }],
            deletes: vec![],
        };
        let mut index = s
            .create_namespace("production", &data_with(&s, "production"))
            .unwrap();
        assert!(index.is_current_format());
        assert_summary_is_a_walk(&index, 5);
        for (i, artifact) in [7, 7, 8, 9, 7].into_iter().enumerate() {
            let change = named(&format!("w{i}"), artifact, 10 + i as i64);
            index = s.publish_change(&index, &change).unwrap();
        }
        assert_summary_is_a_walk(&index, 14);
        assert_eq!(index.summary().artifacts[&[7; 32]], 3);
        // w2 moves from 8 (its only script) to 9; w4, the latest write, goes; so does w3.
        index = s.publish_change(&index, &named("w2", 9, 20)).unwrap();
        let gone = DeltaRecord {
            upserts: vec![],
            deletes: vec!["w2".into(), "w3".into(), "nobody".into()],
        };
        index = s.publish_change(&index, &gone).unwrap();
        assert_summary_is_a_walk(&index, 20);
        assert!(!index.summary().artifacts.contains_key(&[8; 32]));
        assert!(!index.summary().artifacts.contains_key(&[9; 32]));
        // A restart reads the same from the base's summary and the delta.
        drop(s);
        let s = store_merging_at(dir.path(), 1000);
        let again = s.open_index("production").unwrap().unwrap();
        assert_summary_is_a_walk(&again, 20);
        // A merge writes the summary into the new base; a restart reads it from there.
        assert!(s.merge_delta(&again).unwrap());
        let merged = s.open_index("production").unwrap().unwrap();
        assert_eq!(merged.delta_records(), 0);
        assert!(merged.is_current_format());
        assert_summary_is_a_walk(&merged, 20);
        let next = s.publish_change(&merged, &named("w0", 8, 30)).unwrap();
        assert_summary_is_a_walk(&next, 30);
        drop(s);
        let s = store_merging_at(dir.path(), 1000);
        assert_summary_is_a_walk(&s.open_index("production").unwrap().unwrap(), 30);
        // A full publish summarises the scripts it is given.
        let full = s
            .publish_index("production", &IndexData::new("production", 3))
            .unwrap();
        assert_summary_is_a_walk(&full, 3);
    }

    /// With merges every record (the thread's, and in line once they fall behind), the summary
    /// stays a walk's, and a deleted script's later write is not forgotten by either merge.
    #[test]
    fn the_summary_survives_merges_in_line_and_on_the_thread() {
        let dir = tempfile::tempdir().unwrap();
        let s = store_merging_at(dir.path(), 1);
        let mut index = s
            .create_namespace("production", &data_with(&s, "production"))
            .unwrap();
        let latest = DeltaRecord {
            upserts: vec![ScriptEntry {
                modified_on: 50,
                ..script("latest", "l")
            }],
            deletes: vec![],
        };
        index = s.publish_change(&index, &latest).unwrap();
        let gone = DeltaRecord {
            upserts: vec![],
            deletes: vec!["latest".into()],
        };
        index = s.publish_change(&index, &gone).unwrap();
        for i in 0..3 * MERGE_BACKLOG {
            index = s
                .publish_change(&index, &upsert(&format!("w{i}"), "e"))
                .unwrap();
            assert_summary_is_a_walk(&index, 50);
        }
        wait_for_merges(&s);
        drop(s);
        let s = store_merging_at(dir.path(), 1000);
        let again = s.open_index("production").unwrap().unwrap();
        assert!(again.base_generation() > 1, "{again:?}");
        assert_eq!(again.generation(), index.generation());
        assert_summary_is_a_walk(&again, 50);
    }

    /// Waits for the merge thread (no fixed sleep): it is done when no merge is queued.
    fn wait_for_merges(s: &Store) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !s.inner.publishing.idle() {
            assert!(
                std::time::Instant::now() < deadline,
                "the merge never ended"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Once the delta holds `index_merge_records` records, the merge thread writes a new base;
    /// changes published meanwhile stay in the delta after it. However the race goes, nothing
    /// is lost.
    #[test]
    fn the_merge_thread_folds_a_long_delta_into_the_base() {
        let dir = tempfile::tempdir().unwrap();
        let s = store_merging_at(dir.path(), 4);
        let path = s.index_path("production");
        let mut index = s
            .create_namespace("production", &data_with(&s, "production"))
            .unwrap();
        for i in 0..30 {
            index = s
                .publish_change(&index, &upsert(&format!("w{i}"), "e"))
                .unwrap();
        }
        wait_for_merges(&s);
        let base = crate::index::read_generation(&path).unwrap();
        assert!(base > 1, "no merge happened");
        let delta = delta::read(&delta_path(&path), base).unwrap();
        // Bounded by the backlog limit, whatever the merge thread's pace.
        assert!(
            delta.records.len() < 4 * MERGE_BACKLOG,
            "{}",
            delta.records.len()
        );
        let again = Index::open(&path, None).unwrap();
        assert_eq!((again.generation(), again.len()), (31, 31));
        assert_eq!(sorted_names(&again), sorted_names(&index));
    }

    /// What a crash during a merge's first step leaves (a temporary base beside the index) is
    /// removed at open, and the index reads as before.
    #[test]
    fn a_merge_interrupted_before_its_rename_leaves_the_index_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let path = s.index_path("production");
        let mut index = s
            .create_namespace("production", &data_with(&s, "production"))
            .unwrap();
        index = s.publish_change(&index, &upsert("a", "1")).unwrap();
        let tmp = crate::fsutil::write_temporary(&path, &[b"half a base"]).unwrap();
        drop(s);
        let s = store(dir.path());
        assert!(!tmp.exists());
        let again = s.open_index("production").unwrap().unwrap();
        assert_eq!(again.generation(), index.generation());
        assert_eq!(sorted_names(&again), ["a", "hello"]);
    }

    /// A base written before the name table (format 1) is read, then republished in the current
    /// format once at start, with the same scripts.
    #[test]
    fn a_format_1_base_is_republished_with_its_name_table() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let data = data_with(&s, "production");
        let path = s.index_path("production");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let payload = rkyv::to_bytes::<rkyv::rancor::Error>(&data).unwrap();
        let header = crate::index::header(3, s.inner.engine.compat_hash(), &payload);
        crate::fsutil::write_durably(&path, &[&header, &payload]).unwrap();

        let old = s.open_index("production").unwrap().unwrap();
        assert!(!old.has_name_table());
        assert!(!old.is_current_format());
        assert_summary_is_a_walk(&old, 5);
        let new = s.ensure_compiled(old).unwrap();
        assert!(new.has_name_table());
        assert!(new.is_current_format());
        assert_summary_is_a_walk(&new, 5);
        assert_eq!(new.generation(), 4);
        assert_eq!(new.to_data(), data);
        assert_eq!(s.ensure_compiled(new).unwrap().generation(), 4);
    }

    #[test]
    fn an_index_from_another_engine_is_recompiled_and_republished() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let data = data_with(&s, "production");
        let id = ArtifactId::from_bytes(data.scripts["hello"].artifact);
        // As an older engine would have left it: its own hash, no .cwasm for this engine.
        let path = s.index_path("production");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        publish(&path, &data, 3, "0000000000000000").unwrap();
        std::fs::remove_file(s.artifacts().compiled_path(&id)).unwrap();

        let old = s.open_index("production").unwrap().unwrap();
        assert_eq!(old.compat_hash(), "0000000000000000");
        let new = s.ensure_compiled(old).unwrap();
        assert_eq!(new.compat_hash(), s.inner.engine.compat_hash());
        assert_eq!(new.generation(), 4);
        assert_eq!(new.to_data(), data);
        assert!(s.artifacts().load(&id).is_ok());
        // Already current: returned as is.
        assert_eq!(s.ensure_compiled(new).unwrap().generation(), 4);
    }
}
