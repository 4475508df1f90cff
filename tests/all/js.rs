//! JavaScript Workers end to end (issue 11): uploaded as Cloudflare's API takes them (raw
//! service-worker scripts, multipart ES modules with imports) or deployed from the config file,
//! compiled at upload, served on real sockets, limited like wasm Workers.

use std::net::SocketAddr;

use serde_json::{Value, json};

use crate::common::*;

const TOKEN: &str = "test-token";
const BASE: &str = "/client/v4/accounts/acct-1/workers/dispatch/namespaces";

fn node() -> TestNode {
    TestNode::start(
        "[[namespace]]\nname = \"customers\"\n\
         [[route]]\nhost = \"*.example.test\"\nnamespace = \"customers\"\nscript_from = \"host_label\"\n",
    )
}

fn admin(node: &TestNode) -> SocketAddr {
    node.node.as_ref().unwrap().admin_addr().unwrap()
}

/// An admin request with the test token: status and body.
fn api(addr: SocketAddr, method: &str, path: &str, content_type: &str, body: &[u8]) -> Resp {
    let auth = format!("Bearer {TOKEN}");
    let mut headers = vec![("Authorization", auth.as_str())];
    if !content_type.is_empty() {
        headers.push(("Content-Type", content_type));
    }
    request(addr, method, "admin", path, &headers, body)
}

/// The message of an upload refused with `400`.
fn rejected(r: &Resp) -> String {
    assert_eq!(r.status, 400, "{}", r.text());
    envelope(r)["errors"][0]["message"]
        .as_str()
        .unwrap()
        .to_string()
}

fn envelope(r: &Resp) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.text()))
}

