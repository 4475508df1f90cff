//! JavaScript Workers reach the platform (issue 12): global `fetch()` to a real upstream on
//! 127.0.0.1 through the node's client and egress policy, KV bindings on the node's store,
//! service bindings, and dispatch namespace bindings with per-call limits, all through the same
//! `tenantry:worker/v1` calls as wasm Workers.

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

use crate::common::*;

/// A keep-alive HTTP/1.1 upstream on 127.0.0.1. `/redirect/<n>` answers `302` to
/// `/redirect/<n-1>` (`/redirect/0` to `/landed`); every other request is answered `200` with
/// `x-upstream: yes` and the body `<request line>\n<header lines>\n\n<body>`.
fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            std::thread::spawn(move || serve(stream));
        }
    });
    addr
}

fn serve(stream: TcpStream) {
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let Some((head, body)) = read_upstream_request(&mut reader) else {
            return;
        };
        let target = head[0].split(' ').nth(1).unwrap_or("/").to_string();
        let response = if let Some(n) = target.strip_prefix("/redirect/") {
            let n: u32 = n.parse().unwrap();
            let to = if n == 0 {
                "/landed".to_string()
            } else {
                format!("/redirect/{}", n - 1)
            };
            format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\n\r\n")
                .into_bytes()
        } else {
            let mut text = format!("{}\n\n", head.join("\n")).into_bytes();
            text.extend_from_slice(&body);
            let mut r = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nx-upstream: yes\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n",
                text.len()
            )
            .into_bytes();
            r.extend_from_slice(&text);
            r
        };
        if out.write_all(&response).is_err() {
            return;
        }
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// The fetcher: `/?url=…&case=…` fetches `url` in the way `case` names and describes the result.
const FETCHER: &str = r#"
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const target = url.searchParams.get("url");
    const describe = async (r) =>
      `${r.status} ${r.headers.get("x-upstream")} ${r.headers.getSetCookie().join("|")}\n${await r.text()}`;
    try {
      switch (url.searchParams.get("case")) {
        case "get":
          return new Response(await describe(await fetch(target, { headers: { "x-from": "js" } })));
        case "put-bytes":
          return new Response(await describe(await fetch(new Request(target, {
            method: "put", body: new Uint16Array([0x6968]), headers: new Headers({ "content-type": "x/y" }) }))));
        case "url-object":
          return new Response(await describe(await fetch(new URL(target), { method: "POST", body: "text body" })));
        case "json": {
          const r = await fetch(target, { method: "POST", body: JSON.stringify({ a: 1 }) });
          const text = await r.text();
          return Response.json({ status: r.status, ok: r.ok, first: text.split("\n")[0] });
        }
        case "array-buffer": {
          const b = await (await fetch(target)).arrayBuffer();
          return new Response(`${b.byteLength} ${b instanceof ArrayBuffer}`);
        }
        case "stream": {
          const reader = (await fetch(target)).body.getReader();
          let n = 0;
          for (;;) { const { done, value } = await reader.read(); if (done) break; n += value.length; }
          return new Response(`streamed ${n}`);
        }
        case "manual": {
          const r = await fetch(target, { redirect: "manual" });
          return new Response(`${r.status} ${r.headers.get("location")}`);
        }
        case "url": {
          const r = await fetch(target + '#frag');
          const c = r.clone();
          return new Response(`${r.url} ${r.redirected} ${c.url} ${c.redirected} ${JSON.stringify(new Response("x").url)}`);
        }
        case "url-manual": {
          const r = await fetch(target, { redirect: "manual" });
          return new Response(`${r.status} ${r.url} ${r.redirected}`);
        }
        case "twice": {
          await fetch(target);
          await fetch(target);
          return new Response("both");
        }
        case "forward":
          return fetch(request);
        case "returned":
          return fetch(target);
        case "rewrapped": {
          const r = await fetch(target);
          const out = new Response(r.body, r);
          out.headers.set("x-upstream", "rewritten");
          out.headers.delete("set-cookie");
          return out;
        }
      }
      return new Response("no case", { status: 400 });
    } catch (e) {
      return new Response(`${e.name}: ${e.message}`, { status: 502 });
    }
  },
};
"#;

