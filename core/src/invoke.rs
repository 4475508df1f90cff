//! One loaded Worker and the invocation of a request on it.
//!
//! ```text
//!  Worker::invoke(req, limits)
//!    ├─ reuse mode and an idle instance? ── reset its HostState, refill fuel ─┐
//!    └─ else Store::new(HostState) ─ limiter, fuel, epoch callback           │
//!         ─ InstancePre::instantiate_async ─ _initialize (if exported)       │
//!                                                                            ▼
//!                                  tenantry_fetch().call_async ─► classify ─► Response | Fault
//!                                  clean + reuse mode → back to the idle list; else dropped
//! ```

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::{
    InstancePre, Module, ModuleExport, PoolConcurrencyLimitError, Store, Trap, TypedFunc,
    UpdateDeadline,
};

use crate::engine::IdleToken;
use crate::host::{self, DeadlineExceeded, HostState, NoMemory, ProcExit, WorkerIdent};
use crate::nested::CallContext;
use crate::{Bindings, Engine, Fault, Limits, Request, Response, abi, yielding};

/// Everything needed to load one deployed Worker version on a core.
pub struct WorkerSpec {
    /// `"namespace/script"`, used in log lines.
    pub name: String,
    /// The compiled module (from [`Engine::load_artifact`]).
    pub module: wasmtime::Module,
    pub bindings: Bindings,
    /// The script's own limits; callers apply [`Limits::min`] with per-call limits.
    pub limits: Limits,
    /// `0` (the default): a fresh instance per request, so nothing survives between requests.
    /// `N > 0`: keep up to `N` idle, initialised instances per core and reuse them, for guests
    /// whose start-up is expensive. An instance that faulted is never reused.
    pub reuse_instances: u32,
    /// For a JavaScript Worker, its compiled bundle: `module` is then the shared JavaScript
    /// engine, already initialised by its snapshot (so `_initialize` is not called again), which
    /// reads the bundle with `tenantry:js/v1` `code_read`. `None` for a wasm Worker.
    pub js_bundle: Option<bytes::Bytes>,
}

/// Guest time after which a request counts as CPU-bound ([`Worker::cpu_bound_requests`]): two
/// default epoch ticks of running (the time between yields, not the time parked), over at least
/// [`CPU_BOUND_YIELDS`] slices. A hello runs a few µs; the fair-share benchmark's 5 ms Worker gets
/// there in its second or third slice.
pub(crate) const CPU_BOUND_AFTER: Duration = Duration::from_micros(500);

/// Yields at ticks a request must have made before it counts as CPU-bound, whatever its time.
/// The thread's CPU clock also counts what the kernel charges to the thread while the guest runs:
/// on a kernel without IRQ time accounting (this VM's) interrupt and softirq work too, so beside
/// a hog a hello "ran" 0.7–1.4 ms in one slice in ~40 of 100k requests, was taken for CPU-bound,
/// and its Worker's next requests were shed with `503`. Such a request yields once and then
/// finishes (a second tick within `MIN_BRIEF_SLICE` of resuming does not make it yield); a
/// CPU-bound one yields at every tick. (Fuel would be the cleaner measure, but the store's fuel
/// is not brought up to date before the epoch callback runs.)
pub(crate) const CPU_BOUND_YIELDS: u32 = 2;

/// Guest time since it last started below which a request that is not CPU-bound does not yield
/// at an epoch tick (see `Worker::new_store`). A JavaScript hello runs ~30 µs: about one in ten
/// ran into a tick and paid a round of the core for it. Other tasks on the core wait at most this
/// much longer (plus one tick) for a short request.
pub(crate) const MIN_BRIEF_SLICE: Duration = Duration::from_micros(100);

/// A Worker loaded on one core: its pre-linked module, bindings, limits and, in reuse mode, its
/// idle instances. Not `Send`: it belongs to the core that loaded it.
pub struct Worker {
    engine: Engine,
    /// Its module linked on this core, shared with the other Workers of that module here.
    linked: Rc<Linked>,
    ident: Arc<WorkerIdent>,
    bindings: Bindings,
    limits: Limits,
    reuse: usize,
    /// The JavaScript bundle (empty for a wasm Worker).
    code: bytes::Bytes,
    /// Idle instances, each counted against the engine's idle cap by its token, with when it
    /// went idle.
    idle: RefCell<Vec<(Live, IdleToken, Instant)>>,
    /// Whether this Worker's last finished request on this core was CPU-bound.
    last_cpu_bound: Cell<bool>,
}

