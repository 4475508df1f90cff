//! `tenantry.toml`: the file shape (serde, unknown fields rejected) and its conversion into the
//! runtime [`Config`]. Every default is written once, on the runtime type it belongs to
//! ([`EngineSettings`], [`Limits`], [`ServerConfig`]); the file shape only holds overrides.
//!
//! ```toml
//! data_dir = "data"
//!
//! [server]
//! listen = "127.0.0.1:8080"
//!
//! [[namespace]]
//! name = "production"
//!
//! [[worker]]
//! namespace = "production"
//! name = "alice"
//! module = "workers/hello.wasm"       # relative to this file; .js / .mjs for JavaScript
//! tags = ["customer-1"]
//! limits = { cpu_ms = 10 }
//! bindings = [{ type = "plain_text", name = "GREETING", text = "hi" }]
//!
//! [[route]]
//! host = "*.example.test"
//! namespace = "production"
//! script_from = "host_label"
//! ```

use std::collections::HashSet;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tenantry_core::{Binding, BindingKind, DispatchSpec, EngineSettings, Limits, OutboundSpec};
use tenantry_ingress::admission::AdmissionLimits;
use tenantry_ingress::client::{Cidr, EgressPolicy};
use tenantry_ingress::route::{HostPattern, Route, ScriptSource};
use tenantry_ingress::{Driver, ServerConfig};

use crate::admin::{AdminConfig, Auth};
use crate::certificates::{HostCertificate, PemFiles, TlsConfig};
use tenantry_loader::PLATFORM_NAMESPACE;
use toml::Spanned;

/// A configuration error, with the file and line it comes from.
#[derive(Debug, thiserror::Error)]
#[error("{path}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ConfigError {
    pub path: String,
    pub line: Option<usize>,
    pub message: String,
}

/// The runtime configuration, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where artifacts and namespace indexes live.
    pub data_dir: PathBuf,
    pub server: ServerConfig,
    pub engine: EngineSettings,
    /// `[engine] max_loaded_modules` was not set: `tenantry serve` sizes the process-wide module
    /// cache from the kernel's mapping limit (`tenantry_loader::MappingBudget::auto_loaded_modules`);
    /// until then `engine.max_loaded_modules` holds the library default.
    pub auto_loaded_modules: bool,
    /// Workers kept loaded per core (LRU).
    pub workers_per_core: usize,
    /// Limits for Workers that set none of their own.
    pub default_limits: Limits,
    pub namespaces: Vec<String>,
    /// KV namespaces by title (`[[kv_namespace]]`), created at deploy if missing.
    pub kv_namespaces: Vec<String>,
    /// The nearest a KV expiration may be, in seconds (`[kv] min_expiration_ttl_s`).
    pub kv_min_ttl_s: u64,
    /// How often expired KV entries are removed from disk (`[kv] sweep_interval_s`).
    pub kv_sweep_interval: std::time::Duration,
    pub workers: Vec<WorkerConfig>,
    pub routes: Vec<Route>,
    /// The admin API listener; `None` when `[admin] enabled = false`.
    pub admin: Option<AdminConfig>,
    /// Where Workers' subrequests may go.
    pub egress: EgressPolicy,
    /// Per-core admission control and fair queueing (`[admission]`).
    pub admission: AdmissionLimits,
    /// The TLS listener and its certificate files (`[server.tls]`); `None`: plain HTTP only.
    pub tls: Option<TlsConfig>,
}

/// A Worker deployed from the config file.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub namespace: String,
    pub name: String,
    /// The main module: WebAssembly, or JavaScript (`.js`: a service-worker script, `.mjs`, or
    /// any main module given in the list form: an ES module).
    pub module: PathBuf,
    /// The other modules of a JavaScript Worker (the list form's tail), which the main module
    /// imports by their path relative to its own directory.
    pub modules: Vec<PathBuf>,
    pub tags: Vec<String>,
    pub bindings: Vec<Binding>,
    pub limits: ScriptLimitsConfig,
    /// `None`: the default for its kind (`tenantry_loader::js::DEFAULT_REUSE_INSTANCES` for
    /// JavaScript, 0 for wasm).
    pub reuse_instances: Option<u32>,
}

/// A Worker's own limits; unset fields fall back to the platform defaults.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ScriptLimitsConfig {
    pub cpu_ms: Option<u32>,
    pub wall_ms: Option<u32>,
    pub memory_mb: Option<u32>,
    pub subrequests: Option<u32>,
}

