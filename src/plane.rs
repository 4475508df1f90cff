//! The data plane's request handler: route, look the script up in its namespace's index, take the
//! Worker from this core's pool and run it.
//!
//! It lives beside the ingress, not in it: a request's way reads ingress (HTTP, the [`Handler`]
//! interface it defines) → plane (this module: the snapshot of namespaces, secrets and artifacts
//! from `loader`) → core (the Worker runs), and `tenantry-ingress` never imports `tenantry-loader`.
//!
//! ```text
//!  Plane (shared, one per process)          Dispatcher (one per core, !Send)
//!  ┌──────────────────────────────┐         ┌──────────────────────────────────┐
//!  │ generation: AtomicU64        │ ──────► │ cached: Arc<Snapshot> (refreshed │
//!  │ current: ArcSwap<Snapshot>   │         │   between requests on a change)  │
//!  └──────────────────────────────┘         │ pool: WorkerPool (per-core LRU)  │
//!                                           └──────────────────────────────────┘
//! ```
//! A deploy publishes a new [`Snapshot`]; each core notices the generation change at its next
//! request and switches. A request keeps the snapshot it started with until it ends, so
//! in-flight requests finish on their version.
//!
//! A snapshot names each namespace's current index generation ([`IndexKey`]); the mapped indexes
//! live in the process-wide, bounded [`IndexCache`]. A publish inserts its new index there before
//! the snapshot naming it is published, so every core finds it at once; a core that misses (an
//! idle namespace the cache evicted) has the index mapped and validated on the index loader
//! thread, and serves other requests meanwhile. A lookup copies what the Worker needs out of the
//! index (module id, bindings, limits, etag), so a request holds no index while it runs.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use std::time::Instant;

use tenantry_core::kv::KvBackend;
use tenantry_core::nested::{BodyStream, CallContext, CallFuture, FetchFuture, Invoker};
use tenantry_core::{
    Binding, BindingKind, Bindings, Engine, Fault, Limits, Request, Response, Worker, WorkerPool,
    WorkerSpec,
};
use tenantry_loader::kv::{NamespaceSecrets, SECRET_TOKEN_PREFIX};
use tenantry_loader::{ArtifactStore, Index, IndexCache, IndexKey};

use tenantry_ingress::Handler;
use tenantry_ingress::admission::{Admission, AdmissionLimits, Class};
use tenantry_ingress::client::{Client, EgressPolicy};
use tenantry_ingress::route::Router;

/// Everything a request needs to find its Worker, as of one generation.
///
/// The maps are persistent (`imbl`): the control plane derives the next snapshot from this one
/// in O(log n) per changed namespace, and a clone is O(1), however many namespaces there are.
pub struct Snapshot {
    pub router: Router,
    /// Namespace name → its current index generation, to look up in the [`IndexCache`].
    pub namespaces: imbl::HashMap<String, IndexKey>,
    /// Limits for scripts that set none of their own.
    pub default_limits: Limits,
    /// Namespace name → its `secret_text` values, kept apart from the index (which holds only
    /// tokens; see `tenantry_loader::kv`).
    pub secrets: imbl::HashMap<String, Arc<NamespaceSecrets>>,
}

/// What the plane reads from the data directory, each through its bounded, process-wide cache:
/// the Workers' modules and the namespaces' indexes. Cheap to clone.
#[derive(Clone)]
pub struct Storage {
    pub artifacts: ArtifactStore,
    pub indexes: IndexCache,
}

/// The current snapshot, shared by every core.
pub struct Plane {
    generation: AtomicU64,
    current: ArcSwap<Snapshot>,
    storage: Storage,
    engine: Engine,
    workers_per_core: usize,
    egress: EgressPolicy,
    kv: Option<Arc<dyn KvBackend>>,
    admission: AdmissionLimits,
}