/// A module linked against the host API on one core: what every Worker of that module there
/// shares. Linking (checking each import against the host's signatures, `instantiate_pre`) cost
/// ~3.7 µs per Worker load; with many Workers of one module (a platform's template, 1001 Workers
/// in turn on a core that keeps 1000) it was paid on every load.
struct Linked {
    pre: InstancePre<HostState>,
    memory: ModuleExport,
    fetch: ModuleExport,
    /// `_initialize`, run on each fresh instance; `None` for the JavaScript engine, whose
    /// snapshot was taken after its initialisation.
    initialize: Option<ModuleExport>,
}

/// How many entries [`LINKED`] may hold before its dead ones are swept (then the bound doubles
/// past the live ones): a sweep per so many loads, so each load pays O(1) on average.
const LINKED_SWEEP_AT: usize = 64;

/// This core's linked modules, by the address of their code image and whether they run a
/// JavaScript bundle. Weak: an entry lives as long as a Worker that uses it, and so does its
/// module (a loaded module stays mapped while a Worker holds it, as before).
struct LinkTable {
    by_image: HashMap<(usize, bool), Weak<Linked>>,
    /// The size at which dead entries are swept next.
    sweep_at: usize,
}

thread_local! {
    static LINKED: RefCell<LinkTable> = RefCell::new(LinkTable {
        by_image: HashMap::new(),
        sweep_at: LINKED_SWEEP_AT,
    });
}

impl Linked {
    /// `module` linked on this thread: the one a live Worker of it already uses, or a new one.
    fn shared(engine: &Engine, module: &Module, js: bool) -> Result<Rc<Linked>, Fault> {
        let key = (module.image_range().start as usize, js);
        let found = LINKED.with_borrow(|t| t.by_image.get(&key).and_then(Weak::upgrade));
        // The same address is the same module while it lives; checked all the same.
        if let Some(linked) = found
            && Module::same(linked.pre.module(), module)
        {
            return Ok(linked);
        }
        let linked = Rc::new(Linked::new(engine, module, js)?);
        LINKED.with_borrow_mut(|t| {
            t.by_image.insert(key, Rc::downgrade(&linked));
            if t.by_image.len() >= t.sweep_at {
                t.by_image.retain(|_, w| w.strong_count() > 0);
                t.sweep_at = (t.by_image.len() * 2).max(LINKED_SWEEP_AT);
            }
        });
        Ok(linked)
    }

    fn new(engine: &Engine, module: &Module, js: bool) -> Result<Linked, Fault> {
        let bad = |what: String| Fault::BadModule(what);
        // Winch code links against the baseline engine's copy of the host API.
        let base = engine.linker_of(module);
        let extra = host::linker_for(base, module).map_err(|e| bad(format!("cannot link: {e}")))?;
        let linker = extra.as_ref().unwrap_or(base);
        let pre = linker
            .instantiate_pre(module)
            .map_err(|e| bad(format!("cannot link: {e}")))?;
        let export = |name: &str| module.get_export_index(name);
        let memory =
            export(abi::EXPORT_MEMORY).ok_or_else(|| bad("missing export `memory`".into()))?;
        let fetch = export(abi::EXPORT_FETCH)
            .ok_or_else(|| bad("missing export `tenantry_fetch`".into()))?;
        Ok(Linked {
            pre,
            memory,
            fetch,
            initialize: if js {
                None
            } else {
                export(abi::EXPORT_INITIALIZE)
            },
        })
    }
}

/// An instantiated, initialised guest and its store.
struct Live {
    store: Store<HostState>,
    fetch: TypedFunc<(), i32>,
}

