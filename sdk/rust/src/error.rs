//! The ABI's error codes as a Rust error.

use std::fmt;

use crate::sys;

/// A `tenantry:worker/v1` call failed (`docs/worker-abi.md`, "Error codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Error {
    /// `-1`: no such header or binding.
    NotFound,
    /// `-2`: an argument is malformed (a header name that is not a token, a value with CR, LF or
    /// NUL, a status outside `200..=599`, …).
    Invalid,
    /// `-3`: a limit would be exceeded (response header count or bytes, body bytes, the
    /// subrequest budget, call depth).
    Limit,
    /// `-4`: no object with this handle.
    BadHandle,
    /// `-5`: reserved for a later version or not allowed here. Every call returns this when the
    /// SDK is built for something other than wasm32.
    Unsupported,
    /// `-6`: a fetch named a Worker that does not exist.
    WorkerNotFound,
    /// `-7`: the called Worker exceeded a limit (CPU, wall clock or memory).
    Exceeded,
    /// `-8`: a subrequest was refused or failed.
    Network,
    /// `-9`: the KV store failed; the operation may be retried.
    Store,
    /// A negative code this version of the SDK does not know.
    Other(i32),
}

impl Error {
    /// The error for a negative return code.
    pub fn from_code(code: i32) -> Error {
        match code {
            sys::NOT_FOUND => Error::NotFound,
            sys::INVALID => Error::Invalid,
            sys::LIMIT => Error::Limit,
            sys::BAD_HANDLE => Error::BadHandle,
            sys::UNSUPPORTED => Error::Unsupported,
            sys::WORKER_NOT_FOUND => Error::WorkerNotFound,
            sys::EXCEEDED => Error::Exceeded,
            sys::NETWORK => Error::Network,
            sys::STORE => Error::Store,
            other => Error::Other(other),
        }
    }

    /// The ABI code (negative).
    pub fn code(self) -> i32 {
        match self {
            Error::NotFound => sys::NOT_FOUND,
            Error::Invalid => sys::INVALID,
            Error::Limit => sys::LIMIT,
            Error::BadHandle => sys::BAD_HANDLE,
            Error::Unsupported => sys::UNSUPPORTED,
            Error::WorkerNotFound => sys::WORKER_NOT_FOUND,
            Error::Exceeded => sys::EXCEEDED,
            Error::Network => sys::NETWORK,
            Error::Store => sys::STORE,
            Error::Other(code) => code,
        }
    }
}

/// Turns a host call's return value into a length or an error.
pub(crate) fn check(ret: i32) -> Result<usize, Error> {
    usize::try_from(ret).map_err(|_| Error::from_code(ret))
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Error::NotFound => "not found",
            Error::Invalid => "invalid argument",
            Error::Limit => "limit exceeded",
            Error::BadHandle => "bad handle",
            Error::Unsupported => "unsupported call",
            Error::WorkerNotFound => "Worker not found",
            Error::Exceeded => "the called Worker exceeded a limit",
            Error::Network => "the subrequest failed",
            Error::Store => "the KV store failed",
            Error::Other(_) => "unknown error",
        };
        write!(f, "{name} (tenantry:worker/v1 code {})", self.code())
    }
}

impl std::error::Error for Error {}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> std::io::Error {
        let kind = match e {
            Error::NotFound => std::io::ErrorKind::NotFound,
            Error::Invalid => std::io::ErrorKind::InvalidInput,
            Error::Unsupported => std::io::ErrorKind::Unsupported,
            _ => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, e)
    }
}
