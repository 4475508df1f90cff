//! `tenantry serve`: deploy the config into the data directory, then run the data plane on every
//! core and the admin API on its own listener.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use crate::plane::{Plane, Storage};
use anyhow::Context;
use tenantry_core::{Engine, EngineSettings};
use tenantry_ingress::ServerHandle;
use tenantry_loader::kv::{KvService, KvStore};
use tenantry_loader::{ARTIFACT_GC_INTERVAL, ARTIFACT_GRACE, Compiler, MappingBudget, Store};

use crate::admin::{AdminConfig, AdminHandler, MAX_ADMIN_BODY_BYTES, TOKEN_ENV};
use crate::certificates::CertificateStore;
use crate::config::Config;
use crate::control::Control;
use crate::deploy;

/// The engine's settings for this node: the config's, with the process-wide module cache sized
/// from the kernel's mapping limit unless `[engine] max_loaded_modules` is set; and the Workers
/// to keep per core, checked with every other holder of mapped modules against
/// `vm.max_map_count` (docs/design.md) and lowered, with a warning, if the configured number
/// does not fit.
fn mapping_budget(config: &Config) -> anyhow::Result<(EngineSettings, usize)> {
    let max_map_count = MappingBudget::kernel_max_map_count();
    let mut settings = config.engine.clone();
    if config.auto_loaded_modules {
        settings.max_loaded_modules = MappingBudget::auto_loaded_modules(
            &settings,
            config.server.threads,
            config.workers_per_core,
            max_map_count,
        );
        tracing::info!(
            max_loaded_modules = settings.max_loaded_modules,
            max_map_count,
            "module cache sized from vm.max_map_count ([engine] max_loaded_modules sets it)"
        );
    }
    let (budget, workers_per_core) = MappingBudget::check(
        &settings,
        config.server.threads,
        config.workers_per_core,
        max_map_count,
    )?;
    if workers_per_core < config.workers_per_core {
        tracing::warn!(
            configured = config.workers_per_core,
            workers_per_core,
            max_map_count,
            "[engine] workers_per_core lowered so that loaded modules fit vm.max_map_count"
        );
    }
    tracing::debug!(
        modules = budget.modules,
        mappings = budget.mappings,
        max_map_count,
        "mapping budget"
    );
    Ok((settings, workers_per_core))
}

/// A running node: the data plane on every core, serving what the data directory holds, and
/// the admin API that changes it.
pub struct Node {
    server: ServerHandle,
    admin: Option<ServerHandle>,
    plane: Arc<Plane>,
    control: Arc<Control>,
    certificates: Option<Arc<CertificateStore>>,
    gc: ArtifactGc,
}