impl Worker {
    /// Links the module against the host API and pre-warms one pool slot with its memory image.
    ///
    /// Pre-warming instantiates once (with no fuel, so a start function cannot run guest code)
    /// and drops the instance: that builds the module's copy-on-write memory image and leaves a
    /// warm pool slot holding it, so the first request does not pay for either. Measured with a
    /// 1 MiB data segment loaded from a `.cwasm` (dev profile, `invoke::tests::measure`):
    /// load + link 158 → 260 µs, first request 142 → 41 µs. The sum is the same, so this only
    /// shortens the first request when Workers are loaded ahead of traffic. A failure here
    /// (e.g. pool exhausted) is logged at debug level; the first request reports it.
    pub fn new(engine: &Engine, spec: WorkerSpec) -> Result<Worker, Fault> {
        let worker = Worker::link(engine, spec)?;
        worker.prewarm();
        Ok(worker)
    }

    /// [`Worker::new`] without the pre-warm: for a Worker loaded because a request needs it now,
    /// whose own instantiation does what the pre-warm would (build the memory image, warm a
    /// slot). Pre-warming there instantiated twice per load: with 1001 Workers of one module in
    /// turn on a core of 1000 (every request a load), 12.7 → 7.8 µs per load
    /// (`benches/round-robin.sh`, docs/performance.md).
    pub fn link(engine: &Engine, spec: WorkerSpec) -> Result<Worker, Fault> {
        let linked = Linked::shared(engine, &spec.module, spec.js_bundle.is_some())?;
        Ok(Worker {
            engine: engine.clone(),
            linked,
            code: spec.js_bundle.unwrap_or_default(),
            ident: Arc::new(WorkerIdent::new(&spec.name)),
            bindings: spec.bindings,
            limits: spec.limits,
            reuse: spec.reuse_instances as usize,
            idle: RefCell::new(Vec::new()),
            last_cpu_bound: Cell::new(false),
        })
    }

    fn prewarm(&self) {
        let mut store = self.new_store(Request::default(), self.limits);
        // No fuel: a start function, if any, traps at once instead of running guest code here.
        let _ = store.set_fuel(0);
        // The async form, because a module importing an async host call (`service_fetch`, …)
        // cannot be instantiated synchronously. Without guest code running nothing can suspend,
        // so one poll completes it; a module that did suspend is simply not pre-warmed.
        let instantiate = std::pin::pin!(self.linked.pre.instantiate_async(&mut store));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match instantiate.poll(&mut cx) {
            std::task::Poll::Ready(Ok(_)) => {}
            std::task::Poll::Ready(Err(e)) => {
                tracing::debug!(worker = %self.ident.name, "pre-warm instantiation failed: {e}");
            }
            std::task::Poll::Pending => {
                tracing::debug!(worker = %self.ident.name, "pre-warm instantiation suspended");
            }
        }
    }

    /// The script's own limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// `"namespace/script"`.
    pub fn name(&self) -> &str {
        &self.ident.name
    }

    /// Idle instances kept for reuse (always 0 in fresh mode).
    pub fn idle_instances(&self) -> usize {
        self.idle.borrow().len()
    }

    /// Idle reuse-mode instances on every core together (any Worker's).
    pub fn engine_idle_instances(&self) -> usize {
        self.engine.idle_instances()
    }

    /// Drops this Worker's idle instances, freeing their pool slots; returns how many.
    pub fn evict_idle(&self) -> usize {
        let idle = std::mem::take(&mut *self.idle.borrow_mut());
        idle.len()
    }

    /// Drops the idle instances unused for `max_age` or longer; returns how many are left.
    pub fn expire_idle(&self, max_age: Duration) -> usize {
        let expired: Vec<_> = {
            let mut idle = self.idle.borrow_mut();
            let (old, young) = std::mem::take(&mut *idle)
                .into_iter()
                .partition(|(_, _, since)| since.elapsed() >= max_age);
            *idle = young;
            old
        };
        drop(expired);
        self.idle.borrow().len()
    }

    /// This Worker's requests on the current core that ran [`CPU_BOUND_AFTER`] and have not
    /// finished: they take turns with other Workers' one slice at a time (see
    /// `yielding`). How many of its requests are CPU-bound right now.
    pub fn cpu_bound_requests(&self) -> usize {
        yielding::in_rotation(self.yield_key())
    }

