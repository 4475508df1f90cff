//! The one QuickJS runtime and context of an instance, made once (in `wizer.initialize`, so in the
//! snapshot) and never dropped; the native helpers the prelude is given; the event loop.
//!
//! Lifecycle, mapped onto the host's: *engine* = this runtime and context with the Web APIs and
//! the prelude installed (snapshotted once per node); *worker* = the evaluated bundle
//! ([`crate::run`], kept for reuse); *request* = one handler call and its event loop.

use std::cell::{Cell, OnceCell, RefCell};
use std::time::{Duration, Instant};

use rquickjs::context::EvalOptions;
use rquickjs::function::Func;
use rquickjs::{Context, Ctx, Function, Object, Persistent, Promise, Runtime, Value};

use crate::host;
use crate::modules::{BundleLoader, BundleResolver};

/// The prelude: console, timers, addEventListener and the invocation glue (see the file).
const PRELUDE: &str = include_str!("prelude.js");
/// Its file name in stack traces.
const PRELUDE_NAME: &str = "tenantry:prelude";

/// A timer's delay is capped here (about 24.8 days, as browsers do) so `Instant` arithmetic never
/// overflows; the host's wall-clock limit ends the invocation long before.
const MAX_TIMER_MS: f64 = 2_147_483_647.0;

/// The runtime and context. Leaked on purpose: they live as long as the instance, and a
/// `thread_local` destructor would run `JS_FreeRuntime` after values that still point into it.
pub struct Engine {
    /// Kept so the runtime outlives the context (it is never dropped, see above).
    _rt: Runtime,
    pub ctx: Context,
    /// The object the prelude returned (`runModule`, `runServiceWorker`, `takeWaits`, …).
    pub internals: Persistent<Object<'static>>,
    /// The prelude functions every request calls, looked up once (a lookup by name costs an
    /// atom search per request).
    pub per_request: PerRequest,
}

/// See [`Engine::per_request`].
pub struct PerRequest {
    /// `makeRequest(method, url, head, body)`: the Web APIs' `newRequest` when they have it.
    pub make_request: Persistent<Function<'static>>,
    pub run_module: Persistent<Function<'static>>,
    pub run_service_worker: Persistent<Function<'static>>,
    /// `respond(result)`: the response's parts, or a promise of them (see `run::respond`).
    pub respond: Persistent<Function<'static>>,
    pub take_waits: Persistent<Function<'static>>,
}

thread_local! {
    static ENGINE: OnceCell<&'static Engine> = const { OnceCell::new() };
    static TIMERS: RefCell<Timers> = RefCell::new(Timers::default());
    static UNHANDLED: RefCell<Vec<Rejection>> = const { RefCell::new(Vec::new()) };
    /// Whether the invocation's `waitUntil` list has promises (set by the prelude's first one).
    static WAITED: Cell<bool> = const { Cell::new(false) };
    static RANDOM: Cell<[u64; 2]> = const { Cell::new([0x9e37_79b9_7f4a_7c15, 0x6a09_e667_f3bc_c909]) };
}

/// The engine of this instance, made on first use (by `wizer.initialize` when pre-initialised).
pub fn get() -> Result<&'static Engine, String> {
    ENGINE.with(|cell| {
        if let Some(engine) = cell.get() {
            return Ok(*engine);
        }
        let engine: &'static Engine = Box::leak(Box::new(
            Engine::new().map_err(|e| format!("engine start-up failed: {e}"))?,
        ));
        let _ = cell.set(engine);
        Ok(engine)
    })
}

impl Engine {
    fn new() -> rquickjs::Result<Engine> {
        let rt = Runtime::new()?;
        rt.set_loader(BundleResolver, BundleLoader);
        rt.set_host_promise_rejection_tracker(Some(Box::new(track_rejection)));
        let ctx = Context::full(&rt)?;
        let internals = ctx.with(|ctx| -> rquickjs::Result<_> {
            tenantry_js_web::install(&ctx)?;
            let native = Object::new(ctx.clone())?;
            native.set("log", Func::from(native_log))?;
            native.set("setTimer", Func::from(set_timer))?;
            native.set("clearTimer", Func::from(clear_timer))?;
            native.set("random", Func::from(random))?;
            native.set("waited", Func::from(|| WAITED.with(|w| w.set(true))))?;
            let mut options = EvalOptions::default();
            options.global = true;
            options.strict = true;
            options.filename = Some(PRELUDE_NAME.to_string());
            let prelude: Function = ctx
                .eval_with_options(PRELUDE, options)
                .map_err(|e| describe(&ctx, e))?;
            let internals: Object = prelude.call((native,)).map_err(|e| describe(&ctx, e))?;
            // The platform wraps some of the prelude's internals (it must know the incoming
            // request): installed before the per-request functions are looked up.
            crate::platform::install(&ctx, &internals).map_err(|e| describe(&ctx, e))?;
            let function = |name: &str| -> rquickjs::Result<_> {
                Ok(Persistent::save(&ctx, internals.get::<_, Function>(name)?))
            };
            let per_request = PerRequest {
                make_request: function("makeRequest")?,
                run_module: function("runModule")?,
                run_service_worker: function("runServiceWorker")?,
                respond: function("respond")?,
                take_waits: function("takeWaits")?,
            };
            Ok((Persistent::save(&ctx, internals), per_request))
        })?;
        let (internals, per_request) = internals;
        Ok(Engine {
            _rt: rt,
            ctx,
            internals,
            per_request,
        })
    }
}