fn q(url: &str) -> String {
    url.replace(':', "%3A").replace('/', "%2F")
}

fn fetcher_node(dir: &Path, allow: &str) -> TestNode {
    let main = write(dir, "fetcher.mjs", FETCHER);
    TestNode::start(&format!(
        "[subrequests]\nallow = [{allow}]\n\
         [[namespace]]\nname = \"c\"\n\
         [[worker]]\nnamespace = \"c\"\nname = \"fetcher\"\nmodule = \"{main}\"\n\
         [[worker]]\nnamespace = \"c\"\nname = \"budget\"\nmodule = \"{main}\"\nlimits = {{ subrequests = 1 }}\n\
         [[route]]\nhost = \"fetcher.test\"\nnamespace = \"c\"\nscript = \"fetcher\"\n\
         [[route]]\nhost = \"budget.test\"\nnamespace = \"c\"\nscript = \"budget\"\n\
         [[route]]\nhost = \"127.0.0.1\"\nnamespace = \"c\"\nscript = \"fetcher\"\n"
    ))
}

#[test]
fn js_fetch_reaches_an_upstream_with_methods_headers_and_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let up = upstream();
    let n = fetcher_node(dir.path(), "\"127.0.0.1\"");
    let at = |case: &str, path: &str| {
        get(
            n.addr,
            "fetcher.test",
            &format!("/?case={case}&url={}", q(&format!("http://{up}{path}"))),
        )
    };

    let r = at("get", "/item?x=1");
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    assert!(
        text.starts_with("200 yes a=1|b=2\nGET /item?x=1 HTTP/1.1\n"),
        "{text}"
    );
    assert!(text.contains("x-from: js"), "{text}");
    assert!(text.contains(&format!("host: {up}")), "{text}");

    // Methods are upper-cased, typed-array bodies sent as their bytes.
    let text = at("put-bytes", "/p").text();
    assert!(text.contains("PUT /p HTTP/1.1"), "{text}");
    assert!(text.contains("content-type: x/y"), "{text}");
    assert!(text.ends_with("\n\nhi"), "{text}");

    // A URL object as input; a string body gets its default content type.
    let text = at("url-object", "/u").text();
    assert!(text.contains("POST /u HTTP/1.1"), "{text}");
    assert!(text.contains("text/plain;charset=UTF-8"), "{text}");
    assert!(text.ends_with("\n\ntext body"), "{text}");

    let r = at("json", "/j");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&r.body).unwrap(),
        serde_json::json!({"status": 200, "ok": true, "first": "POST /j HTTP/1.1"})
    );
    assert!(at("array-buffer", "/b").text().ends_with(" true"));
    assert!(at("stream", "/s").text().starts_with("streamed "));

    // Redirects are followed (Fetch's default), or handed over with `redirect: "manual"`.
    let text = at("get", "/redirect/2").text();
    assert!(text.contains("GET /landed HTTP/1.1"), "{text}");
    assert_eq!(at("manual", "/redirect/0").text(), "302 /landed");
    // Response.url and Response.redirected: the final URL (no fragment), and whether redirects
    // led there; a constructed Response has neither.
    assert_eq!(
        at("url", "/redirect/1").text(),
        format!("http://{up}/landed true http://{up}/landed true \"\"")
    );
    assert_eq!(
        at("url", "/plain").text(),
        format!("http://{up}/plain false http://{up}/plain false \"\"")
    );
    assert_eq!(
        at("url-manual", "/redirect/0").text(),
        format!("302 http://{up}/redirect/0 false")
    );
    let text = at("get", "/redirect/30").text();
    assert!(
        text.starts_with("TypeError: ") && text.contains("too many redirects"),
        "{text}"
    );

    // fetch(request): the incoming request itself (its Host names the upstream), body included.
    let r = request(
        n.addr,
        "POST",
        &up.to_string(),
        "/echo?case=forward",
        &[("x-client", "1")],
        b"forwarded body",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    assert!(
        text.starts_with("POST /echo?case=forward HTTP/1.1\n"),
        "{text}"
    );
    assert!(text.contains("x-client: 1"), "{text}");
    assert!(text.ends_with("\n\nforwarded body"), "{text}");

    // A fetched Response returned unread goes out as it came (the host forwards its body, which
    // never passes through JavaScript); under other headers its body is the same bytes.
    let cookies = |r: &Resp| {
        r.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.clone())
            .collect::<Vec<_>>()
    };
    let r = at("returned", "/as-is");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-upstream"), Some("yes"));
    assert_eq!(cookies(&r), ["a=1", "b=2"]);
    assert!(
        r.text().starts_with("GET /as-is HTTP/1.1\n"),
        "{}",
        r.text()
    );
    let rewrapped = at("rewrapped", "/as-is");
    assert_eq!(rewrapped.status, 200, "{}", rewrapped.text());
    assert_eq!(rewrapped.header("x-upstream"), Some("rewritten"));
    assert!(cookies(&rewrapped).is_empty(), "{:?}", rewrapped.headers);
    assert_eq!(rewrapped.body, r.body);
}

