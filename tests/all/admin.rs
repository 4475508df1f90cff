//! The admin API end to end: Cloudflare's dispatch-namespace endpoints on the admin listener, and
//! what they change on the data plane.

use std::net::SocketAddr;

use serde_json::{Value, json};

use crate::common::*;

pub(crate) const TOKEN: &str = "test-token";
pub(crate) const BASE: &str = "/client/v4/accounts/acct-1/workers/dispatch/namespaces";

/// A node with the `customers` namespace routed by host label and no Workers yet.
pub(crate) fn node() -> TestNode {
    TestNode::start(
        "[[namespace]]\nname = \"customers\"\n\
         [[route]]\nhost = \"*.example.test\"\nnamespace = \"customers\"\nscript_from = \"host_label\"\n",
    )
}

pub(crate) fn admin(node: &TestNode) -> SocketAddr {
    node.node
        .as_ref()
        .unwrap()
        .admin_addr()
        .expect("the admin API is enabled")
}

/// Sends one admin request with the test token; returns the status and the parsed envelope.
pub(crate) fn api(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, Value) {
    let auth = format!("Bearer {TOKEN}");
    let mut headers = vec![("Authorization", auth.as_str())];
    if !content_type.is_empty() {
        headers.push(("Content-Type", content_type));
    }
    let r = request(addr, method, "admin", path, &headers, body);
    let v: Value = serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {}", r.text()));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(v["success"], json!(r.status == 200), "{v}");
    (r.status, v)
}

pub(crate) fn json_req(addr: SocketAddr, method: &str, path: &str, body: Value) -> (u16, Value) {
    api(
        addr,
        method,
        path,
        "application/json",
        body.to_string().as_bytes(),
    )
}

pub(crate) fn get_api(addr: SocketAddr, path: &str) -> (u16, Value) {
    api(addr, "GET", path, "", b"")
}

fn wasm(name: &str) -> Vec<u8> {
    std::fs::read(guest(name)).unwrap()
}

/// [`common::multipart`] with the metadata as a JSON value.
fn multipart(metadata: Value, module_name: &str, module: &[u8]) -> (String, Vec<u8>) {
    crate::common::multipart(&metadata.to_string(), module_name, module)
}

fn error_code(v: &Value) -> u64 {
    v["errors"][0]["code"].as_u64().unwrap()
}

#[test]
fn namespaces_are_created_listed_and_deleted() {
    let n = node();
    let a = admin(&n);
    let (s, v) = get_api(a, BASE);
    assert_eq!(s, 200);
    assert_eq!(v["result"][0]["namespace_name"], "customers");

    let (s, v) = json_req(a, "POST", BASE, json!({"name": "staging"}));
    assert_eq!(s, 200, "{v}");
    let r = &v["result"];
    assert_eq!(r["namespace_name"], "staging");
    assert_eq!(r["script_count"], 0);
    assert_eq!(r["namespace_id"].as_str().unwrap().len(), 32);
    assert!(r["created_on"].as_str().unwrap().ends_with('Z'));

    let (s, v) = json_req(a, "POST", BASE, json!({"name": "staging"}));
    assert_eq!((s, error_code(&v)), (409, 10014));
    let (s, v) = json_req(a, "POST", BASE, json!({"name": "Bad/Name"}));
    assert_eq!(s, 400);
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("invalid namespace name")
    );
    let (s, _) = api(a, "POST", BASE, "application/json", b"{not json");
    assert_eq!(s, 400);

    let (s, v) = get_api(a, &format!("{BASE}/staging"));
    assert_eq!(
        (s, v["result"]["namespace_name"].as_str()),
        (200, Some("staging"))
    );
    let (s, _) = api(a, "DELETE", &format!("{BASE}/staging"), "", b"");
    assert_eq!(s, 200);
    let (s, v) = get_api(a, &format!("{BASE}/staging"));
    assert_eq!((s, error_code(&v)), (404, 10007));
    let (s, v) = get_api(a, "/client/v4/nothing/here");
    assert_eq!((s, error_code(&v)), (404, 7003));
    let (s, _) = api(a, "PATCH", BASE, "", b"");
    assert_eq!(s, 405);
}