/// Turns a pending exception into an error that carries its text (start-up failures only).
fn describe(ctx: &Ctx<'_>, e: rquickjs::Error) -> rquickjs::Error {
    if e.is_exception() {
        let text = crate::error::Thrown::catch(ctx).text();
        return rquickjs::Error::new_from_js_message("prelude", "engine", text);
    }
    e
}

/// Starts an invocation: a fresh `Math.random` seed from the host, and no timers left from an
/// earlier request on this instance (reuse mode).
pub fn begin_invocation() {
    let mut seed = [0u8; 16];
    host::random_fill(&mut seed);
    let a = u64::from_le_bytes(seed[..8].try_into().unwrap_or_default());
    let b = u64::from_le_bytes(seed[8..].try_into().unwrap_or_default());
    // xorshift128+ must not start from all zeroes.
    RANDOM.with(|r| r.set(if a | b == 0 { [1, 2] } else { [a, b] }));
    TIMERS.with(|t| t.borrow_mut().clear());
    WAITED.with(|w| w.set(false));
    UNHANDLED.with(|list| list.borrow_mut().clear());
}

/// Whether `waitUntil` was called since the last time this was asked (so a request that used
/// none skips asking the prelude for them).
pub fn take_waited() -> bool {
    WAITED.with(|w| w.replace(false))
}

/// A promise rejected with no handler attached (yet).
struct Rejection {
    promise: Persistent<Value<'static>>,
    reason: Persistent<Value<'static>>,
}

/// QuickJS reports a rejection without a handler, and again if a handler is attached later
/// (e.g. `await` of an async call that already threw): keep the ones still unhandled.
fn track_rejection<'js>(ctx: Ctx<'js>, promise: Value<'js>, reason: Value<'js>, handled: bool) {
    UNHANDLED.with(|list| {
        let mut list = list.borrow_mut();
        if handled {
            list.retain(|r| r.promise.clone().restore(&ctx).is_ok_and(|p| p != promise));
        } else {
            list.push(Rejection {
                promise: Persistent::save(&ctx, promise),
                reason: Persistent::save(&ctx, reason),
            });
        }
    });
}

/// Logs, as workerd does, each promise rejected during the invocation that nobody handled,
/// except `skip` (the response promise, already reported).
pub fn report_unhandled<'js>(ctx: &Ctx<'js>, skip: Option<&Promise<'js>>) {
    let list = UNHANDLED.with(|list| std::mem::take(&mut *list.borrow_mut()));
    for r in list {
        let (Ok(promise), Ok(reason)) = (r.promise.restore(ctx), r.reason.restore(ctx)) else {
            continue;
        };
        if skip.is_some_and(|s| s.as_value() == &promise) {
            continue;
        }
        let thrown = crate::error::Thrown::from_value(&reason);
        host::log(
            host::LOG_ERROR,
            &crate::error::uncaught(&thrown, "Uncaught (in promise)"),
        );
    }
}

fn native_log(level: i32, text: String) {
    host::log(level, &text);
}

/// `Math.random`: xorshift128+, the generator V8 uses, over 53 bits.
fn random() -> f64 {
    RANDOM.with(|r| {
        let [mut s1, s0] = r.get();
        let result = s0.wrapping_add(s1);
        s1 ^= s1 << 23;
        s1 ^= s1 >> 17;
        s1 ^= s0;
        s1 ^= s0 >> 26;
        r.set([s0, s1]);
        (result >> 11) as f64 / (1u64 << 53) as f64
    })
}

/// The pending timers of the current invocation.
#[derive(Default)]
struct Timers {
    next_id: u32,
    list: Vec<Timer>,
}

