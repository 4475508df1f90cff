//! Fair yielding of a CPU-bound guest to the other tasks of its monoio thread.
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
//! turn, and it wakes the parked guests, which go to the back in turn: round robin. One pump
//! serves all guests that yield in the same round; it costs one task allocation per round.
//!
//! Everything here is safe code, and the future handed to wasmtime is genuinely `Send` (it holds a
//! `bool`): the `!Send` parts live in a thread-local and in a monoio task.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

thread_local! {
    static PARKED: RefCell<Parked> = const {
        RefCell::new(Parked { wakers: Vec::new(), pump_queued: false })
    };
}

struct Parked {
    /// Tasks waiting for the pump to wake them.
    wakers: Vec<Waker>,
    /// Whether a pump task is already queued for them.
    pump_queued: bool,
}

/// A future that completes after every other task ready on this monoio thread has run once.
///
/// Must be polled inside a monoio runtime (it spawns the pump task there).
pub(crate) fn yield_now() -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(YieldNow { parked: false })
}

struct YieldNow {
    parked: bool,
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.parked {
            return Poll::Ready(());
        }
        self.parked = true;
        let spawn_pump = PARKED.with_borrow_mut(|p| {
            p.wakers.push(cx.waker().clone());
            !std::mem::replace(&mut p.pump_queued, true)
        });
        if spawn_pump {
            // Detached: the JoinHandle is dropped.
            drop(monoio::spawn(Pump { ran: false }));
        }
        Poll::Pending
    }
}

/// Wakes the parked tasks. It is not running them itself: each goes to the back of the queue.
struct Pump {
    ran: bool,
}

impl Future for Pump {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        self.ran = true;
        let wakers = PARKED.with_borrow_mut(|p| {
            p.pump_queued = false;
            std::mem::take(&mut p.wakers)
        });
        // Outside the borrow: waking schedules tasks, which must not find the list borrowed.
        for waker in wakers {
            waker.wake();
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
                    p.pump_queued = false;
                    p.wakers.clear();
                }
            });
        }
    }
}