#[test]
fn js_fetch_errors_are_type_errors_that_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let up = upstream();
    // Loopback is not allowed here: the egress policy refuses it.
    let n = fetcher_node(dir.path(), "");
    let r = get(
        n.addr,
        "fetcher.test",
        &format!("/?case=get&url={}", q(&format!("http://{up}/"))),
    );
    assert_eq!(r.status, 502);
    let text = r.text();
    assert!(text.starts_with("TypeError: "), "{text}");
    assert!(
        text.contains("refused") && text.contains("loopback"),
        "{text}"
    );

    // An unparsable URL is the Request constructor's TypeError.
    let r = get(n.addr, "fetcher.test", "/?case=get&url=nope");
    assert!(r.text().starts_with("TypeError: "), "{}", r.text());
}

#[test]
fn js_fetch_spends_the_subrequest_budget() {
    let dir = tempfile::tempdir().unwrap();
    let up = upstream();
    let n = fetcher_node(dir.path(), "\"127.0.0.1\"");
    let r = get(
        n.addr,
        "budget.test",
        &format!("/?case=twice&url={}", q(&format!("http://{up}/"))),
    );
    assert_eq!(r.status, 502, "{}", r.text());
    let text = r.text();
    assert!(text.starts_with("TypeError: "), "{text}");
    assert!(text.contains("subrequest limit of 1"), "{text}");
}

