//! Dynamic dispatch end to end: a platform dispatch Worker (examples/workers/dispatcher) routes
//! by header, path and host to customer Workers through a `dispatch_namespace` binding, with
//! per-call limits; customer Workers call each other through `service` bindings, within their
//! own namespace only.

use std::path::Path;

use serde_json::Value;
use tenantry::config::Config;

use crate::common::*;

fn config() -> String {
    let mut c = String::from(
        "[[namespace]]\nname = \"customers\"\n[[namespace]]\nname = \"other\"\n\
         [[route]]\nhost = \"direct.test\"\nnamespace = \"customers\"\nscript = \"echo\"\n\
         [[route]]\nhost = \"*.example.test\"\nworker = \"dispatcher\"\n",
    );
    c += &worker("customers", "alice", "hello", "");
    c += &worker("customers", "echo", "echo", "");
    c += &worker("customers", "spin", "spin", "limits = { cpu_ms = 2000 }");
    c += &worker("customers", "spin-small", "spin", "limits = { cpu_ms = 5 }");
    c += &worker(
        "customers",
        "hog",
        "memory_hog",
        "limits = { memory_mb = 64, cpu_ms = 2000 }",
    );
    c += &worker(
        "customers",
        "caller",
        "service_caller",
        "bindings = [{ type = \"service\", name = \"BACKEND\", service = \"echo\" }]",
    );
    // `secret` exists, but in another namespace: a service binding cannot reach it.
    c += &worker(
        "customers",
        "snoop",
        "service_caller",
        "bindings = [{ type = \"service\", name = \"BACKEND\", service = \"secret\" }]",
    );
    c += &worker("other", "secret", "env_reader", "");
    c += &format!(
        "[[platform_worker]]\nname = \"dispatcher\"\nmodule = \"{}\"\n\
         bindings = [{{ type = \"dispatch_namespace\", name = \"CUSTOMERS\", namespace = \"customers\" }}]\n",
        guest("dispatcher").display()
    );
    c
}

fn dispatched(r: &Resp) -> bool {
    r.header("x-dispatched-by") == Some("tenantry-dispatcher")
}

#[test]
fn the_dispatcher_routes_by_host_path_and_header() {
    let n = TestNode::start(&config());

    // Host: the first label names the Worker.
    let r = get(n.addr, "alice.example.test", "/");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(dispatched(&r));
    assert_eq!(r.text(), "hello from tenantry\n");
    assert_eq!(r.header("x-worker"), Some("hello"));

    // Path: /w/<name>/rest reaches <name> with /rest.
    let r = get(n.addr, "www.example.test", "/w/echo/some/path?q=1");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(dispatched(&r));
    assert!(
        r.text()
            .starts_with("GET http://www.example.test/some/path?q=1\n"),
        "{}",
        r.text()
    );

    // Header: x-customer wins over the host, and routing headers never reach the customer.
    let r = request(
        n.addr,
        "POST",
        "alice.example.test",
        "/x",
        &[
            ("x-customer", "echo"),
            ("x-cpu-ms", "40"),
            ("x-extra", "kept"),
            ("X-Tenantry-Tenant", "internal"),
        ],
        b"payload",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    assert!(
        text.starts_with("POST http://alice.example.test/x\n"),
        "{text}"
    );
    assert!(
        text.contains("x-extra: kept") && text.ends_with("\npayload"),
        "{text}"
    );
    assert!(
        !text.contains("x-customer") && !text.contains("x-cpu-ms"),
        "{text}"
    );
    // Platform-internal headers never reach customer code.
    assert!(!text.to_ascii_lowercase().contains("x-tenantry-"), "{text}");

    // A name that does not exist is the dispatcher's 404, not the platform's.
    let r = request(
        n.addr,
        "GET",
        "alice.example.test",
        "/",
        &[("x-customer", "nobody")],
        b"",
    );
    assert_eq!(
        (r.status, r.text()),
        (404, "no Worker named `nobody`\n".to_string())
    );
    // Customers of another namespace are out of the binding's reach.
    let r = request(
        n.addr,
        "GET",
        "alice.example.test",
        "/",
        &[("x-customer", "secret")],
        b"",
    );
    assert_eq!(r.status, 404);

    // Declarative routes stay the fast path where no dispatcher is involved.
    let r = request(
        n.addr,
        "GET",
        "direct.test",
        "/d",
        &[("x-tenantry-x", "1")],
        b"",
    );
    assert_eq!(r.status, 200);
    assert!(!dispatched(&r));
    assert!(r.text().starts_with("GET http://direct.test/d\n"));
    assert!(!r.text().contains("x-tenantry-x"), "{}", r.text());
}

#[test]
fn the_lower_of_per_call_and_script_limits_applies() {
    let n = TestNode::start(&config());
    let call = |name: &str, cpu_ms: &str| {
        request(
            n.addr,
            "GET",
            "x.example.test",
            "/",
            &[("x-customer", name), ("x-cpu-ms", cpu_ms)],
            b"",
        )
    };
    // Per-call 7 ms beats the script's 2000 ms: the dispatcher learns which limit was hit.
    let r = call("spin", "7");
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("CPU time limit of 7 ms"), "{}", r.text());
    // The script's own 5 ms beats a generous per-call 500 ms.
    let r = call("spin-small", "500");
    assert_eq!(r.status, 503);
    assert!(r.text().contains("CPU time limit of 5 ms"), "{}", r.text());
    // A per-call wall-clock limit too.
    let r = request(
        n.addr,
        "GET",
        "x.example.test",
        "/",
        &[("x-customer", "spin"), ("x-wall-ms", "20")],
        b"",
    );
    assert_eq!(r.status, 503);
    assert!(
        r.text().contains("wall-clock limit of 20 ms"),
        "{}",
        r.text()
    );
    // And memory: per-call 4 MiB beats the script's 64 MiB.
    let r = request(
        n.addr,
        "GET",
        "x.example.test",
        "/",
        &[("x-customer", "hog"), ("x-memory-mb", "4")],
        b"",
    );
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        r.text()
            .contains(&format!("memory limit of {} bytes", 4 << 20)),
        "{}",
        r.text()
    );
    // The node kept serving throughout.
    assert_eq!(get(n.addr, "alice.example.test", "/").status, 200);
}

