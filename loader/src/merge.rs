//! Merging a namespace's delta into a new base, on a thread of its own.
//!
//! A publish appends one record to the delta ([`crate::delta`]); once the delta holds
//! `EngineSettings::index_merge_records` of them, the publish hands the index it just made
//! (base + every record, generation G) to the merge thread and answers at once. The merge
//! writes the scripts of that index as a new base of generation G, then swaps it in:
//!
//! ```text
//!  step                                   on disk afterwards                    open reads
//!  ─────────────────────────────────────  ────────────────────────────────────  ───────────────
//!  0  (publishes go on meanwhile)         index(G0) + delta(G0+1 … Gn)          G0 + records
//!  1  write .index.tmp-…(G), fsync        same, plus a temporary file           same; the
//!     map + validate it (no lock held)                                          temporary is
//!                                                                               removed at start
//!  2  lock; base still G0? rename over    index(G) + delta(G0+1 … Gn)           G + records > G
//!     index, fsync directory                                                    (≤ G skipped)
//!  3  rewrite delta without ≤ G           index(G) + delta(G+1 … Gn)            the same
//!     (temporary, fsync, rename, fsync)
//!  4  rebase the cached index of Gn onto the new base; unlock
//! ```
//! Every state a crash can leave reads as generation Gn with the same scripts, so the merge
//! needs no recovery step. It holds the publishing lock only for steps 2–4 (a rename, a
//! rewrite of the small delta and an in-memory rebase), never while it reads or writes every
//! script (seconds at 1M Workers). If a full publish or a delete replaced the base meanwhile,
//! step 2 finds another generation (or no directory: the rename fails) and the merge is
//! dropped. A publish that still holds the old base when the merge lands (it read the index
//! before step 4) reopens the index from disk once.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::delta::{self, delta_path};
use crate::fsutil::{install, write_temporary};
use crate::index::{Index, IndexError, encode, read_generation};
use crate::indexes::{IndexCache, IndexKey};
use crate::jobs::JobThreads;

/// Threads that merge deltas: one is plenty (a merge is rare, one per
/// `index_merge_records` publishes of a namespace).
pub const MERGE_THREADS: usize = 1;

/// What publishes and merges share.
pub(crate) struct Publishing {
    /// Serialises every change of the namespaces directory (see `Store::publishing`).
    pub lock: Mutex<()>,
    /// Namespaces with a merge queued or running: a publish queues one at most.
    merging: Mutex<HashSet<String>>,
}

impl Publishing {
    pub(crate) fn new() -> Publishing {
        Publishing {
            lock: Mutex::new(()),
            merging: Mutex::new(HashSet::new()),
        }
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether no merge is queued or running.
    #[cfg(test)]
    pub(crate) fn idle(&self) -> bool {
        self.merging().is_empty()
    }

    fn merging(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.merging
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One merge: `view` is the namespace's index as a publish just made it.
pub(crate) struct MergeJob {
    pub view: Index,
    /// `namespaces/<ns>/index`.
    pub path: PathBuf,
    pub publishing: Arc<Publishing>,
    pub indexes: IndexCache,
}

/// The merge threads of one store; they finish queued merges and stop when it is dropped.
pub(crate) struct Merger(JobThreads<MergeJob>);

impl Merger {
    pub(crate) fn start() -> std::io::Result<Merger> {
        JobThreads::start(MERGE_THREADS, "tenantry-merge", |job: MergeJob| {
            let ns = job.view.namespace().to_string();
            if let Err(e) = merge(&job) {
                tracing::error!(namespace = %ns, "merging the index delta failed: {e} (retried at the next publish)");
            }
            job.publishing.merging().remove(&ns);
        })
        .map(Merger)
    }

    /// Queues a merge of `job.view` unless one of its namespace is queued or running.
    pub(crate) fn submit(&self, job: MergeJob) {
        let ns = job.view.namespace().to_string();
        // If the thread died (a panic), the namespace stays marked and its publishes merge
        // in line once the delta reaches the backlog bound (`Store::publish_change`).
        if job.publishing.merging().insert(ns) {
            self.0.send(job);
        }
    }
}

/// Runs one merge on the calling thread (the steps drawn in the module doc). `Ok(false)`: the
/// base changed meanwhile and nothing was done.
pub(crate) fn merge(job: &MergeJob) -> Result<bool, IndexError> {
    let MergeJob {
        view,
        path,
        publishing,
        indexes,
    } = job;
    let io = |source| IndexError::Io {
        path: path.clone(),
        source,
    };
    let generation = view.generation();
    if view.delta_records() == 0 {
        return Ok(false);
    }
    // Step 1, with no lock held: every script read and written, O(scripts).
    let (header, payload) = encode(
        &view.to_data(),
        generation,
        view.compat_hash(),
        view.modified_on(),
    )
    .map_err(|e| IndexError::Invalid {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let tmp = write_temporary(path, &[&header, &payload]).map_err(io)?;
    drop(payload);
    let merged = match Index::open_base(&tmp) {
        Ok(merged) => merged,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    // Steps 2–4, under the publishing lock.
    let _lock = publishing.lock();
    match read_generation(path) {
        Ok(base) if base == view.base_generation() => {}
        _ => {
            let _ = std::fs::remove_file(&tmp);
            return Ok(false);
        }
    }
    install(&tmp, path).map_err(io)?;
    let dpath = delta_path(path);
    let latest = delta::read(&dpath, generation)?.generation;
    delta::drop_merged(&dpath, generation)?;
    let key = IndexKey::of(view).at(latest);
    if let Some(current) = indexes.cached(&key)
        && let Some(rebased) = current.rebase(&merged)
    {
        indexes.insert(rebased);
    }
    tracing::info!(
        namespace = view.namespace(),
        generation,
        scripts = view.len(),
        "merged the index delta into a new base"
    );
    Ok(true)
}
