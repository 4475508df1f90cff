//! Name resolution for subrequests: a few resolver threads shared by every core, a bounded queue
//! and a cache.
//!
//! The standard resolver (`getaddrinfo`) blocks, so it never runs on a serving core. Before this,
//! each lookup spawned a thread of its own: a Worker fetching many names could make the node
//! spawn threads without bound. Now lookups queue to [`RESOLVER_THREADS`] threads (a full queue
//! fails the subrequest at once), concurrent lookups of one name share a single query, and answers
//! are kept for [`POSITIVE_TTL`] (failures for [`NEGATIVE_TTL`]): `getaddrinfo` does not report
//! record TTLs, so these are fixed, short enough that a changed record is seen within half a
//! minute.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::TrySendError;
use futures_channel::oneshot;

/// Threads that run `getaddrinfo` for the whole node.
pub const RESOLVER_THREADS: usize = 4;
/// Lookups that may wait for a resolver thread; more fail at once ("busy").
pub const RESOLVER_QUEUE_DEPTH: usize = 256;
/// How long a successful lookup is reused.
pub const POSITIVE_TTL: Duration = Duration::from_secs(30);
/// How long a failed lookup is reused (so a Worker cannot make the node re-query a dead name
/// for every subrequest).
pub const NEGATIVE_TTL: Duration = Duration::from_secs(5);
/// Names (with port) cached at most; past it expired entries are dropped, then the cache is
/// cleared.
pub const MAX_CACHED_NAMES: usize = 4096;

/// The outcome of one lookup: addresses, or why there are none.
type Answer = Result<Vec<SocketAddr>, String>;
type Key = (String, u16);

enum Entry {
    Ready {
        answer: Answer,
        expires: Instant,
    },
    /// A query is under way; these wait for it.
    Pending(Vec<oneshot::Sender<Answer>>),
}

struct Shared {
    cache: Mutex<HashMap<Key, Entry>>,
    /// Queries actually sent to `getaddrinfo` (for tests and metrics).
    queries: std::sync::atomic::AtomicU64,
}

/// The node's resolver: cheap to clone (every clone shares threads and cache). Its threads start
/// on the first lookup of a name.
#[derive(Clone)]
pub struct Resolver {
    shared: Arc<Shared>,
    jobs: Arc<OnceLock<crossbeam_channel::Sender<Key>>>,
    threads: usize,
    depth: usize,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

impl Default for Resolver {
    fn default() -> Self {
        Resolver::new(RESOLVER_THREADS, RESOLVER_QUEUE_DEPTH)
    }
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
    shared.cache.lock().unwrap_or_else(|e| e.into_inner())
}

impl Resolver {
    /// A resolver with `threads` threads and a queue of `depth` lookups.
    pub fn new(threads: usize, depth: usize) -> Resolver {
        Resolver {
            shared: Arc::new(Shared {
                cache: Mutex::new(HashMap::new()),
                queries: std::sync::atomic::AtomicU64::new(0),
            }),
            jobs: Arc::new(OnceLock::new()),
            threads: threads.max(1),
            depth: depth.max(1),
        }
    }