/// The thread that removes artifacts no index names, every [`ARTIFACT_GC_INTERVAL`].
struct ArtifactGc {
    /// Dropping it stops the thread.
    stop: Option<crossbeam_channel::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ArtifactGc {
    fn start(store: Store) -> anyhow::Result<ArtifactGc> {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let thread = std::thread::Builder::new()
            .name("tenantry-artifact-gc".into())
            .spawn(move || {
                while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(ARTIFACT_GC_INTERVAL)
                {
                    if let Err(e) = store.collect_artifacts(ARTIFACT_GRACE) {
                        tracing::warn!("collecting unused artifacts: {e}");
                    }
                }
            })
            .context("starting the artifact collector")?;
        Ok(ArtifactGc {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for ArtifactGc {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Node {
    /// Deploys `config` into its data directory and starts serving. Returns once every core
    /// listens.
    pub fn start(config: &Config) -> anyhow::Result<Node> {
        let (settings, workers_per_core) = mapping_budget(config)?;
        let engine = Engine::new(&settings)?;
        engine.start_epoch_ticker();
        let store = Store::open(&config.data_dir, engine.clone())
            .with_context(|| format!("opening data directory {}", config.data_dir.display()))?;
        let kv_path = config.data_dir.join("kv.redb");
        let kv_store = KvStore::open(&kv_path)
            .with_context(|| format!("opening the KV store {}", kv_path.display()))?
            .with_min_ttl(config.kv_min_ttl_s);
        let report = deploy::apply(config, &store, &kv_store)?;
        tracing::info!(
            workers = report.deployed,
            namespaces = report.namespaces,
            "deployed the config"
        );

        let (snapshot, catalog, unoptimised) =
            Control::snapshot_of(&store, &kv_store, &config.routes, config.default_limits)
                .context("opening the namespaces in the data directory")?;
        let kv = Arc::new(KvService::start(
            kv_store.clone(),
            2,
            config.kv_sweep_interval,
        ));
        let plane = Plane::new(
            snapshot,
            engine,
            Storage {
                artifacts: store.artifacts().clone(),
                indexes: store.indexes().clone(),
            },
            workers_per_core,
            config.egress.clone(),
            Some(kv.clone() as Arc<dyn tenantry_core::kv::KvBackend>),
            config.admission,
        );
        let gc = ArtifactGc::start(store.clone())?;
        let compile_timeout = config
            .admin
            .as_ref()
            .map_or(tenantry_loader::DEFAULT_COMPILE_TIMEOUT, |a| {
                a.compile_timeout
            });
        let compiler = Compiler::new(store.artifacts().clone(), deploy::compile_threads())
            .with_timeout(compile_timeout);
        let certificates = match &config.tls {
            None => None,
            Some(tls) => Some(Arc::new(
                CertificateStore::open(tls, &config.data_dir)
                    .context("loading the TLS certificates")?,
            )),
        };
        let control = Arc::new(
            Control::new(
                store,
                compiler,
                plane.clone(),
                config.routes.clone(),
                config.default_limits,
                kv_store,
                catalog,
            )
            .with_certificates(certificates.clone()),
        );
        control
            .ensure_platform()
            .context("creating the platform Workers' namespace")?;
        control
            .start_optimiser(unoptimised)
            .context("starting the optimiser thread")?;

        let for_cores = plane.clone();
        let mut server_config = config.server.clone();
        server_config.tls = certificates.as_ref().map(|c| c.listener());
        let server = tenantry_ingress::start(server_config, move |_core| for_cores.dispatcher())
            .with_context(|| match &config.tls {
                None => format!("listening on {}", config.server.addr),
                Some(tls) => format!("listening on {} and {}", config.server.addr, tls.addr),
            })?;

        let admin = match &config.admin {
            None => None,
            Some(admin) => Some(start_admin(admin, &config.data_dir, &control)?),
        };
        Ok(Node {
            server,
            admin,
            plane,
            control,
            certificates,
            gc,
        })
    }

    /// The address the data plane accepts TLS on, if `[server.tls]` is configured.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.server.tls_addr()
    }

    /// Reads the TLS certificate files again and serves the new set to new handshakes
    /// (SIGHUP). On an error the current set stays. Returns the hostname patterns served.
    pub fn reload_certificates(&self) -> anyhow::Result<usize> {
        match &self.certificates {
            None => anyhow::bail!("the data plane has no TLS listener ([server.tls])"),
            Some(c) => Ok(c.reload()?),
        }
    }

    /// The address the data plane listens on (the real port when the config asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The admin API's address, if it is enabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(ServerHandle::local_addr)
    }

    /// The shared plane, to publish new snapshots.
    pub fn plane(&self) -> &Arc<Plane> {
        &self.plane
    }

    /// The control plane (deploys, namespaces).
    pub fn control(&self) -> &Arc<Control> {
        &self.control
    }

    /// Stops accepting connections, lets in-flight requests finish and joins every thread.
    pub fn shutdown(self) {
        self.control.stop_optimiser();
        if let Some(admin) = self.admin {
            admin.join();
        }
        self.server.join();
        drop(self.gc);
    }
}

fn start_admin(
    admin: &AdminConfig,
    data_dir: &Path,
    control: &Arc<Control>,
) -> anyhow::Result<ServerHandle> {
    let mut admin = admin.clone();
    if let Ok(tokens) = std::env::var(TOKEN_ENV) {
        admin.auth.tokens.extend(
            tokens
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(String::from),
        );
    }
    if admin.auth.tokens.is_empty() && admin.auth.keys.is_empty() {
        let path = data_dir.join("admin-token");
        admin.auth.tokens.push(generated_token(&path)?);
        tracing::info!(
            "no admin token configured: the admin API accepts the token in {}",
            path.display()
        );
    }
    let server = tenantry_ingress::ServerConfig {
        addr: admin.addr,
        threads: admin.threads,
        limits: tenantry_ingress::ServerLimits {
            max_body_bytes: MAX_ADMIN_BODY_BYTES,
            ..Default::default()
        },
        ..Default::default()
    };
    let control = control.clone();
    let addr = admin.addr;
    tenantry_ingress::start(server, move |_| AdminHandler::new(control.clone(), &admin))
        .with_context(|| format!("admin API listening on {addr}"))
}

/// The token in `path`, creating it (random, readable by the owner only) on first use.
fn generated_token(path: &Path) -> anyhow::Result<String> {
    if let Ok(token) = std::fs::read_to_string(path) {
        let token = token.trim().to_string();
        if !token.is_empty() {
            return Ok(token);
        }
    }
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("generating an admin token: {e}"))?;
    let token = hex::encode(bytes);
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing the admin token to {}", path.display()))?;
    file.write_all(token.as_bytes())?;
    Ok(token)
}