impl Plane {
    pub fn new(
        snapshot: Snapshot,
        engine: Engine,
        storage: Storage,
        workers_per_core: usize,
        egress: EgressPolicy,
        kv: Option<Arc<dyn KvBackend>>,
        admission: AdmissionLimits,
    ) -> Arc<Plane> {
        Arc::new(Plane {
            generation: AtomicU64::new(1),
            current: ArcSwap::from_pointee(snapshot),
            storage,
            engine,
            workers_per_core,
            egress,
            kv,
            admission,
        })
    }

    /// Makes `snapshot` current; every core switches to it before its next request.
    pub fn publish(&self, snapshot: Snapshot) {
        self.current.store(Arc::new(snapshot));
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The engine the node runs Workers with, and its settings as the node sized them.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Idle reuse-mode instances kept on every core together.
    pub fn idle_instances(&self) -> usize {
        self.engine.idle_instances()
    }

    /// The current snapshot.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// A handler for one core. Call it on that core's thread: it also registers the core's
    /// invoker, which runs the Workers that other Workers call through bindings.
    pub fn dispatcher(self: &Arc<Plane>) -> Dispatcher {
        let core = Rc::new(CoreDispatch {
            plane: self.clone(),
            cached: RefCell::new((self.generation.load(Ordering::Acquire), self.load())),
            pool: Rc::new(WorkerPool::new(self.engine.clone(), self.workers_per_core)),
            client: Rc::new(Client::new(self.egress.clone())),
            admission: Admission::new(self.admission),
        });
        tenantry_core::nested::set_invoker(core.clone());
        Dispatcher { core }
    }
}

/// One core's handler.
pub struct Dispatcher {
    core: Rc<CoreDispatch>,
}

struct CoreDispatch {
    plane: Arc<Plane>,
    cached: RefCell<(u64, Arc<Snapshot>)>,
    pool: Rc<WorkerPool>,
    /// This core's subrequest client.
    client: Rc<Client>,
    /// This core's admission control (see `admission`).
    admission: Rc<Admission>,
}

impl CoreDispatch {
    /// The snapshot for this request: the cached one unless a new generation was published.
    fn snapshot(&self) -> Arc<Snapshot> {
        let generation = self.plane.generation.load(Ordering::Acquire);
        let mut cached = self.cached.borrow_mut();
        if cached.0 != generation {
            *cached = (generation, self.plane.load());
        }
        cached.1.clone()
    }

