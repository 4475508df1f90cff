//! Fair yielding of CPU-bound guests to the other tasks of their monoio thread, and between
//! Workers.
//!
//! On every epoch tick a running guest yields (see `Worker::new_store`). wasmtime's built-in
//! `UpdateDeadline::Yield` wakes the task from inside its own poll; monoio 0.2 puts a task that
//! was woken while running at the *front* of its run queue (`Harness::poll` →
//! `LocalScheduler::yield_now` → `push_front`), so the guest would run again at once and starve
//! every other task of the core. Measured: with it, a task spawned beside a spinning guest never
//! ran until the guest's deadline (`invoke::tests::cpu_hog_yields_to_other_tasks`).
//!
//! [`yield_now`] instead parks the waker in a per-thread list and spawns one small *pump* task at
//! the back of the queue; when the pump runs, every task that was ready before it has had its
//! turn, and it wakes parked guests, which go to the back in turn: round robin.
//!
//! The round robin is **per Worker, not per guest**. wasmtime grants a resumed guest a whole tick
//! (then 1 ms, now 250 µs), so with one rotation slot per guest a request arriving on the core waited about
//! (number of CPU-bound guests on the core) × 1 ms: a tenant running 128 copies of a 5 ms loop
//! pushed another tenant's hello from 0.7 ms to 550 ms (issue 9). So guests park in a FIFO per
//! Worker ([`YieldKey`]) and each pump wakes only the *oldest* parked guest of each Worker: every
//! round, each CPU-bound Worker runs one slice, however many of its requests are in flight, and
//! its other guests wait behind their own Worker's. Guests that do not run a whole tick (I/O-bound
//! or short requests) never park and are not slowed; nor does a short request that happens to
//! run across a tick (it has used less than half a tick of fuel when it yields): it joins no
//! rotation and runs again next round with everything else. Measured (JavaScript hello, ~60 µs
//! a request, 64 connections, one core): rotating those per Worker serialised a busy Worker
//! behind itself, 5.3k requests/s with p99 99 ms; without, 9.5k with p99 16 ms (and with the
//! default admission, which counts rotating guests as CPU-bound, ~60% of them were shed). One pump serves a whole round; it costs one
//! task allocation per round, and re-queues itself while guests stay parked.
//!
//! **A busy core must still reach its driver.** monoio 0.2 handles wakes from other threads
//! (a module mapped by a loader thread, a KV reply, a DNS answer), its timers, and — on the epoll
//! driver — I/O readiness only when it *parks*, and it parks only when its run queue is empty.
//! A pump that re-queued itself at once would keep the queue non-empty for as long as any guest
//! spins, so a request waiting for its module to load never woke (measured: another tenant's
//! hello timed out behind 48 spinning requests). So each further pump first waits for a timer
//! already past due: once the woken guests have run and parked again, the queue is empty, the
//! runtime parks with a zero timeout (the timer is due), handles everything that is pending, and
//! the timer wakes the pump. That costs one timer and one non-blocking `park` per round
//! (~1–2 µs per slice); when the runtime processed its timers within the last millisecond the
//! timer fires at once and the round is not delayed at all.
//!
//! Everything here is safe code, and the future handed to wasmtime is genuinely `Send` (it holds a
//! `bool`): the `!Send` parts live in a thread-local and in a monoio task.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Which rotation a yielding guest joins: one per loaded Worker (the address of its identity,
/// which lives as long as any of its stores).
pub(crate) type YieldKey = usize;

thread_local! {
    static PARKED: RefCell<Parked> = RefCell::new(Parked::default());
}

#[derive(Default)]
struct Parked {
    /// Guests that yielded without having used a slice's worth of CPU (a short request that
    /// happened to run across a tick): all of them run again next round.
    brief: Vec<Waker>,
    /// Each Worker's parked guests, oldest first.
    queues: HashMap<YieldKey, VecDeque<Waker>>,
    /// Workers with parked guests, in the order they get their next slice.
    order: VecDeque<YieldKey>,
    /// Whether a pump task is already queued for them.
    pump_queued: bool,
}

