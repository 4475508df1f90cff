//! Admission control and fair queueing, per core: overload is shed with `503` + `Retry-After`
//! before the instance pool runs out, and one Worker's load queues behind its own requests, not
//! behind everyone's.
//!
//! ```text
//!  request for Worker W ─► W's queue empty, and room? ── yes ─► run (Permit held until it ends)
//!                           │ no
//!                           ▼
//!          core queue or W's queue full? ── yes ─► 503 + Retry-After (shed at once)
//!                           │ no
//!                           ▼
//!          wait in W's FIFO ── max_queue_wait passed ─► 503 + Retry-After
//!                           │ a permit ends: Workers with waiters are served round robin,
//!                           ▼ one request each per pass, while each has room
//!                          run
//! ```
//!
//! "Room" for a request of Worker W on this core means:
//! - fewer than [`AdmissionLimits::max_in_flight`] requests run on the core (requests from the
//!   network only: calls between Workers are admitted by the per-Worker rules alone, because their
//!   callers already hold a permit and must not wait for each other's, which could deadlock);
//! - fewer than [`AdmissionLimits::max_in_flight_per_worker`] requests of W run on the core, and,
//!   if W is CPU-bound there ([`Worker::is_cpu_bound`]: one of its requests has run 500 µs of
//!   guest time, across at least two epoch ticks, and has not finished, or its last finished request had), fewer than
//!   [`AdmissionLimits::max_cpu_bound_per_worker`] — counting all of its requests, also those that
//!   have not run that long yet, so a burst is not admitted before it shows it is CPU-bound.
//!   A CPU-heavy Worker thus runs one request at a time on a core; a Worker with short or
//!   I/O-bound requests is only bounded by the larger cap.
//!
//! How long a Worker's queue may grow: [`AdmissionLimits::max_queued_per_worker`], except for a
//! CPU-bound Worker while the core is shared — another Worker's request arrived on it within
//! [`CONTENTION_WINDOW`] — which gets [`AdmissionLimits::max_queued_per_cpu_bound_worker`]
//! (default 0: shed at once). A request queued behind a CPU-bound one waits its whole run time,
//! stretched by the other tenants' share of the core: with a queue of 8 the fair-share
//! benchmark's admitted hog requests took 10× their unloaded p99, with none ~2.5×
//! (docs/performance.md). A CPU-heavy Worker alone on a core still queues as before.
//!
//! Platform Workers (the dispatch Worker in `_platform`) route every tenant: the per-Worker share
//! is not applied to them but to the customer Worker they call, so tenants are not lumped under
//! the dispatcher's name. The core-wide cap still applies to the dispatcher's requests.
//!
//! Everything here is per core (`Rc`, no locks); a permit is released on drop.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_channel::oneshot;
use tenantry_core::{OVERLOADED_RETRY_AFTER_S, Response, Worker};

/// Admission limits of one core. [`AdmissionLimits::derive`] gives the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionLimits {
    /// Requests from the network running on one core. Default: half the core's share of the
    /// instance pool (`max_instances / threads / 2`): the other half is for the Workers those
    /// requests call (each waiting caller holds its slot) and for idle reuse-mode instances.
    pub max_in_flight: usize,
    /// Requests of one Worker running on one core (network requests and calls from other
    /// Workers). Default: a quarter of `max_in_flight`, so at least four Workers at their cap
    /// fit in a core's share.
    pub max_in_flight_per_worker: usize,
    /// Requests of a CPU-bound Worker (see the module doc) that run on one core. A core runs its
    /// CPU-bound Workers round robin, one slice (an epoch tick) per Worker per round, so with
    /// N in flight each takes N times as long; more than one adds no throughput and multiplies
    /// the latency of every admitted request. Default: 1.
    pub max_cpu_bound_per_worker: usize,
    /// Requests waiting for room on one core, all Workers together. Default: `max_in_flight`.
    pub max_queued: usize,
    /// Requests of one Worker waiting on one core. Default: 8, so one Worker's backlog cannot
    /// fill the core's queue, and the last in line waits about 8 of its requests' run time.
    pub max_queued_per_worker: usize,
    /// Requests of a CPU-bound Worker waiting on one core while other Workers' requests are
    /// served there (see the module doc). Default: 0, so an admitted request never waits
    /// behind the run time of its own Worker's CPU-bound requests.
    pub max_queued_per_cpu_bound_worker: usize,
    /// The longest a request waits for room before it is shed. Default: 100 ms.
    pub max_queue_wait: Duration,
    /// The `Retry-After` a shed request gets, in seconds. Default:
    /// [`OVERLOADED_RETRY_AFTER_S`] (1).
    pub retry_after_s: u32,
}

