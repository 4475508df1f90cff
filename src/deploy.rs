//! Deploying a config file into the data directory: read each Worker's module, compile it on the
//! loader's compile pool (never on a serving core), and publish each namespace's index once.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow};
use tenantry_core::{BindingKind, Engine};
use tenantry_loader::js::{BundleFormat, Part, PartKind, SourceBundle};
use tenantry_loader::kv::KvStore;
use tenantry_loader::{BindingEntry, Compiler, IndexData, ScriptEntry, ScriptLimits, Store};

use crate::config::{Config, WorkerConfig};

/// What a deploy did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Report {
    /// Workers compiled (and, for [`apply`], published).
    pub deployed: usize,
    /// Namespace indexes published.
    pub namespaces: usize,
}

/// Compiles the config's Workers and publishes them into `store`. Each namespace's index is
/// published once, with every Worker of the file in it; Workers already deployed that the file
/// does not list are kept (see docs/design.md).
pub fn apply(config: &Config, store: &Store, kv: &KvStore) -> anyhow::Result<Report> {
    // KV namespaces the file declares, by title: created if missing; bindings name them by title.
    let mut kv_ids = HashMap::new();
    let existing = kv.namespaces().context("listing KV namespaces")?;
    for title in &config.kv_namespaces {
        let id = match existing.iter().find(|n| &n.title == title) {
            Some(n) => n.id.clone(),
            None => {
                kv.create_namespace(title, unix_ms())
                    .with_context(|| format!("creating KV namespace `{title}`"))?
                    .id
            }
        };
        kv_ids.insert(title.clone(), id);
    }
    let now = unix_ms();
    let mut indexes: HashMap<&str, IndexData> = HashMap::new();
    let platform = config
        .workers
        .iter()
        .any(|w| w.namespace == tenantry_loader::PLATFORM_NAMESPACE)
        .then_some(tenantry_loader::PLATFORM_NAMESPACE);
    for ns in config.namespaces.iter().map(String::as_str).chain(platform) {
        // A declared namespace the file deploys no Worker into is only created when missing: an
        // existing one is left as it is (rewriting it would cost a generation per namespace at
        // every start: 1.4 s for 1000 declared namespaces, issue 13).
        let deploys_into = config.workers.iter().any(|w| w.namespace == ns);
        if !deploys_into && store.has_namespace(ns)? {
            continue;
        }
        let data = match store.open_index(ns)? {
            Some(index) => index.to_data(),
            None => IndexData::new(ns, now),
        };
        indexes.insert(ns, data);
    }
    let mut report = Report::default();
    // Modules are read as the compile pool gets to them, a few ahead of it: a config of 20 000
    // Workers held all their bytes at once before (~700 MB for 20k Rust hellos, issue 13).
    let threads = compile_threads();
    let compiler = Compiler::new(store.artifacts().clone(), threads);
    let mut workers = config.workers.iter();
    let mut pending = VecDeque::with_capacity(threads * COMPILES_AHEAD_PER_THREAD);
    loop {
        while pending.len() < threads * COMPILES_AHEAD_PER_THREAD
            && let Some(w) = workers.next()
        {
            pending.push_back((w, compiler.submit(read_module(w)?)));
        }
        let Some((w, rx)) = pending.pop_front() else {
            break;
        };
        let (artifact, _) = rx
            .recv()
            .map_err(|_| anyhow!("the compile pool stopped"))?
            .map_err(|e| {
                anyhow!(
                    "worker {}/{} ({}): {e}",
                    w.namespace,
                    w.name,
                    w.module.display()
                )
            })?;
        let data = indexes
            .get_mut(w.namespace.as_str())
            .expect("validated by Config");
        let created_on = data.scripts.get(&w.name).map_or(now, |old| old.created_on);
        let entry = ScriptEntry {
            name: w.name.clone(),
            artifact: *artifact.as_bytes(),
            bindings: w
                .bindings
                .iter()
                .map(|b| BindingEntry {
                    name: b.name.clone(),
                    kind: b.kind as u8,
                    value: match b.kind {
                        BindingKind::KvNamespace => kv_ids
                            .get(&b.value)
                            .cloned()
                            .expect("validated by Config: the KV namespace is declared"),
                        _ => b.value.clone(),
                    },
                })
                .collect(),
            tags: w.tags.clone(),
            limits: ScriptLimits {
                cpu_ms: w.limits.cpu_ms,
                wall_ms: w.limits.wall_ms,
                memory_bytes: w.limits.memory_mb.map(|mb| u64::from(mb) << 20),
                subrequests: w.limits.subrequests,
            },
            created_on,
            modified_on: now,
            etag: String::new(),
            reuse_instances: w.reuse_instances.unwrap_or(if is_js(&w.module) {
                tenantry_loader::js::DEFAULT_REUSE_INSTANCES
            } else {
                0
            }),
            compatibility_date: String::new(),
            main_module: w
                .module
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        let entry = ScriptEntry {
            etag: crate::control::etag(&w.namespace, &entry, tenantry_core::Tier::Optimised),
            ..entry
        };
        data.scripts.insert(w.name.clone(), entry);
        report.deployed += 1;
    }
    for (ns, mut data) in indexes {
        kv.seal_secrets(ns, &mut data)
            .with_context(|| format!("storing the secrets of namespace `{ns}`"))?;
        for entry in data.scripts.values_mut() {
            let id = tenantry_loader::ArtifactId::from_bytes(entry.artifact);
            entry.etag = crate::control::etag(ns, entry, store.artifacts().tier(&id));
        }
        store
            .publish_index(ns, &data)
            .with_context(|| format!("publishing the index of namespace `{ns}`"))?;
        // Old secret versions go only once the index naming the new ones is durable.
        kv.prune_secrets(ns, &data)
            .with_context(|| format!("removing old secret versions of namespace `{ns}`"))?;
        report.namespaces += 1;
    }
    Ok(report)
}

/// Validates the config and compiles every Worker without writing anything.
pub fn check(config: &Config) -> anyhow::Result<Report> {
    let engine = Engine::new(&config.engine)?;
    // Each thread reads the next Worker's module when it is ready for it, so that only one
    // module per thread is in memory however many Workers the file has.
    let next = std::sync::Mutex::new(config.workers.iter());
    let results: Vec<anyhow::Result<()>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..compile_threads())
            .map(|_| {
                let (engine, next) = (&engine, &next);
                s.spawn(move || {
                    loop {
                        let Some(w) = next
                            .lock()
                            .map_err(|_| anyhow!("a compile thread panicked"))?
                            .next()
                        else {
                            return Ok(());
                        };
                        let wasm = read_module(w)?;
                        engine.precompile(&wasm).map_err(|e| {
                            anyhow!(
                                "worker {}/{} ({}): {e}",
                                w.namespace,
                                w.name,
                                w.module.display()
                            )
                        })?;
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("compile thread panicked")))
            })
            .collect()
    });
    results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    Ok(Report {
        deployed: config.workers.len(),
        namespaces: config.namespaces.len(),
    })
}

