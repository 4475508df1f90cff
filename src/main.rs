//! The `tenantry` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};
use tenantry::client::Client;
use tenantry::config::Config;
use tenantry::serve::Node;

/// Tenantry: self-hosted Workers for Platforms.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// How client commands reach the admin API.
#[derive(Args, Clone)]
struct Api {
    /// The API root.
    #[arg(
        long,
        env = "TENANTRY_API_URL",
        default_value = "http://127.0.0.1:8787/client/v4",
        global = true
    )]
    url: String,
    /// Bearer token; by default `TENANTRY_API_TOKEN`, else the file `data/admin-token` that a
    /// node without configured tokens writes.
    #[arg(
        long,
        env = "TENANTRY_API_TOKEN",
        hide_env_values = true,
        global = true
    )]
    token: Option<String>,
    /// Account id in the API paths.
    #[arg(
        long,
        env = "TENANTRY_ACCOUNT_ID",
        default_value = "local",
        global = true
    )]
    account: String,
    /// Print the API's JSON instead of human output.
    #[arg(long, global = true)]
    json: bool,
}

impl Api {
    fn client(&self) -> anyhow::Result<Client> {
        let token = match &self.token {
            Some(t) => t.clone(),
            None => std::fs::read_to_string("data/admin-token")
                .map(|t| t.trim().to_string())
                .context("no API token: pass --token or set TENANTRY_API_TOKEN")?,
        };
        Ok(Client::new(&self.url, &self.account, &token))
    }
}

#[derive(Subcommand)]
enum Command {
    /// Deploy the config's Workers into the data directory and serve them.
    Serve {
        /// The config file.
        #[arg(long, short, default_value = "tenantry.toml")]
        config: PathBuf,
    },
    /// Validate a config file (and compile its Workers) without serving.
    Check {
        #[arg(long, short, default_value = "tenantry.toml")]
        config: PathBuf,
    },
    /// Manage dispatch namespaces.
    Namespace {
        #[command(subcommand)]
        action: NamespaceCmd,
        #[command(flatten)]
        api: Api,
    },
    /// Upload a Worker (a .wasm file), or every .wasm file of a directory.
    Deploy {
        #[arg(long, short)]
        namespace: String,
        /// Script name (default: the file name without `.wasm`; required for one file only).
        #[arg(long)]
        name: Option<String>,
        /// A .wasm file or a directory of them.
        path: PathBuf,
        /// A tag (repeatable, at most 8).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// A plain-text binding, `KEY=VALUE` (repeatable).
        #[arg(long = "var")]
        vars: Vec<String>,
        #[command(flatten)]
        api: Api,
    },
    /// Show or replace a script's tags.
    Tags {
        #[arg(long, short)]
        namespace: String,
        #[arg(long)]
        name: String,
        /// Replace the tags with these (none given: show them).
        #[arg(long = "set", num_args = 0..)]
        set: Option<Vec<String>>,
        #[command(flatten)]
        api: Api,
    },
    /// Manage a script's secrets (values are never shown).
    Secret {
        #[command(subcommand)]
        action: SecretCmd,
        #[command(flatten)]
        api: Api,
    },
    /// List or delete scripts, optionally by tag.
    Scripts {
        #[command(subcommand)]
        action: ScriptsCmd,
        #[command(flatten)]
        api: Api,
    },
    /// Manage KV namespaces and their keys.
    Kv {
        #[command(subcommand)]
        action: KvCmd,
        #[command(flatten)]
        api: Api,
    },
}

#[derive(Subcommand)]
enum KvCmd {
    /// Create, list, rename or delete KV namespaces.
    Namespace {
        #[command(subcommand)]
        action: KvNamespaceCmd,
    },
    /// Read, write, delete or list the keys of a KV namespace.
    Key {
        #[command(subcommand)]
        action: KvKeyCmd,
    },
}

#[derive(Subcommand)]
enum KvNamespaceCmd {
    Create {
        title: String,
    },
    List,
    Rename {
        /// Id or current title.
        namespace: String,
        title: String,
    },
    /// Deletes the namespace and every key in it.
    Delete {
        /// Id or title.
        namespace: String,
    },
}

