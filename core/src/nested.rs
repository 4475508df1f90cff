//! Calls from one Worker to another on the same core (service bindings, dispatch-namespace
//! bindings, outbound Workers) and HTTP subrequests to the network.
//!
//! The core crate runs Workers but does not know where they are deployed, nor how to reach the
//! network; the serving core does. Each serving thread registers an [`Invoker`] with
//! [`set_invoker`]; a guest's fetch asks it to run the target Worker, or to send the request out.
//! The call runs as its own task on the core's runtime, so the core keeps serving while the
//! caller waits:
//!
//! ```text
//!  caller guest ─ service_fetch / dispatch_fetch / fetch (async host call; its fiber suspends)
//!      └─ spawn(Invoker::invoke(…) or Invoker::fetch(…)) on this core
//!             └─ the callee runs in its own store and pool slot, under its limits
//!      ◄─ oneshot: Result<Response, Fault> ── the caller resumes with a response handle
//! ```
//!
//! wasmtime requires an async host call's future to be `Send`; the invoker and the Workers it
//! runs are not (they belong to the core). Spawning the call as a local task and awaiting a
//! `Send` oneshot receiver keeps the non-`Send` parts off the host call's future.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures_channel::oneshot;

use crate::{Binding, Fault, Limits, Request, Response};

/// The namespace holding platform Workers (dispatchers, outbound Workers), outside every
/// customer namespace. User namespaces may not start with `_`, so no upload can reach it.
pub const PLATFORM_NAMESPACE: &str = "_platform";

/// How deep calls may nest (dispatcher → user Worker → service → …); deeper calls fail with
/// `LIMIT`. Each level holds a pool slot while it waits, so this bounds what one request can hold.
pub const MAX_CALL_DEPTH: u32 = 8;

/// The future of one call.
pub type CallFuture = Pin<Box<dyn Future<Output = Result<Response, Fault>>>>;

/// The rest of a subrequest's response body, read as the guest asks for it. Lives on the core
/// that made the subrequest (it owns the connection).
pub trait BodyStream {
    /// The next chunk; `Ok(None)` at the end. A failure is the explanation the guest gets.
    fn next(&mut self) -> Pin<Box<dyn Future<Output = Result<Option<Bytes>, String>> + '_>>;
}

/// The future of a subrequest: the response (its `body` is what arrived with the head) and, if
/// more is to come, the stream of the rest.
pub type FetchFuture =
    Pin<Box<dyn Future<Output = Result<(Response, Option<Box<dyn BodyStream>>), Fault>>>>;

/// The outbound Worker an invocation's subrequests go through, with the parameters the
/// dispatcher passed for this call (the outbound Worker sees them as bindings).
#[derive(Debug, Clone)]
pub struct Outbound {
    /// A platform Worker.
    pub service: String,
    pub params: Vec<Binding>,
}

/// What an invocation inherits from whoever called it.
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    /// 0 for a request from the network; each Worker-to-Worker call adds one.
    pub depth: u32,
    /// Where this invocation's subrequests go instead of the network. Inherited by the Workers
    /// it calls through service bindings, so no egress path bypasses it.
    pub outbound: Option<Arc<Outbound>>,
    /// Bindings added for this invocation only (an outbound Worker's parameters).
    pub extra_bindings: Vec<Binding>,
}

/// Runs Workers by name, and sends subrequests, for the Workers of the current core.
/// Implemented by the serving core's dispatcher.
pub trait Invoker {
    /// Runs `script` of `namespace` with `req`, under the lower of the script's own limits and
    /// `limits`. A script that does not exist is [`Fault::NotFound`].
    fn invoke(
        &self,
        namespace: &str,
        script: &str,
        req: Request,
        limits: Limits,
        ctx: CallContext,
    ) -> CallFuture;

    /// Sends `req` (whose `host` and `target` say where) over the network; the head must
    /// arrive, and every body chunk be read, by `deadline`. A refused or failed subrequest is
    /// [`Fault::Subrequest`].
    fn fetch(&self, req: Request, deadline: Instant) -> FetchFuture;

    /// The node's KV store, if it has one.
    fn kv(&self) -> Option<Arc<dyn crate::kv::KvBackend>>;
}

/// The current core's KV store.
pub(crate) fn kv_backend() -> Option<Arc<dyn crate::kv::KvBackend>> {
    INVOKER.with(|i| i.borrow().as_ref().and_then(|i| i.kv()))
}

/// The last stream id handed out, and the streams by id.
type Streams = (u64, HashMap<u64, Box<dyn BodyStream>>);