/// A future that completes once every other task ready on this monoio thread has run, and every
/// other Worker with parked guests has had one slice.
///
/// `cpu_bound` says whether the guest has used at least half a tick of CPU in this invocation:
/// only such guests join their Worker's rotation (and count in [`parked`]); one that merely ran
/// across a tick boundary is woken again with everything else next round, so a Worker of many
/// short requests is not serialised behind its own rotation.
///
/// Must be polled inside a monoio runtime (it spawns the pump task there).
pub(crate) fn yield_now(
    key: YieldKey,
    cpu_bound: bool,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(YieldNow {
        key: cpu_bound.then_some(key),
        parked: false,
    })
}

/// How many guests of `key` are parked on this thread.
pub(crate) fn parked(key: YieldKey) -> usize {
    PARKED.with_borrow(|p| p.queues.get(&key).map_or(0, VecDeque::len))
}

struct YieldNow {
    /// The rotation to join; `None` for a brief guest.
    key: Option<YieldKey>,
    parked: bool,
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.parked {
            return Poll::Ready(());
        }
        self.parked = true;
        let key = self.key;
        let spawn_pump = PARKED.with_borrow_mut(|p| {
            match key {
                Some(key) => {
                    let queue = p.queues.entry(key).or_default();
                    if queue.is_empty() {
                        p.order.push_back(key);
                    }
                    queue.push_back(cx.waker().clone());
                }
                None => p.brief.push(cx.waker().clone()),
            }
            !std::mem::replace(&mut p.pump_queued, true)
        });
        if spawn_pump {
            // Detached: the JoinHandle is dropped.
            drop(monoio::spawn(Pump::new(false)));
        }
        Poll::Pending
    }
}

/// Wakes the oldest parked guest of each Worker. It is not running them itself: each goes to the
/// back of the queue.
struct Pump {
    ran: bool,
    /// For a pump that continues a round: a timer already due, so that the runtime parks (and
    /// handles foreign wakes, timers and I/O) before the next round starts.
    drain: Option<Pin<Box<monoio::time::Sleep>>>,
}

impl Pump {
    fn new(drain: bool) -> Pump {
        let drain = drain.then(|| {
            let now = monoio::time::Instant::now();
            let past = now
                .checked_sub(std::time::Duration::from_millis(1))
                .unwrap_or(now);
            Box::pin(monoio::time::sleep_until(past))
        });
        Pump { ran: false, drain }
    }
}

impl Future for Pump {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(drain) = self.drain.as_mut() {
            if drain.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.drain = None;
        }
        self.ran = true;
        let (wakers, again) = PARKED.with_borrow_mut(|p| {
            let mut wakers = std::mem::take(&mut p.brief);
            wakers.reserve(p.order.len());
            for _ in 0..p.order.len() {
                let Some(key) = p.order.pop_front() else {
                    break;
                };
                let Some(queue) = p.queues.get_mut(&key) else {
                    continue;
                };
                if let Some(waker) = queue.pop_front() {
                    wakers.push(waker);
                }
                if queue.is_empty() {
                    p.queues.remove(&key);
                } else {
                    p.order.push_back(key);
                }
            }
            // Guests still parked need another round even if none of the woken ones yields again.
            let again = !p.order.is_empty();
            p.pump_queued = again;
            (wakers, again)
        });
        // Outside the borrow: waking schedules tasks, which must not find the list borrowed.
        for waker in wakers {
            waker.wake();
        }
        if again {
            drop(monoio::spawn(Pump::new(true)));
        }
        Poll::Ready(())
    }
}

