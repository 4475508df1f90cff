//! The entry point: [`main!`](crate::main) exports `tenantry_fetch` and calls the handler.

use std::fmt::Display;

use crate::log;
use crate::request::Request;
use crate::response::Response;

/// `tenantry_fetch`'s result when the handler returned `Err` (the client gets `500`).
pub const EXIT_HANDLER_ERROR: i32 = 1;
/// `tenantry_fetch`'s result when the response could not be handed to the host (an invalid
/// header, a limit; the client gets `500`).
pub const EXIT_SEND_ERROR: i32 = 2;

/// What a handler may return: a [`Response`], `Result<Response, E>`, or `()` / `Result<(), E>` for
/// a handler that sent its response itself ([`Response::stream`]). `E` is any `Display` type: it is
/// logged at error level and the invocation fails.
pub trait Outcome {
    /// Finishes the invocation and returns `tenantry_fetch`'s result: `0` when the response is
    /// complete.
    fn finish(self) -> i32;
}

impl Outcome for Response {
    fn finish(self) -> i32 {
        match self.send() {
            Ok(()) => 0,
            Err(e) => {
                log::error(&format!("sending the response failed: {e}"));
                EXIT_SEND_ERROR
            }
        }
    }
}

impl Outcome for () {
    fn finish(self) -> i32 {
        0
    }
}

impl<T: Outcome, E: Display> Outcome for Result<T, E> {
    fn finish(self) -> i32 {
        match self {
            Ok(outcome) => outcome.finish(),
            Err(e) => {
                log::error(&format!("handler failed: {e}"));
                EXIT_HANDLER_ERROR
            }
        }
    }
}

/// Runs `handler` on the incoming request; what [`main!`](crate::main) expands to.
#[doc(hidden)]
pub fn run<O: Outcome>(handler: impl FnOnce(Request) -> O) -> i32 {
    handler(Request::incoming()).finish()
}

/// Exports `tenantry_fetch` calling `handler` for each request.
///
/// `handler` is a path to a `fn(Request) -> O` where `O` is an [`Outcome`]: a [`Response`],
/// `Result<Response, E: Display>`, or `()` / `Result<(), E>` after [`Response::stream`].
/// An `Err` is logged and makes `tenantry_fetch` return [`EXIT_HANDLER_ERROR`]; a response the host
/// refuses returns [`EXIT_SEND_ERROR`]; either way the client gets `500`.
///
/// ```
/// use tenantry_sdk::{Request, Response};
///
/// fn handle(req: Request) -> Result<Response, String> {
///     let name = req.query("name").ok_or("no name")?;
///     Ok(Response::ok().body(format!("hello, {name}\n")))
/// }
/// tenantry_sdk::main!(handle);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! main {
    ($handler:path) => {
        /// The Worker's entry point (`docs/worker-abi.md`): `0` when the response is complete.
        #[unsafe(no_mangle)]
        pub extern "C" fn tenantry_fetch() -> i32 {
            $crate::__run($handler)
        }
    };
}