const KV_WORKER: &str = r#"
export default {
  async fetch(request, env) {
    const kv = env.KV;
    const out = [];
    const attempt = async (f) => { try { out.push(String(await f())); } catch (e) { out.push(`${e.name}: ${e.message}`); } };
    await kv.put("a", "hello", { metadata: { v: 1 } });
    await kv.put("j", JSON.stringify({ x: [1, 2] }));
    await kv.put("b", new Uint8Array([1, 2, 3]));
    await kv.put("c", new Uint8Array([7, 8, 9]).buffer, { expirationTtl: 3600 });
    out.push(await kv.get("a"));
    out.push(JSON.stringify(await kv.get("j", "json")));
    out.push(new Uint8Array(await kv.get("b", { type: "arrayBuffer" })).join(","));
    out.push(await new Response(await kv.get("a", "stream")).text());
    const m = await kv.getWithMetadata("a");
    out.push(`${m.value} ${JSON.stringify(m.metadata)} ${m.cacheStatus}`);
    out.push(JSON.stringify(await kv.getWithMetadata("missing")));
    out.push(String(await kv.get("missing")));
    const page = await kv.list({ limit: 2 });
    out.push(`${page.keys.map((k) => k.name).join(",")} ${page.list_complete} ${typeof page.cursor}`);
    const rest = await kv.list({ cursor: page.cursor });
    out.push(`${rest.keys.map((k) => k.name).join(",")} ${rest.list_complete}`);
    const c = (await kv.list({ prefix: "c" })).keys[0];
    out.push(`${c.name} ${typeof c.expiration}`);
    out.push(JSON.stringify((await kv.list({ prefix: "a" })).keys));
    await kv.delete("a");
    out.push(String(await kv.get("a")));
    await attempt(() => kv.put("x", "v", { expirationTtl: 1 }));
    await attempt(() => kv.get("x", "bogus"));
    await attempt(() => kv.put("x", 42));
    await attempt(() => kv.get(""));
    // Several keys at once: a Map, as Cloudflare's bulk read.
    await kv.put("m1", "one", { metadata: { n: 1 } });
    await kv.put("m2", '{"two":2}');
    const many = await kv.get(["m1", "m2", "nope"]);
    out.push(`${many instanceof Map} ${[...many].map(([k, v]) => `${k}=${v}`).join(",")}`);
    out.push(JSON.stringify((await kv.get(["m2"], "json")).get("m2")));
    out.push(JSON.stringify([...(await kv.getWithMetadata(["m1", "nope"], { type: "text", cacheTtl: 3600 }))]));
    out.push(String((await kv.get(Array.from({ length: 100 }, (_, i) => `k${i}`))).size));
    await attempt(() => kv.get(["m1"], "arrayBuffer"));
    await attempt(() => kv.get(Array.from({ length: 101 }, (_, i) => `k${i}`)));
    await attempt(() => kv.get([]));
    await attempt(() => kv.get(["m1"], "json"));
    await attempt(() => kv.get("m1", { cacheTtl: 10 }));
    out.push(await kv.get("m1", { type: "text", cacheTtl: 60 }));
    await attempt(() => kv.get("x".repeat(513)));
    await attempt(() => kv.put("..", "v"));
    // A multi-key get is one KV operation and one host handle, however many keys it finds.
    for (let i = 0; i < 100; i++) await kv.put(`p${i}`, `v${i}`);
    const hundred = Array.from({ length: 100 }, (_, i) => `p${i}`);
    let found = 0;
    for (let round = 0; round < 3; round++)
      for (const v of (await kv.get(hundred)).values()) if (v === `v${found % 100}`) found++;
    out.push(String(found));
    return new Response(out.join("\n"));
  },
};
"#;