    /// The Worker `script` of `namespace` in `snapshot`, loaded on this core. A hit is ready at
    /// once; on a miss a loader thread maps the module (and, if the cache evicted it, the
    /// namespace's index) while this core serves other requests, and the Worker is linked here
    /// when it is mapped. The returned future owns what it needs, so `snapshot` is only borrowed
    /// for the lookup.
    fn worker(
        &self,
        snapshot: &Snapshot,
        namespace: &str,
        script: &str,
    ) -> impl Future<Output = Result<Rc<Worker>, Fault>> + use<> {
        let found = (|| {
            let key = snapshot.namespaces.get(namespace).ok_or(Fault::NotFound)?;
            let secrets = snapshot.secrets.get(namespace);
            Ok(match self.plane.storage.indexes.cached(key) {
                Some(index) => Ok(find(
                    &self.pool,
                    &self.plane.storage.artifacts,
                    &index,
                    namespace,
                    script,
                    secrets,
                    snapshot.default_limits,
                )?),
                None => Err((
                    self.plane.storage.indexes.load_async(key),
                    Lookup {
                        pool: self.pool.clone(),
                        artifacts: self.plane.storage.artifacts.clone(),
                        secrets: secrets.cloned(),
                        default_limits: snapshot.default_limits,
                        namespace: namespace.to_string(),
                        script: script.to_string(),
                    },
                )),
            })
        })();
        async move {
            let found = match found? {
                Ok(found) => found,
                Err((opening, l)) => {
                    let index = match opening.await {
                        Ok(Some(index)) => index,
                        // Deleted since the snapshot was taken.
                        Ok(None) => return Err(Fault::NotFound),
                        Err(e) => {
                            return Err(Fault::Unavailable(format!(
                                "the index of namespace `{}` cannot be opened: {e}",
                                l.namespace
                            )));
                        }
                    };
                    find(
                        &l.pool,
                        &l.artifacts,
                        &index,
                        &l.namespace,
                        &l.script,
                        l.secrets.as_ref(),
                        l.default_limits,
                    )?
                }
            };
            match found {
                Ok(worker) => Ok(worker),
                Err(loading) => loading.await,
            }
        }
    }
}

/// A Worker found in an index: on this core already, or loading.
type Found = Result<Rc<Worker>, Pin<Box<dyn Future<Output = Result<Rc<Worker>, Fault>>>>>;

/// What the lookup after a missed index needs, owned by the request's future.
struct Lookup {
    pool: Rc<WorkerPool>,
    artifacts: ArtifactStore,
    secrets: Option<Arc<NamespaceSecrets>>,
    default_limits: Limits,
    namespace: String,
    script: String,
}

/// The Worker `script` of `namespace` in `index`: from `pool` if this core has it, else a future
/// that maps its module (`artifacts`) and links it here. The future owns what it needs.
fn find(
    pool: &WorkerPool,
    artifacts: &ArtifactStore,
    index: &Index,
    namespace: &str,
    script: &str,
    secrets: Option<&Arc<NamespaceSecrets>>,
    default_limits: Limits,
) -> Result<Found, Fault> {
    let entry = index.get(script).ok_or(Fault::NotFound)?;
    if let Some(worker) = pool.get(entry.etag.as_str()) {
        return Ok(Ok(worker));
    }
    let module = artifacts.load_async(&tenantry_loader::artifact_id(entry));
    let name = format!("{namespace}/{script}");
    let bindings = with_secrets(tenantry_loader::bindings(entry), script, secrets);
    let limits = tenantry_loader::limits(entry, default_limits);
    let reuse_instances = entry.reuse_instances.to_native();
    Ok(Err(Box::pin(pool.load(entry.etag.as_str(), async move {
        let loaded = module
            .await
            .map_err(|e| Fault::Unavailable(e.to_string()))?;
        Ok(WorkerSpec {
            name,
            module: loaded.module,
            bindings,
            limits,
            reuse_instances,
            js_bundle: loaded.js_bundle,
        })
    }))))
}

/// Runs `worker` under `permit`. If the pool had no free slot and this core holds idle
/// reuse-mode instances, those are evicted and the request is tried once more: a slot pinned by
/// an idle instance must not turn a request away.
async fn run(
    pool: &WorkerPool,
    worker: &Worker,
    req: Request,
    limits: Limits,
    ctx: CallContext,
) -> Result<Response, Fault> {
    // Kept for the retry only when eviction could free something (the count is node-wide).
    let spare = (worker.engine_idle_instances() > 0).then(|| (req.clone(), ctx.clone()));
    let outcome = match worker.invoke_with(req, limits, ctx).await {
        Err(Fault::Overloaded) => match spare {
            Some((req, ctx)) if pool.evict_idle() > 0 => worker.invoke_with(req, limits, ctx).await,
            _ => Err(Fault::Overloaded),
        },
        outcome => outcome,
    };
    if worker.idle_instances() > 0 {
        pool.expire_idle_later();
    }
    outcome
}

/// Replaces the tokens of `secret_text` bindings by their values. A token without a value (the
/// secret store lost it) drops the binding, so the guest sees "no such binding", never a token.
fn with_secrets(
    bindings: Bindings,
    script: &str,
    secrets: Option<&Arc<NamespaceSecrets>>,
) -> Bindings {
    let sealed =
        |b: &Binding| b.kind == BindingKind::SecretText && b.value.starts_with(SECRET_TOKEN_PREFIX);
    if !bindings.iter().any(sealed) {
        return bindings;
    }
    let list = bindings
        .iter()
        .filter_map(|b| {
            if !sealed(b) {
                return Some(b.clone());
            }
            let value = secrets?
                .get(script)?
                .get(&(b.name.clone(), b.value.clone()))?;
            Some(Binding {
                value: value.clone(),
                ..b.clone()
            })
        })
        .collect();
    Bindings::new(list)
}

/// Header fields whose name starts with this are platform-internal: the platform's edge and its
/// dispatch Worker may use them, customer Workers never see them.
pub const INTERNAL_HEADER_PREFIX: &[u8] = b"x-tenantry-";

/// Removes platform-internal header fields before a customer (namespace) Worker runs.
fn strip_internal(req: &mut Request) {
    let internal = |name: &[u8]| {
        name.len() >= INTERNAL_HEADER_PREFIX.len()
            && name[..INTERNAL_HEADER_PREFIX.len()].eq_ignore_ascii_case(INTERNAL_HEADER_PREFIX)
    };
    if req.headers.iter().any(|(n, _)| internal(n)) {
        req.headers.retain(|(n, _)| !internal(n));
    }
}

impl Invoker for CoreDispatch {
    fn invoke(
        &self,
        namespace: &str,
        script: &str,
        req: Request,
        limits: Limits,
        ctx: CallContext,
    ) -> CallFuture {
        let worker = self.worker(&self.snapshot(), namespace, script);
        let mut req = req;
        if namespace != tenantry_loader::PLATFORM_NAMESPACE {
            strip_internal(&mut req);
        }
        let admission = self.admission.clone();
        let pool = self.pool.clone();
        // A platform Worker called by another (an outbound Worker) runs on its caller's permit;
        // a customer Worker gets its own per-Worker share, also when a dispatcher calls it.
        let class = (namespace != tenantry_loader::PLATFORM_NAMESPACE).then_some(Class::Nested);
        Box::pin(async move {
            let worker = worker.await?;
            let limits = worker.limits().min(limits);
            let _permit = match class {
                Some(class) => match admission.acquire(&worker, class).await {
                    Ok(permit) => Some(permit),
                    Err(shed) => return Ok(shed.to_response(admission.limits().retry_after_s)),
                },
                None => None,
            };
            run(&pool, &worker, req, limits, ctx).await
        })
    }