/// Default number of Workers kept loaded per core.
pub const DEFAULT_WORKERS_PER_CORE: usize = 1000;
pub use tenantry_loader::names::MAX_TAGS;

// ---- the file shape ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileShape {
    data_dir: Option<String>,
    #[serde(default)]
    server: ServerFile,
    #[serde(default)]
    engine: EngineFile,
    #[serde(default)]
    limits: ScriptLimitsConfig,
    #[serde(default)]
    namespace: Vec<NamespaceFile>,
    #[serde(default)]
    worker: Vec<WorkerFile>,
    /// Platform Workers (dispatchers): outside every namespace, routed with `worker = …`.
    #[serde(default)]
    platform_worker: Vec<WorkerFile>,
    #[serde(default)]
    subrequests: SubrequestsFile,
    #[serde(default)]
    kv_namespace: Vec<KvNamespaceFile>,
    #[serde(default)]
    kv: KvFile,
    #[serde(default)]
    route: Vec<RouteFile>,
    #[serde(default)]
    admin: AdminFile,
    #[serde(default)]
    admission: AdmissionFile,
}

/// `[admission]`: overrides of [`AdmissionLimits::derive`], each per serving core.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AdmissionFile {
    max_in_flight: Option<usize>,
    max_in_flight_per_worker: Option<usize>,
    max_cpu_bound_per_worker: Option<usize>,
    max_queued: Option<usize>,
    max_queued_per_worker: Option<usize>,
    max_queued_per_cpu_bound_worker: Option<usize>,
    max_queue_wait_ms: Option<u64>,
    retry_after_s: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AdminFile {
    /// Default true.
    enabled: Option<bool>,
    listen: Option<Spanned<String>>,
    threads: Option<usize>,
    /// Bearer tokens accepted in `Authorization`.
    #[serde(default)]
    tokens: Vec<String>,
    /// Legacy `X-Auth-Email` / `X-Auth-Key` pairs.
    #[serde(default)]
    legacy_keys: Vec<LegacyKeyFile>,
    account_id: Option<String>,
    /// How long an upload may take to compile, in seconds (queueing included).
    compile_timeout_s: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct KvFile {
    min_expiration_ttl_s: Option<u64>,
    sweep_interval_s: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KvNamespaceFile {
    title: Spanned<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SubrequestsFile {
    /// Non-public networks Workers may reach anyway, e.g. `["10.1.0.0/16", "127.0.0.1"]`.
    #[serde(default)]
    allow: Vec<Spanned<String>>,
    connect_timeout_ms: Option<u64>,
    /// PEM CA certificates trusted for `https://` subrequests besides the bundled web PKI roots.
    ca_file: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LegacyKeyFile {
    email: String,
    key: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ServerFile {
    listen: Option<Spanned<String>>,
    /// 0 or absent: one per core.
    threads: Option<usize>,
    driver: Option<Spanned<String>>,
    max_body_bytes: Option<usize>,
    max_header_bytes: Option<usize>,
    max_connections: Option<usize>,
    max_buffered_body_bytes: Option<usize>,
    tls: Option<TlsFile>,
}

/// `[server.tls]`: a TLS listener beside the plain one.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    listen: Spanned<String>,
    /// The default certificate chain and key (PEM), served when no hostname matches.
    cert: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
    handshake_timeout_ms: Option<Spanned<u64>>,
    #[serde(default)]
    certificate: Vec<TlsCertificateFile>,
}

/// `[[server.tls.certificate]]`: a certificate served for the hostnames (and `*.` wildcards) listed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsCertificateFile {
    hosts: Spanned<Vec<String>>,
    cert: String,
    key: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct EngineFile {
    max_instances: Option<u32>,
    max_memory_mb: Option<u32>,
    max_wasm_stack_kb: Option<u32>,
    workers_per_core: Option<usize>,
    keep_resident_kb: Option<u32>,
    pagemap_scan: Option<bool>,
    max_loaded_modules: Option<Spanned<usize>>,
    max_mapped_indexes: Option<Spanned<usize>>,
    index_merge_records: Option<Spanned<usize>>,
    max_idle_instances: Option<u32>,
    /// Compile uploads with Winch first, Cranelift in the background (`EngineSettings::baseline_compile`).
    baseline_compile: Option<bool>,
    epoch_tick_us: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NamespaceFile {
    name: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkerFile {
    /// Required for `[[worker]]`, absent for `[[platform_worker]]`.
    namespace: Option<Spanned<String>>,
    name: Spanned<String>,
    module: Spanned<ModuleFile>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    bindings: Vec<Spanned<BindingFile>>,
    #[serde(default)]
    limits: ScriptLimitsConfig,
    reuse_instances: Option<u32>,
}

/// `module = "a.wasm"`, or `module = ["main.mjs", "lib/util.mjs", "page.html"]` for a
/// JavaScript Worker of several modules (the first is the main one).
#[derive(Deserialize)]
#[serde(untagged)]
enum ModuleFile {
    One(String),
    Many(Vec<String>),
}

/// Cloudflare's binding shape: `{type, name, text}` or `{type = "json", name, json}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BindingFile {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    text: Option<String>,
    json: Option<toml::Value>,
    /// `service` bindings: the target Worker, in the same namespace.
    service: Option<String>,
    /// `dispatch_namespace` bindings (platform Workers only): the namespace.
    namespace: Option<String>,
    /// `dispatch_namespace` bindings: `{ service, parameters }`, the outbound Worker.
    outbound: Option<OutboundSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteFile {
    host: Option<String>,
    path_prefix: Option<String>,
    header: Option<HeaderMatchFile>,
    namespace: Option<Spanned<String>>,
    /// A platform Worker (e.g. a dispatcher) instead of a namespace and script.
    worker: Option<Spanned<String>>,
    script: Option<String>,
    /// `"host_label"` or `"header:<name>"`.
    script_from: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderMatchFile {
    name: String,
    value: String,
}

impl Config {
    /// Reads and validates a config file. Relative paths in it are relative to its directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.display().to_string(),
            line: None,
            message: format!("cannot read: {e}"),
        })?;
        Config::parse(&text, path)
    }

    /// Parses config text; `path` names it in errors and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let ctx = Ctx { text, path };
        let file: FileShape = toml::from_str(text)
            .map_err(|e| ctx.error(e.span(), e.message().trim_end().to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));

        let mut server = ServerConfig::default();
        if let Some(listen) = &file.server.listen {
            server.addr = listen.get_ref().parse::<SocketAddr>().map_err(|e| {
                ctx.error(
                    Some(listen.span()),
                    format!("server.listen `{}`: {e}", listen.get_ref()),
                )
            })?;
        }
        if let Some(threads) = file.server.threads.filter(|&t| t > 0) {
            server.threads = threads;
        }
        if let Some(driver) = &file.server.driver {
            server.driver = match driver.get_ref().as_str() {
                "auto" => Driver::Auto,
                "io_uring" => Driver::IoUring,
                "legacy" => Driver::Legacy,
                other => {
                    return Err(ctx.error(
                        Some(driver.span()),
                        format!("server.driver `{other}`: expected auto, io_uring or legacy"),
                    ));
                }
            };
        }
        if let Some(n) = file.server.max_body_bytes {
            server.limits.max_body_bytes = n;
        }
        if let Some(n) = file.server.max_header_bytes {
            server.limits.max_header_bytes = n;
        }
        if let Some(n) = file.server.max_connections {
            server.limits.max_connections = n.max(1);
        }
        if let Some(n) = file.server.max_buffered_body_bytes {
            server.limits.max_buffered_body_bytes = n;
        }

        let tls = match &file.server.tls {
            None => None,
            Some(t) => Some(tls_config(t, base, &ctx)?),
        };
        // Two SO_REUSEPORT listeners on one address would split connections between plain and
        // TLS at random.
        if let Some(tls) = &tls
            && tls.addr == server.addr
            && tls.addr.port() != 0
        {
            return Err(ctx.error(
                file.server.tls.as_ref().map(|t| t.listen.span()),
                format!("server.tls.listen `{}` is also server.listen", tls.addr),
            ));
        }

        let mut engine = EngineSettings::default();
        if let Some(n) = file.engine.max_instances {
            engine.max_instances = n;
        }
        if let Some(mb) = file.engine.max_memory_mb {
            engine.max_memory_bytes = u64::from(mb) << 20;
        }
        if let Some(kb) = file.engine.keep_resident_kb {
            engine.keep_resident_bytes = (kb as usize) << 10;
        }
        if let Some(on) = file.engine.pagemap_scan {
            engine.pagemap_scan = on;
        }
        if let Some(on) = file.engine.baseline_compile {
            engine.baseline_compile = on;
        }
        if let Some(n) = file.engine.max_idle_instances {
            engine.max_idle_instances = Some(n);
        }
        if let Some(us) = file.engine.epoch_tick_us {
            if !(100..=100_000).contains(&us) {
                return Err(ctx.error(
                    None,
                    "engine.epoch_tick_us must be between 100 and 100000".into(),
                ));
            }
            engine.epoch_tick = std::time::Duration::from_micros(us);
        }
        let admission = admission_limits(&file.admission, engine.max_instances, server.threads)
            .map_err(|m| ctx.error(None, m))?;
        if let Some(kb) = file.engine.max_wasm_stack_kb {
            engine.max_wasm_stack = (kb as usize) << 10;
        }
        if let Some(n) = &file.engine.max_loaded_modules {
            if *n.get_ref() == 0 {
                return Err(ctx.error(
                    Some(n.span()),
                    "engine.max_loaded_modules must be at least 1".into(),
                ));
            }
            engine.max_loaded_modules = *n.get_ref();
        }
        if let Some(n) = &file.engine.max_mapped_indexes {
            if *n.get_ref() == 0 {
                return Err(ctx.error(
                    Some(n.span()),
                    "engine.max_mapped_indexes must be at least 1".into(),
                ));
            }
            engine.max_mapped_indexes = *n.get_ref();
        }
        if let Some(n) = &file.engine.index_merge_records {
            if *n.get_ref() == 0 {
                return Err(ctx.error(
                    Some(n.span()),
                    "engine.index_merge_records must be at least 1".into(),
                ));
            }
            engine.index_merge_records = *n.get_ref();
        }
        let workers_per_core = file
            .engine
            .workers_per_core
            .unwrap_or(DEFAULT_WORKERS_PER_CORE);
        let default_limits = apply_limits(Limits::DEFAULT, &file.limits);
        if default_limits.memory_bytes > engine.max_memory_bytes {
            return Err(ctx.error(
                None,
                format!(
                    "limits.memory_mb ({} MiB) exceeds engine.max_memory_mb ({} MiB)",
                    default_limits.memory_bytes >> 20,
                    engine.max_memory_bytes >> 20
                ),
            ));
        }

        let mut namespaces = Vec::new();
        for ns in &file.namespace {
            let name = ns.name.get_ref();
            valid_name(name)
                .and_then(|()| {
                    if name.starts_with('_') {
                        Err("names starting with `_` are reserved for the platform")
                    } else {
                        Ok(())
                    }
                })
                .map_err(|m| ctx.error(Some(ns.name.span()), format!("namespace `{name}`: {m}")))?;
            if namespaces.contains(name) {
                return Err(ctx.error(
                    Some(ns.name.span()),
                    format!("namespace `{name}` is declared twice"),
                ));
            }
            namespaces.push(name.clone());
        }

        let mut kv_namespaces: Vec<String> = Vec::new();
        for ns in &file.kv_namespace {
            let title = ns.title.get_ref();
            if let Err(m) = valid_kv_title(title) {
                return Err(ctx.error(Some(ns.title.span()), format!("kv_namespace: {m}")));
            }
            if kv_namespaces.contains(title) {
                return Err(ctx.error(
                    Some(ns.title.span()),
                    format!("kv_namespace `{title}` is declared twice"),
                ));
            }
            kv_namespaces.push(title.clone());
        }

        let mut seen = HashSet::new();
        let mut workers = Vec::new();
        let platform_names: HashSet<String> = file
            .platform_worker
            .iter()
            .map(|w| w.name.get_ref().clone())
            .collect();
        let all = (file.worker.into_iter().map(|w| (w, false)))
            .chain(file.platform_worker.into_iter().map(|w| (w, true)));
        for (w, platform) in all {
            let name = w.name.get_ref();
            let at = Some(w.name.span());
            let ns = match (&w.namespace, platform) {
                (Some(ns), false) => {
                    let ns = ns.get_ref();
                    if !namespaces.contains(ns) {
                        return Err(ctx.error(
                            w.namespace.as_ref().map(Spanned::span),
                            format!("worker `{name}`: namespace `{ns}` is not declared (add a [[namespace]] with name = \"{ns}\")"),
                        ));
                    }
                    ns.clone()
                }
                (None, false) => {
                    return Err(ctx.error(at, format!(
                        "worker `{name}`: set `namespace`, or declare it as a [[platform_worker]] (a dispatcher outside every namespace)"
                    )));
                }
                (Some(ns), true) => {
                    return Err(ctx.error(Some(ns.span()), format!(
                        "platform_worker `{name}`: platform Workers live outside namespaces; remove `namespace`"
                    )));
                }
                (None, true) => PLATFORM_NAMESPACE.to_string(),
            };
            let ns = &ns;
            valid_name(name).map_err(|m| ctx.error(at.clone(), format!("worker `{name}`: {m}")))?;
            if !seen.insert((ns.clone(), name.clone())) {
                return Err(ctx.error(
                    at,
                    format!("worker `{name}` is declared twice in namespace `{ns}`"),
                ));
            }
            if let Err(m) = valid_tags(&w.tags) {
                return Err(ctx.error(at, format!("worker `{name}`: {m}")));
            }
            let mut bindings = Vec::new();
            for b in &w.bindings {
                let binding = convert_binding(b.get_ref())
                    .map_err(|m| ctx.error(Some(b.span()), format!("worker `{name}`: {m}")))?;
                if binding.kind == BindingKind::KvNamespace
                    && !kv_namespaces.contains(&binding.value)
                {
                    return Err(ctx.error(
                        Some(b.span()),
                        format!(
                            "worker `{name}`: binding `{}`: KV namespace `{}` is not declared (add a [[kv_namespace]] with title = \"{}\")",
                            binding.name, binding.value, binding.value
                        ),
                    ));
                }
                if binding.kind == BindingKind::DispatchNamespace {
                    let spec =
                        DispatchSpec::parse(&binding.value).expect("built by convert_binding");
                    let why = if !platform {
                        Some("dispatch_namespace bindings belong to platform Workers ([[platform_worker]]); a Worker in a namespace cannot call into other namespaces".to_string())
                    } else if !namespaces.contains(&spec.namespace) {
                        Some(format!("namespace `{}` is not declared", spec.namespace))
                    } else {
                        spec.outbound
                            .as_ref()
                            .filter(|o| !platform_names.contains(&o.service))
                            .map(|o| {
                                format!(
                                    "outbound service `{}` is not a declared [[platform_worker]]",
                                    o.service
                                )
                            })
                    };
                    if let Some(why) = why {
                        return Err(ctx.error(
                            Some(b.span()),
                            format!("worker `{name}`: binding `{}`: {why}", binding.name),
                        ));
                    }
                }
                if bindings.iter().any(|x: &Binding| x.name == binding.name) {
                    return Err(ctx.error(
                        Some(b.span()),
                        format!(
                            "worker `{name}`: binding `{}` is declared twice",
                            binding.name
                        ),
                    ));
                }
                bindings.push(binding);
            }
            let limits = w.limits;
            if let Some(mb) = limits.memory_mb
                && u64::from(mb) << 20 > engine.max_memory_bytes
            {
                return Err(ctx.error(at, format!(
                        "worker `{name}`: limits.memory_mb ({mb}) exceeds engine.max_memory_mb ({})",
                        engine.max_memory_bytes >> 20
                    )));
            }
            if limits.cpu_ms == Some(0) || limits.wall_ms == Some(0) || limits.memory_mb == Some(0)
            {
                return Err(ctx.error(
                    at,
                    format!("worker `{name}`: limits must be greater than zero"),
                ));
            }
            let (module, modules) = match w.module.get_ref() {
                ModuleFile::One(m) => (base.join(m), Vec::new()),
                ModuleFile::Many(list) => match list.split_first() {
                    Some((main, rest)) => {
                        (base.join(main), rest.iter().map(|m| base.join(m)).collect())
                    }
                    None => {
                        return Err(ctx.error(
                            Some(w.module.span()),
                            format!("worker `{name}`: the module list is empty"),
                        ));
                    }
                },
            };
            workers.push(WorkerConfig {
                namespace: ns.clone(),
                name: name.clone(),
                module,
                modules,
                tags: w.tags,
                bindings,
                limits,
                reuse_instances: w.reuse_instances,
            });
        }

        let mut routes = Vec::new();
        for r in file.route {
            let (ns, span) = match (&r.namespace, &r.worker) {
                (Some(ns), None) => {
                    if !namespaces.contains(ns.get_ref()) {
                        return Err(ctx.error(
                            Some(ns.span()),
                            format!("route: namespace `{}` is not declared", ns.get_ref()),
                        ));
                    }
                    (ns.get_ref().clone(), ns.span())
                }
                (None, Some(worker)) => {
                    // The platform Worker may also be uploaded through the admin API
                    // (`/workers/scripts/{name}`): until it exists, the route answers 404.
                    let name = worker.get_ref();
                    valid_name(name).map_err(|m| {
                        ctx.error(Some(worker.span()), format!("route: worker `{name}`: {m}"))
                    })?;
                    if r.script.is_some() || r.script_from.is_some() {
                        return Err(ctx.error(
                            Some(worker.span()),
                            "route: a route to a platform worker takes no `script` or `script_from`".into(),
                        ));
                    }
                    routes.push(Route {
                        host: HostPattern::parse(r.host.as_deref().unwrap_or("*")),
                        path_prefix: r.path_prefix,
                        header: r.header.map(|h| (h.name, h.value)),
                        namespace: PLATFORM_NAMESPACE.to_string(),
                        script: ScriptSource::Fixed(name.clone()),
                    });
                    continue;
                }
                _ => {
                    return Err(ctx.error(
                        None,
                        "route: set exactly one of `namespace` (with `script` or `script_from`) and `worker`".into(),
                    ));
                }
            };
            let ns = &ns;
            let script = match (r.script, &r.script_from) {
                (Some(name), None) => ScriptSource::Fixed(name),
                (None, Some(from)) => match from.get_ref().as_str() {
                    "host_label" => ScriptSource::HostLabel,
                    s if s.starts_with("header:") && s.len() > 7 => {
                        ScriptSource::Header(s[7..].to_string())
                    }
                    other => {
                        return Err(ctx.error(Some(from.span()), format!(
                            "route: script_from `{other}`: expected \"host_label\" or \"header:<name>\""
                        )));
                    }
                },
                _ => {
                    return Err(ctx.error(
                        Some(span),
                        "route: set exactly one of `script` and `script_from`".into(),
                    ));
                }
            };
            routes.push(Route {
                host: HostPattern::parse(r.host.as_deref().unwrap_or("*")),
                path_prefix: r.path_prefix,
                header: r.header.map(|h| (h.name, h.value)),
                namespace: ns.clone(),
                script,
            });
        }

        let admin = if file.admin.enabled == Some(false) {
            None
        } else {
            let mut admin = AdminConfig::default();
            if let Some(listen) = &file.admin.listen {
                admin.addr = listen.get_ref().parse::<SocketAddr>().map_err(|e| {
                    ctx.error(
                        Some(listen.span()),
                        format!("admin.listen `{}`: {e}", listen.get_ref()),
                    )
                })?;
            }
            if let Some(threads) = file.admin.threads.filter(|&t| t > 0) {
                admin.threads = threads;
            }
            admin.auth = Auth {
                tokens: file.admin.tokens.clone(),
                keys: file
                    .admin
                    .legacy_keys
                    .iter()
                    .map(|k| (k.email.clone(), k.key.clone()))
                    .collect(),
            };
            if admin.auth.tokens.iter().any(String::is_empty) {
                return Err(ctx.error(None, "admin.tokens: a token must not be empty".to_string()));
            }
            admin.account_id = file.admin.account_id.clone();
            if let Some(secs) = file.admin.compile_timeout_s {
                if secs == 0 {
                    return Err(ctx.error(
                        None,
                        "admin.compile_timeout_s must be at least 1".to_string(),
                    ));
                }
                admin.compile_timeout = std::time::Duration::from_secs(secs);
            }
            Some(admin)
        };

        let mut egress = EgressPolicy::default();
        for net in &file.subrequests.allow {
            let cidr = Cidr::parse(net.get_ref())
                .map_err(|m| ctx.error(Some(net.span()), format!("subrequests.allow: {m}")))?;
            egress.allow.push(cidr);
        }
        if let Some(ms) = file.subrequests.connect_timeout_ms {
            if ms == 0 {
                return Err(ctx.error(
                    None,
                    "subrequests.connect_timeout_ms must be at least 1".into(),
                ));
            }
            egress.connect_timeout = std::time::Duration::from_millis(ms);
        }
        if let Some(ca_file) = &file.subrequests.ca_file {
            let path = base.join(ca_file.get_ref());
            let pem = std::fs::read(&path).map_err(|e| {
                ctx.error(
                    Some(ca_file.span()),
                    format!("subrequests.ca_file: cannot read {}: {e}", path.display()),
                )
            })?;
            egress.tls = tenantry_ingress::client_tls::client_config(Some(&pem)).map_err(|m| {
                ctx.error(
                    Some(ca_file.span()),
                    format!("subrequests.ca_file {}: {m}", path.display()),
                )
            })?;
        }

        if file.kv.min_expiration_ttl_s == Some(0) || file.kv.sweep_interval_s == Some(0) {
            return Err(ctx.error(
                None,
                "kv: min_expiration_ttl_s and sweep_interval_s must be at least 1".into(),
            ));
        }
        Ok(Config {
            kv_min_ttl_s: file
                .kv
                .min_expiration_ttl_s
                .unwrap_or(tenantry_loader::kv::MIN_EXPIRATION_TTL_S),
            kv_sweep_interval: file.kv.sweep_interval_s.map_or(
                tenantry_loader::kv::SWEEP_INTERVAL,
                std::time::Duration::from_secs,
            ),
            kv_namespaces,
            egress,
            admission,
            admin,
            tls,
            data_dir: base.join(file.data_dir.as_deref().unwrap_or("data")),
            server,
            auto_loaded_modules: file.engine.max_loaded_modules.is_none(),
            engine,
            workers_per_core,
            default_limits,
            namespaces,
            workers,
            routes,
        })
    }
}

impl WorkerConfig {
    /// This Worker's limits over the platform defaults.
    pub fn effective_limits(&self, defaults: Limits) -> Limits {
        apply_limits(defaults, &self.limits)
    }
}

/// The admission limits: [`AdmissionLimits::derive`] for this pool and thread count, with the
/// file's overrides. In-flight counts must be at least 1 (0 would shed everything).
fn tls_config(t: &TlsFile, base: &Path, ctx: &Ctx) -> Result<TlsConfig, ConfigError> {
    let addr = t.listen.get_ref().parse::<SocketAddr>().map_err(|e| {
        ctx.error(
            Some(t.listen.span()),
            format!("server.tls.listen `{}`: {e}", t.listen.get_ref()),
        )
    })?;
    let mut tls = TlsConfig::new(addr);
    if let Some(ms) = &t.handshake_timeout_ms {
        if *ms.get_ref() == 0 {
            return Err(ctx.error(
                Some(ms.span()),
                "server.tls.handshake_timeout_ms must be at least 1".into(),
            ));
        }
        tls.handshake_timeout = std::time::Duration::from_millis(*ms.get_ref());
    }
    tls.default = match (&t.cert, &t.key) {
        (Some(cert), Some(key)) => Some(PemFiles {
            cert: base.join(cert.get_ref()),
            key: base.join(key.get_ref()),
        }),
        (None, None) => None,
        (Some(s), None) | (None, Some(s)) => {
            return Err(ctx.error(
                Some(s.span()),
                "server.tls: `cert` and `key` go together (the default certificate)".into(),
            ));
        }
    };
    for c in &t.certificate {
        if c.hosts.get_ref().is_empty() {
            return Err(ctx.error(
                Some(c.hosts.span()),
                "server.tls.certificate: `hosts` lists no hostname".into(),
            ));
        }
        for host in c.hosts.get_ref() {
            tenantry_ingress::tls::parse_host_pattern(host).map_err(|e| {
                ctx.error(Some(c.hosts.span()), format!("server.tls.certificate: {e}"))
            })?;
        }
        tls.certificates.push(HostCertificate {
            hosts: c.hosts.get_ref().clone(),
            files: PemFiles {
                cert: base.join(&c.cert),
                key: base.join(&c.key),
            },
        });
    }
    Ok(tls)
}

fn admission_limits(
    file: &AdmissionFile,
    max_instances: u32,
    threads: usize,
) -> Result<AdmissionLimits, String> {
    let mut limits = AdmissionLimits::derive(max_instances, threads);
    let counts = [
        (
            "max_in_flight",
            file.max_in_flight,
            &mut limits.max_in_flight,
        ),
        (
            "max_in_flight_per_worker",
            file.max_in_flight_per_worker,
            &mut limits.max_in_flight_per_worker,
        ),
        (
            "max_cpu_bound_per_worker",
            file.max_cpu_bound_per_worker,
            &mut limits.max_cpu_bound_per_worker,
        ),
    ];
    for (name, value, field) in counts {
        match value {
            Some(0) => return Err(format!("admission.{name} must be at least 1")),
            Some(n) => *field = n,
            None => {}
        }
    }
    // 0 is allowed for the queues: shed at once instead of waiting.
    if let Some(n) = file.max_queued {
        limits.max_queued = n;
    }
    if let Some(n) = file.max_queued_per_worker {
        limits.max_queued_per_worker = n;
    }
    if let Some(n) = file.max_queued_per_cpu_bound_worker {
        limits.max_queued_per_cpu_bound_worker = n;
    }
    if let Some(ms) = file.max_queue_wait_ms {
        limits.max_queue_wait = std::time::Duration::from_millis(ms);
    }
    if let Some(s) = file.retry_after_s {
        limits.retry_after_s = s;
    }
    Ok(limits)
}

fn apply_limits(base: Limits, l: &ScriptLimitsConfig) -> Limits {
    Limits {
        cpu_ms: l.cpu_ms.unwrap_or(base.cpu_ms),
        wall_ms: l.wall_ms.unwrap_or(base.wall_ms),
        memory_bytes: l
            .memory_mb
            .map(|mb| u64::from(mb) << 20)
            .unwrap_or(base.memory_bytes),
        subrequests: l.subrequests.unwrap_or(base.subrequests),
    }
}

fn convert_binding(b: &BindingFile) -> Result<Binding, String> {
    let kind = BindingKind::parse(&b.kind).ok_or_else(|| {
        format!(
            "binding `{}`: type `{}` is not one of plain_text, json, secret_text, service, dispatch_namespace",
            b.name, b.kind
        )
    })?;
    valid_binding_name(&b.name).map_err(|m| format!("binding `{}`: {m}", b.name))?;
    if kind == BindingKind::KvNamespace {
        let Some(title) = &b.namespace else {
            return Err(format!(
                "binding `{}`: a kv_namespace binding takes `namespace` (the title of a [[kv_namespace]])",
                b.name
            ));
        };
        if b.text.is_some() || b.json.is_some() || b.service.is_some() || b.outbound.is_some() {
            return Err(format!(
                "binding `{}`: a kv_namespace binding takes only `namespace`",
                b.name
            ));
        }
        return Ok(Binding {
            name: b.name.clone(),
            kind,
            value: title.clone(),
        });
    }
    let target = match kind {
        BindingKind::Service => Some((&b.service, "service")),
        BindingKind::DispatchNamespace => Some((&b.namespace, "namespace")),
        _ => None,
    };
    if let Some((target, field)) = target {
        let Some(target) = target else {
            return Err(format!(
                "binding `{}`: a {} binding takes `{field}`",
                b.name,
                kind.as_str()
            ));
        };
        if b.text.is_some() || b.json.is_some() {
            return Err(format!(
                "binding `{}`: a {} binding takes no `text` or `json`",
                b.name,
                kind.as_str()
            ));
        }
        valid_name(target).map_err(|m| format!("binding `{}`: {field} `{target}`: {m}", b.name))?;
        let value = if kind == BindingKind::DispatchNamespace {
            if let Some(o) = &b.outbound {
                valid_name(&o.service).map_err(|m| {
                    format!(
                        "binding `{}`: outbound service `{}`: {m}",
                        b.name, o.service
                    )
                })?;
            }
            DispatchSpec {
                namespace: target.clone(),
                outbound: b.outbound.clone(),
            }
            .to_value()
        } else {
            if b.outbound.is_some() {
                return Err(format!(
                    "binding `{}`: `outbound` belongs to dispatch_namespace bindings",
                    b.name
                ));
            }
            target.clone()
        };
        return Ok(Binding {
            name: b.name.clone(),
            kind,
            value,
        });
    }
    if b.service.is_some() || b.namespace.is_some() || b.outbound.is_some() {
        return Err(format!(
            "binding `{}`: `service` and `namespace` belong to service and dispatch_namespace bindings",
            b.name
        ));
    }
    let value = match (kind, &b.text, &b.json) {
        (BindingKind::Json, None, Some(v)) => {
            serde_json::to_string(v).map_err(|e| format!("binding `{}`: {e}", b.name))?
        }
        (BindingKind::Json, _, _) => {
            return Err(format!(
                "binding `{}`: a json binding takes `json` (and no `text`)",
                b.name
            ));
        }
        (_, Some(t), None) => t.clone(),
        (_, _, _) => {
            return Err(format!(
                "binding `{}`: a {} binding takes `text` (and no `json`)",
                b.name,
                kind.as_str()
            ));
        }
    };
    Ok(Binding {
        name: b.name.clone(),
        kind,
        value,
    })
}

/// The name rules shared with the admin API and the CLI (`tenantry_loader::names`).
pub use tenantry_loader::names::{valid_binding_name, valid_kv_title, valid_name, valid_tags};

struct Ctx<'a> {
    text: &'a str,
    path: &'a Path,
}

impl Ctx<'_> {
    fn error(&self, span: Option<Range<usize>>, message: String) -> ConfigError {
        let line = span.map(|s| {
            self.text[..s.start.min(self.text.len())]
                .matches('\n')
                .count()
                + 1
        });
        ConfigError {
            path: self.path.display().to_string(),
            line,
            message,
        }
    }
}