impl Drop for Pump {
    /// A pump dropped unrun (its runtime shut down) forgets the parked tasks, which belong to that
    /// runtime, so that a later runtime on this thread starts clean.
    fn drop(&mut self) {
        if !self.ran {
            let _ = PARKED.try_with(|p| {
                if let Ok(mut p) = p.try_borrow_mut() {
                    *p = Parked::default();
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;

    use super::*;
    use crate::test_support::block_on;

    /// A wake from another thread (a module mapped by a loader thread, a KV reply) reaches its
    /// task while guests keep the core busy: the pump lets the runtime park between rounds.
    #[test]
    fn a_foreign_wake_is_handled_while_guests_spin() {
        const MAX_ROUNDS: u32 = 200_000;
        // io_uring: the epoll driver also looks at foreign wakes when it submits, io_uring only
        // when it parks.
        let Ok(mut rt) = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .enable_timer()
            .build()
        else {
            eprintln!("io_uring is not available here: nothing to test");
            return;
        };
        let (rounds_at_wake, finished) = rt.block_on(async {
            let rounds = Rc::new(Cell::new(0u32));
            let done = Rc::new(Cell::new(false));
            for _ in 0..4 {
                let (rounds, done) = (rounds.clone(), done.clone());
                drop(monoio::spawn(async move {
                    while !done.get() && rounds.get() < MAX_ROUNDS {
                        rounds.set(rounds.get() + 1);
                        yield_now(7, true).await;
                    }
                }));
            }
            let (tx, rx) = futures_channel::oneshot::channel::<()>();
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(10));
                let _ = tx.send(());
            });
            rx.await.unwrap();
            let at_wake = rounds.get();
            done.set(true);
            (at_wake, MAX_ROUNDS)
        });
        // Without a park between rounds the wake waits until every spinner gives up.
        assert!(
            rounds_at_wake < finished,
            "woken only after {rounds_at_wake} rounds"
        );
    }

    /// Eight always-busy guests of one Worker get, together, the slices one guest of another
    /// Worker gets: the rotation is per Worker.
    #[test]
    fn each_worker_gets_one_slice_per_round() {
        let (many, one) = block_on(async {
            let many = Rc::new(Cell::new(0u32));
            let one = Rc::new(Cell::new(0u32));
            for _ in 0..8 {
                let many = many.clone();
                drop(monoio::spawn(async move {
                    loop {
                        many.set(many.get() + 1);
                        yield_now(1, true).await;
                    }
                }));
            }
            let counter = one.clone();
            monoio::spawn(async move {
                for _ in 0..100 {
                    counter.set(counter.get() + 1);
                    yield_now(2, true).await;
                }
            })
            .await;
            (many.get(), one.get())
        });
        assert_eq!(one, 100);
        // Each of the eight ran once before parking; after that, one slice per round.
        assert!(
            many <= 8 + 100,
            "{many} slices for the busy Worker's guests"
        );
        assert!(many >= 100, "{many}");
    }

    /// Guests that yield without having used a slice (short requests that ran across a tick) are
    /// not rotated one per round: all of them run again next round, and none counts as parked.
    #[test]
    fn brief_guests_are_not_serialised_by_their_worker() {
        let (brief, reference) = block_on(async {
            let brief = Rc::new(Cell::new(0u32));
            for _ in 0..8 {
                let brief = brief.clone();
                drop(monoio::spawn(async move {
                    loop {
                        brief.set(brief.get() + 1);
                        yield_now(3, false).await;
                        assert_eq!(parked(3), 0);
                    }
                }));
            }
            let counter = Rc::new(Cell::new(0u32));
            let c = counter.clone();
            monoio::spawn(async move {
                for _ in 0..100 {
                    c.set(c.get() + 1);
                    yield_now(4, true).await;
                }
            })
            .await;
            (brief.get(), counter.get())
        });
        assert_eq!(reference, 100);
        // Every brief guest ran in (nearly) every round: far more than one slice per round.
        assert!(brief >= 8 * 99, "{brief} slices for the brief guests");
    }
}