#[test]
fn uploads_answer_traffic_at_once_and_keep_settings() {
    let n = node();
    let a = admin(&n);
    assert_eq!(get(n.addr, "alice.example.test", "/").status, 404);

    // Raw body, as the curl example in Cloudflare's docs does it.
    let (s, v) = api(
        a,
        "PUT",
        &format!("{BASE}/customers/scripts/alice"),
        "application/wasm",
        &wasm("hello"),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["result"]["id"], "alice");
    assert!(!v["result"]["etag"].as_str().unwrap().is_empty());
    let r = get(n.addr, "alice.example.test", "/");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "hello from tenantry\n")
    );

    // Multipart with metadata: bindings of every kind, tags, limits.
    let meta = json!({
        "main_module": "worker.wasm",
        "compatibility_date": "2025-01-01",
        "bindings": [
            {"type": "plain_text", "name": "GREETING", "text": "hi from the API"},
            {"type": "json", "name": "SETTINGS", "json": {"theme": "dark"}},
            {"type": "secret_text", "name": "API_KEY", "text": "s3cret-value"},
        ],
        "tags": ["customer-1", "plan:free"],
        "limits": {"cpu_ms": 25},
        "observability": {"enabled": true},
    });
    let (ct, body) = multipart(meta, "worker.wasm", &wasm("env_reader"));
    let (s, v) = api(
        a,
        "PUT",
        &format!("{BASE}/customers/scripts/carol"),
        &ct,
        &body,
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["result"]["tags"], json!(["customer-1", "plan:free"]));
    assert_eq!(v["result"]["compatibility_date"], "2025-01-01");
    let r = get(n.addr, "carol.example.test", "/?name=GREETING");
    assert_eq!((r.status, r.text().as_str()), (200, "hi from the API"));
    let r = get(n.addr, "carol.example.test", "/?name=API_KEY");
    assert_eq!(r.text(), "s3cret-value");

    // Read APIs never show the secret's value.
    let (_, v) = get_api(a, &format!("{BASE}/customers/scripts/carol/bindings"));
    assert!(!v.to_string().contains("s3cret-value"), "{v}");
    assert!(
        v["result"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "API_KEY", "type": "secret_text"}))
    );
    assert!(
        v["result"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "SETTINGS", "type": "json", "json": {"theme": "dark"}}))
    );
    let (_, v) = get_api(a, &format!("{BASE}/customers/scripts/carol/settings"));
    assert!(!v.to_string().contains("s3cret-value"));
    assert_eq!(v["result"]["limits"]["cpu_ms"], 25);
    let (s, v) = get_api(a, &format!("{BASE}/customers/scripts/carol"));
    assert_eq!(s, 200);
    assert_eq!(v["result"]["dispatch_namespace"], "customers");
    assert_eq!(v["result"]["script"]["id"], "carol");

    // Content: the original module comes back; PUT content swaps the module, keeps bindings.
    let r = request(
        a,
        "GET",
        "admin",
        &format!("{BASE}/customers/scripts/carol/content"),
        &[("Authorization", "Bearer test-token")],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body, wasm("env_reader"));
    assert_eq!(r.header("content-type"), Some("application/wasm"));
    let (s, _) = api(
        a,
        "PUT",
        &format!("{BASE}/customers/scripts/carol/content"),
        "application/wasm",
        &wasm("echo"),
    );
    assert_eq!(s, 200);
    let r = get(n.addr, "carol.example.test", "/x");
    assert!(
        r.text().starts_with("GET http://carol.example.test/x\n"),
        "{}",
        r.text()
    );
    let (_, v) = get_api(a, &format!("{BASE}/customers/scripts/carol/settings"));
    assert_eq!(v["result"]["bindings"].as_array().unwrap().len(), 3);

    // PATCH settings: replace a binding's value, keep the secret by naming it without text.
    let settings = json!({"bindings": [
        {"type": "plain_text", "name": "GREETING", "text": "patched"},
        {"type": "secret_text", "name": "API_KEY"},
    ]});
    let (s, v) = json_req(
        a,
        "PATCH",
        &format!("{BASE}/customers/scripts/carol/settings"),
        settings,
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["result"]["bindings"].as_array().unwrap().len(), 2);
    let (s, _) = api(
        a,
        "PUT",
        &format!("{BASE}/customers/scripts/carol/content"),
        "application/wasm",
        &wasm("env_reader"),
    );
    assert_eq!(s, 200);
    assert_eq!(
        get(n.addr, "carol.example.test", "/?name=GREETING").text(),
        "patched"
    );
    assert_eq!(
        get(n.addr, "carol.example.test", "/?name=API_KEY").text(),
        "s3cret-value"
    );

    // Delete: the data plane stops answering with that Worker at once.
    let (s, _) = api(
        a,
        "DELETE",
        &format!("{BASE}/customers/scripts/alice"),
        "",
        b"",
    );
    assert_eq!(s, 200);
    let r = get(n.addr, "alice.example.test", "/");
    assert_eq!(r.status, 404);
    let (s, v) = api(
        a,
        "DELETE",
        &format!("{BASE}/customers/scripts/alice"),
        "",
        b"",
    );
    assert_eq!((s, error_code(&v)), (404, 10007));
}

