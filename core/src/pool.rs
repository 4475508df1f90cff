//! The per-core cache of loaded Workers, bounded by an LRU policy.
//!
//! A node may host a million Workers but keeps only a working set loaded: each loaded module
//! costs mappings (`vm.max_map_count`) and pool slots, while reloading one from its mmapped
//! artifact costs tens of µs. One [`WorkerPool`] lives on each serving thread: it is `Rc`-based,
//! takes no lock and is never shared.
//!
//! ```text
//!  get_or_load(key, spec)
//!    ├─ hit ─────────────────────────────────────────► Rc<Worker>   (sync: one hash lookup)
//!    ├─ another request of this core is loading key ─► wait for its result
//!    └─ miss ─ spec().await (the module is mapped off this thread) ─ link + pre-warm here
//!              ─ insert, evicting the least recently used ─► Rc<Worker>, and to every waiter
//! ```

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;

use futures_channel::oneshot;
use lru::LruCache;

use crate::{Engine, Fault, Worker, WorkerSpec};

/// Loaded Workers of one core, keyed by deployed version, least recently used evicted first.
///
/// The order is kept by the `lru` crate (a hash map whose entries form a doubly linked list), so a
/// hit and an eviction each cost O(1) whatever the capacity. It used to be a use counter per entry
/// with eviction scanning the map for the smallest: ~40 µs per miss at 20k entries, so round robin
/// over one Worker more than the cache holds (every request a miss) halved a core's throughput
/// (issue 13; `cargo bench -p tenantry-benches --bench pool`, docs/performance.md).
pub struct WorkerPool {
    shared: Rc<Shared>,
}

struct Shared {
    engine: Engine,
    capacity: usize,
    inner: RefCell<Inner>,
    /// Whether the task that drops long-idle reuse-mode instances runs.
    sweeping: std::cell::Cell<bool>,
}

impl Shared {
    /// The Workers loaded now, taken out of the borrow so that what is done with them (dropping
    /// instances) cannot re-enter it.
    fn loaded(&self) -> Vec<Rc<Worker>> {
        self.inner
            .borrow()
            .workers
            .iter()
            .map(|(_, w)| w.clone())
            .collect()
    }
}

/// A reuse-mode instance unused this long is dropped, so that a Worker that stopped receiving
/// requests gives its memory back (an idle JavaScript instance holds ~1 MB; Cloudflare likewise
/// evicts idle isolates). A Worker in steady use never waits this long between requests.
pub const IDLE_INSTANCE_TTL: std::time::Duration = std::time::Duration::from_secs(30);

type LoadResult = Result<Rc<Worker>, Fault>;

struct Inner {
    /// Bounded by `Shared::capacity`: `insert` evicts past it.
    workers: LruCache<Box<str>, Rc<Worker>>,
    /// Keys being loaded, with the requests waiting for them, so that concurrent misses of one
    /// Worker on this core load it once.
    loading: HashMap<Box<str>, Vec<oneshot::Sender<LoadResult>>>,
}

impl Inner {
    fn hit(&mut self, key: &str) -> Option<Rc<Worker>> {
        self.workers.get(key).cloned()
    }

    /// Keeps `worker` as the most recently used; returns the Workers evicted past `capacity`,
    /// to be dropped after the borrow of `Inner` ends (dropping one drops its instances).
    fn insert(&mut self, key: Box<str>, worker: Rc<Worker>, capacity: usize) -> Vec<Rc<Worker>> {
        let mut evicted = Vec::new();
        if let Some((_, old)) = self.workers.push(key, worker) {
            evicted.push(old);
        }
        while self.workers.len() > capacity {
            match self.workers.pop_lru() {
                Some((_, old)) => evicted.push(old),
                None => break,
            }
        }
        evicted
    }
}

/// Marks `key` as loading on this core while alive. Dropped without [`Loading::finish`] (the
/// request that was loading went away), it wakes the waiters, which then load it themselves.
struct Loading {
    shared: Rc<Shared>,
    key: Box<str>,
}

impl Loading {
    fn finish(self, result: &LoadResult) {
        let (waiters, evicted) = {
            let mut inner = self.shared.inner.borrow_mut();
            let evicted = match result {
                Ok(worker) => inner.insert(self.key.clone(), worker.clone(), self.shared.capacity),
                Err(_) => Vec::new(),
            };
            (inner.loading.remove(&self.key).unwrap_or_default(), evicted)
        };
        drop(evicted);
        for waiter in waiters {
            let _ = waiter.send(result.clone());
        }
    }
}

impl Drop for Loading {
    fn drop(&mut self) {
        // After `finish` the entry is gone already; otherwise dropping the senders wakes the
        // waiters with `Canceled`.
        let waiters = self.shared.inner.borrow_mut().loading.remove(&self.key);
        drop(waiters);
    }
}