#[test]
fn js_kv_bindings_have_cloudflares_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let main = write(dir.path(), "kv.mjs", KV_WORKER);
    let n = TestNode::start(&format!(
        "[[kv_namespace]]\ntitle = \"store\"\n\
         [[namespace]]\nname = \"c\"\n\
         [[worker]]\nnamespace = \"c\"\nname = \"kv\"\nmodule = \"{main}\"\n\
         bindings = [{{ type = \"kv_namespace\", name = \"KV\", namespace = \"store\" }}]\n\
         [[route]]\nhost = \"kv.test\"\nnamespace = \"c\"\nscript = \"kv\"\n"
    ));
    let r = get(n.addr, "kv.test", "/");
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "hello");
    assert_eq!(lines[1], r#"{"x":[1,2]}"#);
    assert_eq!(lines[2], "1,2,3");
    assert_eq!(lines[3], "hello");
    assert_eq!(lines[4], r#"hello {"v":1} null"#);
    assert_eq!(
        lines[5],
        r#"{"value":null,"metadata":null,"cacheStatus":null}"#
    );
    assert_eq!(lines[6], "null");
    assert_eq!(lines[7], "a,b false string");
    assert_eq!(lines[8], "c,j true");
    assert_eq!(lines[9], "c number");
    assert_eq!(lines[10], r#"[{"name":"a","metadata":{"v":1}}]"#);
    assert_eq!(lines[11], "null");
    assert!(lines[12].starts_with("Error: KV PUT failed: "), "{text}");
    assert!(
        lines[13].starts_with("TypeError: Unknown response type"),
        "{text}"
    );
    assert!(
        lines[14].starts_with("TypeError: KV put() accepts only"),
        "{text}"
    );
    // workerd's own key checks, then Cloudflare's multi-key get and cacheTtl answers.
    assert_eq!(lines[15], "TypeError: Key name cannot be empty.");
    assert_eq!(lines[16], r#"true m1=one,m2={"two":2},nope=null"#);
    assert_eq!(lines[17], r#"{"two":2}"#);
    assert_eq!(
        lines[18],
        r#"[["m1",{"value":"one","metadata":{"n":1}}],["nope",null]]"#
    );
    assert_eq!(lines[19], "100");
    assert_eq!(
        lines[20],
        r#"Error: KV GET_BULK failed: 400 "arrayBuffer" is not a valid type. Use "json" or "text""#
    );
    assert_eq!(
        lines[21],
        "Error: KV GET_BULK failed: 400 You can request a maximum of 100 keys"
    );
    assert_eq!(
        lines[22],
        "Error: KV GET_BULK failed: 400 You must request a minimum of 1 key"
    );
    assert_eq!(
        lines[23],
        "Error: KV GET_BULK failed: 400 At least one of the requested keys corresponds to a non-json value"
    );
    assert_eq!(
        lines[24],
        "Error: KV GET failed: 400 Invalid cache_ttl of 10. Cache TTL must be at least 60."
    );
    assert_eq!(lines[25], "one");
    assert_eq!(
        lines[26],
        "Error: KV GET failed: 414 UTF-8 encoded length of 513 exceeds key length limit of 512."
    );
    assert_eq!(
        lines[27],
        r#"TypeError: ".." is not allowed as a key name."#
    );
    assert_eq!(lines[28], "300");
}

#[test]
fn js_service_and_dispatch_bindings_call_workers() {
    let dir = tempfile::tempdir().unwrap();
    let alice = write(
        dir.path(),
        "alice.mjs",
        "export default { async fetch(request, env) {\n\
           return new Response(`alice saw ${request.method} ${new URL(request.url).pathname} ${await request.text()}`,\n\
             { headers: { 'x-alice': 'yes' } });\n\
         } };",
    );
    let hog = write(
        dir.path(),
        "hog.mjs",
        "export default { fetch() { for (;;) {} } };",
    );
    let front = write(
        dir.path(),
        "front.mjs",
        "export default { async fetch(request, env) {\n\
           const r = await env.BACKEND.fetch(request);\n\
           return new Response(`front got ${r.status} ${r.headers.get('x-alice')}: ${await r.text()}`);\n\
         } };",
    );
    // The dispatcher of Cloudflare's documents, verbatim, plus a per-call CPU limit for `hog`.
    let dispatcher = write(
        dir.path(),
        "dispatcher.mjs",
        "export default {\n\
           async fetch(request, env) {\n\
             try {\n\
               const customerName = new URL(request.url).hostname.split('.')[0];\n\
               const options = customerName === 'hog' ? { limits: { cpuMs: 5 } } : undefined;\n\
               const userWorker = env.DISPATCHER.get(customerName, {}, options);\n\
               return await userWorker.fetch(request);\n\
             } catch (e) {\n\
               if (e.message.startsWith('Worker not found')) return new Response('', { status: 404 });\n\
               return new Response(`${e.name}: ${e.message}`, { status: 503 });\n\
             }\n\
           },\n\
         };",
    );
    let n = TestNode::start(&format!(
        "[[namespace]]\nname = \"customers\"\n\
         [[worker]]\nnamespace = \"customers\"\nname = \"alice\"\nmodule = \"{alice}\"\n\
         [[worker]]\nnamespace = \"customers\"\nname = \"hog\"\nmodule = \"{hog}\"\n\
         [[worker]]\nnamespace = \"customers\"\nname = \"front\"\nmodule = \"{front}\"\n\
         bindings = [{{ type = \"service\", name = \"BACKEND\", service = \"alice\" }}]\n\
         [[platform_worker]]\nname = \"dispatcher\"\nmodule = \"{dispatcher}\"\n\
         bindings = [{{ type = \"dispatch_namespace\", name = \"DISPATCHER\", namespace = \"customers\" }}]\n\
         [[route]]\nhost = \"*.example.test\"\nworker = \"dispatcher\"\n{}",
        worker("customers", "wasmecho", "echo", "")
    ));

    // A JavaScript dispatcher calls a wasm user Worker the same way.
    let r = request(n.addr, "POST", "wasmecho.example.test", "/w", &[], b"abc");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.text()
            .starts_with("POST http://wasmecho.example.test/w\n"),
        "{}",
        r.text()
    );
    assert_eq!(r.header("x-echo-length"), Some("3"));

    let r = request(n.addr, "POST", "alice.example.test", "/hi", &[], b"body!");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "alice saw POST /hi body!");
    assert_eq!(r.header("x-alice"), Some("yes"));

    // Through the dispatcher to `front`, which calls alice over its service binding.
    let r = request(n.addr, "PUT", "front.example.test", "/svc", &[], b"x");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "front got 200 yes: alice saw PUT /svc x");

    let r = get(n.addr, "nobody.example.test", "/");
    assert_eq!(r.status, 404, "{}", r.text());

    let r = get(n.addr, "hog.example.test", "/");
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().starts_with("Error: "), "{}", r.text());
    assert!(r.text().contains("CPU"), "{}", r.text());
}

