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
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

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
    /// Told whenever a merge ends (landed, dropped or failed).
    merge_ended: Condvar,
}

impl Publishing {
    pub(crate) fn new() -> Publishing {
        Publishing {
            lock: Mutex::new(()),
            merging: Mutex::new(HashSet::new()),
            merge_ended: Condvar::new(),
        }
    }

    /// Whether a merge of `namespace` is queued or running.
    pub(crate) fn merging_now(&self, namespace: &str) -> bool {
        self.merging().contains(namespace)
    }

    /// Waits, up to `timeout`, until no merge of `namespace` is queued or running; whether none
    /// is. Call it without the publishing lock: a merge takes it to land.
    pub(crate) fn wait_for_merge(&self, namespace: &str, timeout: Duration) -> bool {
        let (merging, _) = self
            .merge_ended
            .wait_timeout_while(self.merging(), timeout, |merging| {
                merging.contains(namespace)
            })
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        !merging.contains(namespace)
    }

    fn merge_ended(&self, namespace: &str) {
        self.merging().remove(namespace);
        self.merge_ended.notify_all();
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
            lower_priority();
            let ns = job.view.namespace().to_string();
            if let Err(e) = merge(&job) {
                tracing::error!(namespace = %ns, "merging the index delta failed: {e} (retried at the next publish)");
            }
            job.publishing.merge_ended(&ns);
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
    release_freed_memory();
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
    let latest = delta::drop_merged(&delta_path(path), generation)?;
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

/// Hands the memory the merge freed back to the allocator's free lists and the system, now,
/// with no lock held. Writing a base builds and frees one small allocation per script field
/// (millions at 1M Workers); glibc's malloc coalesces such chunks lazily, on the thread's next
/// large allocation, which would otherwise be the delta read under the publishing lock: that
/// one `malloc` took ~0.5 s at 1M Workers and stalled every upload behind the lock.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only reorganises the allocator's own free memory; it takes the
    // arenas' locks itself and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// How much less CPU a merge thread asks for than the threads that serve and publish (a nice
/// value). A merge at 1M Workers is ~8 s of CPU; sharing a core with the admin thread at equal
/// priority it took half of it, and uploads during a merge had a p99 of 45–85 ms. At 5 the
/// scheduler gives it ~25% of a core others want (all of one nobody wants): uploads during a
/// merge p99 ~11 ms, and a merge still ends before a closed loop of uploads fills the backlog
/// (at 10 it did not, and the publish at the bound had to wait ~3.5 s for it;
/// docs/performance.md "A merge at 1M"). An unprivileged process cannot raise a priority back,
/// so this is fixed, not adjusted to the backlog.
const MERGE_NICE: libc::c_int = 5;

/// Lowers the calling thread's scheduling priority to [`MERGE_NICE`] above the node's own (the
/// main thread's: a node started under `nice` keeps the difference). On Linux a nice value
/// belongs to a thread, not to the process. Idempotent; a failure is logged and harmless.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain system calls naming this process's main thread and the calling thread.
        let result = unsafe {
            let node = libc::getpriority(libc::PRIO_PROCESS, libc::getpid() as libc::id_t);
            let tid = libc::gettid() as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, (node + MERGE_NICE).min(19))
        };
        if result != 0 {
            tracing::debug!(
                "could not lower the merge thread's priority: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backlogged_publish_waits_for_the_running_merge_and_no_longer() {
        let publishing = Arc::new(Publishing::new());
        assert!(
            publishing.wait_for_merge("ns", Duration::ZERO),
            "no merge: no wait"
        );
        assert!(publishing.merging().insert("ns".to_string()));
        // Another namespace's merge ending does not end the wait.
        let ender = {
            let publishing = publishing.clone();
            std::thread::spawn(move || {
                publishing.merging().insert("other".to_string());
                publishing.merge_ended("other");
                std::thread::sleep(Duration::from_millis(50));
                publishing.merge_ended("ns");
            })
        };
        assert!(publishing.wait_for_merge("ns", Duration::from_secs(60)));
        assert!(!publishing.merging_now("ns"));
        ender.join().unwrap();
        // A merge that never ends (its thread gone) runs the wait out.
        publishing.merging().insert("ns".to_string());
        assert!(!publishing.wait_for_merge("ns", Duration::from_millis(20)));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_merge_thread_asks_for_less_cpu_than_the_others() {
        // SAFETY: `getpriority` only reads the nice value of the thread `id` names.
        let nice_of = |id: libc::id_t| unsafe { libc::getpriority(libc::PRIO_PROCESS, id) };
        let merge = std::thread::spawn(move || {
            lower_priority();
            lower_priority();
            // SAFETY: the calling thread's own id.
            nice_of(unsafe { libc::gettid() } as libc::id_t)
        })
        .join()
        .unwrap();
        // SAFETY: this process's id, which names its main thread.
        let node = nice_of(unsafe { libc::getpid() } as libc::id_t);
        assert_eq!(
            merge,
            (node + MERGE_NICE).min(19),
            "lowered once, twice called"
        );
        // SAFETY: the calling thread's own id; this thread must be unaffected.
        assert_eq!(nice_of(unsafe { libc::gettid() } as libc::id_t), node);
    }
}