    fn kv(&self) -> Option<Arc<dyn KvBackend>> {
        self.plane.kv.clone()
    }

    fn fetch(&self, req: Request, deadline: Instant) -> FetchFuture {
        let client = self.client.clone();
        Box::pin(async move {
            let (response, body) = client
                .send(req, deadline)
                .await
                .map_err(Fault::Subrequest)?;
            Ok((response, body.map(|b| Box::new(b) as Box<dyn BodyStream>)))
        })
    }
}

impl Dispatcher {
    /// Routes `req` and runs its Worker.
    pub async fn dispatch(&self, mut req: Request) -> Result<Response, Fault> {
        let snapshot = self.core.snapshot();
        let (worker, platform) = {
            let Some(target) = snapshot.router.route(&req) else {
                return Ok(Response::text(404, "No route matches this request\n"));
            };
            let worker = self
                .core
                .worker(&snapshot, target.namespace, &target.script)
                .await?;
            (
                worker,
                target.namespace == tenantry_loader::PLATFORM_NAMESPACE,
            )
        };
        if !platform {
            strip_internal(&mut req);
        }
        let admission = &self.core.admission;
        let class = if platform {
            Class::Platform
        } else {
            Class::Direct
        };
        let _permit = match admission.acquire(&worker, class).await {
            Ok(permit) => permit,
            Err(shed) => return Ok(shed.to_response(admission.limits().retry_after_s)),
        };
        let limits = worker.limits();
        run(
            &self.core.pool,
            &worker,
            req,
            limits,
            CallContext::default(),
        )
        .await
    }
}

impl Handler for Dispatcher {
    async fn call(&self, req: Request) -> Response {
        match self.dispatch(req).await {
            Ok(response) => response,
            Err(fault) => {
                if fault.status() >= 500 {
                    tracing::warn!(%fault, "invocation failed");
                }
                fault.to_response()
            }
        }
    }
}