    /// Whether this Worker is CPU-bound on the current core: one of its requests is
    /// ([`Worker::cpu_bound_requests`]), or the last one that finished was. Its requests that
    /// have not yet run that long are likely CPU-bound too.
    pub fn is_cpu_bound(&self) -> bool {
        self.last_cpu_bound.get() || self.cpu_bound_requests() > 0
    }

    fn yield_key(&self) -> yielding::YieldKey {
        Arc::as_ptr(&self.ident) as yielding::YieldKey
    }

    /// Runs one request. `limits` is the effective limit (the caller already applied
    /// [`Limits::min`]); the wall-clock deadline starts now and covers instantiation.
    ///
    /// CPU-bound guests yield to other tasks of the core's runtime on every epoch tick, so the
    /// future must be polled inside a monoio runtime (the fair yield spawns a helper task there,
    /// see `yielding`); it is not `Send`.
    pub async fn invoke(&self, req: Request, limits: Limits) -> Result<Response, Fault> {
        self.invoke_with(req, limits, CallContext::default()).await
    }

    /// [`Worker::invoke`] for a call from another Worker (see [`crate::nested`]).
    pub async fn invoke_with(
        &self,
        req: Request,
        limits: Limits,
        ctx: CallContext,
    ) -> Result<Response, Fault> {
        let reused = if self.reuse > 0 {
            // The token goes with the pop: the instance is busy, no longer idle.
            self.idle
                .borrow_mut()
                .pop()
                .map(|(live, _token, _since)| live)
        } else {
            None
        };
        let mut live = match reused {
            Some(mut live) => {
                live.store.data_mut().reset(req, limits);
                self.enter(live.store.data_mut(), ctx);
                live.store
                    .set_fuel(limits.fuel())
                    .map_err(|e| internal(&e))?;
                live.store.set_epoch_deadline(1);
                // Its guest time starts now (a fresh store's starts after its instantiation).
                live.store.data().slice_start.mark();
                live
            }
            None => self.instantiate(req, limits, ctx).await?,
        };

        // A Worker already CPU-bound on this core: the new request joins the back of its
        // Worker's rotation at its first instruction instead of running a slice first, which would
        // give the Worker an extra slice in this round (see `yielding`).
        if self.cpu_bound_requests() > 0 {
            live.store.set_epoch_deadline(0);
        }
        let outcome = live.fetch.call_async(&mut live.store, ()).await;
        // The request is no longer CPU-bound (a reused instance's store outlives it).
        let was_cpu_bound = live.store.data_mut().rotation.take().is_some();
        self.last_cpu_bound.set(was_cpu_bound);
        let state = live.store.data();
        // Only an instance that finished normally and never hit a limit is reused.
        let clean = matches!(outcome, Ok(0)) && !state.limiter.denied && !state.budget.exceeded();
        let result = conclude(outcome, state, limits);
        state.report_dropped_logs();
        let response = live.store.data_mut().response.take();
        if clean && self.reuse > 0 {
            let mut idle = self.idle.borrow_mut();
            if idle.len() < self.reuse
                && let Some(token) = self.engine.hold_idle()
            {
                idle.push((live, token, Instant::now()));
            }
        }
        result?;
        // `response_set_status` refuses anything else, but `response_forward` copies a fetched
        // response's status as it came (an upstream may answer `101`).
        if !crate::is_final_status(response.status) {
            let fault = Fault::InvalidStatus(response.status);
            tracing::warn!(worker = %self.ident.name, "{fault}; answered 500 instead");
            return Err(fault);
        }
        Ok(response)
    }

