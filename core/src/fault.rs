//! Typed faults of an invocation, and the HTTP status each maps to.

use crate::Response;

/// The `Retry-After` (seconds) sent with [`Fault::Overloaded`] and with requests the ingress
/// sheds before they run: long enough for a core's in-flight requests to turn over (a request's
/// CPU limit is 50 ms by default), short enough that a client comes back soon.
pub const OVERLOADED_RETRY_AFTER_S: u32 = 1;

/// Why an invocation produced no guest response. Callers map it to HTTP with [`Fault::status`] and
/// [`Fault::to_response`]; nobody matches on message strings.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// The guest used all the fuel of its CPU limit.
    #[error("Worker exceeded its CPU time limit of {cpu_ms} ms")]
    OutOfFuel { cpu_ms: u32 },
    /// The invocation ran past its wall-clock deadline.
    #[error("Worker exceeded its wall-clock limit of {wall_ms} ms")]
    Deadline { wall_ms: u32 },
    /// A `memory.grow` past the memory limit was refused and the guest then failed.
    #[error("Worker exceeded its memory limit of {limit_bytes} bytes")]
    MemoryLimit { limit_bytes: u64 },
    /// The wasm stack overflowed (e.g. unbounded recursion).
    #[error("Worker overflowed its stack")]
    StackOverflow,
    /// Any other trap: unreachable, out-of-bounds access, a bad pointer passed to the host, …
    #[error("Worker raised an exception: {0}")]
    Trap(String),
    /// `tenantry_fetch` returned a non-zero code, or `proc_exit` with one.
    #[error("Worker failed with code {0}")]
    GuestError(i32),
    /// The Worker's response had a status that is not a final HTTP status (200–599): a 1xx
    /// would make the client read the *next* response on the connection as the answer to this
    /// request, so it is never sent.
    #[error("Worker answered with status {0}, which is not a final HTTP status (200-599)")]
    InvalidStatus(u16),
    /// The module does not have the exports the ABI requires.
    #[error("Worker is not a valid Tenantry Worker: {0}")]
    BadModule(String),
    /// No Worker of that name is deployed.
    #[error("Worker not found")]
    NotFound,
    /// The Worker's code could not be loaded on this node.
    #[error("Worker could not be loaded: {0}")]
    Unavailable(String),
    /// Every instance slot of this core is busy.
    #[error("Worker capacity exhausted, try again")]
    Overloaded,
    /// A subrequest to the network was refused or failed (never the result of an invocation).
    #[error("{0}")]
    Subrequest(String),
}

impl Fault {
    /// The HTTP status the client gets.
    pub fn status(&self) -> u16 {
        match self {
            Fault::OutOfFuel { .. } | Fault::Deadline { .. } | Fault::MemoryLimit { .. } => 503,
            Fault::Overloaded => 503,
            Fault::NotFound => 404,
            Fault::Unavailable(_) | Fault::Subrequest(_) => 502,
            Fault::StackOverflow
            | Fault::Trap(_)
            | Fault::GuestError(_)
            | Fault::InvalidStatus(_)
            | Fault::BadModule(_) => 500,
        }
    }

    /// Whether the instance that produced this fault must be discarded rather than reused.
    pub fn poisons_instance(&self) -> bool {
        !matches!(
            self,
            Fault::NotFound | Fault::Unavailable(_) | Fault::Overloaded | Fault::Subrequest(_)
        )
    }

    /// The plain-text response the client gets: the status and a message naming the limit or trap.
    /// [`Fault::Overloaded`] also says when to retry (RFC 9110 §10.2.3).
    pub fn to_response(&self) -> Response {
        let mut response = Response::text(self.status(), format!("{self}\n"));
        if *self == Fault::Overloaded {
            response.headers.push((
                bytes::Bytes::from_static(b"retry-after"),
                bytes::Bytes::from(OVERLOADED_RETRY_AFTER_S.to_string()),
            ));
        }
        response
    }
}
