"""A host for the JS engine guest without a Tenantry node: wasmtime's Python bindings play the
host side of the contract (tenantry:worker/v1, tenantry:js/v1 code_read, WASI incl. poll_oneoff).

    pip install wasmtime            # the bindings ship their own wasmtime
    scripts/build-js.sh
    python3 runtimes/js/tests/harness.py [path/to/tenantry_js.wasm]
    python3 runtimes/js/tests/harness.py --cost 'export default { fetch() { return new Response("hello") } }' [wasm]

The second form prints, for that module Worker, the wasm instructions (fuel) of the first request
on a fresh instance, of the loading of its bundle, and of a later request on the same instance.
The Worker has the bindings of COST_ENV (env.DISPATCHER, env.KV, env.GREETING).

It is a test tool for the engine alone: the node's own end-to-end tests (tests/all) are the
real proof. Each check below fails loudly (assert) when the engine misbehaves.
"""

import json
import os
import struct
import sys
import time

import wasmtime
from wasmtime import Engine, FuncType, Linker, Module, Store, ValType, WasiConfig

I32 = ValType.i32()
FUEL = 10**12  # fuel counts wasm instructions: the engine's work per request, independent of Python
NOT_FOUND, INVALID, LIMIT = -1, -2, -3
KINDS = {"plain_text": 1, "json": 2, "secret_text": 3, "service": 4, "dispatch_namespace": 5, "kv_namespace": 6}


def bundle(fmt, entries):
    """entries: [(kind, name, bytes)]; fmt 0 modules, 1 service worker."""
    out = b"TJSB" + bytes([1, fmt]) + struct.pack("<I", len(entries))
    for kind, name, data in entries:
        if isinstance(data, str):
            data = data.encode()
        n = name.encode()
        out += bytes([kind]) + struct.pack("<I", len(n)) + n + struct.pack("<I", len(data)) + data
    return out


def parse_bundle(b):
    assert b[:4] == b"TJSB", b[:40]
    fmt = b[5]
    (count,) = struct.unpack_from("<I", b, 6)
    off, entries = 10, []
    for _ in range(count):
        kind = b[off]
        (nl,) = struct.unpack_from("<I", b, off + 1)
        name = b[off + 5 : off + 5 + nl].decode()
        off += 5 + nl
        (dl,) = struct.unpack_from("<I", b, off)
        entries.append((kind, name, b[off + 4 : off + 4 + dl]))
        off += 4 + dl
    return fmt, entries


