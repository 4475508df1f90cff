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
//! or short requests) never park and are not slowed. One pump serves a whole round; it costs one
//! task allocation per round.
//!
//! **A busy core must still reach its driver.** monoio 0.2 reaps I/O completions only when it
//! parks (its run queue is empty) or between batches of tasks, and handles wakes from other
//! threads (a module mapped by a loader thread, a KV reply, a DNS answer), its timers, and — on
//! the epoll driver — I/O readiness only when it parks. A pump that re-queued itself at once would
//! keep the queue non-empty for as long as any guest spins, so a request waiting for its module to
//! load never woke (measured: another tenant's hello timed out behind 48 spinning requests), and
//! with one reap per batch a short request beside a spinning Worker waited several slices per
//! read or write. So each pump first waits (see [`between_rounds`]) for two I/O reaps — a read of
//! a socket that already holds a byte, which completes only once the runtime submits and reaps —
//! and for a timer already past due, which makes the runtime park (at most every millisecond:
//! monoio's timer wheel counts whole milliseconds). That costs a `write` and two reaps per round
//! (a few µs per 250 µs slice) and a socket pair per chain of pumps: a chain lasts while guests
//! stay parked, so with a single CPU-bound guest on the core each of its slices starts one.
//!
//! Everything here is safe code, and the future handed to wasmtime is genuinely `Send` (it holds a
//! `bool`): the `!Send` parts live in a thread-local and in a monoio task.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// Which rotation a yielding guest joins: one per loaded Worker (the address of its identity,
/// which lives as long as any of its stores).
pub(crate) type YieldKey = usize;

thread_local! {
    static PARKED: RefCell<Parked> = RefCell::new(Parked::default());
    static IN_ROTATION: RefCell<HashMap<YieldKey, usize>> = RefCell::new(HashMap::new());
}

#[derive(Default)]
struct Parked {
    /// Guests of requests that are not CPU-bound (a short request that ran into a tick): all of
    /// them run again next round, whatever their Worker.
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
/// `in_rotation` says whether the guest waits its turn in its Worker's rotation (a CPU-bound
/// request, or any request of a Worker with CPU-bound ones on this core). Other guests — a short
/// request that happened to run into a tick — run again next round with everything else: rotating
/// them one per round served a Worker of many short requests (a JavaScript hello at 64
/// connections, ~60 µs each) behind itself, at 5.3k instead of 9.5k requests/s.
///
/// Must be polled inside a monoio runtime (it spawns the pump task there).
pub(crate) fn yield_now(
    key: YieldKey,
    in_rotation: bool,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(YieldNow {
        key: in_rotation.then_some(key),
        parked: false,
    })
}

/// Forgets the guests parked on this thread and the pump queued for them. For a thread that
/// runs one monoio runtime after another (tests): monoio does not drop the tasks a runtime still
/// holds when it ends, so a pump queued there never runs and never resets `pump_queued`, and the
/// next runtime's guests would park with no pump to wake them (measured: a test hung on its
/// second runtime once in a few runs). A serving thread runs one runtime for its whole life.
#[cfg(test)]
pub(crate) fn reset_thread() {
    PARKED.with_borrow_mut(|p| *p = Parked::default());
    IN_ROTATION.with_borrow_mut(|r| r.clear());
}

/// How many guests of `key` on this thread are CPU-bound (see `Worker::cpu_bound_requests`) and
/// have not finished. This counts the parked ones, the one running a slice and
/// those woken for their next one.
pub(crate) fn in_rotation(key: YieldKey) -> usize {
    IN_ROTATION.with_borrow(|r| r.get(&key).copied().unwrap_or(0))
}

/// When a guest last started running (its invocation began or it resumed after a yield), as this
/// thread's CPU time, shared between its store and the future that resumes it. CPU time, not wall
/// time: a serving thread the OS preempts (for the epoch ticker, a loader or log thread, another
/// process) would otherwise charge its guest for milliseconds it never ran — measured: a
/// JavaScript hello "ran" 1.5–4.1 ms a dozen times in 3 s, and each such request marked its Worker
/// CPU-bound and had its next requests shed. Safe to share across threads (`Send`), as a store's
/// data must be.
#[derive(Default)]
pub(crate) struct SliceStart(AtomicU64);

impl SliceStart {
    /// Records that the guest starts running now.
    pub(crate) fn mark(&self) {
        self.0.store(thread_cpu_ns(), Ordering::Relaxed);
    }