#[test]
fn bad_uploads_get_specific_errors_and_change_nothing() {
    let n = node();
    let a = admin(&n);
    let path = format!("{BASE}/customers/scripts/w");
    let (s, v) = api(
        a,
        "PUT",
        &path,
        "application/wasm",
        b"\0asm\x01\0\0\0\x01garbage",
    );
    assert_eq!((s, error_code(&v)), (400, 10021));
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("invalid WebAssembly"),
        "{v}"
    );

    let foreign = br#"(module (import "env" "launch_missiles" (func)) (memory (export "memory") 1)
        (func (export "tenantry_fetch") (result i32) i32.const 0))"#;
    let (s, v) = api(a, "PUT", &path, "application/wasm", foreign);
    assert_eq!(s, 400);
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("env::launch_missiles"),
        "{v}"
    );

    let (s, v) = api(
        a,
        "PUT",
        &format!("{BASE}/nope/scripts/w"),
        "application/wasm",
        &wasm("hello"),
    );
    assert_eq!((s, error_code(&v)), (404, 10007));
    let (s, v) = api(
        a,
        "PUT",
        &format!("{BASE}/customers/scripts/Bad.Name"),
        "application/wasm",
        &wasm("hello"),
    );
    assert_eq!(s, 400, "{v}");

    let (ct, body) = multipart(
        json!({"main_module": "other.wasm"}),
        "worker.wasm",
        &wasm("hello"),
    );
    let (s, v) = api(a, "PUT", &path, &ct, &body);
    assert_eq!(s, 400);
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("other.wasm")
    );
    let (ct, _) = multipart(json!({}), "worker.wasm", b"");
    let (s, _) = api(a, "PUT", &path, &ct, b"--not-the-boundary\r\n");
    assert_eq!(s, 400);
    let (ct, body) = multipart(
        json!({"tags": ["a", "b", "c", "d", "e", "f", "g", "h", "i"]}),
        "w.wasm",
        &wasm("hello"),
    );
    let (s, v) = api(a, "PUT", &path, &ct, &body);
    assert_eq!(s, 400);
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("at most 8")
    );
    let (ct, body) = multipart(
        json!({"bindings": [{"type": "kv_namespace", "name": "KV", "namespace_id": "x"}]}),
        "w.wasm",
        &wasm("hello"),
    );
    // A KV namespace that does not exist is an upload error, not a runtime surprise.
    let (s, v) = api(a, "PUT", &path, &ct, &body);
    assert_eq!(s, 400);
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("KV namespace `x` does not exist"),
        "{v}"
    );
    // A raw JavaScript body is a service-worker script: `export` is a syntax error there.
    let (s, v) = api(a, "PUT", &path, "text/javascript", b"export default {}");
    assert_eq!(s, 400);
    let message = v["errors"][0]["message"].as_str().unwrap();
    assert!(message.starts_with("worker.js:1:"), "{message}");
    let (s, _) = api(a, "PUT", &path, "text/x-python", b"print(1)");
    assert_eq!(s, 415);

    // A function too big to compile within bounds: refused before Cranelift runs, with the limit.
    let nops = "nop ".repeat(tenantry_core::MAX_FUNCTION_BODY_BYTES + 1);
    let huge = wat::parse_str(format!(
        r#"(module (memory (export "memory") 1)
        (func (export "tenantry_fetch") (result i32) {nops} i32.const 7))"#
    ))
    .unwrap();
    let (s, v) = api(a, "PUT", &path, "application/wasm", &huge);
    assert_eq!(s, 413, "{v}");
    let message = v["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("per function"), "{message}");

    // Over the module size limit: refused from the Content-Length, before the body is read.
    let mut c = Conn::open(a);
    c.send(
        format!(
            "PUT {path} HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/wasm\r\nContent-Length: {}\r\n\r\n",
            200 << 20
        )
        .as_bytes(),
    );
    let r = c.read_response(false);
    assert_eq!(r.status, 413);
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["success"], false);

    // Nothing was deployed by any of these.
    let (_, v) = get_api(a, &format!("{BASE}/customers"));
    assert_eq!(v["result"]["script_count"], 0);
}

