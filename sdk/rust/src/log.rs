//! Log lines, tagged by the host with namespace and script and truncated at 4 KiB.
//!
//! `println!` and `eprintln!` also work on `wasm32-wasip1` (they become info and warn lines); these
//! functions choose the level and skip `std`'s stdout buffering.

use crate::sys;

/// A log level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// `0`.
    Debug,
    /// `1`.
    Info,
    /// `2`.
    Warn,
    /// `3`.
    Error,
}

impl Level {
    fn code(self) -> i32 {
        match self {
            Level::Debug => sys::LOG_DEBUG,
            Level::Info => sys::LOG_INFO,
            Level::Warn => sys::LOG_WARN,
            Level::Error => sys::LOG_ERROR,
        }
    }
}

/// Logs `message` at `level`. Logging never fails the Worker: an error from the host is ignored.
pub fn log(level: Level, message: &str) {
    // SAFETY: `message` is a live `&str` the host only reads.
    let _ = unsafe { sys::log(level.code(), message.as_ptr(), message.len()) };
}

/// Logs at debug level.
pub fn debug(message: &str) {
    log(Level::Debug, message)
}

/// Logs at info level.
pub fn info(message: &str) {
    log(Level::Info, message)
}

/// Logs at warn level.
pub fn warn(message: &str) {
    log(Level::Warn, message)
}

/// Logs at error level.
pub fn error(message: &str) {
    log(Level::Error, message)
}