impl WorkerPool {
    /// A pool keeping at most `capacity` Workers loaded on this core.
    pub fn new(engine: Engine, capacity: usize) -> Self {
        WorkerPool {
            shared: Rc::new(Shared {
                engine,
                capacity: capacity.max(1),
                inner: RefCell::new(Inner {
                    // Unbounded as far as the crate knows (it would reserve `capacity` entries
                    // up front); `Inner::insert` keeps the bound.
                    workers: LruCache::unbounded(),
                    loading: HashMap::new(),
                }),
                sweeping: std::cell::Cell::new(false),
            }),
        }
    }

    /// The Worker for `key` if it is loaded on this core (counts as a use).
    pub fn get(&self, key: &str) -> Option<Rc<Worker>> {
        self.shared.inner.borrow_mut().hit(key)
    }

    /// The Worker for `key` (the unique id of one deployed version): [`WorkerPool::get`], else
    /// [`WorkerPool::load`] with the future `spec()` returns.
    pub fn get_or_load<S, F>(
        &self,
        key: &str,
        spec: S,
    ) -> impl Future<Output = Result<Rc<Worker>, Fault>> + use<S, F>
    where
        S: FnOnce() -> F,
        F: Future<Output = Result<WorkerSpec, Fault>>,
    {
        let found = match self.get(key) {
            Some(worker) => Ok(worker),
            None => Err(self.load(key, spec())),
        };
        async move {
            match found {
                Ok(worker) => Ok(worker),
                Err(loading) => loading.await,
            }
        }
    }

    /// Loads the Worker for `key` (the unique id of one deployed version) after a miss: awaits
    /// `spec` (which should map the module off this thread, e.g. `ArtifactStore::load_async`),
    /// then links the module here ([`Worker::link`]: the waiting request's instantiation warms a
    /// pool slot, so it is not pre-warmed) and keeps the
    /// Worker, evicting the least recently used one past capacity. Concurrent loads of one key
    /// on this core share the first one (the others' `spec` is never awaited). A failed load is
    /// not cached, so the next request retries. An evicted Worker stays alive until its
    /// in-flight requests finish (they hold an `Rc`).
    pub fn load<F>(&self, key: &str, spec: F) -> impl Future<Output = LoadResult> + use<F>
    where
        F: Future<Output = Result<WorkerSpec, Fault>>,
    {
        let shared = self.shared.clone();
        let key: Box<str> = key.into();
        async move {
            loop {
                let waiting = {
                    let mut inner = shared.inner.borrow_mut();
                    if let Some(worker) = inner.hit(&key) {
                        return Ok(worker);
                    }
                    match inner.loading.get_mut(&key) {
                        Some(waiters) => {
                            let (tx, rx) = oneshot::channel();
                            waiters.push(tx);
                            rx
                        }
                        None => {
                            inner.loading.insert(key.clone(), Vec::new());
                            break;
                        }
                    }
                };
                // `Canceled`: the loading request went away; look again, and load if no one is.
                if let Ok(result) = waiting.await {
                    return result;
                }
            }
            let loading = Loading {
                shared: shared.clone(),
                key,
            };
            let result = match spec.await {
                Ok(spec) => Worker::link(&shared.engine, spec).map(Rc::new),
                Err(fault) => Err(fault),
            };
            loading.finish(&result);
            result
        }
    }