struct Timer {
    id: u32,
    due: Instant,
    /// `Some` for `setInterval`.
    every: Option<Duration>,
    callback: Persistent<Function<'static>>,
}

impl Timers {
    fn clear(&mut self) {
        self.list.clear();
    }

    /// The index of the timer due first (ties: the one set first, as the list keeps order).
    fn earliest(&self) -> Option<usize> {
        let mut best: Option<usize> = None;
        for (i, t) in self.list.iter().enumerate() {
            if best.is_none_or(|b| t.due < self.list[b].due) {
                best = Some(i);
            }
        }
        best
    }
}

fn set_timer<'js>(ctx: Ctx<'js>, callback: Function<'js>, ms: f64, repeat: bool) -> u32 {
    let ms = if ms.is_finite() {
        ms.clamp(0.0, MAX_TIMER_MS)
    } else {
        0.0
    };
    let delay = Duration::from_micros((ms * 1000.0) as u64);
    let callback = Persistent::save(&ctx, callback);
    TIMERS.with(|t| {
        let mut t = t.borrow_mut();
        t.next_id = t.next_id.wrapping_add(1).max(1);
        let id = t.next_id;
        t.list.push(Timer {
            id,
            due: Instant::now() + delay,
            every: repeat.then_some(delay),
            callback,
        });
        id
    })
}

fn clear_timer(id: f64) {
    if id.fract() != 0.0 || !(1.0..=f64::from(u32::MAX)).contains(&id) {
        return;
    }
    let id = id as u32;
    TIMERS.with(|t| t.borrow_mut().list.retain(|timer| timer.id != id));
}

/// How a drive of the event loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// The promise settled.
    Yes,
    /// Nothing is left to run and no timer is pending, but the promise has not settled: it never
    /// will.
    Never,
}

/// Whether a microtask (promise job) is queued. Asked from inside `Context::with`, where the
/// runtime's own `is_job_pending` would take the lock the caller holds.
pub fn job_pending(ctx: &Ctx<'_>) -> bool {
    // SAFETY: `ctx` is a live context, so its runtime is live; `JS_IsJobPending` only reads the
    // runtime's job list, which nothing else touches on this (the only) thread meanwhile.
    unsafe {
        let rt = rquickjs::qjs::JS_GetRuntime(ctx.as_raw().as_ptr());
        rquickjs::qjs::JS_IsJobPending(rt)
    }
}

/// Runs microtasks, then timers (sleeping until the next is due: the host's `poll_oneoff` bounds
/// the sleep by the wall-clock limit), until `promise` settles or nothing is left that could
/// settle it. An exception thrown by a timer callback is logged as uncaught and the loop goes on.
pub fn drive<'js>(ctx: &Ctx<'js>, promise: &Promise<'js>) -> Settled {
    loop {
        while ctx.execute_pending_job() {}
        if promise.state() != rquickjs::promise::PromiseState::Pending {
            return Settled::Yes;
        }
        let Some(timer) = take_due_timer() else {
            return Settled::Never;
        };
        let Ok(callback) = timer.restore(ctx) else {
            continue;
        };
        if let Err(e) = callback.call::<_, Value>(())
            && e.is_exception()
        {
            let thrown = crate::error::Thrown::catch(ctx);
            host::log(
                host::LOG_ERROR,
                &crate::error::uncaught(&thrown, "Uncaught"),
            );
        }
    }
}

/// Waits for the earliest timer and takes it out (re-arming an interval). `None` if no timer is
/// pending.
fn take_due_timer() -> Option<Persistent<Function<'static>>> {
    let due = TIMERS.with(|t| {
        let t = t.borrow();
        t.earliest().map(|i| t.list[i].due)
    })?;
    let now = Instant::now();
    if due > now {
        std::thread::sleep(due - now);
    }
    TIMERS.with(|t| {
        let mut t = t.borrow_mut();
        // The earliest may have changed only if the list did, which needs JS to run; it did not.
        let i = t.earliest()?;
        match t.list[i].every {
            Some(every) => {
                let timer = &mut t.list[i];
                timer.due = Instant::now() + every.max(Duration::from_millis(1));
                Some(timer.callback.clone())
            }
            None => Some(t.list.remove(i).callback),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_is_uniform_enough_and_reseeded() {
        begin_invocation();
        let a: Vec<f64> = (0..1000).map(|_| random()).collect();
        assert!(a.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = a.iter().sum::<f64>() / a.len() as f64;
        assert!((0.4..0.6).contains(&mean), "mean {mean}");
        begin_invocation();
        let b: Vec<f64> = (0..4).map(|_| random()).collect();
        assert_ne!(&a[..4], &b[..]);
    }
}