#[derive(Subcommand)]
enum KvKeyCmd {
    /// Prints a value (raw bytes) to standard output.
    Get {
        /// The KV namespace (id or title).
        #[arg(long, short)]
        namespace: String,
        key: String,
    },
    /// Stores a value: the argument, or standard input.
    Put {
        #[arg(long, short)]
        namespace: String,
        key: String,
        value: Option<String>,
        /// Seconds until it expires (at least 60).
        #[arg(long)]
        ttl: Option<u64>,
    },
    Delete {
        #[arg(long, short)]
        namespace: String,
        key: String,
    },
    /// Lists keys, every page.
    List {
        #[arg(long, short)]
        namespace: String,
        #[arg(long, default_value = "")]
        prefix: String,
    },
}

#[derive(Subcommand)]
enum NamespaceCmd {
    Create {
        name: String,
    },
    List,
    Get {
        name: String,
    },
    /// Deletes the namespace and every script in it.
    Delete {
        name: String,
    },
}

#[derive(Subcommand)]
enum SecretCmd {
    /// Sets a secret; the value comes from --value or, safer, from standard input.
    Put {
        #[arg(long, short)]
        namespace: String,
        #[arg(long)]
        name: String,
        key: String,
        #[arg(long)]
        value: Option<String>,
    },
    List {
        #[arg(long, short)]
        namespace: String,
        #[arg(long)]
        name: String,
    },
    Delete {
        #[arg(long, short)]
        namespace: String,
        #[arg(long)]
        name: String,
        key: String,
    },
}

#[derive(Subcommand)]
enum ScriptsCmd {
    /// Lists scripts; `--tag t:yes` / `--tag t:no` filter.
    List {
        #[arg(long, short)]
        namespace: String,
        #[arg(long = "tag")]
        tags: Vec<String>,
    },
    /// Deletes one script (`--name`) or every script matching the tag filters.
    Delete {
        #[arg(long, short)]
        namespace: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long = "tag")]
        tags: Vec<String>,
    },
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    // Kept until `run` returns: flushes the log and reports dropped lines then.
    let _log = tenantry::logging::init();
    let cli = Cli::parse();

    match cli.command {
        Command::Serve { config } => serve(&config),
        Command::Check { config } => check(&config),
        Command::Namespace { action, api } => namespace(action, &api),
        Command::Deploy {
            namespace,
            name,
            path,
            tags,
            vars,
            api,
        } => deploy(&api, &namespace, name.as_deref(), &path, &tags, &vars),
        Command::Tags {
            namespace,
            name,
            set,
            api,
        } => {
            let c = api.client()?;
            let tags = match set {
                Some(tags) => c.set_tags(&namespace, &name, &tags)?,
                None => c.get_tags(&namespace, &name)?,
            };
            print(&api, &tags, || {
                tags.as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join("\n")
            });
            Ok(())
        }
        Command::Secret { action, api } => secret(action, &api),
        Command::Scripts { action, api } => scripts(action, &api),
        Command::Kv { action, api } => kv(action, &api),
    }
}

/// Prints `value` as JSON with `--json`, else the human form.
fn print(api: &Api, value: &Value, human: impl FnOnce() -> String) {
    if api.json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
    } else {
        let text = human();
        if !text.is_empty() {
            println!("{text}");
        }
    }
}

fn namespace_line(ns: &Value) -> String {
    format!(
        "{}\t{} scripts\tid {}\tcreated {}",
        ns["namespace_name"].as_str().unwrap_or("?"),
        ns["script_count"],
        ns["namespace_id"].as_str().unwrap_or("?"),
        ns["created_on"].as_str().unwrap_or("?"),
    )
}