    /// Workers currently loaded.
    pub fn len(&self) -> usize {
        self.shared.inner.borrow().workers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops the idle instances of every Worker loaded on this core, so that their pool slots
    /// serve requests; returns how many were dropped. Called when an instantiation found the
    /// pool full.
    pub fn evict_idle(&self) -> usize {
        self.shared.loaded().iter().map(|w| w.evict_idle()).sum()
    }

    /// Makes sure a task drops this core's idle instances once they are [`IDLE_INSTANCE_TTL`]
    /// old; it stops when none is left. Call after a request left an instance idle; must be
    /// called inside a monoio runtime with a timer.
    pub fn expire_idle_later(&self) {
        if self.shared.sweeping.replace(true) {
            return;
        }
        let shared = Rc::downgrade(&self.shared);
        drop(monoio::spawn(async move {
            loop {
                monoio::time::sleep(IDLE_INSTANCE_TTL / 2).await;
                let Some(shared) = shared.upgrade() else {
                    return;
                };
                let left: usize = shared
                    .loaded()
                    .iter()
                    .map(|w| w.expire_idle(IDLE_INSTANCE_TTL))
                    .sum();
                if left == 0 {
                    shared.sweeping.set(false);
                    return;
                }
            }
        }));
    }

    /// Whether `key` is loaded (does not count as a use).
    pub fn contains(&self, key: &str) -> bool {
        self.shared.inner.borrow().workers.contains(key)
    }

    /// Keys being loaded on this core now.
    pub fn loading(&self) -> usize {
        self.shared.inner.borrow().loading.len()
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::test_support::{block_on, engine, spec};

    const WAT: &str = r#"(module (memory (export "memory") 1)
        (func (export "tenantry_fetch") (result i32) i32.const 0))"#;

    /// Yields to the runtime once, as a load waiting on a loader thread does.
    async fn yield_once() {
        let mut yielded = false;
        std::future::poll_fn(|cx| {
            if yielded {
                std::task::Poll::Ready(())
            } else {
                yielded = true;
                cx.waker().wake_by_ref();
                std::task::Poll::Pending
            }
        })
        .await
    }

    #[test]
    fn concurrent_misses_of_one_key_load_once() {
        let engine = engine();
        let pool = WorkerPool::new(engine.clone(), 4);
        let loads = Rc::new(Cell::new(0));
        let load = || {
            let loads = loads.clone();
            let spec = spec(&engine, WAT);
            pool.get_or_load("k", move || async move {
                loads.set(loads.get() + 1);
                yield_once().await;
                Ok(spec)
            })
        };
        let (a, b, c) = block_on(async {
            let (a, b) = futures_join(load(), load()).await;
            (a, b, load().await)
        });
        assert_eq!(loads.get(), 1);
        assert!(Rc::ptr_eq(&a.unwrap(), &b.unwrap()));
        assert!(c.is_ok());
        assert_eq!(pool.loading(), 0);
    }

    #[test]
    fn waiters_take_over_when_the_loading_request_goes_away() {
        let engine = engine();
        let pool = WorkerPool::new(engine.clone(), 4);
        let spec_of = || {
            let spec = spec(&engine, WAT);
            move || async move {
                yield_once().await;
                Ok(spec)
            }
        };
        let result = block_on(async {
            let mut first = Box::pin(pool.get_or_load("k", spec_of()));
            // Start the first load, then drop it half way (its client went away).
            let waker = std::task::Waker::noop();
            let mut cx = std::task::Context::from_waker(waker);
            assert!(first.as_mut().poll(&mut cx).is_pending());
            let mut second = Box::pin(pool.get_or_load("k", spec_of()));
            assert!(second.as_mut().poll(&mut cx).is_pending()); // waits for the first
            drop(first);
            second.await
        });
        assert!(result.is_ok());
        assert!(pool.contains("k"));
        assert_eq!(pool.loading(), 0);
    }

    #[test]
    fn a_failed_load_wakes_every_waiter_with_its_fault() {
        let engine = engine();
        let pool = WorkerPool::new(engine.clone(), 4);
        let fail = || async {
            yield_once().await;
            Err(Fault::Unavailable("no such artifact".into()))
        };
        let (a, b) = block_on(futures_join(
            pool.get_or_load("k", fail),
            pool.get_or_load("k", fail),
        ));
        assert_eq!(a.err(), Some(Fault::Unavailable("no such artifact".into())));
        assert_eq!(b.err(), Some(Fault::Unavailable("no such artifact".into())));
        assert!(!pool.contains("k"));
        assert_eq!(pool.loading(), 0);
    }

    #[test]
    fn round_robin_over_more_workers_than_it_holds_stays_bounded_and_correct() {
        const CAPACITY: usize = 16;
        let engine = engine();
        let module = spec(&engine, WAT).module;
        let pool = WorkerPool::new(engine.clone(), CAPACITY);
        let loads = Cell::new(0);
        let get = |key: &str| {
            let s = WorkerSpec {
                name: key.into(),
                module: module.clone(),
                bindings: crate::Bindings::default(),
                limits: crate::Limits::DEFAULT,
                reuse_instances: 0,
                js_bundle: None,
            };
            block_on(pool.get_or_load(key, || {
                loads.set(loads.get() + 1);
                std::future::ready(Ok(s))
            }))
            .unwrap()
        };
        let keys: Vec<String> = (0..=CAPACITY).map(|i| format!("ns/w{i}")).collect();
        for round in 0..3 {
            for (i, key) in keys.iter().enumerate() {
                assert_eq!(get(key).name(), key.as_str(), "round {round}");
                let held = if round == 0 {
                    CAPACITY.min(i + 1)
                } else {
                    CAPACITY
                };
                assert_eq!(pool.len(), held);
                // The next key in the rotation is the one used longest ago, so it was just
                // evicted (or not loaded yet): LRU's worst case, every request a miss.
                assert!(!pool.contains(&keys[(i + 1) % keys.len()]));
            }
        }
        assert_eq!(pool.len(), CAPACITY);
        assert_eq!(loads.get(), 3 * keys.len());
        // The last round left `keys[1..]` loaded: round robin over them (as many Workers as the
        // pool holds) only hits.
        let before = loads.get();
        for _ in 0..3 {
            for key in &keys[1..] {
                assert_eq!(get(key).name(), key.as_str());
            }
        }
        assert_eq!(loads.get(), before);
        assert!(!pool.contains(&keys[0]));
    }

    /// Polls two futures until both are ready.
    async fn futures_join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
        let mut a = std::pin::pin!(a);
        let mut b = std::pin::pin!(b);
        let (mut ra, mut rb) = (None, None);
        std::future::poll_fn(|cx| {
            if ra.is_none()
                && let std::task::Poll::Ready(v) = a.as_mut().poll(cx)
            {
                ra = Some(v);
            }
            if rb.is_none()
                && let std::task::Poll::Ready(v) = b.as_mut().poll(cx)
            {
                rb = Some(v);
            }
            if ra.is_some() && rb.is_some() {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await;
        (ra.take().expect("ready"), rb.take().expect("ready"))
    }
}
