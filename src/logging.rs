//! The process's log output: every line (the node's own and guests') goes through one bounded
//! queue to a writer thread, so a slow or stuck log sink never blocks a serving core.
//!
//! `tracing-appender`'s non-blocking writer in lossy mode: a `tracing` event is formatted on the
//! core that emits it and queued; the writer thread writes it to stderr. When the queue is full
//! the line is dropped and counted, and the count is logged every [`DROP_REPORT_EVERY`] while it
//! grows, and once more at shutdown. One queue for all cores rather than a buffer per core:
//! a line costs a formatted allocation and a channel send either way, the queue's bound is what
//! keeps memory bounded, and guests cannot fill it faster than their per-invocation log allowance
//! and fuel let them (`tenantry_core::MAX_LOG_BYTES_PER_INVOCATION`).

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};

/// Lines the writer thread may have queued before new ones are dropped. A line is at most the
/// 4 KiB guest log line cut plus its fields, so the queue holds at most ~40 MiB.
pub const LOG_QUEUE_LINES: usize = 8192;

/// How often a growing count of dropped lines is logged.
pub const DROP_REPORT_EVERY: Duration = Duration::from_secs(10);

/// Keeps the writer thread alive; dropping it reports the final count of dropped lines and
/// flushes what is queued (for at most ~1 s, `tracing-appender`'s shutdown bound).
pub struct LogOutput {
    counter: ErrorCounter,
    stop: Option<mpsc::Sender<()>>,
    reporter: Option<JoinHandle<()>>,
    // Dropped last (fields drop in order): the reports above still reach the queue.
    _guard: WorkerGuard,
}

/// Sets the global `tracing` subscriber: the `RUST_LOG` filter (default `info`), formatted lines
/// to stderr through the non-blocking writer.
pub fn init() -> LogOutput {
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .thread_name("tenantry-log")
        .finish(std::io::stderr());
    let counter = writer.error_counter();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(writer)
        .init();
    let (stop, stopped) = mpsc::channel::<()>();
    let reporter = {
        let counter = counter.clone();
        std::thread::Builder::new()
            .name("tenantry-log-report".into())
            .spawn(move || {
                let mut reported = 0;
                // Wakes every period until `stop` is dropped.
                while let Err(mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(DROP_REPORT_EVERY)
                {
                    let dropped = counter.dropped_lines();
                    if dropped > reported {
                        tracing::warn!(
                            dropped_lines = dropped - reported,
                            "the log sink is slower than the log: {} lines dropped in the last \
                             {} s ({dropped} since start)",
                            dropped - reported,
                            DROP_REPORT_EVERY.as_secs()
                        );
                        reported = dropped;
                    }
                }
            })
            .ok()
    };
    LogOutput {
        counter,
        stop: Some(stop),
        reporter,
        _guard: guard,
    }
}

impl Drop for LogOutput {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(reporter) = self.reporter.take() {
            let _ = reporter.join();
        }
        let dropped = self.counter.dropped_lines();
        if dropped > 0 {
            tracing::warn!(
                dropped_lines = dropped,
                "{dropped} log lines were dropped in all because the log sink was too slow"
            );
        }
    }
}