class Host:
    """One instance of the engine and the host state of its current invocation."""

    def __init__(self, engine, module):
        self.store = Store(engine)
        if FUEL:
            self.store.set_fuel(FUEL)
        self.store.set_wasi(WasiConfig())
        linker = Linker(engine)
        linker.define_wasi()
        self.code = b""
        self.env = []  # [(name, kind, value)]
        self.reset(b"GET", b"http://example.test/", [], b"")

        self.host_time = 0.0

        def fn(name, params, imp, module="tenantry:worker/v1"):
            def timed(*args):
                t = time.perf_counter()
                try:
                    return imp(*args)
                finally:
                    self.host_time += time.perf_counter() - t
            linker.define_func(module, name, FuncType([I32] * params, [I32]), timed, access_caller=True)

        fn("request_method", 3, lambda c, h, p, n: self.out(c, self.req_method, p, n))
        fn("request_url", 3, lambda c, h, p, n: self.out(c, self.req_url, p, n))
        fn("request_headers", 3, lambda c, h, p, n: self.out(
            c, b"".join(k + b": " + v + b"\n" for k, v in self.req_headers), p, n))
        fn("request_body_read", 3, self.body_read)
        fn("response_set_status", 2, self.set_status)
        fn("response_header_append", 5, lambda c, h, np, nl, vp, vl: self.header(c, np, nl, vp, vl))
        fn("response_body_write", 3, lambda c, h, p, n: self.body_write(c, p, n))
        fn("log", 3, lambda c, lvl, p, n: self.log(c, lvl, p, n))
        fn("env_list", 2, lambda c, p, n: self.out(c, b"\n".join(e[0].encode() for e in self.env), p, n))
        fn("env_kind", 2, self.env_kind)
        fn("env_get", 4, self.env_get)
        fn("code_read", 2, lambda c, p, n: self.out(c, self.code, p, n), module="tenantry:js/v1")
        # The platform: outgoing requests, an echoing "network", an in-memory KV store.
        self.kv = {}
        fn("request_new", 0, lambda c: self.new_request({"method": b"GET", "url": b"/", "headers": [], "body": b""}))
        fn("request_clone", 1, self.request_clone)
        fn("request_set_method", 3, lambda c, h, p, n: self.set_field(h, "method", self.read(c, p, n)))
        fn("request_set_url", 3, lambda c, h, p, n: self.set_field(h, "url", self.read(c, p, n)))
        fn("request_header_set", 5, self.request_header_set)
        fn("request_body_write", 3, self.request_body_write)
        fn("fetch", 1, self.net_fetch)
        fn("service_fetch", 3, lambda c, bp, bl, h: self.fail(-5, "no Workers to call in the harness"))
        fn("dispatch_fetch", 7, self.dispatch_fetch)
        fn("fetch_error", 2, lambda c, p, n: self.out(c, self.last_error, p, n))
        fn("response_status", 1, lambda c, h: self.resps[h]["status"] if h in self.resps else -4)
        fn("response_headers", 3, lambda c, h, p, n: self.out(
            c, b"".join(k + b": " + v + b"\n" for k, v in self.resps[h]["headers"]), p, n))
        fn("response_body_read", 3, self.response_body_read)
        fn("response_forward", 1, self.response_forward)
        fn("kv_get", 4, self.kv_get)
        fn("kv_put", 8, self.kv_put)
        fn("kv_delete", 4, lambda c, bp, bl, kp, kl: (self.kv.pop(self.read(c, kp, kl), None), 0)[1])
        fn("kv_get_many", 4, self.kv_get_many)
        fn("kv_list", 4, self.kv_list)
        self.instance = linker.instantiate(self.store, module)
        self.exports = self.instance.exports(self.store)
        self.memory = self.exports["memory"]
        self.exports["wizer.initialize"](self.store)

    def reset(self, method, url, headers, body):
        self.req_method, self.req_url, self.req_headers, self.req_body = method, url, headers, body
        self.body_pos = 0
        self.status, self.headers, self.body, self.logs = 200, [], b"", []
        self.reqs, self.resps, self.last_error = {}, {}, b""
        self.forwarded = 0

    def fail(self, code, why):
        self.last_error = why.encode()
        return code

    def new_request(self, req):
        h = len(self.reqs) + 1
        self.reqs[h] = req
        return h

    def request_clone(self, c, h):
        if h == 0:
            return self.new_request({"method": self.req_method, "url": self.req_url,
                                     "headers": list(self.req_headers), "body": self.req_body})
        return self.new_request(dict(self.reqs[h])) if h in self.reqs else -4

    def set_field(self, h, field, value):
        if h not in self.reqs:
            return -4
        self.reqs[h][field] = value
        return 0

    def request_header_set(self, c, h, np, nl, vp, vl):
        name, value = self.read(c, np, nl).lower(), self.read(c, vp, vl)
        if h not in self.reqs:
            return -4
        self.reqs[h]["headers"] = [(k, v) for k, v in self.reqs[h]["headers"] if k.lower() != name] + [(name, value)]
        return 0

    def request_body_write(self, c, h, p, n):
        if h not in self.reqs:
            return -4
        self.reqs[h]["body"] += self.read(c, p, n)
        return n

    def new_response(self, status, headers, body):
        h = len(self.resps) + 1
        self.resps[h] = {"status": status, "headers": headers, "body": body, "pos": 0}
        return h

    # The "network": refuses refused.test as the node refuses a private address, echoes the rest.
    def net_fetch(self, c, h):
        r = self.reqs.get(h)
        if r is None:
            return -4
        if b"//refused.test" in r["url"]:
            return self.fail(-8, "subrequest to 10.0.0.1 refused: private addresses are not reachable from Workers")
        head = b"".join(k + b": " + v + b"\n" for k, v in r["headers"])
        return self.new_response(200, [(b"x-echo", b"1"), (b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")],
                                 r["method"] + b" " + r["url"] + b"\n" + head + b"\n" + r["body"])

    # The dispatched "user Workers": every name but "missing" answers as a JS hello does.
    def dispatch_fetch(self, c, bp, bl, np, nl, op, ol, h):
        if h not in self.reqs:
            return -4
        name = self.read(c, np, nl)
        if name == b"missing":
            return self.fail(-6, "Worker not found: missing")
        return self.new_response(200, [(b"content-type", b"text/plain;charset=UTF-8")], b"hello from " + name)

    def response_body_read(self, c, h, p, cap):
        r = self.resps.get(h)
        if r is None:
            return -4
        chunk = r["body"][r["pos"]: r["pos"] + min(cap, 7000)]
        r["pos"] += len(chunk)
        if chunk:
            self.mem(c).write(c, chunk, p)
        return len(chunk)

    def kv_get(self, c, bp, bl, kp, kl):
        key = self.read(c, kp, kl)
        if not key:
            return self.fail(INVALID, "KV keys are 1 to 512 bytes")
        if key not in self.kv:
            return NOT_FOUND
        value, metadata = self.kv[key]
        return self.new_response(200, [(b"kv-metadata", metadata)] if metadata else [], value)

    # A fetched response becomes the invocation's: status, headers, the body from where it was read.
    def response_forward(self, c, h):
        r = self.resps.get(h)
        if r is None:
            return -4
        self.status = r["status"]
        self.headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in r["headers"]]
        self.body = r["body"][r["pos"]:]
        r["pos"] = len(r["body"])
        self.forwarded += 1
        return 0

    def kv_get_many(self, c, bp, bl, kp, kl):
        keys = json.loads(self.read(c, kp, kl))
        entries = [None if k.encode() not in self.kv else {"value": self.kv[k.encode()][0].decode()} for k in keys]
        return self.new_response(200, [], json.dumps(entries).encode())

    def kv_put(self, c, bp, bl, kp, kl, vp, vl, op, ol):
        opts = json.loads(self.read(c, op, ol) or b"{}")
        if "expiration_ttl" in opts and opts["expiration_ttl"] < 60:
            return self.fail(INVALID, "expiration_ttl must be at least 60")
        metadata = json.dumps(opts["metadata"], separators=(",", ":")).encode() if "metadata" in opts else None
        self.kv[self.read(c, kp, kl)] = (self.read(c, vp, vl), metadata)
        return 0

    def kv_list(self, c, bp, bl, op, ol):
        opts = json.loads(self.read(c, op, ol) or b"{}")
        keys = sorted(k for k in self.kv if k.startswith(opts.get("prefix", "").encode()))
        body = json.dumps({"keys": [{"name": k.decode()} for k in keys], "list_complete": True}).encode()
        return self.new_response(200, [], body)

    def mem(self, c):
        return c["memory"]

    def read(self, c, p, n):
        return bytes(self.mem(c).read(c, p, p + n))

    def out(self, c, value, p, cap):
        if len(value) <= cap and value:
            self.mem(c).write(c, value, p)
        return len(value)

    def body_read(self, c, h, p, cap):
        chunk = self.req_body[self.body_pos : self.body_pos + min(cap, 7000)]
        self.body_pos += len(chunk)
        if chunk:
            self.mem(c).write(c, chunk, p)
        return len(chunk)

    def set_status(self, c, h, status):
        if not 200 <= status <= 599:
            return INVALID
        self.status = status
        return 0

    def header(self, c, np, nl, vp, vl):
        # Names compared lower-cased: the Web APIs may hand over names as the Worker wrote them.
        self.headers.append((self.read(c, np, nl).decode("latin-1").lower(), self.read(c, vp, vl).decode("latin-1")))
        return 0

    def body_write(self, c, p, n):
        self.body += self.read(c, p, n)
        return n

    def log(self, c, lvl, p, n):
        self.logs.append((lvl, self.read(c, p, n).decode()))
        return 0

    def find_env(self, c, p, n):
        name = self.read(c, p, n).decode()
        return next((e for e in self.env if e[0] == name), None)

    def env_kind(self, c, p, n):
        e = self.find_env(c, p, n)
        return KINDS[e[1]] if e else NOT_FOUND

    def env_get(self, c, p, n, op, cap):
        e = self.find_env(c, p, n)
        return self.out(c, e[2].encode(), op, cap) if e else NOT_FOUND

    def compile(self, source):
        self.code = source
        self.reset(b"POST", b"http://compile/", [], b"")
        rc = self.exports["tenantry_js_compile"](self.store)
        assert rc == 0, (rc, self.logs)
        return self.status, self.body

    def fetch(self, path="/", method=b"GET", headers=(), body=b""):
        self.reset(method, b"http://example.test" + path.encode(), [(b"host", b"example.test")] + list(headers), body)
        rc = self.exports["tenantry_fetch"](self.store)
        return rc, self.status, self.headers, self.body, self.logs


DEFAULT_WASM = os.path.join(os.path.dirname(__file__), "../../../target/guests/wasm32-wasip1/release/tenantry_js.wasm")


# The bindings a --cost Worker sees: a dispatch namespace whose Workers answer "hello from
# <name>" ("missing" is not found), a KV namespace, a plain_text variable.
COST_ENV = [("DISPATCHER", "dispatch_namespace", "customers"), ("KV", "kv_namespace", "id1"), ("GREETING", "plain_text", "hi")]


def cost(source, wasm):
    config = wasmtime.Config()
    config.consume_fuel = True
    engine = Engine(config)
    module = Module.from_file(engine, wasm)
    status, code = Host(engine, module).compile(bundle(0, [(0, "worker.js", source)]))
    assert status == 200, code
    h = Host(engine, module)
    h.code, h.env = code, COST_ENV
    loaded = []
    out = h.out  # code_read starts the loading; env_list is the first call after it

    def spy(c, value, p, n):
        if value == h.code:
            loaded.append(h.store.get_fuel())
        elif not loaded[1:] and loaded:
            loaded.append(h.store.get_fuel())
        return out(c, value, p, n)

    h.out = spy
    counts = []
    for _ in range(5):
        before = h.store.get_fuel()
        rc, status, _, body, logs = h.fetch("/")
        assert (rc, status) == (0, 200), (rc, status, body, logs)
        counts.append(before - h.store.get_fuel())
    print(f"response: {status} {body[:60]!r}")
    print(f"first request on a fresh instance: {counts[0]} instructions (fuel)")
    print(f"  of which loading and evaluating the bundle: {loaded[0] - loaded[1]}")
    print(f"later requests on the same instance: {min(counts[1:])}")
    h = Host(engine, module)
    h.code, h.env = code, COST_ENV
    assert h.exports["tenantry_js_preload"](h.store) == 0
    before = h.store.get_fuel()
    h.fetch("/")
    print(f"first request after tenantry_js_preload (a per-Worker snapshot): {before - h.store.get_fuel()}")


def main():
    if sys.argv[1:2] == ["--cost"]:
        return cost(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else DEFAULT_WASM)
    wasm = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_WASM
    config = wasmtime.Config()
    config.consume_fuel = True
    engine = Engine(config)
    module = Module.from_file(engine, wasm)
    passed = []

    def fresh():
        return Host(engine, module)

    def compiled(fmt, entries, env=()):
        h = fresh()
        h.env = list(env)
        status, body = h.compile(bundle(fmt, entries))
        assert status == 200, (status, body)
        return body

    def check(name):
        def wrap(f):
            f()
            passed.append(name)
            print("ok", name)
        return wrap

    worker = """
import greeting from "./greeting.txt";
import data from "./data.bin";
import { shout } from "./lib/util.js";
let count = 0;
export default {
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    count++;
    switch (url.pathname) {
      case "/": return new Response("hello");
      case "/echo": return new Response(await request.text(), { status: 201, headers: { "x-method": request.method, "x-h": request.headers.get("x-h") } });
      case "/modules": return new Response(shout(greeting) + " " + new Uint8Array(data).join(","));
      case "/env": return new Response(JSON.stringify(env));
      case "/throw": throw new TypeError("boom");
      case "/hang": return new Promise(() => {});
      case "/notresp": return "hello";
      case "/timer": return new Promise((r) => setTimeout(() => r(new Response("timer")), 20));
      case "/wait": ctx.waitUntil(new Promise((r) => setTimeout(() => { console.log("after"); r(); }, 10))); return new Response("w");
      case "/log": console.log("a", 1, { b: [1, 2, { c: "d" }], e: "f" }, [1, "x"], null, undefined, new Map([[1, 2]]), function foo() {}, -0, 10n, new Uint8Array([1, 2])); console.warn("w"); console.error("e"); console.debug("d"); return new Response("ok");
      case "/random": return new Response(String(Math.random()));
      case "/count": return new Response(String(count));
      case "/status": return new Response(null, { status: 99 });
      case "/kv": {
        await env.KV.put("k", "v", { metadata: { m: 1 } });
        await env.KV.put("n", new Uint8Array([1, 2]));
        const { value, metadata } = await env.KV.getWithMetadata("k");
        const listed = (await env.KV.list({ prefix: "" })).keys.map((k) => k.name).join();
        await env.KV.delete("k");
        let bad = "";
        try { await env.KV.put("x", "v", { expirationTtl: 1 }); } catch (e) { bad = e.message; }
        return new Response([value, JSON.stringify(metadata), new Uint8Array(await env.KV.get("n", "arrayBuffer")).join(),
          listed, await env.KV.get("k"), bad].join("|"));
      }
      case "/unhandled": Promise.reject(new Error("lost")); (async () => { throw new Error("awaited"); })().catch(() => {}); return new Response("u");
      case "/fetch": {
        const r = await fetch("http://upstream.test/x?y", { method: "PUT", headers: { "x-a": "b" }, body: new Uint8Array([104, 105]) });
        let refused = "";
        try { await fetch("http://refused.test/"); } catch (e) { refused = `${e.name}: ${e.message}`; }
        return new Response(`${r.status} ${r.headers.get("x-echo")} ${r.headers.getSetCookie()}\n${refused}\n${await r.text()}`);
      }
      case "/forward": return fetch(request);
      case "/keep": globalThis.kept = await fetch("http://upstream.test/kept"); return new Response("kept");
      case "/read-kept": try { return new Response(await globalThis.kept.text()); } catch (e) { return new Response(`${e.name}: ${e.message}`); }
      case "/interval": { let n = 0; return new Promise((r) => { const id = setInterval((x) => { n += x; if (n === 3) { clearInterval(id); r(new Response(String(n))); } }, 1, 1); }); }
      case "/leak": setTimeout(() => console.log("leaked"), 1); return new Response("l");
      case "/dispatch": return env.DISPATCHER.get("alice").fetch(request);
      case "/dispatch-rewrap": return new Response((await env.DISPATCHER.get("alice").fetch(request)).body, { status: 201, headers: { "x-a": "1" } });
      case "/dispatch-same": { const r = await env.DISPATCHER.get("alice").fetch(request); r.headers.get("content-type"); return new Response(r.body, r); }
      case "/dispatch-text": return new Response((await (await env.DISPATCHER.get("alice").fetch(request)).text()) + "!");
      case "/dispatch-stream": { const r = await env.DISPATCHER.get("alice").fetch(request); let n = 0, text = ""; for await (const c of r.body) { n++; text += new TextDecoder().decode(c); } return new Response(`${n} ${text} ${r.bodyUsed}`); }
      case "/dispatch-missing": try { await env.DISPATCHER.get("missing").fetch(request); return new Response("found?"); } catch (e) { return new Response(e.message, { status: 404 }); }
    }
    return new Response("not found", { status: 404 });
  },
};
"""
    mod_entries = [
        (0, "worker.js", worker),
        (0, "lib/util.js", "export const shout = (s) => s.toUpperCase();"),
        (2, "greeting.txt", "hi there"),
        (3, "data.bin", bytes([1, 2, 3])),
    ]
    env = [("GREETING", "plain_text", "hi"), ("CFG", "json", '{"a":[1,2]}'), ("SECRET", "secret_text", "s3"), ("KV", "kv_namespace", "id1"),
           ("DISPATCHER", "dispatch_namespace", "customers")]
    code = compiled(0, mod_entries, env)

    @check("compiled bundle: bytecode for JS modules, text/data as is")
    def _():
        fmt, entries = parse_bundle(code)
        assert fmt == 0
        assert [(k, n) for k, n, _ in entries] == [(16, "worker.js"), (16, "lib/util.js"), (2, "greeting.txt"), (3, "data.bin")], entries

    def run(path="/", **kw):
        h = fresh()
        h.env = env
        h.code = code
        return h.fetch(path, **kw)

    @check("hello")
    def _():
        rc, status, headers, body, logs = run("/")
        assert (rc, status, body) == (0, 200, b"hello"), (rc, status, body, logs)
        assert headers == [("content-type", "text/plain;charset=UTF-8")], headers

    @check("request method, headers and body reach the handler")
    def _():
        rc, status, headers, body, _ = run("/echo", method=b"POST", headers=[(b"X-H", b"v")], body=b"x" * 20000)
        assert (rc, status, body) == (0, 201, b"x" * 20000), (rc, status, len(body))
        assert ("x-method", "POST") in headers and ("x-h", "v") in headers, headers

    @check("imports: relative module, text module, data module")
    def _():
        rc, status, _, body, logs = run("/modules")
        assert body == b"HI THERE 1,2,3", (body, logs)

    @check("env: plain_text, json, secret_text, kv_namespace, dispatch_namespace")
    def _():
        rc, status, _, body, logs = run("/env")
        assert body == b'{"GREETING":"hi","CFG":{"a":[1,2]},"SECRET":"s3","KV":{},"DISPATCHER":{}}', (body, logs)

    @check("KV: put with metadata, getWithMetadata, arrayBuffer, list, delete, refused put")
    def _():
        rc, status, _, body, logs = run("/kv")
        assert body == b'v|{"m":1}|1,2|k,n||KV PUT failed: expiration_ttl must be at least 60', (body, logs)

    @check("uncaught exception: workerd's 500, the error and stack in the log")
    def _():
        rc, status, headers, body, logs = run("/throw")
        assert (rc, status, headers, body) == (0, 500, [], b"Internal Server Error"), (rc, status, headers, body)
        assert logs[-1][0] == 3 and logs[-1][1].startswith("Uncaught TypeError: boom\n    at fetch (worker.js:"), logs

    @check("a handler that never settles: workerd's 500 and the hung message")
    def _():
        rc, status, headers, body, logs = run("/hang")
        assert (rc, status, body) == (0, 500, b"Internal Server Error")
        assert "hung and would never generate a response" in logs[-1][1], logs

    @check("a handler resolving to a non-Response")
    def _():
        rc, status, _, body, logs = run("/notresp")
        assert status == 500 and "did not resolve to 'Response'" in logs[-1][1], logs

    @check("setTimeout through poll_oneoff sleep")
    def _():
        t = time.monotonic()
        rc, status, _, body, logs = run("/timer")
        assert body == b"timer" and time.monotonic() - t >= 0.02, (body, logs)

    @check("ctx.waitUntil runs after the response")
    def _():
        rc, status, _, body, logs = run("/wait")
        assert body == b"w" and logs == [(1, "after")], (body, logs)

    @check("console levels and formatting")
    def _():
        rc, status, _, body, logs = run("/log")
        assert logs[0] == (1, "a 1 { b: [ 1, 2, { c: 'd' } ], e: 'f' } [ 1, 'x' ] null undefined Map(1) { 1 => 2 } [Function: foo] -0 10n Uint8Array(2) [ 1, 2 ]"), logs[0]
        assert logs[1:] == [(2, "w"), (3, "e"), (0, "d")], logs

    @check("unhandled rejections are logged as workerd does; handled ones are not")
    def _():
        rc, status, _, body, logs = run("/unhandled")
        assert body == b"u" and [l for l in logs] == [(3, logs[0][1])], logs
        assert logs[0][1].startswith("Uncaught (in promise) Error: lost\n    at fetch (worker.js:"), logs

    @check("fetch(): method, URL, headers, bytes body; a refusal is a TypeError saying why")
    def _():
        rc, status, _, body, logs = run("/fetch")
        want = (b"200 1 a=1,b=2\n"
                b"TypeError: fetch() failed: subrequest to 10.0.0.1 refused: private addresses are not reachable from Workers\n"
                b"PUT http://upstream.test/x?y\nx-a: b\n\nhi")
        assert (status, body) == (200, want), (status, body, logs)

    @check("fetch(request) forwards the incoming request (request_clone(0)), body included")
    def _():
        rc, status, _, body, logs = run("/forward", method=b"POST", headers=[(b"X-H", b"v")], body=b"payload")
        assert body == b"POST http://example.test/forward\nhost: example.test\nX-H: v\n\npayload", (body, logs)

    @check("a fetched body kept past its request cannot be read by a later one (handles are per invocation)")
    def _():
        h = fresh()
        h.env = env
        h.code = code
        assert h.fetch("/keep")[3] == b"kept"
        rc, status, _, body, logs = h.fetch("/read-kept")
        assert body.startswith(b"Error: Cannot perform I/O on behalf of a different request."), (body, logs)

    def dispatched(path):
        h = fresh()
        h.env, h.code = env, code
        rc, status, headers, body, logs = h.fetch(path)
        return status, headers, body, logs, h.forwarded

    @check("a dispatched Worker's response returned as it is: forwarded by the host, no body through JavaScript")
    def _():
        status, headers, body, logs, forwarded = dispatched("/dispatch")
        assert (status, headers, body, forwarded) == (200, [("content-type", "text/plain;charset=UTF-8")], b"hello from alice", 1), (status, headers, body, logs)
        # Its untouched body in a Response with the same status and headers: forwarded too.
        assert dispatched("/dispatch-same")[2:] == (b"hello from alice", [], 1)

    @check("a dispatched body under other status and headers, read in JS, streamed: the same bytes, copied")
    def _():
        status, headers, body, logs, forwarded = dispatched("/dispatch-rewrap")
        assert (status, headers, body, forwarded) == (201, [("x-a", "1")], b"hello from alice", 0), (status, headers, body, logs)
        assert dispatched("/dispatch-text")[2:] == (b"hello from alice!", [], 0)
        status, headers, body, logs, forwarded = dispatched("/dispatch-stream")
        assert (status, body, forwarded) == (200, b"1 hello from alice true", 0), (status, body, logs)

    @check("a missing dispatched Worker: an Error starting with 'Worker not found'")
    def _():
        status, headers, body, logs, forwarded = dispatched("/dispatch-missing")
        assert (status, body) == (404, b"Worker not found: missing"), (status, body, logs)

    @check("setInterval with arguments, clearInterval")
    def _():
        rc, status, _, body, logs = run("/interval")
        assert body == b"3", (body, logs)

    @check("timers left at the response do not fire later on a reused instance")
    def _():
        h = fresh()
        h.env, h.code = env, code
        first, second = h.fetch("/leak"), h.fetch("/")
        assert first[3] == b"l" and first[4] == [] and second[4] == [], (first, second)

    @check("tenantry_js_preload evaluates the Worker once, before the first request")
    def _():
        h = fresh()
        h.env, h.code = env, code
        assert h.exports["tenantry_js_preload"](h.store) == 0
        h.code = b"not a bundle: the Worker must not be read again"
        assert h.fetch("/count")[3] == b"1"

    @check("a status the host refuses is a 500, logged")
    def _():
        rc, status, _, body, logs = run("/status")
        assert status == 500, (status, logs)

    @check("reuse: repeated tenantry_fetch on one instance keeps the evaluated Worker")
    def _():
        h = fresh()
        h.env, h.code = env, code
        bodies = [h.fetch("/count")[3] for _ in range(3)]
        assert bodies == [b"1", b"2", b"3"], bodies
        a, b = h.fetch("/random")[3], h.fetch("/random")[3]
        assert a != b

    @check("service worker: respondWith, bindings as globals, exceptions")
    def _():
        sw = 'addEventListener("fetch", (e) => { const u = new URL(e.request.url); if (u.pathname === "/throw") throw new Error("swboom"); if (u.pathname === "/none") return; e.respondWith(new Response("sw " + GREETING)); });'
        c = compiled(1, [(1, "worker.js", sw)], env)
        assert parse_bundle(c)[1][0][0] == 17
        for path, want_status, want_body in [("/", 200, b"sw hi"), ("/throw", 500, b"Internal Server Error"), ("/none", 500, b"Internal Server Error")]:
            h = fresh()
            h.env, h.code = env, c
            rc, status, _, body, logs = h.fetch(path)
            assert (status, body) == (want_status, want_body), (path, status, body, logs)

    @check("compile errors: 400 text/plain naming file, line and column")
    def _():
        h = fresh()
        status, body = h.compile(bundle(0, [(0, "worker.js", "export default {\n  fetch() { return 1 +; }\n}")]))
        assert status == 400 and body.startswith(b"worker.js:2:"), (status, body)
        assert ("content-type", "text/plain;charset=UTF-8") in h.headers
        h = fresh()
        status, body = h.compile(bundle(0, [(0, "worker.js", 'import x from "./missing.js";\nexport default { fetch() {} }')]))
        assert (status, body) == (400, b'worker.js:1:15: cannot resolve import "./missing.js"'), body

    # Cost of the engine's own work per request, Python's host calls excluded: fuel (about one
    # unit per wasm instruction) and wall time minus the time spent in host callbacks.
    def measure(h, path="/"):
        fuel, t0, host0 = h.store.get_fuel(), time.perf_counter(), h.host_time
        rc, status, _, body, logs = h.fetch(path)
        assert (rc, status) == (0, 200), (rc, status, body, logs)
        wall = time.perf_counter() - t0 - (h.host_time - host0)
        return fuel - h.store.get_fuel(), wall

    first = []
    for _ in range(20):
        h = fresh()
        h.code = code
        first.append(measure(h))
    reuse = [measure(h) for _ in range(200)]
    med = lambda xs, i: sorted(x[i] for x in xs)[len(xs) // 2]
    print(f"hello, first request on a fresh instance (load bundle + evaluate + handle): "
          f"{med(first, 0)} fuel, {med(first, 1) * 1e6:.0f} us engine time")
    print(f"hello, later requests on the same instance (reuse): {med(reuse, 0)} fuel, {med(reuse, 1) * 1e6:.0f} us engine time")
    t = time.perf_counter()
    for _ in range(10):
        fresh()
    print(f"instantiate + wizer.initialize (what the snapshot saves): {(time.perf_counter() - t) / 10 * 1e3:.1f} ms")
    print(f"{len(passed)} checks passed")


if __name__ == "__main__":
    main()