#[test]
fn js_outbound_worker_sees_every_subrequest_of_js_user_workers() {
    let dir = tempfile::tempdir().unwrap();
    let up = upstream();
    let user = write(
        dir.path(),
        "user.mjs",
        "export default { async fetch(request) {\n\
           const target = new URL(request.url).searchParams.get('url');\n\
           try {\n\
             const r = await fetch(target, { headers: { 'x-user': '1' } });\n\
             return new Response(`${r.status}: ${await r.text()}`);\n\
           } catch (e) { return new Response(`${e.name}: ${e.message}`, { status: 502 }); }\n\
         } };",
    );
    let outbound = write(
        dir.path(),
        "outbound.mjs",
        "export default { async fetch(request, env) {\n\
           const url = new URL(request.url);\n\
           if (url.pathname === '/blocked') return new Response(`blocked for ${env.customer}`, { status: 403 });\n\
           if (url.pathname === '/rewrite') { url.pathname = '/rewritten'; return fetch(new Request(url, request)); }\n\
           return fetch(request);\n\
         } };",
    );
    let dispatcher = write(
        dir.path(),
        "dispatcher.mjs",
        "export default { async fetch(request, env) {\n\
           const name = new URL(request.url).hostname.split('.')[0];\n\
           return env.DISPATCHER.get(name, {}, { outbound: { customer: name } }).fetch(request);\n\
         } };",
    );
    let n = TestNode::start(&format!(
        "[subrequests]\nallow = [\"127.0.0.1\"]\n\
         [[namespace]]\nname = \"customers\"\n\
         [[worker]]\nnamespace = \"customers\"\nname = \"user\"\nmodule = \"{user}\"\n\
         [[platform_worker]]\nname = \"dispatcher\"\nmodule = \"{dispatcher}\"\n\
         bindings = [{{ type = \"dispatch_namespace\", name = \"DISPATCHER\", namespace = \"customers\", \
         outbound = {{ service = \"outbound\", parameters = [\"customer\"] }} }}]\n\
         [[platform_worker]]\nname = \"outbound\"\nmodule = \"{outbound}\"\n\
         [[route]]\nhost = \"*.example.test\"\nworker = \"dispatcher\"\n"
    ));
    let at = |path: &str| {
        get(
            n.addr,
            "user.example.test",
            &format!("/?url={}", q(&format!("http://{up}{path}"))),
        )
    };
    // Forwarded as is: the upstream sees the user Worker's request.
    let text = at("/pass").text();
    assert!(text.starts_with("200: GET /pass HTTP/1.1\n"), "{text}");
    assert!(text.contains("x-user: 1"), "{text}");
    // Rewritten by the outbound Worker.
    let text = at("/rewrite").text();
    assert!(text.starts_with("200: GET /rewritten HTTP/1.1\n"), "{text}");
    // Answered by the outbound Worker, which sees the dispatcher's parameter.
    assert_eq!(at("/blocked").text(), "403: blocked for user");
}