thread_local! {
    static INVOKER: RefCell<Option<Rc<dyn Invoker>>> = const { RefCell::new(None) };
    /// Response bodies still streaming, by id; owned by the invocation that fetched them.
    static STREAMS: RefCell<Streams> = RefCell::new((0, HashMap::new()));
}

fn register_stream(stream: Box<dyn BodyStream>) -> u64 {
    STREAMS.with(|s| {
        let mut s = s.borrow_mut();
        s.0 += 1;
        let id = s.0;
        s.1.insert(id, stream);
        id
    })
}

/// Drops a stream the guest will not read further (its connection is closed).
pub(crate) fn drop_stream(id: u64) {
    // `try_with`: at thread exit the registry may already be gone.
    let stream = STREAMS
        .try_with(|s| s.try_borrow_mut().ok().and_then(|mut s| s.1.remove(&id)))
        .ok()
        .flatten();
    drop(stream);
}

/// Reads the next chunk of stream `id` on this core's runtime. The stream is taken out of the
/// registry while it reads and put back unless it ended.
pub(crate) fn spawn_read(id: u64) -> oneshot::Receiver<Result<Option<Bytes>, String>> {
    let (tx, rx) = oneshot::channel();
    let stream = STREAMS.with(|s| s.borrow_mut().1.remove(&id));
    monoio::spawn(async move {
        let Some(mut stream) = stream else {
            let _ = tx.send(Ok(None));
            return;
        };
        let chunk = stream.next().await;
        if matches!(chunk, Ok(Some(_))) {
            STREAMS.with(|s| s.borrow_mut().1.insert(id, stream));
        }
        let _ = tx.send(chunk);
    });
    rx
}

/// Runs `future` as a task on this core's runtime until `deadline`: the receiver gets
/// `Some(output)`, or `None` if the deadline came first (the future is then dropped). For host
/// calls that wait on something `Send` (a KV reply): wasmtime needs the host call's future to be
/// `Send`, monoio's timers are not, so the timer lives in the local task. Must be called inside
/// a monoio runtime with a timer.
pub(crate) fn spawn_until<T: Send + 'static>(
    future: impl Future<Output = T> + 'static,
    deadline: Instant,
) -> oneshot::Receiver<Option<T>> {
    let (tx, rx) = oneshot::channel();
    monoio::spawn(async move {
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = tx.send(monoio::time::timeout(left, future).await.ok());
    });
    rx
}

/// Registers the invoker of the current thread's Workers (one per serving core). Without one,
/// fetches fail with `UNSUPPORTED`.
pub fn set_invoker(invoker: Rc<dyn Invoker>) {
    INVOKER.with(|i| *i.borrow_mut() = Some(invoker));
}

/// Removes the current thread's invoker.
pub fn clear_invoker() {
    INVOKER.with(|i| *i.borrow_mut() = None);
}

/// Where a fetch goes.
pub(crate) enum Target {
    Worker {
        namespace: String,
        script: String,
        ctx: CallContext,
    },
    Network {
        deadline: Instant,
    },
}

/// What a call returns to the caller's host function: the response, and the id of the stream
/// of the rest of its body if it is still arriving.
pub(crate) type CallResult = Result<(Response, Option<u64>), Fault>;

/// Starts a call on this core's runtime; `None` if the thread has no invoker. Must be called
/// inside a monoio runtime.
pub(crate) fn spawn_call(
    target: Target,
    req: Request,
    limits: Limits,
) -> Option<oneshot::Receiver<CallResult>> {
    let invoker = INVOKER.with(|i| i.borrow().clone())?;
    let (tx, rx) = oneshot::channel();
    monoio::spawn(async move {
        let result = match target {
            Target::Worker {
                namespace,
                script,
                ctx,
            } => {
                // The callee's own deadline is at most `limits.wall_ms` from now, but waiting to
                // start (loading the Worker, queueing for a slot) must end by then too.
                let wait = std::time::Duration::from_millis(u64::from(limits.wall_ms));
                let call = invoker.invoke(&namespace, &script, req, limits, ctx);
                match monoio::time::timeout(wait, call).await {
                    Ok(result) => result.map(|r| (r, None)),
                    Err(_) => Err(Fault::Deadline {
                        wall_ms: limits.wall_ms,
                    }),
                }
            }
            Target::Network { deadline } => invoker
                .fetch(req, deadline)
                .await
                .map(|(r, stream)| (r, stream.map(register_stream))),
        };
        // The caller may have gone (its own deadline): the result, and any stream, are dropped.
        if let Err(Ok((_, Some(id)))) = tx.send(result) {
            drop_stream(id);
        }
    });
    Some(rx)
}

#[cfg(test)]
mod tests {
    //! Waits end at the caller's wall-clock deadline, whatever they wait for.