    /// A fresh store and instance, initialised. Fuel is set before instantiation so that a start
    /// function and `_initialize` count against the request's CPU limit.
    async fn instantiate(
        &self,
        req: Request,
        limits: Limits,
        ctx: CallContext,
    ) -> Result<Live, Fault> {
        let mut store = self.new_store(req, limits);
        self.enter(store.data_mut(), ctx);
        store.set_fuel(limits.fuel()).map_err(|e| internal(&e))?;
        store.set_epoch_deadline(1);

        let instance = match self.linked.pre.instantiate_async(&mut store).await {
            Ok(instance) => instance,
            Err(e) => {
                return Err(classify(&e, store.data(), limits)
                    .err()
                    .unwrap_or(Fault::Trap("the Worker exited during instantiation".into())));
            }
        };
        // The guest's slice starts when its code can run, not before its instantiation: a
        // JavaScript instance takes ~100 µs to map and set up, and counted in, a tick soon after
        // made its first request yield (`MIN_BRIEF_SLICE`) while holding the instance — so the
        // next request instantiated another, and yielded too: bursts of a dozen instances and
        // their requests parked at once, past the Worker's in-flight share (`503`s for a hello
        // at 64 connections). A start function has run by now; it was charged from the mark
        // `new_store` made.
        store.data().slice_start.mark();
        let memory = instance
            .get_module_export(&mut store, &self.linked.memory)
            .and_then(|e| e.into_memory())
            .ok_or_else(|| Fault::BadModule(NoMemory.to_string()))?;
        store.data_mut().memory = Some(memory);

        if let Some(init) = &self.linked.initialize {
            let init = instance
                .get_module_export(&mut store, init)
                .and_then(|e| e.into_func())
                .and_then(|f| f.typed::<(), ()>(&store).ok())
                .ok_or_else(|| Fault::BadModule("export `_initialize` is not `() -> ()`".into()))?;
            if let Err(e) = init.call_async(&mut store, ()).await {
                // proc_exit(0) during _initialize leaves no instance to call.
                return Err(classify(&e, store.data(), limits)
                    .err()
                    .unwrap_or(Fault::Trap("the Worker exited during _initialize".into())));
            }
        }

        let fetch = instance
            .get_module_export(&mut store, &self.linked.fetch)
            .and_then(|e| e.into_func())
            .and_then(|f| f.typed::<(), i32>(&store).ok())
            .ok_or_else(|| Fault::BadModule("export `tenantry_fetch` is not `() -> i32`".into()))?;
        Ok(Live { store, fetch })
    }

    /// Applies what the caller passes down to this invocation's state.
    fn enter(&self, state: &mut HostState, ctx: CallContext) {
        state.depth = ctx.depth;
        state.outbound = ctx.outbound;
        state.bindings = if ctx.extra_bindings.is_empty() {
            self.bindings.clone()
        } else {
            self.bindings.with(&ctx.extra_bindings)
        };
    }

    fn new_store(&self, req: Request, limits: Limits) -> Store<HostState> {
        let mut state = HostState::new(self.ident.clone(), self.bindings.clone(), req, limits);
        state.code = self.code.clone();
        // The module's own engine: the optimised one, or the baseline tier's for Winch code.
        let mut store = Store::new(self.linked.pre.module().engine(), state);
        store.limiter(|state| &mut state.limiter);
        // Every epoch tick: past the deadline, stop the guest; otherwise let the core's other
        // tasks run (fairly: see `yielding`), then continue for one more tick.
        // The guests of one Worker share one rotation slot, so a Worker with many requests in
        // flight gets one slice per round like any other (see `yielding`).
        let engine = self.engine.clone();
        store.epoch_deadline_callback(move |mut ctx| {
            if Instant::now() >= ctx.data().deadline {
                Err(DeadlineExceeded.into())
            } else {
                let key = Arc::as_ptr(&ctx.data().ident) as yielding::YieldKey;
                let state = ctx.data_mut();
                let slice = state.slice_start.ran();
                // A short request that ran into a tick soon after it started (ticks come on a
                // fixed schedule, whatever the guest) goes on: a yield costs a round of the core
                // (a pump, I/O reaps, a park), more than the request itself. It yields at a later
                // tick once it has run `MIN_BRIEF_SLICE`. Not for a Worker with CPU-bound
                // requests here: those queue behind them (see `yielding`).
                if slice < MIN_BRIEF_SLICE
                    && state.rotation.is_none()
                    && yielding::in_rotation(key) == 0
                {
                    return Ok(UpdateDeadline::Continue(1));
                }
                // Once it ran `CPU_BOUND_AFTER` in all over `CPU_BOUND_YIELDS` slices (and until
                // it ends) the request counts as CPU-bound. Time run, not only ticks seen: a short
                // request runs into a tick now and then; and not time alone (see the constants).
                state.ran += slice;
                state.yields += 1;
                if state.ran >= CPU_BOUND_AFTER
                    && state.yields >= CPU_BOUND_YIELDS
                    && state.rotation.is_none()
                {
                    state.rotation = Some(yielding::InRotation::join(key));
                }
                let slice_start = state.slice_start.clone();
                // Only a CPU-bound request waits its turn in its Worker's rotation; a short one
                // that ran into a tick runs again next round with everything else, so a Worker of
                // many short requests is not served one of them per round.
                // (A request of a Worker that has CPU-bound ones here queues behind them.)
                let in_rotation = state.rotation.is_some() || yielding::in_rotation(key) > 0;
                let park = yielding::yield_now(key, in_rotation);
                engine.guest_yielded();
                Ok(UpdateDeadline::YieldCustom(
                    1,
                    Box::pin(async move {
                        park.await;
                        slice_start.mark();
                    }),
                ))
            }
        });
        store
    }
}