/// Default of [`AdmissionLimits::max_cpu_bound_per_worker`].
pub const DEFAULT_MAX_CPU_BOUND_PER_WORKER: usize = 1;
/// Default of [`AdmissionLimits::max_queued_per_worker`].
pub const DEFAULT_MAX_QUEUED_PER_WORKER: usize = 8;
/// Default of [`AdmissionLimits::max_queued_per_cpu_bound_worker`].
pub const DEFAULT_MAX_QUEUED_PER_CPU_BOUND_WORKER: usize = 0;
/// How recently another Worker's request must have arrived on a core for a CPU-bound Worker to
/// count as sharing it: the default queue wait, the horizon a queued request looks ahead.
pub const CONTENTION_WINDOW: Duration = Duration::from_millis(100);
/// Default of [`AdmissionLimits::max_queue_wait`].
pub const DEFAULT_MAX_QUEUE_WAIT: Duration = Duration::from_millis(100);

impl AdmissionLimits {
    /// The defaults for a node with `max_instances` pool slots and `threads` serving cores.
    pub fn derive(max_instances: u32, threads: usize) -> AdmissionLimits {
        let per_core = max_instances as usize / threads.max(1);
        let max_in_flight = (per_core / 2).max(1);
        AdmissionLimits {
            max_in_flight,
            max_in_flight_per_worker: (max_in_flight / 4).max(1),
            max_cpu_bound_per_worker: DEFAULT_MAX_CPU_BOUND_PER_WORKER,
            max_queued: max_in_flight,
            max_queued_per_worker: DEFAULT_MAX_QUEUED_PER_WORKER,
            max_queued_per_cpu_bound_worker: DEFAULT_MAX_QUEUED_PER_CPU_BOUND_WORKER,
            max_queue_wait: DEFAULT_MAX_QUEUE_WAIT,
            retry_after_s: OVERLOADED_RETRY_AFTER_S,
        }
    }
}

impl Default for AdmissionLimits {
    /// [`AdmissionLimits::derive`] for the engine's default pool on one core per CPU.
    fn default() -> Self {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        AdmissionLimits::derive(
            tenantry_core::EngineSettings::default().max_instances,
            threads,
        )
    }
}

/// Who is asking for a permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A request from the network to a customer Worker: the core-wide and per-Worker rules.
    Direct,
    /// A request from the network to a platform Worker (a dispatcher routing every tenant): the
    /// core-wide rules only.
    Platform,
    /// A call from another Worker to a customer Worker: the per-Worker rules only (the caller
    /// already holds a permit).
    Nested,
}

/// Why a request was shed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shed {
    /// The core's queue is full.
    CoreQueueFull { worker: String, queued: usize },
    /// This Worker's queue on the core is full.
    WorkerQueueFull {
        worker: String,
        running: usize,
        queued: usize,
    },
    /// A CPU-bound Worker at its share of a core that other Workers use too (no queue).
    CpuBoundShare { worker: String, running: usize },
    /// No room came within the maximum queue wait.
    Waited { worker: String, waited: Duration },
}

impl Shed {
    /// `503` with `Retry-After` and a message saying what was full.
    pub fn to_response(&self, retry_after_s: u32) -> Response {
        let why = match self {
            Shed::CoreQueueFull { worker, queued } => format!(
                "This node is over capacity: {queued} requests already wait on this core; \
                 `{worker}` was not run"
            ),
            Shed::WorkerQueueFull {
                worker,
                running,
                queued,
            } => format!(
                "Worker `{worker}` is over its share of this node: {running} of its requests \
                 run and {queued} wait on this core"
            ),
            Shed::CpuBoundShare { worker, running } => format!(
                "Worker `{worker}` is CPU-bound and already runs {running} of its requests on this \
                 core, which other Workers share; it is not queued behind them"
            ),
            Shed::Waited { worker, waited } => format!(
                "Worker `{worker}` found no capacity on this node within {} ms",
                waited.as_millis()
            ),
        };
        let mut response = Response::text(503, format!("{why}. Retry after {retry_after_s} s.\n"));
        response.headers.push((
            Bytes::from_static(b"retry-after"),
            Bytes::from(retry_after_s.to_string()),
        ));
        response
    }
}

/// One core's admission state.
pub struct Admission {
    limits: AdmissionLimits,
    state: RefCell<State>,
}

#[derive(Default)]
struct State {
    /// Permits held by requests from the network (`Direct` and `Platform`).
    in_flight: usize,
    /// Waiters in every Worker's queue.
    queued: usize,
    next_id: u64,
    workers: HashMap<Rc<str>, PerWorker>,
    /// Workers with waiters, in the order they are served.
    order: VecDeque<Rc<str>>,
    /// The last two distinct Workers whose requests arrived here, newest first, and when: the
    /// newest arrival of any Worker other than a given one is always among them.
    recent: [Option<(Rc<str>, Instant)>; 2],
}