#[test]
fn secrets_and_tags() {
    let n = node();
    let a = admin(&n);
    let script = format!("{BASE}/customers/scripts/carol");
    assert_eq!(
        api(a, "PUT", &script, "application/wasm", &wasm("env_reader")).0,
        200
    );

    let put_secret = |script: &str, text: &str| {
        json_req(
            a,
            "PUT",
            &format!("{script}/secrets"),
            json!({"name": "TOKEN", "text": text, "type": "secret_text"}),
        )
    };
    let (s, v) = put_secret(&script, "hunter2");
    assert_eq!(s, 200);
    assert_eq!(v["result"], json!({"name": "TOKEN", "type": "secret_text"}));
    assert_eq!(
        get(n.addr, "carol.example.test", "/?name=TOKEN").text(),
        "hunter2"
    );
    // A publish reads again only the secrets of the scripts it changed: another script's
    // secret and a rotation of this one are both seen.
    let other = format!("{BASE}/customers/scripts/dave");
    assert_eq!(
        api(a, "PUT", &other, "application/wasm", &wasm("env_reader")).0,
        200
    );
    assert_eq!(put_secret(&other, "dave's").0, 200);
    assert_eq!(put_secret(&script, "hunter3").0, 200);
    assert_eq!(
        get(n.addr, "carol.example.test", "/?name=TOKEN").text(),
        "hunter3"
    );
    assert_eq!(
        get(n.addr, "dave.example.test", "/?name=TOKEN").text(),
        "dave's"
    );
    assert_eq!(api(a, "DELETE", &other, "", b"").0, 200);
    assert_eq!(
        get(n.addr, "carol.example.test", "/?name=TOKEN").text(),
        "hunter3"
    );
    let (_, v) = get_api(a, &format!("{script}/secrets"));
    assert_eq!(
        v["result"],
        json!([{"name": "TOKEN", "type": "secret_text"}])
    );
    let (s, v) = get_api(a, &format!("{script}/secrets/TOKEN"));
    assert_eq!(s, 200);
    assert!(!v.to_string().contains("hunter2"));
    assert_eq!(
        api(a, "DELETE", &format!("{script}/secrets/TOKEN"), "", b"").0,
        200
    );
    assert_eq!(get_api(a, &format!("{script}/secrets/TOKEN")).0, 404);
    assert_eq!(
        get(n.addr, "carol.example.test", "/?name=TOKEN").status,
        404
    );

    let (s, v) = api(
        a,
        "PUT",
        &format!("{script}/tags"),
        "application/json",
        br#"["b", "a", "b"]"#,
    );
    assert_eq!((s, &v["result"]), (200, &json!(["b", "a"])));
    assert_eq!(api(a, "PUT", &format!("{script}/tags/c"), "", b"").0, 200);
    assert_eq!(
        api(a, "DELETE", &format!("{script}/tags/b"), "", b"").0,
        200
    );
    assert_eq!(
        get_api(a, &format!("{script}/tags")).1["result"],
        json!(["a", "c"])
    );
    let (s, v) = api(
        a,
        "PUT",
        &format!("{script}/tags"),
        "application/json",
        br#"["x,y"]"#,
    );
    assert_eq!(s, 400);
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("may not contain `,` or `&`")
    );
}