fn namespace(action: NamespaceCmd, api: &Api) -> anyhow::Result<()> {
    let c = api.client()?;
    match action {
        NamespaceCmd::Create { name } => {
            let ns = c.create_namespace(&name)?;
            print(api, &ns, || {
                format!("created namespace {}", namespace_line(&ns))
            });
        }
        NamespaceCmd::List => {
            let list = c.list_namespaces()?;
            print(api, &list, || {
                list.as_array()
                    .into_iter()
                    .flatten()
                    .map(namespace_line)
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        NamespaceCmd::Get { name } => {
            let ns = c.get_namespace(&name)?;
            print(api, &ns, || namespace_line(&ns));
        }
        NamespaceCmd::Delete { name } => {
            c.delete_namespace(&name)?;
            print(api, &Value::Null, || format!("deleted namespace {name}"));
        }
    }
    Ok(())
}

fn deploy(
    api: &Api,
    ns: &str,
    name: Option<&str>,
    path: &std::path::Path,
    tags: &[String],
    vars: &[String],
) -> anyhow::Result<()> {
    let c = api.client()?;
    let mut bindings = Vec::new();
    for var in vars {
        let (k, v) = var
            .split_once('=')
            .with_context(|| format!("--var `{var}`: expected KEY=VALUE"))?;
        bindings.push(json!({"type": "plain_text", "name": k, "text": v}));
    }
    let metadata = |module: &str| {
        let mut m = json!({"main_module": module, "tags": tags});
        if !bindings.is_empty() {
            m["bindings"] = json!(bindings);
        }
        m
    };
    let files: Vec<PathBuf> = if path.is_dir() {
        if name.is_some() {
            bail!("--name applies to one file; a directory deploys each .wasm under its own name");
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("reading {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
            .collect();
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    };
    let bar = (files.len() > 1 && !api.json).then(|| {
        let bar = indicatif::ProgressBar::new(files.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let mut results = Vec::new();
    for file in &files {
        let module_name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let script = match name {
            Some(n) => n.to_string(),
            None => file
                .file_stem()
                .map(|s| s.to_string_lossy().replace('.', "-").to_lowercase())
                .unwrap_or_default(),
        };
        if let Some(bar) = &bar {
            bar.set_message(script.clone());
        }
        let wasm = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let result = c
            .deploy(ns, &script, &module_name, &wasm, &metadata(&module_name))
            .with_context(|| format!("deploying {} as {ns}/{script}", file.display()))?;
        if let Some(bar) = &bar {
            bar.inc(1);
        } else if !api.json {
            println!(
                "deployed {ns}/{script} (etag {})",
                result["etag"].as_str().unwrap_or("?")
            );
        }
        results.push(result);
    }
    if let Some(bar) = bar {
        bar.finish_with_message(format!("deployed {} Workers into {ns}", files.len()));
    }
    if api.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    }
    Ok(())
}

fn secret(action: SecretCmd, api: &Api) -> anyhow::Result<()> {
    let c = api.client()?;
    match action {
        SecretCmd::Put {
            namespace,
            name,
            key,
            value,
        } => {
            let value = match value {
                Some(v) => v,
                None => {
                    let mut v = String::new();
                    std::io::Read::read_to_string(&mut std::io::stdin(), &mut v)?;
                    v.trim_end_matches(['\r', '\n']).to_string()
                }
            };
            c.put_secret(&namespace, &name, &key, &value)?;
            print(api, &json!({"name": key, "type": "secret_text"}), || {
                format!("set secret {key} on {namespace}/{name}")
            });
        }
        SecretCmd::List { namespace, name } => {
            let list = c.list_secrets(&namespace, &name)?;
            print(api, &list, || {
                list.as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s["name"].as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        SecretCmd::Delete {
            namespace,
            name,
            key,
        } => {
            c.delete_secret(&namespace, &name, &key)?;
            print(api, &Value::Null, || {
                format!("deleted secret {key} from {namespace}/{name}")
            });
        }
    }
    Ok(())
}

fn scripts(action: ScriptsCmd, api: &Api) -> anyhow::Result<()> {
    let c = api.client()?;
    match action {
        ScriptsCmd::List { namespace, tags } => {
            let list = c.list_scripts(&namespace, &tags)?;
            let value = Value::Array(list);
            print(api, &value, || {
                value
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|s| {
                        let tags: Vec<&str> = s["tags"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_str)
                            .collect();
                        format!(
                            "{}\t[{}]\tmodified {}",
                            s["id"].as_str().unwrap_or("?"),
                            tags.join(", "),
                            s["modified_on"].as_str().unwrap_or("?")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        ScriptsCmd::Delete {
            namespace,
            name,
            tags,
        } => match (name, tags.is_empty()) {
            (Some(name), true) => {
                c.delete_script(&namespace, &name)?;
                print(api, &Value::Null, || format!("deleted {namespace}/{name}"));
            }
            (None, false) => {
                let n = c.delete_scripts_by_tags(&namespace, &tags)?;
                print(api, &json!({"deleted_count": n}), || {
                    format!("deleted {n} scripts from {namespace}")
                });
            }
            _ => bail!("give either --name or at least one --tag filter"),
        },
    }
    Ok(())
}

fn kv(action: KvCmd, api: &Api) -> anyhow::Result<()> {
    let c = api.client()?;
    match action {
        KvCmd::Namespace { action } => match action {
            KvNamespaceCmd::Create { title } => {
                let ns = c.kv_create_namespace(&title)?;
                print(api, &ns, || {
                    format!(
                        "created KV namespace {} (id {})",
                        title,
                        ns["id"].as_str().unwrap_or("?")
                    )
                });
            }
            KvNamespaceCmd::List => {
                let list = c.kv_namespaces()?;
                print(api, &list, || {
                    list.as_array()
                        .into_iter()
                        .flatten()
                        .map(|n| {
                            format!(
                                "{}\t{}",
                                n["id"].as_str().unwrap_or("?"),
                                n["title"].as_str().unwrap_or("?")
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                });
            }
            KvNamespaceCmd::Rename { namespace, title } => {
                let id = c.kv_namespace_id(&namespace)?;
                let ns = c.kv_rename_namespace(&id, &title)?;
                print(api, &ns, || format!("renamed KV namespace {id} to {title}"));
            }
            KvNamespaceCmd::Delete { namespace } => {
                let id = c.kv_namespace_id(&namespace)?;
                c.kv_delete_namespace(&id)?;
                print(api, &Value::Null, || format!("deleted KV namespace {id}"));
            }
        },
        KvCmd::Key { action } => match action {
            KvKeyCmd::Get { namespace, key } => {
                let id = c.kv_namespace_id(&namespace)?;
                let value = c.kv_get(&id, &key)?;
                std::io::Write::write_all(&mut std::io::stdout(), &value)?;
            }
            KvKeyCmd::Put {
                namespace,
                key,
                value,
                ttl,
            } => {
                let id = c.kv_namespace_id(&namespace)?;
                let value = match value {
                    Some(v) => v.into_bytes(),
                    None => {
                        let mut v = Vec::new();
                        std::io::Read::read_to_end(&mut std::io::stdin(), &mut v)?;
                        v
                    }
                };
                c.kv_put(&id, &key, value, ttl)?;
                print(api, &Value::Null, || format!("stored {key}"));
            }
            KvKeyCmd::Delete { namespace, key } => {
                let id = c.kv_namespace_id(&namespace)?;
                c.kv_delete(&id, &key)?;
                print(api, &Value::Null, || format!("deleted {key}"));
            }
            KvKeyCmd::List { namespace, prefix } => {
                let id = c.kv_namespace_id(&namespace)?;
                let keys = Value::Array(c.kv_keys(&id, &prefix)?);
                print(api, &keys, || {
                    keys.as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|k| k["name"].as_str())
                        .collect::<Vec<_>>()
                        .join("\n")
                });
            }
        },
    }
    Ok(())
}

fn serve(path: &std::path::Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    // SIGINT and SIGTERM stop the node; SIGHUP reloads the TLS certificates, as nginx and
    // friends do.
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let (signal_tx, signals) = std::sync::mpsc::channel();
    let mut caught = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::Builder::new()
        .name("tenantry-signals".into())
        .spawn(move || {
            for signal in caught.forever() {
                if signal_tx.send(signal).is_err() {
                    return;
                }
            }
        })?;
    let node = Node::start(&config)?;
    // Tests and scripts read this line to learn the port (the config may ask for port 0).
    println!("tenantry listening on http://{}", node.local_addr());
    if let Some(addr) = node.tls_addr() {
        println!("tenantry listening on https://{addr}");
    }
    while let Ok(SIGHUP) = signals.recv() {
        match node.reload_certificates() {
            Ok(hosts) => tracing::info!(hosts, "reloaded the TLS certificates"),
            Err(e) => {
                tracing::error!("reloading the TLS certificates failed (kept the old ones): {e:#}")
            }
        }
    }
    tracing::info!("shutting down");
    node.shutdown();
    Ok(())
}

fn check(path: &std::path::Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    let report = tenantry::deploy::check(&config)?;
    println!(
        "{}: ok ({} namespaces, {} workers compiled, {} routes)",
        path.display(),
        config.namespaces.len(),
        report.deployed,
        config.routes.len()
    );
    Ok(())
}