impl State {
    fn arrived(&mut self, key: &Rc<str>, now: Instant) {
        match &mut self.recent[0] {
            Some((newest, at)) if newest == key => *at = now,
            _ => {
                self.recent[1] = self.recent[0].take();
                self.recent[0] = Some((key.clone(), now));
            }
        }
    }

    /// Whether a Worker other than `key` had a request arrive within [`CONTENTION_WINDOW`].
    fn shared(&self, key: &Rc<str>, now: Instant) -> bool {
        self.recent
            .iter()
            .flatten()
            .any(|(other, at)| other != key && now.duration_since(*at) < CONTENTION_WINDOW)
    }
}

struct PerWorker {
    /// Permits held by requests of this Worker (every class).
    in_flight: usize,
    /// Whether the per-Worker rules apply (not for platform Workers at the top level).
    capped: bool,
    /// The loaded Worker, asked how many of its requests are CPU-bound.
    worker: Rc<Worker>,
    waiters: VecDeque<Waiter>,
}

struct Waiter {
    id: u64,
    class: Class,
    /// When it is shed if still waiting.
    deadline: Instant,
    /// `true`: granted a permit; `false`: shed, it waited too long.
    outcome: oneshot::Sender<bool>,
}

impl Admission {
    pub fn new(limits: AdmissionLimits) -> Rc<Admission> {
        Rc::new(Admission {
            limits,
            state: RefCell::new(State::default()),
        })
    }

    pub fn limits(&self) -> &AdmissionLimits {
        &self.limits
    }

    /// Requests from the network running on this core, and requests waiting.
    pub fn load(&self) -> (usize, usize) {
        let s = self.state.borrow();
        (s.in_flight, s.queued)
    }

    /// A permit to run a request of `worker`, at once, after a bounded wait, or not at all.
    pub async fn acquire(
        self: &Rc<Self>,
        worker: &Rc<Worker>,
        class: Class,
    ) -> Result<Permit, Shed> {
        let key: Rc<str> = Rc::from(worker.name());
        let (id, outcome) = {
            let mut s = self.state.borrow_mut();
            let s = &mut *s;
            Self::expire(s);
            let now = Instant::now();
            s.arrived(&key, now);
            let shared = s.shared(&key, now);
            let entry = s.workers.entry(key.clone()).or_insert_with(|| PerWorker {
                in_flight: 0,
                capped: class != Class::Platform,
                worker: worker.clone(),
                waiters: VecDeque::new(),
            });
            // A new version replaces the old one for the CPU-bound count.
            if !Rc::ptr_eq(&entry.worker, worker) {
                entry.worker = worker.clone();
            }
            if entry.waiters.is_empty() && self.room(s.in_flight, entry, class) {
                Self::grant(s, &key, class);
                return Ok(self.permit(key, class));
            }
            let name = || worker.name().to_string();
            if shared
                && entry.worker.is_cpu_bound()
                && entry.waiters.len() >= self.limits.max_queued_per_cpu_bound_worker
            {
                return Err(Shed::CpuBoundShare {
                    worker: name(),
                    running: entry.in_flight,
                });
            }
            if entry.waiters.len() >= self.limits.max_queued_per_worker {
                return Err(Shed::WorkerQueueFull {
                    worker: name(),
                    running: entry.in_flight,
                    queued: entry.waiters.len(),
                });
            }
            if s.queued >= self.limits.max_queued {
                return Err(Shed::CoreQueueFull {
                    worker: name(),
                    queued: s.queued,
                });
            }
            let (tx, rx) = oneshot::channel();
            s.next_id += 1;
            let id = s.next_id;
            if entry.waiters.is_empty() {
                s.order.push_back(key.clone());
            }
            entry.waiters.push_back(Waiter {
                id,
                class,
                deadline: now + self.limits.max_queue_wait,
                outcome: tx,
            });
            s.queued += 1;
            (id, rx)
        };
        let mut queued = Queued {
            admission: self,
            key: key.clone(),
            id,
            class,
            outcome,
            done: false,
        };
        // The timer covers a quiet core. It does not fire while CPU-bound guests keep the run
        // queue busy (monoio processes timers only when it parks), so waiters past their deadline
        // are also shed whenever a request arrives or ends on the core (`expire`).
        let waited = monoio::time::timeout(self.limits.max_queue_wait, &mut queued.outcome).await;
        queued.done = true;
        let granted = match waited {
            Ok(outcome) => outcome == Ok(true),
            // Still queued: withdraw. Not queued any more: a permit (or the shedding) was
            // handed over just as the timer fired.
            Err(_) => {
                !self.withdraw(&key, id) && matches!(queued.outcome.try_recv(), Ok(Some(true)))
            }
        };
        if granted {
            return Ok(self.permit(key, class));
        }
        Err(Shed::Waited {
            worker: worker.name().to_string(),
            waited: self.limits.max_queue_wait,
        })
    }