/// The outcome of the guest's `tenantry_fetch`. A host call refused for want of host memory
/// (`host::budget`) ends the invocation with the memory-limit answer whatever the guest did
/// after it (returned normally or with another code, trapped, or went on until it ran out of
/// CPU or wall-clock time): the first limit it hit is the one reported.
fn conclude(
    outcome: wasmtime::Result<i32>,
    state: &HostState,
    limits: Limits,
) -> Result<(), Fault> {
    if state.budget.exceeded() {
        return Err(Fault::MemoryLimit {
            limit_bytes: limits.memory_bytes,
        });
    }
    match outcome {
        Ok(0) => Ok(()),
        Ok(code) => Err(Fault::GuestError(code)),
        Err(e) => classify(&e, state, limits),
    }
}

/// Maps a wasmtime error from instantiation or a guest call to the outcome of the invocation.
/// `Ok(())` only for `proc_exit(0)`, which completes the response.
fn classify(err: &wasmtime::Error, state: &HostState, limits: Limits) -> Result<(), Fault> {
    if let Some(ProcExit(code)) = err.downcast_ref::<ProcExit>() {
        return if *code == 0 {
            Ok(())
        } else {
            Err(Fault::GuestError(*code))
        };
    }
    if err.is::<DeadlineExceeded>() {
        return Err(Fault::Deadline {
            wall_ms: limits.wall_ms,
        });
    }
    let trap = err.downcast_ref::<Trap>().copied();
    if trap == Some(Trap::OutOfFuel) {
        return Err(Fault::OutOfFuel {
            cpu_ms: limits.cpu_ms,
        });
    }
    if state.limiter.denied {
        return Err(Fault::MemoryLimit {
            limit_bytes: limits.memory_bytes,
        });
    }
    if trap == Some(Trap::StackOverflow) {
        return Err(Fault::StackOverflow);
    }
    if err.is::<PoolConcurrencyLimitError>() {
        return Err(Fault::Overloaded);
    }
    if let Some(bad) = err.downcast_ref::<crate::guest_mem::BadPointer>() {
        return Err(Fault::Trap(bad.to_string()));
    }
    if let Some(no_memory) = err.downcast_ref::<NoMemory>() {
        return Err(Fault::BadModule(no_memory.to_string()));
    }
    if let Some(trap) = trap {
        // The short description only ("wasm `unreachable` instruction executed"), without the
        // wasm backtrace wasmtime attaches as context.
        let text = trap.to_string();
        let text = text.strip_prefix("wasm trap: ").unwrap_or(&text);
        return Err(Fault::Trap(text.to_string()));
    }
    Err(internal(err))
}

/// An error that is none of the above: logged in full for the operator, reported to the client
/// without host details.
fn internal(err: &wasmtime::Error) -> Fault {
    tracing::warn!("Worker invocation failed: {err:#}");
    Fault::Trap("internal error".into())
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod hostile_tests;
