//! The `tenantry` CLI end to end: the real binary against a real node's admin API, checking its
//! output, its exit status, and what the deployed Workers then answer on the data plane.

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::common::*;

fn node() -> TestNode {
    TestNode::start(
        "[[namespace]]\nname = \"customers\"\n\
         [[route]]\nhost = \"*.example.test\"\nnamespace = \"customers\"\nscript_from = \"host_label\"\n",
    )
}

/// Runs `tenantry ARGS` against `admin`, with `stdin` piped in when given.
fn cli(admin: SocketAddr, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .args(args)
        .env("TENANTRY_API_URL", format!("http://{admin}/client/v4"))
        .env("TENANTRY_API_TOKEN", "test-token")
        .env("TENANTRY_ACCOUNT_ID", "acct-1")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

/// Runs a command that must succeed; returns its standard output.
fn ok(admin: SocketAddr, args: &[&str], stdin: Option<&str>) -> String {
    let out = cli(admin, args, stdin);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "tenantry {args:?} failed: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn json(admin: SocketAddr, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    serde_json::from_str(&ok(admin, &args, None)).expect("--json prints JSON")
}

fn script_names(list: &Value) -> Vec<String> {
    let mut names: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn the_cli_manages_namespaces_scripts_tags_and_secrets() {
    let n = node();
    let a = n.node.as_ref().unwrap().admin_addr().unwrap();
    let env_reader = guest("env_reader");
    let env_reader = env_reader.to_str().unwrap();

    // Namespaces.
    let out = ok(a, &["namespace", "create", "staging"], None);
    assert!(out.starts_with("created namespace staging"), "{out}");
    let list = json(a, &["namespace", "list"]);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|ns| ns["namespace_name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"staging") && names.contains(&"customers"),
        "{list}"
    );
    let out = ok(a, &["namespace", "delete", "staging"], None);
    assert_eq!(out.trim(), "deleted namespace staging");
    let out = cli(a, &["namespace", "get", "staging"], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("staging") && err.contains("not found"),
        "{err}"
    );

    // Deploy one file with a tag and a variable; it answers traffic at once.
    let out = ok(
        a,
        &[
            "deploy",
            "-n",
            "customers",
            "--name",
            "alice",
            env_reader,
            "--tag",
            "plan-pro",
            "--var",
            "GREETING=hello from the cli",
        ],
        None,
    );
    assert!(out.starts_with("deployed customers/alice"), "{out}");
    let r = get(n.addr, "alice.example.test", "/?name=GREETING");
    assert_eq!(
        (r.status, r.text()),
        (200, "hello from the cli".to_string())
    );

    // A secret from standard input: usable by the Worker, listed without its value.
    let out = ok(
        a,
        &[
            "secret",
            "put",
            "-n",
            "customers",
            "--name",
            "alice",
            "API_KEY",
        ],
        Some("s3cret-value\n"),
    );
    assert!(out.contains("set secret API_KEY"), "{out}");
    let r = get(n.addr, "alice.example.test", "/?name=API_KEY");
    assert_eq!(r.text(), "s3cret-value");
    assert_eq!(r.header("x-binding-kind"), Some("secret_text"));
    let listed = ok(
        a,
        &[
            "secret",
            "list",
            "-n",
            "customers",
            "--name",
            "alice",
            "--json",
        ],
        None,
    );
    assert!(
        listed.contains("API_KEY") && !listed.contains("s3cret"),
        "{listed}"
    );
    ok(
        a,
        &[
            "secret",
            "delete",
            "-n",
            "customers",
            "--name",
            "alice",
            "API_KEY",
        ],
        None,
    );
    assert_eq!(
        get(n.addr, "alice.example.test", "/?name=API_KEY").status,
        404
    );

    // Tags: show, replace.
    let out = ok(a, &["tags", "-n", "customers", "--name", "alice"], None);
    assert_eq!(out.trim(), "plan-pro");
    ok(
        a,
        &[
            "tags",
            "-n",
            "customers",
            "--name",
            "alice",
            "--set",
            "plan-free",
            "customer-1",
        ],
        None,
    );
    let tags = json(a, &["tags", "-n", "customers", "--name", "alice"]);
    assert_eq!(tags, serde_json::json!(["plan-free", "customer-1"]));

    // A directory of Workers, each under its file name, then filtered and bulk-deleted by tag.
    let dir = tempfile::tempdir().unwrap();
    for name in ["bob", "carol", "dave"] {
        std::fs::copy(guest("hello"), dir.path().join(format!("{name}.wasm"))).unwrap();
    }
    let results = json(
        a,
        &[
            "deploy",
            "-n",
            "customers",
            dir.path().to_str().unwrap(),
            "--tag",
            "batch-1",
        ],
    );
    assert_eq!(results.as_array().unwrap().len(), 3, "{results}");
    assert_eq!(get(n.addr, "carol.example.test", "/").status, 200);
    let all = json(a, &["scripts", "list", "-n", "customers"]);
    assert_eq!(script_names(&all), ["alice", "bob", "carol", "dave"]);
    let batch = json(
        a,
        &["scripts", "list", "-n", "customers", "--tag", "batch-1:yes"],
    );
    assert_eq!(script_names(&batch), ["bob", "carol", "dave"]);
    let not_batch = json(
        a,
        &["scripts", "list", "-n", "customers", "--tag", "batch-1:no"],
    );
    assert_eq!(script_names(&not_batch), ["alice"]);
    ok(
        a,
        &[
            "scripts",
            "delete",
            "-n",
            "customers",
            "--tag",
            "batch-1:yes",
        ],
        None,
    );
    let left = json(a, &["scripts", "list", "-n", "customers"]);
    assert_eq!(script_names(&left), ["alice"]);
    assert_eq!(get(n.addr, "carol.example.test", "/").status, 404);

    // Bad input: a clear message and a failing exit status, nothing changed.
    let bad = dir.path().join("bad.wasm");
    std::fs::write(&bad, b"not wasm").unwrap();
    let out = cli(
        a,
        &[
            "deploy",
            "-n",
            "customers",
            "--name",
            "eve",
            bad.to_str().unwrap(),
        ],
        None,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("eve"), "{err}");
    let out = cli(
        a,
        &[
            "deploy",
            "-n",
            "customers",
            "--name",
            "eve",
            env_reader,
            "--var",
            "NOEQUALS",
        ],
        None,
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected KEY=VALUE"));
    let left = json(a, &["scripts", "list", "-n", "customers"]);
    assert_eq!(script_names(&left), ["alice"]);

    // A wrong token is refused with the API's message.
    let out = Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .args(["namespace", "list"])
        .env("TENANTRY_API_URL", format!("http://{a}/client/v4"))
        .env("TENANTRY_API_TOKEN", "wrong")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid token"));
}

#[test]
fn the_cli_manages_kv_namespaces_and_keys() {
    let n = node();
    let a = n.node.as_ref().unwrap().admin_addr().unwrap();

    let out = ok(a, &["kv", "namespace", "create", "sessions"], None);
    assert!(
        out.starts_with("created KV namespace sessions (id "),
        "{out}"
    );
    let list = json(a, &["kv", "namespace", "list"]);
    assert_eq!(list[0]["title"], "sessions", "{list}");

    // Keys, with the namespace named by title; values from an argument or standard input.
    ok(
        a,
        &[
            "kv", "key", "put", "-n", "sessions", "user/1", "alice", "--ttl", "3600",
        ],
        None,
    );
    ok(
        a,
        &["kv", "key", "put", "-n", "sessions", "user/2"],
        Some("bob from stdin"),
    );
    assert_eq!(
        ok(a, &["kv", "key", "get", "-n", "sessions", "user/1"], None),
        "alice"
    );
    assert_eq!(
        ok(a, &["kv", "key", "get", "-n", "sessions", "user/2"], None),
        "bob from stdin"
    );
    let keys = ok(
        a,
        &["kv", "key", "list", "-n", "sessions", "--prefix", "user/"],
        None,
    );
    assert_eq!(keys.trim(), "user/1\nuser/2");
    ok(
        a,
        &["kv", "key", "delete", "-n", "sessions", "user/1"],
        None,
    );
    let out = cli(a, &["kv", "key", "get", "-n", "sessions", "user/1"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));

    // Errors are the API's, with a failing exit status.
    let out = cli(
        a,
        &["kv", "key", "put", "-n", "sessions", "k", "v", "--ttl", "5"],
        None,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 60"));
    let out = cli(a, &["kv", "key", "get", "-n", "nope", "k"], None);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no KV namespace with id or title `nope`")
    );

    ok(
        a,
        &["kv", "namespace", "rename", "sessions", "sessions-v2"],
        None,
    );
    ok(a, &["kv", "namespace", "delete", "sessions-v2"], None);
    assert_eq!(json(a, &["kv", "namespace", "list"]), serde_json::json!([]));
}