    /// Lookups sent to the system resolver so far (cache hits and shared queries not counted).
    pub fn queries(&self) -> u64 {
        self.shared
            .queries
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The addresses of `name` (lower case) at `port`. IP literals are not looked up.
    pub async fn resolve(&self, name: &str, port: u16) -> Answer {
        if let Ok(ip) = name.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let key = (name.to_string(), port);
        let waiting = {
            let mut cache = lock(&self.shared);
            match cache.get_mut(&key) {
                Some(Entry::Ready { answer, expires }) if *expires > Instant::now() => {
                    return answer.clone();
                }
                Some(Entry::Pending(waiters)) => {
                    let (tx, rx) = oneshot::channel();
                    waiters.push(tx);
                    rx
                }
                _ => {
                    if cache.len() >= MAX_CACHED_NAMES {
                        let now = Instant::now();
                        cache.retain(|_, e| match e {
                            Entry::Ready { expires, .. } => *expires > now,
                            Entry::Pending(_) => true,
                        });
                        if cache.len() >= MAX_CACHED_NAMES {
                            cache.retain(|_, e| matches!(e, Entry::Pending(_)));
                        }
                    }
                    match self.queue().try_send(key.clone()) {
                        Ok(()) => {}
                        Err(TrySendError::Full(_)) => {
                            return Err(format!(
                                "cannot resolve `{name}`: the resolver is busy \
                                 ({} lookups queued)",
                                self.depth
                            ));
                        }
                        Err(TrySendError::Disconnected(_)) => {
                            return Err(format!("cannot resolve `{name}`: the resolver stopped"));
                        }
                    }
                    let (tx, rx) = oneshot::channel();
                    cache.insert(key, Entry::Pending(vec![tx]));
                    rx
                }
            }
        };
        waiting
            .await
            .unwrap_or_else(|_| Err(format!("cannot resolve `{name}`: the resolver stopped")))
    }

    /// The job queue, starting the threads on first use.
    fn queue(&self) -> &crossbeam_channel::Sender<Key> {
        self.jobs.get_or_init(|| {
            let (tx, rx) = crossbeam_channel::bounded::<Key>(self.depth);
            for i in 0..self.threads {
                let rx = rx.clone();
                let shared = self.shared.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("tenantry-resolve-{i}"))
                    .spawn(move || {
                        // Ends when every `Resolver` clone (every sender) is gone.
                        for key in rx {
                            lookup(&shared, key);
                        }
                    });
                if let Err(e) = spawned {
                    tracing::warn!("cannot start a resolver thread: {e}");
                }
            }
            tx
        })
    }
}

/// Runs one query and hands the answer to everyone waiting for it.
fn lookup(shared: &Shared, key: Key) {
    shared
        .queries
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let answer = match (key.0.as_str(), key.1).to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            if addrs.is_empty() {
                Err(format!("`{}` has no addresses", key.0))
            } else {
                Ok(addrs)
            }
        }
        Err(e) => Err(format!("cannot resolve `{}`: {e}", key.0)),
    };
    let ttl = if answer.is_ok() {
        POSITIVE_TTL
    } else {
        NEGATIVE_TTL
    };
    let entry = Entry::Ready {
        answer: answer.clone(),
        expires: Instant::now() + ttl,
    };
    let waiters = match lock(shared).insert(key, entry) {
        Some(Entry::Pending(waiters)) => waiters,
        _ => Vec::new(),
    };
    for waiter in waiters {
        let _ = waiter.send(answer.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn answers_are_cached_and_concurrent_lookups_share_one_query() {
        let r = Resolver::new(2, 16);
        block_on(async {
            let other = r.clone();
            let second = monoio::spawn(async move { other.resolve("localhost", 80).await });
            let a = r.resolve("localhost", 80).await.unwrap();
            assert_eq!(a, second.await.unwrap());
            assert!(a.iter().all(|addr| addr.ip().is_loopback()), "{a:?}");
            assert_eq!(r.resolve("localhost", 80).await.unwrap(), a);
        });
        assert_eq!(r.queries(), 1);
        // IP literals never reach the resolver.
        block_on(async { r.resolve("127.0.0.1", 81).await.unwrap() });
        assert_eq!(r.queries(), 1);
    }

    #[test]
    fn failures_are_cached_too() {
        let r = Resolver::new(1, 16);
        block_on(async {
            let name = "no-such-name.invalid";
            let e = r.resolve(name, 80).await.unwrap_err();
            assert!(e.contains(name), "{e}");
            assert_eq!(r.resolve(name, 80).await.unwrap_err(), e);
        });
        assert_eq!(r.queries(), 1);
    }

    #[test]
    fn a_full_queue_fails_at_once() {
        // No thread drains a queue of one: the first lookup waits, the second is refused.
        let r = Resolver::new(1, 1);
        let (tx, rx) = crossbeam_channel::bounded::<Key>(1);
        let _ = r.jobs.set(tx);
        block_on(async {
            let mut first = std::pin::pin!(r.resolve("a.invalid", 80));
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            assert!(std::future::Future::poll(first.as_mut(), &mut cx).is_pending());
            let e = r.resolve("b.invalid", 80).await.unwrap_err();
            assert!(e.contains("busy"), "{e}");
        });
        drop(rx);
    }
}