    /// How long the guest has run since it last started (on this thread, which is the one that
    /// runs it: a core's guests never move).
    pub(crate) fn ran(&self) -> Duration {
        Duration::from_nanos(thread_cpu_ns().saturating_sub(self.0.load(Ordering::Relaxed)))
    }
}

/// The calling thread's CPU time in nanoseconds (a vDSO call, tens of ns).
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` writes one `timespec` through the pointer, which points to a live,
    // writable local.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// Counts one guest of `key` in [`in_rotation`] for as long as it lives: taken at its first
/// yield, dropped when its invocation ends (or is dropped). It must be dropped on the thread that
/// took it (a store never leaves its core).
pub(crate) struct InRotation(YieldKey);

impl InRotation {
    pub(crate) fn join(key: YieldKey) -> InRotation {
        IN_ROTATION.with_borrow_mut(|r| *r.entry(key).or_default() += 1);
        InRotation(key)
    }
}

impl Drop for InRotation {
    fn drop(&mut self) {
        let key = self.0;
        let _ = IN_ROTATION.try_with(|r| {
            if let Ok(mut r) = r.try_borrow_mut()
                && let Some(n) = r.get_mut(&key)
            {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    r.remove(&key);
                }
            }
        });
    }
}

struct YieldNow {
    /// The rotation it joins; `None` for a brief guest.
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
            drop(monoio::spawn(Pump::new(None)));
        }
        Poll::Pending
    }
}

/// Wakes the oldest parked guest of each Worker. It is not running them itself: each goes to the
/// back of the queue.
struct Pump {
    ran: bool,
    /// What it waits for before it starts its round (see [`between_rounds`]). It hands the reaper
    /// back when done.
    wait: Option<Pin<Box<dyn Future<Output = Option<Reaper>>>>>,
    /// The reaper, once the wait gave it back; passed on to the next pump.
    reaper: Option<Reaper>,
}

impl Pump {
    /// A pump for the next round; `reaper` is the previous pump's (created now if it has none).
    fn new(reaper: Option<Reaper>) -> Pump {
        let reaper = reaper.or_else(Reaper::new);
        Pump {
            ran: false,
            wait: Some(Box::pin(between_rounds(reaper))),
            reaper: None,
        }
    }
}

/// What separates two rounds: I/O reaps ([`REAPS_PER_ROUND`]), then (at least every
/// millisecond) a park.
///
/// - **The reap**: with io_uring, a read from a socket that already holds a byte completes as
///   soon as it is submitted, which the runtime does only when it reaps I/O completions (when it
///   parks, or between batches of tasks). So the pump wakes the next round's guests only after a
///   reap, and every task whose I/O completed before it (a read of another tenant's request, a
///   finished write) is woken in the same reap and runs before the guests' next slices. Without
///   it the runtime reaped about once per millisecond, i.e. once per four 250 µs slices.
/// - **The park**: a timer already due, so that the runtime parks (and handles foreign wakes,
///   timers and, on the epoll driver, I/O readiness) before the next round starts. monoio's timer
///   wheel counts whole milliseconds, so a due timer fires at once when the runtime processed its
///   timers within the last millisecond: this costs a park at most about every millisecond.
async fn between_rounds(reaper: Option<Reaper>) -> Option<Reaper> {
    let now = monoio::time::Instant::now();
    let past = now
        .checked_sub(std::time::Duration::from_millis(1))
        .unwrap_or(now);
    let mut reaper = reaper;
    for _ in 0..REAPS_PER_ROUND {
        reaper = match reaper {
            Some(reaper) => reaper.reap().await,
            None => None,
        };
    }
    monoio::time::sleep_until(past).await;
    reaper
}

/// Reaps between two rounds. The first wakes the tasks whose I/O completed during the last
/// slices (e.g. a read of another tenant's request); they run and start their next I/O (send the
/// response); the second submits that I/O and wakes them again once it completed (the response
/// was sent), so they wait for their next read before the guests' slices, not after. With one
/// reap a short request on a busy core waited about two slices, with two about one.
const REAPS_PER_ROUND: usize = 2;

/// A connected pair of sockets whose reads complete only when the runtime reaps I/O (see
/// [`between_rounds`]). One per chain of pumps: it moves from pump to pump and is closed when no
/// guest is parked any more, or with the pump if its runtime shuts down.
struct Reaper {
    /// Written to directly (a non-blocking syscall), one byte per round.
    tx: std::os::unix::net::UnixStream,
    /// Read through the runtime's driver.
    rx: monoio::net::UnixStream,
    buf: Vec<u8>,
}

impl Reaper {
    /// `None` if the sockets cannot be made (out of file descriptors): rounds are then separated
    /// by the timer alone.
    fn new() -> Option<Reaper> {
        let (tx, rx) = std::os::unix::net::UnixStream::pair().ok()?;
        tx.set_nonblocking(true).ok()?;
        rx.set_nonblocking(true).ok()?;
        let rx = monoio::net::UnixStream::from_std(rx).ok()?;
        Some(Reaper {
            tx,
            rx,
            buf: Vec::with_capacity(REAPER_BUFFER_BYTES),
        })
    }

    /// Completes after the runtime's next reap (on io_uring; on the epoll driver at once). The
    /// reaper comes back unless the sockets failed.
    async fn reap(mut self) -> Option<Reaper> {
        use monoio::io::AsyncReadRent;
        use std::io::Write;
        // A byte is always there to read, so the read never waits for anything but the reap;
        // each read takes everything written so far.
        (&self.tx).write_all(&[0]).ok()?;
        let buf = std::mem::take(&mut self.buf);
        let (res, mut buf) = self.rx.read(buf).await;
        res.ok().filter(|&n| n > 0)?;
        buf.clear();
        self.buf = buf;
        Some(self)
    }
}

/// How many bytes one reap read takes (one is written per round, so one is normally there).
const REAPER_BUFFER_BYTES: usize = 64;

impl Future for Pump {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(wait) = self.wait.as_mut() {
            let Poll::Ready(reaper) = wait.as_mut().poll(cx) else {
                return Poll::Pending;
            };
            self.wait = None;
            self.reaper = reaper;
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
            // When none is, the chain ends here (a woken guest that yields again starts a new
            // one, which waits for its reaps like any other round): a pump left waiting when
            // nothing is parked would outlive a runtime that shuts down, and the next runtime on
            // this thread would find `pump_queued` set and never start one.
            let again = !p.order.is_empty();
            p.pump_queued = again;
            (wakers, again)
        });
        // Outside the borrow: waking schedules tasks, which must not find the list borrowed.
        for waker in wakers {
            waker.wake();
        }
        if again {
            drop(monoio::spawn(Pump::new(self.reaper.take())));
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

    /// An I/O completion that is ready is handled before the spinning guests' next round: every
    /// round starts after a reap of I/O completions (io_uring), so a task whose read completed
    /// waits at most one slice of each busy Worker, however long the core keeps spinning.
    #[test]
    fn a_completed_read_runs_before_the_next_round() {
        use monoio::io::AsyncReadRent;
        use std::io::Write;
        const READS: u32 = 200;
        let Ok(mut rt) = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .enable_timer()
            .build()
        else {
            eprintln!("io_uring is not available here: nothing to test");
            return;
        };
        let most_slices_between = rt.block_on(async {
            let slices = Rc::new(Cell::new(0u32));
            let done = Rc::new(Cell::new(false));
            {
                let (slices, done) = (slices.clone(), done.clone());
                drop(monoio::spawn(async move {
                    while !done.get() {
                        slices.set(slices.get() + 1);
                        yield_now(7, true).await;
                    }
                }));
            }
            let reader = monoio::spawn(async move {
                let (tx, rx) = std::os::unix::net::UnixStream::pair().unwrap();
                rx.set_nonblocking(true).unwrap();
                let mut rx = monoio::net::UnixStream::from_std(rx).unwrap();
                let mut most = 0;
                let mut buf = vec![0u8; 16];
                for read in 0..READS {
                    let before = slices.get();
                    (&tx).write_all(&[1]).unwrap();
                    let (res, back) = rx.read(buf).await;
                    buf = back;
                    assert_eq!(res.unwrap(), 1);
                    // The first reads run while the spinner joins its rotation.
                    if read >= 2 {
                        most = most.max(slices.get() - before);
                    }
                }
                most
            });
            let most = reader.await;
            done.set(true);
            most
        });
        assert!(
            most_slices_between <= 1,
            "a ready read waited {most_slices_between} slices of one spinning Worker"
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

    /// Guests of requests that are not CPU-bound (short requests that ran into a tick) are not
    /// rotated one per round: all of them run again next round.
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