#[test]
fn lists_filter_by_tags_page_and_bulk_delete() {
    let n = node();
    let a = admin(&n);
    let hello = wasm("hello");
    for i in 0..7 {
        let tag = if i % 2 == 0 { "even" } else { "odd" };
        let meta = json!({"main_module": "w.wasm", "tags": [tag, format!("customer-{i}")]});
        let (ct, body) = multipart(meta, "w.wasm", &hello);
        assert_eq!(
            api(
                a,
                "PUT",
                &format!("{BASE}/customers/scripts/w{i}"),
                &ct,
                &body
            )
            .0,
            200
        );
    }
    let ids = |v: &Value| -> Vec<String> {
        v["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, v) = get_api(a, &format!("{BASE}/customers/scripts?tags=even:yes"));
    assert_eq!(ids(&v), ["w0", "w2", "w4", "w6"]);
    let (_, v) = get_api(
        a,
        &format!("{BASE}/customers/scripts?tags=even:no,customer-3:no"),
    );
    assert_eq!(ids(&v), ["w1", "w5"]);

    // Paging: 3 at a time, following the cursor.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let (_, v) = get_api(
            a,
            &format!("{BASE}/customers/scripts?limit=3&cursor={cursor}"),
        );
        seen.extend(ids(&v));
        cursor = v["result_info"]["cursor"].as_str().unwrap().to_string();
        if cursor.is_empty() {
            break;
        }
    }
    assert_eq!(seen, ["w0", "w1", "w2", "w3", "w4", "w5", "w6"]);
    assert_eq!(
        get_api(a, &format!("{BASE}/customers/scripts?limit=0")).0,
        400
    );
    assert_eq!(
        get_api(a, &format!("{BASE}/customers/scripts?tags=a:maybe")).0,
        400
    );

    assert_eq!(
        api(a, "DELETE", &format!("{BASE}/customers/scripts"), "", b"").0,
        400
    );
    let (s, v) = api(
        a,
        "DELETE",
        &format!("{BASE}/customers/scripts?tags=odd:yes"),
        "",
        b"",
    );
    assert_eq!((s, &v["result_info"]["deleted_count"]), (200, &json!(3)));
    let (_, v) = get_api(a, &format!("{BASE}/customers/scripts"));
    assert_eq!(ids(&v), ["w0", "w2", "w4", "w6"]);
    assert_eq!(get(n.addr, "w1.example.test", "/").status, 404);
    assert_eq!(get(n.addr, "w2.example.test", "/").status, 200);
}

#[test]
fn every_request_needs_credentials() {
    let n = node();
    let a = admin(&n);
    let r = request(a, "GET", "admin", BASE, &[], b"");
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!((r.status, error_code(&v)), (401, 9106));
    let r = request(
        a,
        "GET",
        "admin",
        BASE,
        &[("Authorization", "Bearer wrong")],
        b"",
    );
    assert_eq!(r.status, 403);
    let r = request(
        a,
        "GET",
        "admin",
        "/anything",
        &[("Authorization", "Bearer wrong")],
        b"",
    );
    assert_eq!(r.status, 403, "auth comes before routing");
    let r = request(
        a,
        "GET",
        "admin",
        BASE,
        &[
            ("X-Auth-Email", "ops@example.test"),
            ("X-Auth-Key", "legacy-key"),
        ],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = request(
        a,
        "GET",
        "admin",
        BASE,
        &[("X-Auth-Email", "ops@example.test"), ("X-Auth-Key", "nope")],
        b"",
    );
    assert_eq!(r.status, 403);
}

#[test]
fn concurrent_uploads_and_redeploys_under_traffic() {
    let n = node();
    let a = admin(&n);
    let path = format!("{BASE}/customers/scripts/live");
    assert_eq!(
        api(a, "PUT", &path, "application/wasm", &wasm("hello")).0,
        200
    );

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let addr = n.addr;
    let traffic = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut conn = Conn::open(addr);
            let mut served = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                conn.send(b"GET / HTTP/1.1\r\nHost: live.example.test\r\n\r\n");
                let r = conn.read_response(false);
                assert_eq!(
                    r.status,
                    200,
                    "a request failed during redeploys: {}",
                    r.text()
                );
                let body = r.text();
                assert!(
                    body == "hello from tenantry\n" || body.starts_with("GET http://live"),
                    "{body}"
                );
                served += 1;
            }
            served
        })
    };
    let uploaders: Vec<_> = (0..2)
        .map(|t| {
            let path = path.clone();
            std::thread::spawn(move || {
                for i in 0..4 {
                    let module = wasm(if (i + t) % 2 == 0 { "echo" } else { "hello" });
                    let (s, v) = api(a, "PUT", &path, "application/wasm", &module);
                    assert_eq!(s, 200, "{v}");
                }
            })
        })
        .collect();
    for u in uploaders {
        u.join().unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let served = traffic.join().unwrap();
    assert!(served > 0);
    let (_, v) = get_api(a, &format!("{BASE}/customers"));
    assert_eq!(v["result"]["script_count"], 1);
}