/// The plain dispatcher of the issue (and of Cloudflare's documents), verbatim.
const DOCS_DISPATCHER: &str = r#"export default { async fetch(request, env) {
  const customerName = new URL(request.url).hostname.split(".")[0];
  const userWorker = env.DISPATCHER.get(customerName);
  return userWorker.fetch(request);
} };
"#;

/// The same with the documents' try/catch: a missing Worker is a 404. `return await`, as the
/// documents write it: without `await` the rejection would leave the `try` (in workerd too).
const DOCS_DISPATCHER_404: &str = r#"export default { async fetch(request, env) {
  try {
    const customerName = new URL(request.url).hostname.split(".")[0];
    const userWorker = env.DISPATCHER.get(customerName);
    return await userWorker.fetch(request);
  } catch (e) {
    if (e.message.startsWith("Worker not found")) return new Response("", { status: 404 });
    throw e;
  }
} };
"#;

/// A user Worker answering with what it was given: its body (bytes as they came), and in
/// headers its method, URL, every header name and whether it has `request.cf`.
const MIRROR: &str = r#"export default { async fetch(request) {
  const body = await request.arrayBuffer();
  return new Response(body, { status: 201, headers: {
    "x-method": request.method,
    "x-url": request.url,
    "x-names": [...request.headers.keys()].join(","),
    "x-cf": typeof request.cf,
  } });
} };
"#;

/// PUTs an account-level (platform) script or a namespace's user Worker through the admin API.
fn admin_put(
    a: SocketAddr,
    path: &str,
    metadata: serde_json::Value,
    parts: &[(&str, &str, &[u8])],
) {
    let (ct, body) = crate::js::form(metadata, parts);
    let r = request(
        a,
        "PUT",
        "admin",
        path,
        &[
            ("Authorization", "Bearer test-token"),
            ("Content-Type", &ct),
        ],
        &body,
    );
    assert_eq!(r.status, 200, "PUT {path}: {}", r.text());
}

#[test]
fn the_documents_dispatchers_run_verbatim_uploaded_through_the_admin_api() {
    // Routes to dispatchers that are not deployed yet: everything goes through the admin API.
    let n = TestNode::start(
        "[[namespace]]\nname = \"customers\"\n\
         [[route]]\nhost = \"*.plain.test\"\nworker = \"dispatcher\"\n\
         [[route]]\nhost = \"*.caught.test\"\nworker = \"dispatcher-404\"\n",
    );
    let a = n.node.as_ref().unwrap().admin_addr().unwrap();
    const MODULE: &str = "application/javascript+module";
    let scripts = "/client/v4/accounts/acct-1/workers/scripts";
    let user = "/client/v4/accounts/acct-1/workers/dispatch/namespaces/customers/scripts";
    // Cloudflare's shape: `main_module` and a `dispatch_namespace` binding in the metadata.
    for (name, source) in [
        ("dispatcher", DOCS_DISPATCHER),
        ("dispatcher-404", DOCS_DISPATCHER_404),
    ] {
        admin_put(
            a,
            &format!("{scripts}/{name}"),
            serde_json::json!({
                "main_module": "dispatcher.mjs",
                "bindings": [{"type": "dispatch_namespace", "name": "DISPATCHER", "namespace": "customers"}],
            }),
            &[("dispatcher.mjs", MODULE, source.as_bytes())],
        );
    }
    // User Workers: JavaScript and wasm, uploaded into the namespace.
    admin_put(
        a,
        &format!("{user}/alice"),
        serde_json::json!({"main_module": "mirror.mjs"}),
        &[("mirror.mjs", MODULE, MIRROR.as_bytes())],
    );
    let echo = std::fs::read(guest("echo")).unwrap();
    admin_put(
        a,
        &format!("{user}/wasmecho"),
        serde_json::json!({"main_module": "w.wasm"}),
        &[("w.wasm", "application/wasm", &echo)],
    );

    // Every byte value, there and back, through both dispatchers; platform-internal headers
    // never reach the user Worker, the client's own do.
    let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    for host in ["alice.plain.test", "alice.caught.test"] {
        let r = request(
            n.addr,
            "POST",
            host,
            "/path/x?q=1",
            &[("x-client", "1"), ("x-tenantry-secret", "platform only")],
            &bytes,
        );
        assert_eq!(r.status, 201, "{host}: {}", r.text());
        assert!(r.body == bytes, "{host}: the body came back changed");
        assert_eq!(r.header("x-method"), Some("POST"));
        assert_eq!(
            r.header("x-url"),
            Some(format!("http://{host}/path/x?q=1").as_str())
        );
        let names = r.header("x-names").unwrap();
        assert!(names.split(',').any(|n| n == "x-client"), "{names}");
        assert!(!names.contains("x-tenantry"), "{names}");
        assert_eq!(r.header("x-cf"), Some("undefined"));
    }
    // A wasm user Worker behind the JavaScript dispatcher.
    let r = request(n.addr, "PUT", "wasmecho.caught.test", "/w", &[], b"abc");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.text().starts_with("PUT http://wasmecho.caught.test/w\n"),
        "{}",
        r.text()
    );

    // A missing Worker: the try/catch dispatcher answers 404 with an empty body; the plain one
    // lets the `Worker not found` error escape, which is workerd's 500.
    let r = get(n.addr, "nobody.caught.test", "/");
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.body.is_empty(), "{}", r.text());
    let r = get(n.addr, "nobody.plain.test", "/");
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(r.text(), "Internal Server Error");

    // A Worker deleted through the API is not found at once.
    let r = request(
        a,
        "DELETE",
        "admin",
        &format!("{user}/alice"),
        &[("Authorization", "Bearer test-token")],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(get(n.addr, "alice.caught.test", "/").status, 404);
}

