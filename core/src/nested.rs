//! Calls from one Worker to another on the same core: service bindings and dispatch-namespace
//! bindings (a platform Worker calling a customer's Worker by name).
//!
//! The core crate runs Workers but does not know where they are deployed; the serving core
//! does. Each serving thread registers an [`Invoker`] with [`set_invoker`]; a guest's fetch
//! through a binding asks it to run the target Worker. The call runs as its own task on the
//! core's runtime, so the core keeps serving while the caller waits:
//!
//! ```text
//!  caller guest ─ service_fetch / dispatch_fetch (async host call, caller's fiber suspends)
//!      └─ spawn(Invoker::invoke(namespace, script, request, limits, depth)) on this core
//!             └─ the callee Worker runs in its own store and pool slot, under its limits
//!      ◄─ oneshot: Result<Response, Fault> ── the caller resumes with a response handle
//! ```
//!
//! wasmtime requires an async host call's future to be `Send`; the invoker and the Workers it
//! runs are not (they belong to the core). Spawning the call as a local task and awaiting a
//! `Send` oneshot receiver keeps the non-`Send` parts off the host call's future.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use futures_channel::oneshot;

use crate::{Fault, Limits, Request, Response};

/// How deep calls may nest (dispatcher → user Worker → service → …); deeper calls fail with
/// `LIMIT`. Each level holds a pool slot while it waits, so this bounds what one request can hold.
pub const MAX_CALL_DEPTH: u32 = 8;

/// The future of one Worker-to-Worker call.
pub type CallFuture = Pin<Box<dyn Future<Output = Result<Response, Fault>>>>;

/// Runs a Worker by name on the current core. Implemented by the serving core's dispatcher.
pub trait Invoker {
    /// Runs `script` of `namespace` with `req`, under the lower of the script's own limits and
    /// `limits`, at call depth `depth` (the callee's own calls are at `depth + 1`). A script that
    /// does not exist is [`Fault::NotFound`].
    fn invoke(
        &self,
        namespace: &str,
        script: &str,
        req: Request,
        limits: Limits,
        depth: u32,
    ) -> CallFuture;
}

thread_local! {
    static INVOKER: RefCell<Option<Rc<dyn Invoker>>> = const { RefCell::new(None) };
}

/// Registers the invoker of the current thread's Workers (one per serving core). Without one,
/// fetches through bindings fail with `UNSUPPORTED`.
pub fn set_invoker(invoker: Rc<dyn Invoker>) {
    INVOKER.with(|i| *i.borrow_mut() = Some(invoker));
}

/// Removes the current thread's invoker.
pub fn clear_invoker() {
    INVOKER.with(|i| *i.borrow_mut() = None);
}

/// Starts a call on this core's runtime; `None` if the thread has no invoker. Must be called
/// inside a monoio runtime.
pub(crate) fn spawn_call(
    namespace: String,
    script: String,
    req: Request,
    limits: Limits,
    depth: u32,
) -> Option<oneshot::Receiver<Result<Response, Fault>>> {
    let invoker = INVOKER.with(|i| i.borrow().clone())?;
    let (tx, rx) = oneshot::channel();
    monoio::spawn(async move {
        let result = invoker
            .invoke(&namespace, &script, req, limits, depth)
            .await;
        // The caller may have gone (its own deadline); the result is then dropped.
        let _ = tx.send(result);
    });
    Some(rx)
}