/// `multipart/form-data` with a `metadata` part and the given (name, content type, bytes) parts.
pub(crate) fn form(metadata: Value, parts: &[(&str, &str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "----tenantry-js-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\
         Content-Type: application/json\r\n\r\n{metadata}\r\n"
    )
    .into_bytes();
    for (name, ct, bytes) in parts {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; \
                 filename=\"{name}\"\r\nContent-Type: {ct}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn put_raw(n: &TestNode, name: &str, script: &str) -> Resp {
    api(
        admin(n),
        "PUT",
        &format!("{BASE}/customers/scripts/{name}"),
        "application/javascript",
        script.as_bytes(),
    )
}

fn put_modules(n: &TestNode, name: &str, metadata: Value, parts: &[(&str, &str, &[u8])]) -> Resp {
    let (ct, body) = form(metadata, parts);
    api(
        admin(n),
        "PUT",
        &format!("{BASE}/customers/scripts/{name}"),
        &ct,
        &body,
    )
}

const MODULE: &str = "application/javascript+module";

/// The upload example of Cloudflare's Workers for Platforms documents, verbatim but for
/// `new Response(...)` in place of `fetch(event.request)` (subrequests from JavaScript are the
/// next issue's).
#[test]
fn the_documents_raw_service_worker_upload_runs() {
    let n = node();
    let r = put_raw(
        &n,
        "alice",
        "addEventListener('fetch', event => { event.respondWith(new Response('Hello from alice')) })",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let resp = get(n.addr, "alice.example.test", "/");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.text(), "Hello from alice");
    assert_eq!(
        resp.header("content-type"),
        Some("text/plain;charset=UTF-8")
    );

    // The content API gives the script back as uploaded.
    let c = api(
        admin(&n),
        "GET",
        &format!("{BASE}/customers/scripts/alice/content"),
        "",
        b"",
    );
    assert_eq!(c.status, 200);
    assert_eq!(c.header("content-type"), Some("application/javascript"));
    assert!(
        c.text().starts_with("addEventListener('fetch'"),
        "{}",
        c.text()
    );
}

#[test]
fn a_module_worker_imports_modules_text_and_data_and_reads_its_bindings() {
    let n = node();
    let main = br#"
        import { greet } from "./lib/greet.js";
        import page from "./page.html";
        import blob from "./blob.bin";
        export default {
          async fetch(request, env, ctx) {
            const url = new URL(request.url);
            const body = {
              greeting: greet(url.searchParams.get("name") ?? "nobody"),
              page,
              blob: Array.from(new Uint8Array(blob)),
              plain: env.PLAIN,
              json: env.SETTINGS.level,
              secret: env.SECRET.length,
              method: request.method,
            };
            return Response.json(body, { headers: { "x-worker": "modules" } });
          },
        };
    "#;
    let greet = br#"export function greet(name) { return `hello, ${name}`; }"#;
    let r = put_modules(
        &n,
        "bob",
        json!({
            "main_module": "worker.mjs",
            "bindings": [
                {"type": "plain_text", "name": "PLAIN", "text": "plain value"},
                {"type": "json", "name": "SETTINGS", "json": {"level": 3}},
                {"type": "secret_text", "name": "SECRET", "text": "hunter2"},
            ],
        }),
        &[
            ("worker.mjs", MODULE, main),
            ("lib/greet.js", MODULE, greet),
            ("page.html", "text/plain", b"<p>hi</p>"),
            ("blob.bin", "application/octet-stream", &[1, 2, 3]),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let resp = get(n.addr, "bob.example.test", "/?name=carol");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(resp.header("x-worker"), Some("modules"));
    let v: Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(
        v,
        json!({
            "greeting": "hello, carol",
            "page": "<p>hi</p>",
            "blob": [1, 2, 3],
            "plain": "plain value",
            "json": 3,
            "secret": 7,
            "method": "GET",
        })
    );

    // The content API answers multipart, one part per module, the main module named.
    let c = api(
        admin(&n),
        "GET",
        &format!("{BASE}/customers/scripts/bob/content"),
        "",
        b"",
    );
    assert_eq!(c.status, 200);
    assert_eq!(c.header("cf-entrypoint"), Some("worker.mjs"));
    assert!(
        c.header("content-type")
            .unwrap()
            .starts_with("multipart/form-data; boundary=")
    );
    let text = c.text();
    assert!(text.contains("name=\"lib/greet.js\""), "{text}");
    assert!(text.contains("export function greet"), "{text}");
}

#[test]
fn compile_errors_are_400s_naming_file_line_and_column() {
    let n = node();
    let r = put_modules(
        &n,
        "broken",
        json!({"main_module": "worker.mjs"}),
        &[(
            "worker.mjs",
            MODULE,
            b"export default {\n  fetch() { return 1 +; }\n};\n",
        )],
    );
    let message = rejected(&r);
    assert!(message.starts_with("worker.mjs:2:"), "{message}");
    assert!(message.contains("SyntaxError"), "{message}");

    let r = put_modules(
        &n,
        "broken",
        json!({"main_module": "worker.mjs"}),
        &[(
            "worker.mjs",
            MODULE,
            b"import { x } from \"./missing.js\";\nexport default { fetch() { return new Response(x); } };",
        )],
    );
    let message = rejected(&r);
    assert!(message.contains("./missing.js"), "{message}");
    assert!(message.contains("worker.mjs"), "{message}");

    let r = put_raw(&n, "broken", "const x = 1;");
    let message = rejected(&r);
    assert!(message.contains("fetch"), "{message}");

    // Nothing was deployed.
    assert_eq!(get(n.addr, "broken.example.test", "/").status, 404);
}

#[test]
fn an_uncaught_exception_is_a_500_and_the_node_keeps_serving() {
    let n = node();
    let r = put_modules(
        &n,
        "thrower",
        json!({"main_module": "worker.mjs"}),
        &[(
            "worker.mjs",
            MODULE,
            b"export default { async fetch(request) {\n\
              if (new URL(request.url).pathname === '/ok') return new Response('fine');\n\
              throw new Error('secret detail 42'); } };",
        )],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let resp = get(n.addr, "thrower.example.test", "/");
    assert_eq!(resp.status, 500);
    assert!(!resp.text().contains("secret detail 42"), "{}", resp.text());
    assert_eq!(get(n.addr, "thrower.example.test", "/ok").text(), "fine");
}

#[test]
fn limits_end_loops_and_handlers_that_never_settle() {
    let n = node();
    let r = put_modules(
        &n,
        "looper",
        json!({"main_module": "worker.mjs", "limits": {"cpu_ms": 20, "wall_ms": 500}}),
        &[(
            "worker.mjs",
            MODULE,
            b"export default { async fetch(request) {\n\
              const path = new URL(request.url).pathname;\n\
              if (path === '/loop') { for (;;) {} }\n\
              if (path === '/hang') { return new Promise(() => {}); }\n\
              if (path === '/timer') { await new Promise(r => setTimeout(r, 5)); return new Response('timer'); }\n\
              if (path === '/sleepy') { await new Promise(r => setTimeout(r, 60000)); }\n\
              return new Response('ok'); } };",
        )],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let resp = get(n.addr, "looper.example.test", "/loop");
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert!(resp.text().contains("CPU"), "{}", resp.text());
    assert_eq!(get(n.addr, "looper.example.test", "/timer").text(), "timer");
    let resp = get(n.addr, "looper.example.test", "/sleepy");
    assert_eq!(resp.status, 503, "{}", resp.text());
    let resp = get(n.addr, "looper.example.test", "/hang");
    assert!(resp.status >= 500, "{}", resp.text());
    assert_eq!(get(n.addr, "looper.example.test", "/").text(), "ok");
}

#[test]
fn config_file_deploys_js_workers_single_and_list_forms() {
    let dir = tempfile::tempdir().unwrap();
    let sw = dir.path().join("sw.js");
    std::fs::write(
        &sw,
        "addEventListener('fetch', e => e.respondWith(new Response('from sw: ' + GREETING)));",
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("mods/lib")).unwrap();
    std::fs::write(
        dir.path().join("mods/main.mjs"),
        "import { n } from './lib/n.mjs'; import t from './hello.txt';\n\
         export default { fetch() { return new Response(t.trim() + ' ' + n); } };",
    )
    .unwrap();
    std::fs::write(dir.path().join("mods/lib/n.mjs"), "export const n = 42;").unwrap();
    std::fs::write(dir.path().join("mods/hello.txt"), "hello text\n").unwrap();
    let n = TestNode::start(&format!(
        "[[namespace]]\nname = \"c\"\n\
         [[worker]]\nnamespace = \"c\"\nname = \"sw\"\nmodule = \"{}\"\n\
         bindings = [{{ type = \"plain_text\", name = \"GREETING\", text = \"hi\" }}]\n\
         [[worker]]\nnamespace = \"c\"\nname = \"mods\"\nmodule = [\"{}\", \"{}\", \"{}\"]\n\
         [[route]]\nhost = \"*.example.test\"\nnamespace = \"c\"\nscript_from = \"host_label\"\n",
        sw.display(),
        dir.path().join("mods/main.mjs").display(),
        dir.path().join("mods/lib/n.mjs").display(),
        dir.path().join("mods/hello.txt").display(),
    ));
    assert_eq!(get(n.addr, "sw.example.test", "/").text(), "from sw: hi");
    assert_eq!(
        get(n.addr, "mods.example.test", "/").text(),
        "hello text 42"
    );
}

/// The README's run command serves `examples/tenantry.toml`: its JavaScript Workers (an ES-module
/// Worker given as a list, a service worker) answer as their comments say.
#[test]
fn the_example_js_workers_serve() {
    let dir = tempfile::tempdir().unwrap();
    let mut config =
        tenantry::config::Config::load(&repo_root().join("examples/tenantry.toml")).unwrap();
    config.data_dir = dir.path().join("data");
    config.server.addr = "127.0.0.1:0".parse().unwrap();
    config.server.threads = 1;
    config.admin = None;
    let node = tenantry::serve::Node::start(&config).unwrap();
    let addr = node.local_addr();
    let r = get(addr, "dave.example.test", "/?name=you");
    assert_eq!(r.status, 200, "{}", r.text());
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["message"], "Hello, you!");
    // SHA-256 of "you".
    assert_eq!(
        v["sha256"],
        "bb0347a468d97e98a9c00e37cebec1ab930f6f1221cae0f1fbb92b07e1900ba2"
    );
    let r = get(addr, "dave.example.test", "/about");
    assert!(
        r.text().starts_with("dave is an ES-module Worker"),
        "{}",
        r.text()
    );
    let r = get(addr, "erin.example.test", "/x");
    assert_eq!(r.text(), "Hi from a service worker at /x\n");
    node.shutdown();
}

/// An `async` handler that never awaits has a fulfilled promise when it returns, and the engine
/// takes its `Response` without a microtask turn; what it answers must not change: a microtask
/// the handler queued still runs before the response is read, a thenable is still followed, a
/// value that is no `Response` and a throw are still 500s. Bytes as workerd 1.20261117 answers
/// them (its `x-late: 1` included).
#[test]
fn an_async_handler_that_never_awaits_answers_as_workerd_does() {
    let n = node();
    let worker = br#"
        export default {
          async fetch(request) {
            const path = new URL(request.url).pathname;
            if (path === "/late") {
              const r = new Response("late");
              Promise.resolve().then(() => r.headers.set("x-late", "1"));
              return r;
            }
            if (path === "/thenable") return { then(f) { f(new Response("thenable", { status: 202 })); } };
            if (path === "/made") return new Response("made", { status: 201, headers: { "x-a": "b" } });
            if (path === "/string") return "not a response";
            throw new Error("boom");
          },
        };
    "#;
    let r = put_modules(
        &n,
        "eager",
        json!({"main_module": "worker.mjs"}),
        &[("worker.mjs", MODULE, worker)],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    for _ in 0..3 {
        let late = get(n.addr, "eager.example.test", "/late");
        assert_eq!((late.status, late.text().as_str()), (200, "late"));
        assert_eq!(late.header("x-late"), Some("1"), "{:?}", late.headers);
        let thenable = get(n.addr, "eager.example.test", "/thenable");
        assert_eq!(
            (thenable.status, thenable.text().as_str()),
            (202, "thenable")
        );
        let made = get(n.addr, "eager.example.test", "/made");
        assert_eq!((made.status, made.text().as_str()), (201, "made"));
        assert_eq!(made.header("x-a"), Some("b"));
        assert_eq!(
            made.header("content-type"),
            Some("text/plain;charset=UTF-8")
        );
        for path in ["/string", "/throw"] {
            let failed = get(n.addr, "eager.example.test", path);
            assert_eq!(
                (failed.status, failed.text().as_str()),
                (500, "Internal Server Error"),
                "{path}"
            );
        }
    }
}

/// The runtime API of issue 11, section 2, through a real node: one Worker exercises each API and
/// answers what it saw; the bytes of the answers workerd gives for the same calls are asserted.
#[test]
fn the_runtime_api_behaves_as_workerd_does() {
    let n = node();
    let worker = br#"
        export default {
          async fetch(request, env, ctx) {
            const url = new URL(request.url);
            const path = url.pathname;
            if (path === "/redirect") return Response.redirect("https://example.com/next", 301);
            if (path === "/headers") {
              const h = new Headers([["X-B", "1"], ["x-a", "2"]]);
              h.append("x-b", "3");
              return new Response(null, { status: 204, headers: h });
            }
            if (path === "/echo") {
              const body = await request.text();
              return new Response(body.toUpperCase(), {
                status: 201, statusText: "Made",
                headers: { "x-method": request.method, "x-type": request.headers.get("content-type") },
              });
            }
            if (path === "/bytes") return new Response(new Uint8Array([104, 105]));
            const out = {};
            const h = new Headers({ "Content-Type": "a" });
            h.append("content-type", "b");
            out.joined = h.get("CONTENT-TYPE");
            out.headerKeys = [...h.keys()];
            out.search = [...new URLSearchParams("a=1&b=2&a=3").getAll("a")];
            const u = new URL("../x?y=1#z", "https://h.example/a/b/c");
            out.url = [u.href, u.host, u.pathname, u.search, u.hash];
            u.searchParams.append("q", "a b");
            out.urlAfter = u.search;
            out.encoded = [...new TextEncoder().encode("h\u00e9llo")];
            out.decoded = new TextDecoder().decode(new Uint8Array([0xe2, 0x82, 0xac]));
            out.b64 = [btoa("hello"), atob("aGVsbG8=")];
            const original = { d: new Date(0), m: new Map([[1, { x: [1, 2] }]]), s: new Set(["a"]) };
            const copy = structuredClone(original);
            out.clone = [copy.d.getTime(), copy.m.get(1).x, [...copy.s], copy.m !== original.m];
            const order = [];
            queueMicrotask(() => order.push("micro"));
            await new Promise((resolve) => setTimeout(() => { order.push("timer"); resolve(); }, 1));
            const cancelled = setTimeout(() => order.push("never"), 0);
            clearTimeout(cancelled);
            await new Promise((resolve) => setTimeout(resolve, 2));
            out.order = order;
            const r = new Uint8Array(16);
            crypto.getRandomValues(r);
            out.random = r.some((b) => b !== 0);
            out.uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(crypto.randomUUID());
            const hex = (buf) => [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, "0")).join("");
            const abc = new TextEncoder().encode("abc");
            out.digests = {};
            for (const alg of ["SHA-1", "SHA-256", "SHA-384", "SHA-512"]) {
              out.digests[alg] = hex(await crypto.subtle.digest(alg, abc)).slice(0, 16);
            }
            const key = await crypto.subtle.importKey("raw", new TextEncoder().encode("Jefe"),
              { name: "HMAC", hash: "SHA-256" }, false, ["sign", "verify"]);
            const data = new TextEncoder().encode("what do ya want for nothing?");
            const mac = await crypto.subtle.sign("HMAC", key, data);
            out.hmac = hex(mac);
            out.verify = [await crypto.subtle.verify("HMAC", key, mac, data),
                          await crypto.subtle.verify("HMAC", key, new Uint8Array(32), data)];
            const res = new Response("text body");
            const res2 = res.clone();
            out.bodies = [await res.text(), (await res2.arrayBuffer()).byteLength, res.ok, res.status, res.statusText];
            out.json = await Response.json({ a: [1] }).json();
            try { new Response("x", { status: 99 }); } catch (e) { out.badStatus = e.constructor.name; }
            try { await res.text(); } catch (e) { out.usedBody = e.constructor.name; }
            console.log("logged", { a: 1 });
            return Response.json(out);
          },
        };
    "#;
    let r = put_modules(
        &n,
        "api",
        json!({"main_module": "worker.mjs"}),
        &[("worker.mjs", MODULE, worker)],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let resp = get(n.addr, "api.example.test", "/");
    assert_eq!(resp.status, 200, "{}", resp.text());
    let v: Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(
        v,
        json!({
            "joined": "a, b",
            "headerKeys": ["content-type"],
            "search": ["1", "3"],
            "url": ["https://h.example/a/x?y=1#z", "h.example", "/a/x", "?y=1", "#z"],
            "urlAfter": "?y=1&q=a+b",
            "encoded": [104, 195, 169, 108, 108, 111],
            "decoded": "€",
            "b64": ["aGVsbG8=", "hello"],
            "clone": [0, [1, 2], ["a"], true],
            "order": ["micro", "timer"],
            "random": true,
            "uuid": true,
            "digests": {
                "SHA-1": "a9993e364706816a",
                "SHA-256": "ba7816bf8f01cfea",
                "SHA-384": "cb00753f45a35e8b",
                "SHA-512": "ddaf35a193617aba",
            },
            "hmac": "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            "verify": [true, false],
            "bodies": ["text body", 9, true, 200, ""],
            "json": {"a": [1]},
            "badStatus": "RangeError",
            "usedBody": "TypeError",
        })
    );

    let r = get(n.addr, "api.example.test", "/redirect");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("https://example.com/next"));
    let r = get(n.addr, "api.example.test", "/headers");
    assert_eq!(r.status, 204);
    // As workerd writes them: one field line per appended value.
    let xb: Vec<&str> = r
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("x-b"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(xb, ["1", "3"]);
    assert!(r.body.is_empty());
    let r = request(
        n.addr,
        "POST",
        "api.example.test",
        "/echo",
        &[("Content-Type", "text/plain")],
        b"shout",
    );
    assert_eq!(r.status, 201);
    assert_eq!(r.text(), "SHOUT");
    assert_eq!(r.header("x-method"), Some("POST"));
    assert_eq!(r.header("x-type"), Some("text/plain"));
    let r = get(n.addr, "api.example.test", "/bytes");
    assert_eq!(r.text(), "hi");
}

/// JavaScript Workers keep instances for reuse by default (as Cloudflare keeps isolates): a
/// Worker's globals survive between its own requests on a core; `reuse_instances: 0` gives a
/// fresh instance per request, as for wasm Workers.
#[test]
fn js_workers_reuse_instances_by_default_and_zero_means_fresh() {
    let n = node();
    let counter: &[u8] =
        b"let n = 0; export default { fetch() { n += 1; return new Response(String(n)); } };";
    for (name, metadata) in [
        ("kept", json!({"main_module": "worker.mjs"})),
        (
            "fresh",
            json!({"main_module": "worker.mjs", "reuse_instances": 0}),
        ),
    ] {
        let r = put_modules(&n, name, metadata, &[("worker.mjs", MODULE, counter)]);
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // One connection: every request on the same core, one after the other.
    let answers = |host: &str| {
        let mut conn = Conn::open(n.addr);
        (0..3)
            .map(|_| {
                conn.send(format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
                conn.read_response(false).text()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(answers("kept.example.test"), ["1", "2", "3"]);
    assert_eq!(answers("fresh.example.test"), ["1", "1", "1"]);
    let r = put_modules(
        &n,
        "greedy",
        json!({"main_module": "worker.mjs", "reuse_instances": 100000}),
        &[("worker.mjs", MODULE, counter)],
    );
    assert_eq!(r.status, 400, "{}", r.text());
}
