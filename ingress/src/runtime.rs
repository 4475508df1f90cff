//! One monoio runtime per serving thread, on io_uring where the kernel allows it and on the
//! legacy (epoll) driver otherwise.

use std::future::Future;
use std::io;

use monoio::time::TimeDriver;
use monoio::{IoUringDriver, LegacyDriver, RuntimeBuilder};

/// Which monoio driver serving threads use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Driver {
    /// io_uring, falling back to the legacy driver when the ring cannot be created (old kernels,
    /// containers whose seccomp profile blocks `io_uring_setup`).
    #[default]
    Auto,
    /// io_uring only; starting fails where it is unavailable.
    IoUring,
    /// The readiness-based driver (epoll).
    Legacy,
}

/// Submission-queue entries per ring: enough for every connection of a busy core to have a
/// read or write in flight without the submission queue filling.
const RING_ENTRIES: u32 = 4096;

/// A monoio runtime of either driver, with timers enabled.
pub enum Runtime {
    IoUring(monoio::Runtime<TimeDriver<IoUringDriver>>),
    Legacy(monoio::Runtime<TimeDriver<LegacyDriver>>),
}

impl Runtime {
    /// Builds a runtime for the calling thread.
    pub fn new(driver: Driver) -> io::Result<Runtime> {
        match driver {
            Driver::IoUring => io_uring(),
            Driver::Legacy => legacy(),
            Driver::Auto => io_uring().or_else(|e| {
                tracing::warn!("io_uring is unavailable ({e}); using the legacy driver");
                legacy()
            }),
        }
    }

    /// `"io_uring"` or `"legacy"`.
    pub fn driver_name(&self) -> &'static str {
        match self {
            Runtime::IoUring(_) => "io_uring",
            Runtime::Legacy(_) => "legacy",
        }
    }

    /// Runs `future` to completion on this thread.
    pub fn block_on<F: Future>(&mut self, future: F) -> F::Output {
        match self {
            Runtime::IoUring(rt) => rt.block_on(future),
            Runtime::Legacy(rt) => rt.block_on(future),
        }
    }
}

fn io_uring() -> io::Result<Runtime> {
    // Cooperative task running and a single issuer let the kernel skip inter-processor
    // interrupts and locking: hello-world went from ~97k to ~140k req/s on one core with them.
    let mut ring = io_uring::IoUring::builder();
    ring.setup_coop_taskrun().setup_single_issuer();
    RuntimeBuilder::<IoUringDriver>::new()
        .with_entries(RING_ENTRIES)
        .uring_builder(ring)
        .enable_timer()
        .build()
        .map(Runtime::IoUring)
}

fn legacy() -> io::Result<Runtime> {
    RuntimeBuilder::<LegacyDriver>::new()
        .enable_timer()
        .build()
        .map(Runtime::Legacy)
}