#[test]
fn service_bindings_call_within_the_namespace_under_a_subrequest_budget() {
    let n = TestNode::start(&config());
    let call = |name: &str, path: &str, subrequests: &str| {
        request(
            n.addr,
            "GET",
            "x.example.test",
            path,
            &[("x-customer", name), ("x-subrequests", subrequests)],
            b"",
        )
    };
    // Two calls to the `echo` service, each seeing the forwarded request.
    let r = call("caller", "/?n=2", "2");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.text().matches("GET http://x.example.test/?n=2\n").count(),
        2
    );
    // The third call is over the per-call budget of two.
    let r = call("caller", "/?n=3", "2");
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(
        r.text()
            .contains("call 3: the subrequest limit of 2 per invocation is reached"),
        "{}",
        r.text()
    );
    // A service binding resolves in the caller's own namespace: `secret` of `other` is not found.
    let r = call("snoop", "/?name=TOKEN", "0");
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(
        r.text().contains("Worker not found: secret"),
        "{}",
        r.text()
    );
}

fn parse_err(text: &str) -> String {
    match Config::parse(text, Path::new("/etc/tenantry.toml")) {
        Ok(_) => panic!("config was accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn dispatch_bindings_belong_to_platform_workers_only() {
    let ns = "[[namespace]]\nname = \"customers\"\n";
    let e = parse_err(&format!(
        "{ns}{}",
        worker(
            "customers",
            "sneaky",
            "hello",
            "bindings = [{ type = \"dispatch_namespace\", name = \"D\", namespace = \"customers\" }]"
        )
    ));
    assert!(
        e.contains("dispatch_namespace bindings belong to platform Workers"),
        "{e}"
    );
    let e = parse_err(&format!(
        "{ns}[[platform_worker]]\nname = \"d\"\nmodule = \"x.wasm\"\n\
         bindings = [{{ type = \"dispatch_namespace\", name = \"D\", namespace = \"nope\" }}]\n"
    ));
    assert!(e.contains("namespace `nope` is not declared"), "{e}");
    let e = parse_err(&format!("{ns}[[route]]\nworker = \"Bad Name\"\n"));
    assert!(e.contains("route: worker `Bad Name`"), "{e}");
    let e = parse_err("[[namespace]]\nname = \"_platform\"\n");
    assert!(e.contains("reserved for the platform"), "{e}");
    let e = parse_err(&format!(
        "{ns}[[worker]]\nname = \"w\"\nmodule = \"x.wasm\"\n"
    ));
    assert!(e.contains("[[platform_worker]]"), "{e}");

    // Through the admin API: refused at upload, and the platform namespace cannot be reached.
    let n = TestNode::start(ns);
    let a = n.node.as_ref().unwrap().admin_addr().unwrap();
    let base = "/client/v4/accounts/acct-1/workers/dispatch/namespaces";
    let auth = ("Authorization", "Bearer test-token");
    let metadata = r#"{"main_module": "w.wasm", "bindings": [{"type": "dispatch_namespace", "name": "D", "namespace": "customers"}]}"#;
    let (ct, body) = multipart(metadata, "w.wasm", &std::fs::read(guest("hello")).unwrap());
    let r = request(
        a,
        "PUT",
        "admin",
        &format!("{base}/customers/scripts/sneaky"),
        &[auth, ("Content-Type", &ct)],
        &body,
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text().contains("belong to platform Workers"),
        "{}",
        r.text()
    );
    for (method, path) in [
        ("GET", format!("{base}/_platform")),
        ("POST", base.to_string()),
    ] {
        let body = if method == "POST" {
            &br#"{"name": "_platform"}"#[..]
        } else {
            b""
        };
        let r = request(
            a,
            method,
            "admin",
            &path,
            &[auth, ("Content-Type", "application/json")],
            body,
        );
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert!(
            r.status == 404 || r.status == 400,
            "{method} {path}: {}",
            r.text()
        );
        assert_eq!(v["success"], false);
    }
}

#[test]
fn platform_workers_are_managed_through_account_level_scripts() {
    // A route to a dispatcher that is not deployed yet.
    let mut config = String::from(
        "[[namespace]]\nname = \"customers\"\n[[route]]\nhost = \"*.example.test\"\nworker = \"dispatcher\"\n",
    );
    config += &worker("customers", "alice", "hello", "");
    let mut n = TestNode::start(&config);
    let a = n.node.as_ref().unwrap().admin_addr().unwrap();
    let scripts = "/client/v4/accounts/acct-1/workers/scripts";
    let auth = ("Authorization", "Bearer test-token");
    let r = get(n.addr, "alice.example.test", "/");
    assert_eq!(r.status, 404, "{}", r.text());

    // A binding to a namespace that does not exist is refused before anything is compiled.
    let dispatcher = std::fs::read(guest("dispatcher")).unwrap();
    let (ct, body) = multipart_wasm(
        r#"{"main_module": "w.wasm", "bindings": [{"type": "dispatch_namespace", "name": "CUSTOMERS", "namespace": "nope"}]}"#,
        &dispatcher,
    );
    let r = request(
        a,
        "PUT",
        "admin",
        &format!("{scripts}/dispatcher"),
        &[auth, ("Content-Type", &ct)],
        &body,
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text()
            .contains("dispatch namespace `nope` does not exist"),
        "{}",
        r.text()
    );

    // Upload it with Cloudflare's binding shape, outbound included: it serves at once.
    let (ct, body) = multipart_wasm(
        r#"{"main_module": "w.wasm", "bindings": [{"type": "dispatch_namespace", "name": "CUSTOMERS", "namespace": "customers",
            "outbound": {"worker": {"service": "outbound"}, "params": [{"name": "customer"}]}}]}"#,
        &dispatcher,
    );
    let r = request(
        a,
        "PUT",
        "admin",
        &format!("{scripts}/dispatcher"),
        &[auth, ("Content-Type", &ct)],
        &body,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = get(n.addr, "alice.example.test", "/");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-dispatched-by"), Some("tenantry-dispatcher"));

    // Read back: listed at account level, never as a dispatch namespace.
    let r = request(a, "GET", "admin", scripts, &[auth], b"");
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["result"][0]["id"], "dispatcher", "{v}");
    let r = request(
        a,
        "GET",
        "admin",
        &format!("{scripts}/dispatcher/bindings"),
        &[auth],
        b"",
    );
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["result"][0]["namespace"], "customers", "{v}");
    assert_eq!(
        v["result"][0]["outbound"]["worker"]["service"], "outbound",
        "{v}"
    );
    assert_eq!(
        v["result"][0]["outbound"]["params"][0]["name"], "customer",
        "{v}"
    );
    let r = request(
        a,
        "GET",
        "admin",
        "/client/v4/accounts/acct-1/workers/dispatch/namespaces",
        &[auth],
        b"",
    );
    assert!(!r.text().contains("_platform"), "{}", r.text());

    // It survives a restart, and deleting it takes the route back to 404.
    n.restart(&config);
    let a = n.node.as_ref().unwrap().admin_addr().unwrap();
    assert_eq!(get(n.addr, "alice.example.test", "/").status, 200);
    let r = request(
        a,
        "DELETE",
        "admin",
        &format!("{scripts}/dispatcher"),
        &[auth],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(get(n.addr, "alice.example.test", "/").status, 404);
}

/// An upload of `wasm` as `w.wasm` with `metadata`.
fn multipart_wasm(metadata: &str, wasm: &[u8]) -> (String, Vec<u8>) {
    multipart(metadata, "w.wasm", wasm)
}