#[test]
fn user_workers_never_see_request_cf_nor_platform_headers() {
    let dir = tempfile::tempdir().unwrap();
    let mirror = write(dir.path(), "mirror.mjs", MIRROR);
    // A dispatcher that hands its user Worker a `cf` object and platform-internal header fields
    // besides its own: the `cf` object stays in the dispatcher, and so do `x-tenantry-*` fields.
    let dispatcher = write(
        dir.path(),
        "dispatcher.mjs",
        "export default { async fetch(request, env) {\n\
           const headers = new Headers(request.headers);\n\
           headers.set('x-tenantry-tenant', 'mirror');\n\
           headers.set('X-Tenantry-Plan', 'pro');\n\
           headers.set('x-platform-checked', '1');\n\
           const seen = request.headers.get('x-tenantry-edge');\n\
           const forwarded = new Request(request, { headers, cf: { country: 'XX' } });\n\
           const r = await env.DISPATCHER.get('mirror').fetch(forwarded);\n\
           const out = new Response(r.body, r);\n\
           out.headers.set('x-dispatcher-saw', `${seen} ${forwarded.cf.country}`);\n\
           return out;\n\
         } };",
    );
    let n = TestNode::start(&format!(
        "[[namespace]]\nname = \"customers\"\n\
         [[worker]]\nnamespace = \"customers\"\nname = \"mirror\"\nmodule = \"{mirror}\"\n\
         [[platform_worker]]\nname = \"dispatcher\"\nmodule = \"{dispatcher}\"\n\
         bindings = [{{ type = \"dispatch_namespace\", name = \"DISPATCHER\", namespace = \"customers\" }}]\n\
         [[route]]\nhost = \"*.example.test\"\nworker = \"dispatcher\"\n"
    ));
    let r = request(
        n.addr,
        "POST",
        "mirror.example.test",
        "/",
        &[("x-tenantry-edge", "from the edge"), ("x-client", "1")],
        b"body",
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.body, b"body");
    // The platform's own Worker sees the internal field and its own `cf`.
    assert_eq!(r.header("x-dispatcher-saw"), Some("from the edge XX"));
    let names = r.header("x-names").unwrap();
    for expected in ["x-client", "x-platform-checked"] {
        assert!(names.split(',').any(|n| n == expected), "{names}");
    }
    assert!(!names.contains("tenantry"), "{names}");
    assert_eq!(r.header("x-cf"), Some("undefined"));
}