    /// Whether a request of `class` for `entry` may run now.
    fn room(&self, in_flight: usize, entry: &PerWorker, class: Class) -> bool {
        let core = class == Class::Nested || in_flight < self.limits.max_in_flight;
        let own = !entry.capped
            || (entry.in_flight < self.limits.max_in_flight_per_worker
                && (entry.in_flight < self.limits.max_cpu_bound_per_worker
                    || !entry.worker.is_cpu_bound()));
        core && own
    }

    fn grant(s: &mut State, key: &Rc<str>, class: Class) {
        if class != Class::Nested {
            s.in_flight += 1;
        }
        if let Some(entry) = s.workers.get_mut(key) {
            entry.in_flight += 1;
        }
    }

    fn permit(self: &Rc<Self>, key: Rc<str>, class: Class) -> Permit {
        Permit {
            admission: self.clone(),
            key,
            class,
        }
    }

    /// Removes waiter `id` from `key`'s queue; false if it is no longer there (it was granted).
    fn withdraw(&self, key: &Rc<str>, id: u64) -> bool {
        let mut s = self.state.borrow_mut();
        let s = &mut *s;
        let Some(entry) = s.workers.get_mut(key) else {
            return false;
        };
        let Some(at) = entry.waiters.iter().position(|w| w.id == id) else {
            return false;
        };
        entry.waiters.remove(at);
        s.queued -= 1;
        if entry.waiters.is_empty() {
            s.order.retain(|k| k != key);
            if entry.in_flight == 0 {
                s.workers.remove(key);
            }
        }
        true
    }

    fn release(&self, key: &Rc<str>, class: Class) {
        let mut s = self.state.borrow_mut();
        let s = &mut *s;
        if class != Class::Nested {
            s.in_flight -= 1;
        }
        if let Some(entry) = s.workers.get_mut(key) {
            entry.in_flight -= 1;
            if entry.in_flight == 0 && entry.waiters.is_empty() {
                s.workers.remove(key);
            }
        }
        self.serve_waiters(s);
    }

    /// Sheds the waiters whose deadline passed. Each Worker's queue is in deadline order.
    fn expire(s: &mut State) {
        if s.queued == 0 {
            return;
        }
        let now = Instant::now();
        let mut at = 0;
        while at < s.order.len() {
            let key = s.order[at].clone();
            let Some(entry) = s.workers.get_mut(&key) else {
                s.order.remove(at);
                continue;
            };
            while entry.waiters.front().is_some_and(|w| w.deadline <= now) {
                if let Some(waiter) = entry.waiters.pop_front() {
                    let _ = waiter.outcome.send(false);
                    s.queued -= 1;
                }
            }
            if entry.waiters.is_empty() {
                s.order.remove(at);
                if entry.in_flight == 0 {
                    s.workers.remove(&key);
                }
            } else {
                at += 1;
            }
        }
    }

    /// Hands free room to waiters: Workers in turn, one request each per pass, until a pass
    /// grants nothing.
    fn serve_waiters(&self, s: &mut State) {
        Self::expire(s);
        let mut progress = true;
        while progress && !s.order.is_empty() {
            progress = false;
            for _ in 0..s.order.len() {
                let Some(key) = s.order.pop_front() else {
                    break;
                };
                let Some(entry) = s.workers.get(&key) else {
                    continue;
                };
                let next = entry.waiters.front().map(|w| w.class);
                if let Some(class) = next
                    && self.room(s.in_flight, entry, class)
                {
                    let entry = s.workers.get_mut(&key).expect("looked up above");
                    let waiter = entry.waiters.pop_front().expect("has a front");
                    s.queued -= 1;
                    // The receiver lives as long as the waiter is queued (`Queued` withdraws it
                    // on drop), so this send is received.
                    let _ = waiter.outcome.send(true);
                    Self::grant(s, &key, class);
                    progress = true;
                }
                if s.workers.get(&key).is_some_and(|e| !e.waiters.is_empty()) {
                    s.order.push_back(key);
                }
            }
        }
    }
}

/// A waiter's place in its queue: withdrawn if the waiting future is dropped (its caller went
/// away), and the permit released if it was granted meanwhile.
struct Queued<'a> {
    admission: &'a Rc<Admission>,
    key: Rc<str>,
    id: u64,
    class: Class,
    outcome: oneshot::Receiver<bool>,
    done: bool,
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        if !self.done
            && !self.admission.withdraw(&self.key, self.id)
            && matches!(self.outcome.try_recv(), Ok(Some(true)))
        {
            self.admission.release(&self.key, self.class);
        }
    }
}

/// The right to run one request; released when dropped.
pub struct Permit {
    admission: Rc<Admission>,
    key: Rc<str>,
    class: Class,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.admission.release(&self.key, self.class);
    }
}