    use super::*;
    use crate::kv::{KvBackend, KvFuture, KvOp, KvReply};
    use crate::test_support::{block_on, engine, get, spec};
    use crate::{BindingKind, Bindings, Worker};

    /// A KV store that answers only after `delay` (a stalled disk), and Workers that never
    /// answer for as long.
    struct Stalled {
        delay: std::time::Duration,
        /// Set when a Worker call was given up before it finished.
        abandoned: Arc<std::sync::atomic::AtomicBool>,
    }

    /// Sets its flag when dropped armed.
    struct Abandon(Option<Arc<std::sync::atomic::AtomicBool>>);

    impl Abandon {
        fn disarm(mut self) {
            self.0 = None;
        }
    }

    impl Drop for Abandon {
        fn drop(&mut self) {
            if let Some(flag) = self.0.take() {
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
    }

    impl KvBackend for Stalled {
        fn call(&self, _op: KvOp) -> KvFuture {
            let (tx, rx) = oneshot::channel();
            let delay = self.delay;
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                let _ = tx.send(Ok(KvReply::Done));
            });
            Box::pin(async move { rx.await.unwrap_or(Ok(KvReply::Done)) })
        }
    }

    impl Invoker for Stalled {
        fn invoke(&self, _: &str, _: &str, _: Request, _: Limits, _: CallContext) -> CallFuture {
            let delay = self.delay;
            let guard = Abandon(Some(self.abandoned.clone()));
            Box::pin(async move {
                monoio::time::sleep(delay).await;
                guard.disarm();
                Ok(Response::default())
            })
        }
        fn fetch(&self, _: Request, _: Instant) -> FetchFuture {
            Box::pin(async { Err(Fault::Subrequest("no network in this test".into())) })
        }
        fn kv(&self) -> Option<Arc<dyn KvBackend>> {
            Some(Arc::new(Stalled {
                delay: self.delay,
                abandoned: self.abandoned.clone(),
            }))
        }
    }

    const GUEST: &str = r#"(module
      (import "tenantry:worker/v1" "kv_delete" (func $kv_delete (param i32 i32 i32 i32) (result i32)))
      (import "tenantry:worker/v1" "request_new" (func $request_new (result i32)))
      (import "tenantry:worker/v1" "service_fetch" (func $service_fetch (param i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 0) "KV")
      (data (i32.const 16) "SVC")
      (data (i32.const 32) "key")
      (func (export "tenantry_fetch") (result i32)
        (if (i32.eqz (call $env_is_svc))
          (then (return (i32.sub (i32.const 0) (call $kv_delete (i32.const 0) (i32.const 2) (i32.const 32) (i32.const 3))))))
        (i32.sub (i32.const 0) (call $service_fetch (i32.const 16) (i32.const 3) (call $request_new))))
      (global $svc (mut i32) (i32.const 0))
      (func $env_is_svc (result i32) (global.get $svc)))"#;

    fn stalled_worker(service: bool) -> Worker {
        let engine = engine();
        let wat = if service {
            GUEST.replace(
                "(global $svc (mut i32) (i32.const 0))",
                "(global $svc (mut i32) (i32.const 1))",
            )
        } else {
            GUEST.to_string()
        };
        let mut spec = spec(&engine, &wat);
        spec.bindings = Bindings::new(vec![
            Binding {
                name: "KV".into(),
                kind: BindingKind::KvNamespace,
                value: "ns".into(),
            },
            Binding {
                name: "SVC".into(),
                kind: BindingKind::Service,
                value: "other".into(),
            },
        ]);
        spec.limits = Limits {
            wall_ms: 50,
            ..Limits::DEFAULT
        };
        Worker::new(&engine, spec).expect("test Worker loads")
    }

    #[test]
    fn kv_and_worker_calls_end_at_the_wall_clock_limit() {
        for service in [false, true] {
            let worker = stalled_worker(service);
            let abandoned = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let outcome = block_on(async {
                set_invoker(Rc::new(Stalled {
                    delay: std::time::Duration::from_secs(3),
                    abandoned: abandoned.clone(),
                }));
                let outcome = worker.invoke(get("/"), worker.limits()).await;
                clear_invoker();
                outcome
            });
            // Without a deadline on the wait the store answers after 3 s and the guest returns
            // normally (200).
            assert_eq!(
                outcome.unwrap_err(),
                Fault::Deadline { wall_ms: 50 },
                "service call: {service}"
            );
            if service {
                // The call was given up at the deadline, not waited out.
                assert!(abandoned.load(std::sync::atomic::Ordering::SeqCst));
            }
        }
    }
}
