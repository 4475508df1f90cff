//! The per-core cache of loaded Workers, bounded by an LRU policy.
//!
//! A node may host a million Workers but keeps only a working set loaded: each loaded module
//! costs mappings (`vm.max_map_count`) and pool slots, while reloading one from its mmapped
//! artifact costs tens of µs. One [`WorkerPool`] lives on each serving thread: it is `Rc`-based,
//! takes no lock and is never shared.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use crate::{Engine, Fault, Worker, WorkerSpec};

/// Loaded Workers of one core, keyed by deployed version, least recently used evicted first.
///
/// The LRU order is a use counter per entry rather than a linked list: a hit (the hot path) is one
/// hash lookup and a counter store; eviction scans the map for the smallest counter, which costs
/// O(capacity) but only happens on a miss, and a miss already pays a module load and link (tens of
/// µs, far more than scanning a few thousand entries). This keeps the crate free of an LRU
/// dependency and of `unsafe` linked lists.
pub struct WorkerPool {
    engine: Engine,
    capacity: usize,
    inner: RefCell<Inner>,
}

struct Inner {
    workers: HashMap<Box<str>, Entry>,
    clock: u64,
}

struct Entry {
    worker: Rc<Worker>,
    last_used: u64,
}

impl WorkerPool {
    /// A pool keeping at most `capacity` Workers loaded on this core.
    pub fn new(engine: Engine, capacity: usize) -> Self {
        WorkerPool {
            engine,
            capacity,
            inner: RefCell::new(Inner {
                workers: HashMap::new(),
                clock: 0,
            }),
        }
    }

    /// The Worker for `key` (the unique id of one deployed version), loading it with `load` on a
    /// miss. Loading links the module and pre-warms a pool slot ([`Worker::new`]); a failed load
    /// is not cached, so the next request retries. An evicted Worker stays alive until its
    /// in-flight requests finish (they hold an `Rc`).
    pub fn get_or_load(
        &self,
        key: &str,
        load: impl FnOnce() -> Result<WorkerSpec, Fault>,
    ) -> Result<Rc<Worker>, Fault> {
        {
            let mut inner = self.inner.borrow_mut();
            inner.clock += 1;
            let now = inner.clock;
            if let Some(entry) = inner.workers.get_mut(key) {
                entry.last_used = now;
                return Ok(entry.worker.clone());
            }
        }
        // The borrow is released: `load` may take a while and must not see the pool locked.
        let worker = Rc::new(Worker::new(&self.engine, load()?)?);
        let mut inner = self.inner.borrow_mut();
        inner.clock += 1;
        let last_used = inner.clock;
        inner.workers.insert(
            key.into(),
            Entry {
                worker: worker.clone(),
                last_used,
            },
        );
        while inner.workers.len() > self.capacity {
            let Some(oldest) = inner
                .workers
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            inner.workers.remove(&oldest);
        }
        Ok(worker)
    }

    /// Workers currently loaded.
    pub fn len(&self) -> usize {
        self.inner.borrow().workers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops the idle instances of every Worker loaded on this core, so that their pool slots
    /// serve requests; returns how many were dropped. Called when an instantiation found the
    /// pool full.
    pub fn evict_idle(&self) -> usize {
        let workers: Vec<Rc<Worker>> = self
            .inner
            .borrow()
            .workers
            .values()
            .map(|e| e.worker.clone())
            .collect();
        workers.iter().map(|w| w.evict_idle()).sum()
    }

    /// Whether `key` is loaded (does not count as a use).
    pub fn contains(&self, key: &str) -> bool {
        self.inner.borrow().workers.contains_key(key)
    }
}