#[test]
fn a_restart_finds_everything_deployed_through_the_api() {
    let body = "[[namespace]]\nname = \"customers\"\n\
         [[route]]\nhost = \"*.example.test\"\nnamespace = \"customers\"\nscript_from = \"host_label\"\n";
    let mut n = TestNode::start(body);
    let a = admin(&n);
    assert_eq!(json_req(a, "POST", BASE, json!({"name": "extra"})).0, 200);
    let meta = json!({"main_module": "w.wasm", "tags": ["t1"], "bindings": [{"type": "secret_text", "name": "K", "text": "v"}]});
    let (ct, body_bytes) = multipart(meta, "w.wasm", &wasm("env_reader"));
    assert_eq!(
        api(
            a,
            "PUT",
            &format!("{BASE}/customers/scripts/dave"),
            &ct,
            &body_bytes
        )
        .0,
        200
    );

    n.restart(body);
    let a = admin(&n);
    let (_, v) = get_api(a, BASE);
    let names: Vec<&str> = v["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["namespace_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["customers", "extra"]);
    let (_, v) = get_api(a, &format!("{BASE}/customers/scripts/dave/tags"));
    assert_eq!(v["result"], json!(["t1"]));
    assert_eq!(get(n.addr, "dave.example.test", "/?name=K").text(), "v");
}

#[test]
fn credentials_are_checked_before_a_body_is_read() {
    let n = node();
    // A 50 MB upload announced without credentials: refused from the head at once, without
    // waiting for (or buffering) a body that never comes.
    for auth in ["", "Authorization: Bearer wrong\r\n"] {
        let mut c = Conn::open(admin(&n));
        c.send(
            format!(
                "PUT {BASE}/customers/scripts/x HTTP/1.1\r\nHost: admin\r\n{auth}\
                 Content-Type: application/wasm\r\nContent-Length: 50000000\r\n\r\n"
            )
            .as_bytes(),
        );
        let r = c.read_response(false);
        assert!(
            r.status == 401 || r.status == 403,
            "{}: {}",
            r.status,
            r.text()
        );
        assert_eq!(r.header("connection"), Some("close"));
        assert!(r.text().contains("Auth"), "{}", r.text());
    }
}

#[test]
fn one_set_of_name_rules_and_paths_decoded_once() {
    let n = node();
    let a = admin(&n);
    // Reserved and malformed script names.
    for bad in ["_platform", "-", "_x", "A"] {
        let (s, v) = api(
            a,
            "PUT",
            &format!("{BASE}/customers/scripts/{bad}"),
            "application/wasm",
            &wasm("hello"),
        );
        assert_eq!(s, 400, "{bad}: {v}");
    }
    let script = format!("{BASE}/customers/scripts/dave");
    assert_eq!(
        api(a, "PUT", &script, "application/wasm", &wasm("env_reader")).0,
        200
    );
    // Secret names are binding names: JavaScript identifiers.
    for bad in ["../etc/passwd", "A\nB", "2FA", "a-b", ""] {
        let (s, v) = json_req(
            a,
            "PUT",
            &format!("{script}/secrets"),
            json!({"name": bad, "text": "x", "type": "secret_text"}),
        );
        assert_eq!(s, 400, "{bad:?}: {v}");
    }
    // A tag with a space, in a percent-encoded path: added and removed by the same name.
    assert_eq!(
        api(a, "PUT", &format!("{script}/tags/plan%20pro"), "", b"").0,
        200
    );
    assert_eq!(
        get_api(a, &format!("{script}/tags")).1["result"],
        json!(["plan pro"])
    );
    assert_eq!(
        api(a, "DELETE", &format!("{script}/tags/plan%20pro"), "", b"").0,
        200
    );
    assert_eq!(get_api(a, &format!("{script}/tags")).1["result"], json!([]));
    // Decoded once: `%2520` is the literal text `%20`, a different tag.
    assert_eq!(
        api(a, "PUT", &format!("{script}/tags/x%2520y"), "", b"").0,
        200
    );
    assert_eq!(
        get_api(a, &format!("{script}/tags")).1["result"],
        json!(["x%20y"])
    );
}