/// Whether a config file's main module is JavaScript (by its extension).
fn is_js(module: &Path) -> bool {
    matches!(
        module.extension().and_then(|e| e.to_str()),
        Some("js" | "mjs" | "cjs")
    )
}

/// The bytes to store for a Worker of the config file: its wasm module as is, or, for a
/// JavaScript Worker, a source bundle of its modules (`tenantry_loader::js`).
fn read_module(w: &WorkerConfig) -> anyhow::Result<Vec<u8>> {
    let read = |path: &Path| {
        std::fs::read(path).with_context(|| {
            format!(
                "worker {}/{}: cannot read module {}",
                w.namespace,
                w.name,
                path.display()
            )
        })
    };
    let main = read(&w.module)?;
    let ext = |p: &Path| {
        p.extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_string()
    };
    let js = matches!(ext(&w.module).as_str(), "js" | "mjs" | "cjs");
    if !js {
        if !w.modules.is_empty() {
            anyhow::bail!(
                "worker {}/{}: only a JavaScript main module (.js, .mjs) takes further modules",
                w.namespace,
                w.name
            );
        }
        return Ok(main);
    }
    let dir = w.module.parent().unwrap_or(Path::new(""));
    let name_of = |p: &Path| {
        p.strip_prefix(dir)
            .unwrap_or(p)
            .to_string_lossy()
            .replace('\\', "/")
    };
    // `.mjs`, or a main module with others to import: ES modules; a lone `.js`: a service worker.
    if ext(&w.module) == "js" && w.modules.is_empty() {
        return Ok(SourceBundle::service_worker(&name_of(&w.module), main).encode());
    }
    let mut parts = vec![Part {
        kind: PartKind::EsModule,
        name: name_of(&w.module),
        data: main,
    }];
    for path in &w.modules {
        let kind = match ext(path).as_str() {
            "js" | "mjs" => PartKind::EsModule,
            "txt" | "html" | "htm" | "css" | "md" | "svg" | "json" | "xml" | "csv" => {
                PartKind::Text
            }
            "bin" | "dat" => PartKind::Data,
            other => anyhow::bail!(
                "worker {}/{}: cannot tell what module {} is from its extension `{other}` \
                 (.js/.mjs: ES module; .txt/.html/.css/.md/.svg/.json/.xml/.csv: text; .bin/.dat: data)",
                w.namespace,
                w.name,
                path.display()
            ),
        };
        parts.push(Part {
            kind,
            name: name_of(path),
            data: read(path)?,
        });
    }
    Ok(SourceBundle {
        format: BundleFormat::Modules,
        parts,
    }
    .encode())
}

/// Modules read and queued for each compile thread beyond the one it compiles: enough that a
/// thread never waits for a read, few enough that a deploy's memory does not grow with its
/// number of Workers.
const COMPILES_AHEAD_PER_THREAD: usize = 2;

/// Compile threads for deploys: one per core, at most four.
pub fn compile_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4)
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
