// Behaviour cases run both here (tests/workerd_parity.rs, on QuickJS with tenantry-js-web) and
// in Cloudflare's workerd (tests/workerd/record.sh), whose answers are recorded in
// tests/workerd-expected.json. Each case is [name, function]; the function's result (awaited)
// is described as a string by `describe`, a thrown error as "throws <Name>".
// Plain script; no eval (workerd forbids it), strict-mode clean (workerd loads it as a module).

globalThis.describe = function describe(v) {
  const seen = (x) => {
    if (x === undefined) return "undefined";
    if (typeof x === "bigint") return x.toString() + "n";
    if (x instanceof ArrayBuffer) return { ArrayBuffer: [...new Uint8Array(x)] };
    if (ArrayBuffer.isView(x)) return { [x.constructor.name]: Array.from(x instanceof DataView ? new Uint8Array(x.buffer, x.byteOffset, x.byteLength) : x, String) };
    if (x instanceof Map) return { Map: [...x].map(([k, v]) => [seen(k), seen(v)]) };
    if (x instanceof Set) return { Set: [...x].map(seen) };
    if (x instanceof Date) return { Date: x.getTime() };
    if (x instanceof RegExp) return { RegExp: String(x) };
    if (x instanceof Error) return { [x.constructor.name]: [x.name, x.message] };
    if (Array.isArray(x)) return x.map(seen);
    if (x !== null && typeof x === "object") {
      const o = {};
      for (const k of Object.keys(x)) o[k] = seen(x[k]);
      return o;
    }
    return x;
  };
  return JSON.stringify(seen(v));
};

globalThis.errorName = function errorName(e) {
  if (e instanceof DOMException) return "DOMException:" + e.name;
  if (e instanceof Error) return e.constructor.name;
  return "non-error:" + String(e);
};

const enc = (s) => new TextEncoder().encode(s);
const hex = (buf) => [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, "0")).join("");
const entries = (h) => [...h];

globalThis.CASES = [
  // ---- Headers ---------------------------------------------------------------------------
  ["headers get is case-insensitive and joins", () => { const h = new Headers(); h.append("X-A", "1"); h.append("x-a", "2"); return [h.get("X-a"), h.has("X-A"), h.get("nope")]; }],
  ["headers iteration sorted lower-cased", () => entries(new Headers({ "Zeta": "z", "alpha": "a", "Beta": "b" }))],
  ["headers set replaces all", () => { const h = new Headers([["a", "1"], ["A", "2"], ["b", "3"]]); h.set("a", "9"); return entries(h); }],
  ["headers delete", () => { const h = new Headers([["a", "1"], ["A", "2"], ["b", "3"]]); h.delete("A"); return entries(h); }],
  ["headers set-cookie kept apart", () => { const h = new Headers(); h.append("Set-Cookie", "a=1"); h.append("set-cookie", "b=2"); h.append("x", "1"); return [entries(h), h.get("set-cookie"), h.getSetCookie()]; }],
  ["headers getAll set-cookie", () => { const h = new Headers([["set-cookie", "a"], ["set-cookie", "b"]]); return h.getAll("Set-Cookie"); }],
  ["headers keys values", () => { const h = new Headers({ b: "2", a: "1" }); return [[...h.keys()], [...h.values()], [...h.entries()]]; }],
  ["headers forEach", () => { const out = []; new Headers({ b: "2", a: "1" }).forEach((v, k, o) => out.push(k, v, o instanceof Headers)); return out; }],
  ["headers value whitespace trimmed", () => new Headers({ a: "  x y \t" }).get("a")],
  ["headers copy from headers", () => { const a = new Headers({ a: "1" }); const b = new Headers(a); b.set("a", "2"); return [a.get("a"), b.get("a")]; }],
  ["headers invalid name throws", () => new Headers({ "a b": "1" })],
  ["headers empty name throws", () => new Headers().append("", "1")],
  ["headers newline value throws", () => new Headers().append("a", "x\ny")],
  ["headers nul value throws", () => new Headers().append("a", "x\0y")],
  ["headers non-latin1 value throws", () => new Headers().append("a", "\u0100")],
  ["headers bad pair throws", () => new Headers([["a"]])],
  ["headers number value", () => { const h = new Headers(); h.set("n", 12); return h.get("n"); }],
  ["headers toStringTag", () => Object.prototype.toString.call(new Headers())],
  ["headers iterator tag", () => Object.prototype.toString.call(new Headers().entries())],
  ["headers get missing arg throws", () => new Headers().get()],

  ["headers keys and values iterator tags", () => [Object.prototype.toString.call(new Headers().keys()), Object.prototype.toString.call(new Headers().values())]],
  ["headers empty name roundtrip", () => { const h = new Headers(); h.append("", "1"); return [h.get(""), entries(h)]; }],
  ["headers non-latin1 value roundtrip", () => { const h = new Headers(); h.append("a", "\u0100€"); return h.get("a"); }],
  ["headers immutable on request from engine-like clone", () => { const r = new Request("https://x/"); r.headers.set("a", "1"); return r.headers.get("a"); }],

  // ---- Request -----------------------------------------------------------------------------
  ["request defaults", () => { const r = new Request("https://example.com/a?b#c"); return [r.url, r.method, r.bodyUsed, r.body, r.cf, r.redirect, entries(r.headers)]; }],
  ["request normalises url", () => new Request("HTTPS://EXAMPLE.com:443/./a/../b").url],
  ["request relative url throws", () => new Request("/relative")],
  ["request method normalised", () => ["get", "post", "Put", "delete", "options", "head"].map((m) => new Request("https://x/", { method: m }).method)],
  ["request each known method", () => ["patch", "purge", "trace", "copy", "lock", "mkcol", "move", "propfind", "proppatch", "search", "unlock", "acl", "report", "mkactivity", "checkout", "merge", "m-search", "msearch", "notify", "subscribe", "unsubscribe", "query", "ban", "track", "link"].map((m) => { try { return new Request("https://x/", { method: m }).method; } catch (e) { return "throws " + m; } })],
  ["request patch method", () => new Request("https://x/", { method: "patch" }).method],
  ["request GET with body throws", () => new Request("https://x/", { body: "x" })],
  ["request HEAD with body throws", () => new Request("https://x/", { method: "HEAD", body: "x" })],
  ["request string body", async () => { const r = new Request("https://x/", { method: "POST", body: "hé" }); return [r.headers.get("content-type"), await r.text(), r.bodyUsed]; }],
  ["request json body", async () => { const r = new Request("https://x/", { method: "POST", body: '{"a":[1]}' }); return await r.json(); }],
  ["request arrayBuffer body", async () => { const r = new Request("https://x/", { method: "POST", body: new Uint8Array([1, 2, 3]) }); return [r.headers.get("content-type"), await r.arrayBuffer()]; }],
  ["request body read twice throws", async () => { const r = new Request("https://x/", { method: "POST", body: "a" }); await r.text(); return r.text(); }],
  ["request from request", async () => { const a = new Request("https://x/", { method: "POST", body: "a", headers: { x: "1" } }); const b = new Request(a, { headers: { y: "2" } }); return [b.url, b.method, entries(b.headers), await b.text(), a.bodyUsed]; }],
  ["request clone", async () => { const a = new Request("https://x/", { method: "POST", body: "abc" }); const b = a.clone(); return [await a.text(), await b.text()]; }],
  ["request clone of used body throws", async () => { const a = new Request("https://x/", { method: "POST", body: "abc" }); await a.text(); return a.clone(); }],
  ["request redirect option", () => new Request("https://x/", { redirect: "manual" }).redirect],
  ["request bad redirect throws", () => new Request("https://x/", { redirect: "nope" })],
  ["request body getter is stream", async () => { const r = new Request("https://x/", { method: "POST", body: "hi" }); const b = r.body; return [b instanceof ReadableStream, r.body === b, r.bodyUsed, await r.text()]; }],
  ["request from URL object", () => new Request(new URL("https://x/p?q")).url],
  ["request invalid method throws", () => new Request("https://x/", { method: "a b" })],
  ["request toStringTag", () => Object.prototype.toString.call(new Request("https://x/"))],
  ["request urlsearchparams body", async () => { const r = new Request("https://x/", { method: "POST", body: new URLSearchParams("a=1&b=2 3") }); return [r.headers.get("content-type"), await r.text()]; }],
  ["request explicit content-type kept", () => new Request("https://x/", { method: "POST", body: "x", headers: { "content-type": "text/html" } }).headers.get("content-type")],

  ["request unknown method", () => [new Request("https://x/", { method: "foo" }).method, new Request("https://x/", { method: "PROPFIND" }).method]],
  ["request connect method throws", () => new Request("https://x/", { method: "CONNECT" })],
  ["request cf option", () => new Request("https://x/", { cf: { cacheTtl: 5 } }).cf],
  ["request own keys", () => Object.keys(new Request("https://x/"))],

  // ---- Response ----------------------------------------------------------------------------
  ["response defaults", () => { const r = new Response(); return [r.status, r.statusText, r.ok, r.type, r.url, r.redirected, r.body, r.bodyUsed, entries(r.headers)]; }],
  ["response string body", async () => { const r = new Response("héllo"); return [entries(r.headers), await r.text()]; }],
  ["response status and statusText", () => { const r = new Response("x", { status: 404, statusText: "Not Found" }); return [r.status, r.statusText, r.ok]; }],
  ["response status 199 throws", () => new Response("x", { status: 199 })],
  ["response status 600 throws", () => new Response("x", { status: 600 })],
  ["response status 101 throws", () => new Response(null, { status: 101 })],
  ["response status 204 with body throws", () => new Response("x", { status: 204 })],
  ["response status 204 null body", () => new Response(null, { status: 204 }).status],
  ["response arraybuffer body", async () => { const r = new Response(new Uint8Array([104, 105]).buffer); return [entries(r.headers), await r.text()]; }],
  ["response typed array body copies", async () => { const u = new Uint8Array([1, 2]); const r = new Response(u); u[0] = 9; return await r.arrayBuffer(); }],
  ["response dataview body", async () => { const u = new Uint8Array([1, 2, 3, 4]); return await new Response(new DataView(u.buffer, 1, 2)).arrayBuffer(); }],
  ["response urlsearchparams body", async () => { const r = new Response(new URLSearchParams({ a: "1", b: "x y" })); return [entries(r.headers), await r.text()]; }],
  ["response object body stringified", async () => { const r = new Response({}); return [entries(r.headers), await r.text()]; }],
  ["response json method", async () => await new Response('{"a":1}').json()],
  ["response bad json rejects", async () => await new Response("{").json()],
  ["response null body text", async () => { const r = new Response(null); return [await r.text(), r.bodyUsed]; }],
  ["response used twice rejects", async () => { const r = new Response("a"); await r.text(); return await r.arrayBuffer(); }],
  ["response bodyUsed after read", async () => { const r = new Response("a"); await r.text(); return r.bodyUsed; }],
  ["response clone", async () => { const r = new Response("abc", { status: 201, headers: { x: "1" } }); const c = r.clone(); return [c.status, entries(c.headers), await r.text(), await c.text()]; }],
  ["response clone after use throws", async () => { const r = new Response("abc"); await r.text(); return r.clone(); }],
  ["response.json", async () => { const r = Response.json({ a: [1, "b"] }); return [r.status, entries(r.headers), await r.text()]; }],
  ["response.json with init", async () => { const r = Response.json([1], { status: 400, headers: { "x-a": "b" } }); return [r.status, entries(r.headers)]; }],
  ["response.json keeps explicit content-type", () => entries(Response.json(1, { headers: { "content-type": "application/vnd+json" } }).headers)],
  ["response.json undefined throws", () => Response.json(undefined)],
  ["response.redirect", () => { const r = Response.redirect("https://example.com/a b"); return [r.status, r.statusText, entries(r.headers), r.body, r.ok]; }],
  ["response.redirect 301", () => Response.redirect("https://example.com/", 301).status],
  ["response.redirect bad status throws", () => Response.redirect("https://example.com/", 200)],
  ["response.redirect relative throws", () => Response.redirect("/a")],
  ["response.redirect headers immutable", () => Response.redirect("https://example.com/").headers.set("a", "b")],
  ["response.error", () => { const r = Response.error(); return [r.type, r.status, r.ok, r.body]; }],
  ["response body stream read", async () => { const reader = new Response("hey").body.getReader(); const chunks = []; for (;;) { const { value, done } = await reader.read(); if (done) break; chunks.push(...value); } return chunks; }],
  ["response statusText with newline throws", () => new Response("x", { statusText: "a\nb" })],
  ["response toStringTag", () => Object.prototype.toString.call(new Response())],
  ["response empty string body", async () => { const r = new Response(""); return [entries(r.headers), r.body === null, await r.text()]; }],

  ["response.json undefined body", async () => { const r = Response.json(undefined); return [entries(r.headers), await r.text()]; }],
  ["response.json function body", async () => { const r = Response.json(() => 1); return await r.text(); }],
  ["response clone of error", () => { const r = Response.error().clone(); return [r.type, r.status]; }],
  ["response status as string", () => new Response(null, { status: "201" }).status],
  ["response status fractional throws", () => new Response(null, { status: 200.5 })],

  // ---- ReadableStream ------------------------------------------------------------------------
  ["stream start enqueue close", async () => { const s = new ReadableStream({ start(c) { c.enqueue(enc("ab")); c.enqueue(enc("c")); c.close(); } }); return await new Response(s).text(); }],
  ["stream pull", async () => { let n = 0; const s = new ReadableStream({ pull(c) { if (n < 3) c.enqueue(enc(String(n++))); else c.close(); } }); return await new Response(s).text(); }],
  ["stream async iteration", async () => { const s = new ReadableStream({ start(c) { c.enqueue(1); c.enqueue(2); c.close(); } }); const out = []; for await (const x of s) out.push(x); return out; }],
  ["stream reader read done", async () => { const s = new ReadableStream({ start(c) { c.enqueue("x"); c.close(); } }); const r = s.getReader(); return [await r.read(), await r.read(), s.locked]; }],
  ["stream locked getReader throws", () => { const s = new ReadableStream(); s.getReader(); return s.getReader(); }],
  ["stream error rejects read", async () => { const s = new ReadableStream({ start(c) { c.error(new RangeError("boom")); } }); return await s.getReader().read(); }],
  ["stream string chunks in body reject", async () => { const s = new ReadableStream({ start(c) { c.enqueue("text"); c.close(); } }); return await new Response(s).text(); }],
  ["stream body used after read", async () => { const s = new ReadableStream({ start(c) { c.enqueue(enc("a")); c.close(); } }); const r = new Response(s); await r.text(); return [r.bodyUsed, r.body === s]; }],
  ["stream tee", async () => { const s = new ReadableStream({ start(c) { c.enqueue(enc("ab")); c.close(); } }); const [a, b] = s.tee(); return [await new Response(a).text(), await new Response(b).text()]; }],
  ["stream response clone", async () => { const s = new ReadableStream({ start(c) { c.enqueue(enc("ab")); c.close(); } }); const r = new Response(s); const c = r.clone(); return [await r.text(), await c.text()]; }],
  ["stream cancel", async () => { let reason; const s = new ReadableStream({ cancel(r) { reason = r; } }); await s.cancel("why"); return [reason, await s.getReader().read()]; }],
  ["stream locked body throws", () => { const s = new ReadableStream(); s.getReader(); return new Response(s); }],

  // ---- URL ---------------------------------------------------------------------------------
  ["url components", () => { const u = new URL("https://user:pw@Example.COM:8080/p/a/t/h?query=string#hash"); return [u.href, u.origin, u.protocol, u.username, u.password, u.host, u.hostname, u.port, u.pathname, u.search, u.hash]; }],
  ["url relative with base", () => new URL("../c?d", "https://a.com/x/y/z").href],
  ["url invalid throws", () => new URL("not a url")],
  ["url canParse", () => [URL.canParse("https://a"), URL.canParse("nope"), URL.canParse("b", "https://a/")]],
  ["url default port dropped", () => new URL("https://a.com:443/").href],
  ["url idna", () => new URL("https://mañana.com/").hostname],
  ["url percent-encodes path", () => new URL("https://a.com/a b/é").pathname],
  ["url setters", () => { const u = new URL("https://a.com/x"); u.pathname = "/y z"; u.search = "a=1"; u.hash = "h"; u.port = "8443"; u.hostname = "b.org"; u.username = "me"; u.protocol = "http"; return u.href; }],
  ["url invalid port ignored", () => { const u = new URL("https://a.com/"); u.port = "99999"; return u.port; }],
  ["url href setter invalid throws", () => { const u = new URL("https://a.com/"); u.href = "nope"; }],
  ["url searchParams live", () => { const u = new URL("https://a.com/?a=1"); const p = u.searchParams; p.append("b", "x y"); const s1 = u.search; u.search = "?c=3"; return [s1, p.get("c"), p.get("a"), u.searchParams === p]; }],
  ["url searchParams delete all clears ?", () => { const u = new URL("https://a.com/?a=1"); u.searchParams.delete("a"); return u.href; }],
  ["url toJSON toString", () => { const u = new URL("https://a.com/p"); return [JSON.stringify({ u }), String(u)]; }],
  ["url data url", () => { const u = new URL("data:text/plain,hi"); return [u.protocol, u.pathname, u.origin]; }],
  ["url ipv6", () => new URL("http://[::1]:80/").host],
  ["url file", () => new URL("file:///etc/passwd").href],
  ["url blob origin", () => new URL("blob:https://a.com/uuid").origin],
  ["url missing arg throws", () => new URL()],

  ["url component forms", () => ["https://user@host/", "https://:pw@host/", "mailto:a@b", "http://h:8080?x#y", "javascript:alert(1)", "foo://u:p@h:1/p?q#f", "http://h/p?#", "foo:/a/b", "foo:opaque?q#h", "http://[2001:db8::1]:8080/", "http://1.2.3.4/", "http://0x7f.1/", "https://xn--maana-pta.com/"].map((s) => { const u = new URL(s); return [u.href, u.origin, u.protocol, u.username, u.password, u.host, u.hostname, u.port, u.pathname, u.search, u.hash]; })],
  ["url setters on forms", () => { const out = []; for (const s of ["mailto:a@b", "foo://h/p", "file:///x", "http://u@h/"]) { const u = new URL(s); u.username = "n"; u.password = "p"; u.host = "e.com:9"; u.pathname = "q"; u.hash = ""; u.search = "?"; out.push(u.href); } return out; }],
  ["url hash and search emptied", () => { const u = new URL("http://h/?a#b"); u.search = ""; u.hash = ""; return [u.href, u.search, u.hash]; }],

  // ---- URLSearchParams ---------------------------------------------------------------------
  ["params from string", () => { const p = new URLSearchParams("?a=1&b=2&a=3&c=%20x+y"); return [p.get("a"), p.getAll("a"), p.get("c"), p.has("b"), p.get("z"), p.size]; }],
  ["params from object", () => new URLSearchParams({ a: "1", b: "é" }).toString()],
  ["params from pairs", () => new URLSearchParams([["a", "1"], ["b", "2"]]).toString()],
  ["params bad pair throws", () => new URLSearchParams([["a"]])],
  ["params set delete", () => { const p = new URLSearchParams("a=1&b=2&a=3"); p.set("a", "9"); p.delete("b"); return p.toString(); }],
  ["params delete with value", () => { const p = new URLSearchParams("a=1&a=2"); p.delete("a", "1"); return [p.toString(), p.has("a", "2"), p.has("a", "1")]; }],
  ["params sort stable", () => { const p = new URLSearchParams("c=1&a=2&b=3&a=1"); p.sort(); return p.toString(); }],
  ["params serialization", () => new URLSearchParams({ "a b": "c&d=e", "~*'()": "!" }).toString()],
  ["params iteration", () => { const p = new URLSearchParams("a=1&b=2"); const f = []; p.forEach((v, k) => f.push(k + v)); return [[...p], [...p.keys()], [...p.values()], f]; }],
  ["params copy", () => { const a = new URLSearchParams("x=1"); const b = new URLSearchParams(a); b.append("y", "2"); return [a.toString(), b.toString()]; }],

  ["params iterator tag", () => Object.prototype.toString.call(new URLSearchParams().entries())],
  ["params live iteration", () => { const p = new URLSearchParams("a=1&b=2"); const out = []; for (const [k] of p) { out.push(k); if (k === "a") p.append("c", "3"); } return out; }],

  // ---- TextEncoder / TextDecoder -------------------------------------------------------------
  ["encoder", () => { const e = new TextEncoder(); return [e.encoding, e.encode("é€😀"), e.encode()]; }],
  ["encoder lone surrogate", () => new TextEncoder().encode("a\ud800b")],
  ["encodeInto", () => { const d = new Uint8Array(5); const r = new TextEncoder().encodeInto("a€😀", d); return [r, d]; }],
  ["decoder basic", () => new TextDecoder().decode(new Uint8Array([104, 195, 169]))],
  ["decoder strips bom", () => [new TextDecoder().decode(new Uint8Array([0xef, 0xbb, 0xbf, 0x61])), new TextDecoder("utf-8", { ignoreBOM: true }).decode(new Uint8Array([0xef, 0xbb, 0xbf, 0x61])).length]],
  ["decoder replacement", () => new TextDecoder().decode(new Uint8Array([0x61, 0xff, 0xe2, 0x82, 0x62, 0xf0, 0x9f]))],
  ["decoder fatal throws", () => new TextDecoder("utf-8", { fatal: true }).decode(new Uint8Array([0xff]))],
  ["decoder stream", () => { const d = new TextDecoder(); const b = enc("€😀"); return [d.decode(b.slice(0, 2), { stream: true }), d.decode(b.slice(2, 5), { stream: true }), d.decode(b.slice(5))]; }],
  ["decoder stream flush incomplete", () => { const d = new TextDecoder(); return [d.decode(new Uint8Array([0xe2, 0x82]), { stream: true }), d.decode()]; }],
  ["decoder labels", () => [new TextDecoder("UTF8").encoding, new TextDecoder(" unicode-1-1-utf-8 ").encoding, new TextDecoder().fatal, new TextDecoder().ignoreBOM]],
  ["decoder unknown label throws", () => new TextDecoder("nope")],
  ["decoder dataview and arraybuffer", () => { const u = enc("xhiy"); return [new TextDecoder().decode(new DataView(u.buffer, 1, 2)), new TextDecoder().decode(u.buffer)]; }],
  ["decoder undefined input", () => new TextDecoder().decode()],
  ["decoder bad input throws", () => new TextDecoder().decode("str")],

  // ---- atob / btoa ---------------------------------------------------------------------------
  ["btoa", () => [btoa(""), btoa("a"), btoa("ab"), btoa("\xff\xfe")]],
  ["btoa non latin1 throws", () => btoa("€")],
  ["atob", () => [atob("YQ=="), atob("YQ"), atob(" Y W I = "), atob("//4=").charCodeAt(0)]],
  ["atob invalid throws", () => atob("a")],
  ["atob bad char throws", () => atob("Y*==")],
  ["atob no args throws", () => atob()],
  ["atob null", () => atob(null)],

  // ---- structuredClone -----------------------------------------------------------------------
  ["clone plain", () => { const o = { a: [1, { b: "c" }], d: null, e: undefined }; const c = structuredClone(o); return [c, c !== o, c.a !== o.a]; }],
  ["clone cycles", () => { const o = { n: 1 }; o.self = o; const c = structuredClone(o); return [c.self === c, c !== o]; }],
  ["clone types", () => { const c = structuredClone([new Date(5), /x/gi, new Map([[1, "a"]]), new Set([2]), new Uint16Array([1, 2]), 10n]); return [c[0] instanceof Date, c]; }],
  ["clone arraybuffer copies", () => { const b = new Uint8Array([1, 2]).buffer; const c = structuredClone(b); new Uint8Array(b)[0] = 9; return c; }],
  ["clone shared buffer views", () => { const b = new ArrayBuffer(4); const c = structuredClone([new Uint8Array(b), new Uint8Array(b, 2)]); return [c[0].buffer === c[1].buffer, c[1].byteOffset]; }],
  ["clone error", () => { const e = structuredClone(new RangeError("bad")); return [e instanceof RangeError, e.name, e.message]; }],
  ["clone function throws", () => structuredClone(() => 1)],
  ["clone symbol throws", () => structuredClone(Symbol("x"))],
  ["clone nested function throws", () => structuredClone({ f() {} })],
  ["clone class instance becomes plain", () => { class A { constructor() { this.x = 1; } } const c = structuredClone(new A()); return [c.constructor === Object, c.x]; }],
  ["clone boxed primitives", () => { const c = structuredClone([Object(1), Object("s"), Object(true)]); return [typeof c[0], c[0] + 1, String(c[1]), c[2].valueOf()]; }],
  ["clone headers throws", () => structuredClone(new Headers())],
  ["clone no args throws", () => structuredClone()],

  ["clone transfer view", () => { const b = new Uint8Array([1, 2, 3]).buffer; const v = new Uint8Array(b, 1); const c = structuredClone({ v }, { transfer: [b] }); return [c.v, b.byteLength]; }],
  ["clone transfer bad item throws", () => structuredClone(1, { transfer: [{}] })],
  ["clone crypto key", async () => { const k = await crypto.subtle.importKey("raw", enc("k"), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]); const c = structuredClone(k); return [c instanceof CryptoKey, Object.prototype.toString.call(c)]; }],
  ["clone request", () => structuredClone(new Request("https://x/"))],
  ["clone url", () => structuredClone(new URL("https://x/"))],
  ["clone promise throws", () => structuredClone(Promise.resolve())],
  ["clone weakmap throws", () => structuredClone(new WeakMap())],
  ["clone error with cause", () => { const e = structuredClone(new Error("a", { cause: 5 })); return [e.message, e.cause]; }],
  ["clone getter invoked", () => structuredClone({ get x() { return 3; } })],
  ["clone sparse array", () => { const a = [1, , 3]; a.p = "x"; const c = structuredClone(a); return [c.length, 1 in c, c.p]; }],
  ["clone transfer", () => { const b = new ArrayBuffer(2); const c = structuredClone(b, { transfer: [b] }); return [c.byteLength, b.byteLength]; }],

  // ---- queueMicrotask ------------------------------------------------------------------------
  ["queueMicrotask order", async () => { const log = []; queueMicrotask(() => log.push(1)); Promise.resolve().then(() => log.push(2)); log.push(0); await new Promise((r) => queueMicrotask(r)); await null; return log; }],
  ["queueMicrotask non-function throws", () => queueMicrotask(1)],

  // ---- DOMException --------------------------------------------------------------------------
  ["domexception", () => { const e = new DOMException("m", "NotFoundError"); return [e.name, e.message, e.code, e instanceof Error, Object.prototype.toString.call(e), DOMException.NOT_FOUND_ERR]; }],
  ["domexception defaults", () => { const e = new DOMException(); return [e.name, e.message, e.code]; }],

  // ---- crypto --------------------------------------------------------------------------------
  ["getRandomValues", () => { const a = new Uint8Array(32); const r = crypto.getRandomValues(a); return [r === a, a.some((x) => x !== 0)]; }],
  ["getRandomValues 65536 ok", () => crypto.getRandomValues(new Uint8Array(65536)).length],
  ["getRandomValues too big throws", () => crypto.getRandomValues(new Uint8Array(65537))],
  ["getRandomValues float throws", () => crypto.getRandomValues(new Float32Array(4))],
  ["getRandomValues other int arrays", () => [crypto.getRandomValues(new Uint32Array(2)).length, crypto.getRandomValues(new BigInt64Array(1)).length]],
  ["randomUUID", () => { const a = crypto.randomUUID(); return [/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(a), a !== crypto.randomUUID()]; }],
  ["digest sha-1", async () => hex(await crypto.subtle.digest("SHA-1", enc("abc")))],
  ["digest sha-256", async () => hex(await crypto.subtle.digest("SHA-256", enc("abc")))],
  ["digest sha-384", async () => hex(await crypto.subtle.digest({ name: "SHA-384" }, enc("abc")))],
  ["digest sha-512 lowercase name", async () => hex(await crypto.subtle.digest("sha-512", enc("")))],
  ["digest of arraybuffer", async () => hex(await crypto.subtle.digest("SHA-256", new ArrayBuffer(0)))],
  ["digest returns arraybuffer", async () => (await crypto.subtle.digest("SHA-256", enc("x"))) instanceof ArrayBuffer],
  ["digest md5", async () => hex(await crypto.subtle.digest("MD5", enc("abc")))],
  ["digest unsupported rejects", async () => await crypto.subtle.digest("SHA-3", enc("x"))],
  ["digest bad data rejects", async () => await crypto.subtle.digest("SHA-256", "str")],
  ["digest returns promise", () => crypto.subtle.digest("SHA-256", enc("")) instanceof Promise],
  ["hmac sign", async () => { const k = await crypto.subtle.importKey("raw", enc("key"), { name: "HMAC", hash: "SHA-256" }, false, ["sign", "verify"]); return hex(await crypto.subtle.sign("HMAC", k, enc("The quick brown fox jumps over the lazy dog"))); }],
  ["hmac sign sha-1 and sha-512", async () => { const out = []; for (const hash of ["SHA-1", { name: "SHA-512" }]) { const k = await crypto.subtle.importKey("raw", enc("key"), { name: "HMAC", hash }, false, ["sign"]); out.push(hex(await crypto.subtle.sign({ name: "HMAC" }, k, enc("msg")))); } return out; }],
  ["hmac verify", async () => { const k = await crypto.subtle.importKey("raw", enc("key"), { name: "HMAC", hash: "SHA-256" }, false, ["sign", "verify"]); const sig = await crypto.subtle.sign("HMAC", k, enc("m")); const bad = new Uint8Array(sig); bad[0] ^= 1; return [await crypto.subtle.verify("HMAC", k, sig, enc("m")), await crypto.subtle.verify("HMAC", k, bad, enc("m")), await crypto.subtle.verify("HMAC", k, sig.slice(1), enc("m"))]; }],
  ["hmac key properties", async () => { const k = await crypto.subtle.importKey("raw", enc("key"), { name: "HMAC", hash: "SHA-256" }, true, ["verify", "sign"]); return [k.type, k.extractable, k.algorithm, k.usages.slice().sort(), k instanceof CryptoKey]; }],
  ["hmac export raw", async () => { const k = await crypto.subtle.importKey("raw", enc("key"), { name: "HMAC", hash: "SHA-256" }, true, ["sign"]); return await crypto.subtle.exportKey("raw", k); }],
  ["hmac export non-extractable rejects", async () => { const k = await crypto.subtle.importKey("raw", enc("key"), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]); return await crypto.subtle.exportKey("raw", k); }],
  ["hmac sign with verify-only key rejects", async () => { const k = await crypto.subtle.importKey("raw", enc("key"), { name: "HMAC", hash: "SHA-256" }, false, ["verify"]); return await crypto.subtle.sign("HMAC", k, enc("m")); }],
  ["hmac bad usage rejects", async () => await crypto.subtle.importKey("raw", enc("key"), { name: "HMAC", hash: "SHA-256" }, false, ["encrypt"])],
  ["hmac empty usages rejects", async () => await crypto.subtle.importKey("raw", enc("key"), { name: "HMAC", hash: "SHA-256" }, false, [])],
  ["hmac md5", async () => { const k = await crypto.subtle.importKey("raw", enc("key"), { name: "HMAC", hash: "MD5" }, false, ["sign"]); return [k.algorithm, hex(await crypto.subtle.sign("HMAC", k, enc("m")))]; }],
  ["hmac unknown hash rejects", async () => await crypto.subtle.importKey("raw", enc("key"), { name: "HMAC", hash: "SHA-3" }, false, ["sign"])],
  ["importKey unsupported algorithm rejects", async () => await crypto.subtle.importKey("raw", enc("0123456789abcdef"), { name: "AES-GCM" }, false, ["encrypt"])],
  ["importKey jwk hmac", async () => { const k = await crypto.subtle.importKey("jwk", { kty: "oct", k: "a2V5", alg: "HS256" }, { name: "HMAC", hash: "SHA-256" }, true, ["sign"]); return hex(await crypto.subtle.exportKey("raw", k)); }],
  ["generateKey hmac", async () => { const k = await crypto.subtle.generateKey({ name: "HMAC", hash: "SHA-256" }, true, ["sign"]); return [k.algorithm, (await crypto.subtle.exportKey("raw", k)).byteLength]; }],
  ["timingSafeEqual", () => [crypto.subtle.timingSafeEqual(enc("ab"), enc("ab")), crypto.subtle.timingSafeEqual(enc("ab"), enc("ac"))]],
  ["crypto toStringTag", () => [Object.prototype.toString.call(crypto), Object.prototype.toString.call(crypto.subtle)]],
  // ---- more edges ----------------------------------------------------------------------------
  ["response lone surrogate body", async () => (await new Response("a\ud800").text()).charCodeAt(1)],
  ["headers value crlf edges trimmed", () => new Headers({ a: "\r\n x \r\n" }).get("a")],
  ["request arraybuffer body has no content-type", () => new Request("https://x/", { method: "POST", body: new ArrayBuffer(1) }).headers.has("content-type")],
  ["request GET body null", () => new Request("https://x/").body],
  ["response statusText default for 404", () => new Response(null, { status: 404 }).statusText],
  ["response.redirect from URL object", () => Response.redirect(new URL("https://a.com/x?y")).headers.get("location")],
  ["response.error headers immutable", () => Response.error().headers.set("a", "b")],
  ["response.json null body status throws", () => Response.json({}, { status: 204 })],
  ["response headers from array", () => entries(new Response("", { headers: [["b", "2"], ["a", "1"]] }).headers)],
  ["response ok range", () => [200, 299, 300, 404, 500].map((status) => new Response(null, { status }).ok)],
  ["response bytes method", async () => { const b = await new Response("hi").bytes(); return [b instanceof Uint8Array, b]; }],
  ["response text of invalid utf-8", async () => await new Response(new Uint8Array([0x61, 0xff])).text()],
  ["response text strips bom", async () => (await new Response(new Uint8Array([0xef, 0xbb, 0xbf, 0x61])).text()).length],
  ["request text of stream body", async () => await new Request("https://x/", { method: "POST", body: new ReadableStream({ start(c) { c.enqueue(enc("s")); c.close(); } }) }).text()],
  ["url username with at", () => { const u = new URL("https://a.com/"); u.username = "a@b"; u.password = "p:w"; return u.href; }],
  ["url search with hash chars", () => { const u = new URL("https://a.com/"); u.search = "a=#b"; return [u.search, u.href]; }],
  ["url protocol change special to non-special ignored", () => { const u = new URL("https://a.com/"); u.protocol = "foo"; return u.protocol; }],
  ["url host setter", () => { const u = new URL("https://a.com/"); u.host = "b.com:81"; return [u.host, u.port]; }],
  ["url searchParams plus and percent", () => { const p = new URL("https://a.com/?a=b+c&d=%zz&e=%41").searchParams; return [p.get("a"), p.get("d"), p.get("e")]; }],
  ["url searchParams sort updates url", () => { const u = new URL("https://a.com/?b=1&a=2"); u.searchParams.sort(); return u.search; }],
  ["url origin opaque", () => [new URL("foo://bar/x").origin, new URL("http://a.com:8080/").origin]],
  ["url trailing spaces and tabs stripped", () => new URL("  https://a.c\tom/ ").href],
  ["url windows drive file", () => new URL("file:///C:/x/../y").pathname],
  ["url parse static", () => [URL.parse("nope"), URL.parse("b", "https://a/").href]],
  ["params size after ops", () => { const p = new URLSearchParams("a=1&b=2"); p.delete("a"); p.append("c", "3"); return p.size; }],
  ["params from string with only ?", () => [new URLSearchParams("?").toString(), new URLSearchParams("").size]],
  ["params has value arg undefined", () => new URLSearchParams("a=1").has("a", undefined)],
  ["encoder encode undefined and number", () => [new TextEncoder().encode(undefined), new TextEncoder().encode(12)]],
  ["btoa number", () => btoa(12)],
  ["atob whitespace everywhere", () => atob("\tY\nW\fJ\rj ")],
  ["getRandomValues dataview throws", () => crypto.getRandomValues(new DataView(new ArrayBuffer(4)))],
  ["getRandomValues plain array throws", () => crypto.getRandomValues([1, 2])],
  ["sign with non-key rejects", async () => await crypto.subtle.sign("HMAC", {}, enc("m"))],
  ["sign with wrong algorithm rejects", async () => { const k = await crypto.subtle.importKey("raw", enc("key"), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]); return await crypto.subtle.sign("RSASSA-PKCS1-v1_5", k, enc("m")); }],
  ["importKey hmac with length", async () => { const k = await crypto.subtle.importKey("raw", enc("keys"), { name: "HMAC", hash: "SHA-256", length: 32 }, false, ["sign"]); return k.algorithm.length; }],
  ["importKey hmac empty key rejects", async () => await crypto.subtle.importKey("raw", new Uint8Array(0), { name: "HMAC", hash: "SHA-256" }, false, ["sign"])],
  ["importKey hmac missing hash rejects", async () => await crypto.subtle.importKey("raw", enc("k"), { name: "HMAC" }, false, ["sign"])],
  ["domexception options object", () => { const e = new DOMException("m", { name: "AbortError", cause: 1 }); return [e.name, e.code, e.cause]; }],
  ["domexception unknown name code", () => new DOMException("m", "Whatever").code],
  ["clone date invalid", () => Number.isNaN(structuredClone(new Date(NaN)).getTime())],
  ["clone regexp lastIndex reset", () => { const r = /a/g; r.lastIndex = 3; return structuredClone(r).lastIndex; }],
  ["clone nested maps keep identity", () => { const o = {}; const c = structuredClone(new Map([[o, o]])); const [[k, v]] = [...c]; return k === v; }],
  ["clone dom exception", () => { const e = structuredClone(new DOMException("m", "AbortError")); return [e instanceof DOMException, e.name, e.message]; }],
  ["proxy pattern new Response(r.body, r)", async () => { const r = new Response("abc", { status: 201, statusText: "C", headers: { x: "1" } }); const p = new Response(r.body, r); return [p.status, p.statusText, entries(p.headers), await p.text(), r.bodyUsed]; }],
  ["new Request(url, request)", async () => { const a = new Request("https://a/", { method: "PUT", body: "b", headers: { x: "1" } }); const b = new Request("https://b/", a); return [b.url, b.method, entries(b.headers), await b.text()]; }],
  ["new Request(url, GET request)", () => { const a = new Request("https://a/", { headers: { x: "1" } }); const b = new Request("https://b/", a); return [b.method, entries(b.headers), b.body]; }],
  ["response body stream from used response throws", async () => { const r = new Response("a"); await r.text(); return new Response(r.body); }],
  ["response headers from response headers", () => { const r = new Response("a", { headers: { "X-A": "1" } }); return entries(new Response("b", { headers: r.headers }).headers); }],

  // ---- Event, EventTarget, AbortController ------------------------------------------------------
  ["event basics", () => { const e = new Event("x", { cancelable: true }); e.preventDefault(); return [e.type, e.bubbles, e.cancelable, e.defaultPrevented, e.isTrusted, e.eventPhase, e.target, Object.prototype.toString.call(e)]; }],
  ["event target dispatch", () => { const t = new EventTarget(); const log = []; const f = (e) => log.push(["f", e.type, e.target === t, e.currentTarget === t, e.eventPhase]); t.addEventListener("a", f); t.addEventListener("a", f); t.addEventListener("a", { handleEvent(e) { log.push(["obj", this !== t]); } }); t.addEventListener("a", () => log.push("once"), { once: true }); const r1 = t.dispatchEvent(new Event("a")); t.dispatchEvent(new Event("a")); t.removeEventListener("a", f); t.dispatchEvent(new Event("a")); return [r1, log]; }],
  ["event dispatch returns false when canceled", () => { const t = new EventTarget(); t.addEventListener("a", (e) => e.preventDefault()); return [t.dispatchEvent(new Event("a", { cancelable: true })), t.dispatchEvent(new Event("a"))]; }],
  ["event stopImmediatePropagation", () => { const t = new EventTarget(); const log = []; t.addEventListener("a", (e) => { log.push(1); e.stopImmediatePropagation(); }); t.addEventListener("a", () => log.push(2)); t.dispatchEvent(new Event("a")); return log; }],
  ["event no type throws", () => new Event()],
  ["dispatch non-event throws", () => new EventTarget().dispatchEvent({ type: "a" })],
  ["abort controller", () => { const c = new AbortController(); const log = []; c.signal.addEventListener("abort", (e) => log.push(e.type)); c.signal.onabort = () => log.push("on"); const before = c.signal.aborted; c.abort(); c.abort(); return [before, c.signal.aborted, c.signal.reason instanceof DOMException, c.signal.reason.name, log]; }],
  ["abort with reason", () => { const c = new AbortController(); c.abort("why"); return [c.signal.reason, (() => { try { c.signal.throwIfAborted(); } catch (e) { return e; } })()]; }],
  ["AbortSignal.abort", () => { const s = AbortSignal.abort(); return [s.aborted, s.reason.name, AbortSignal.abort(5).reason]; }],
  ["AbortSignal.any", () => { const a = new AbortController(), b = new AbortController(); const s = AbortSignal.any([a.signal, b.signal]); b.abort("b"); return [s.aborted, s.reason]; }],
  ["AbortSignal constructor throws", () => new AbortSignal()],
  ["listener removed by signal", () => { const t = new EventTarget(); const c = new AbortController(); let n = 0; t.addEventListener("a", () => n++, { signal: c.signal }); t.dispatchEvent(new Event("a")); c.abort(); t.dispatchEvent(new Event("a")); return n; }],
  ["request signal", () => { const c = new AbortController(); const r = new Request("https://x/", { signal: c.signal }); const plain = new Request("https://x/"); return [r.signal === c.signal, plain.signal instanceof AbortSignal, plain.signal.aborted, new Request(r).signal === c.signal]; }],
  ["abort signal is event target", () => [AbortSignal.abort() instanceof EventTarget, Object.prototype.toString.call(new AbortController().signal)]],
  ["event non-cancelable preventDefault", () => { const e = new Event("a"); e.preventDefault(); return [e.defaultPrevented, e.returnValue, e.currentTarget, e.composedPath()]; }],
  ["event after dispatch", () => { const t = new EventTarget(); const e = new Event("a"); let during; t.addEventListener("a", (ev) => { during = [ev.composedPath().length, ev.eventPhase]; }); t.dispatchEvent(e); return [during, e.target === t, e.currentTarget, e.eventPhase]; }],
  ["event redispatch", () => { const t = new EventTarget(); const e = new Event("a"); t.dispatchEvent(e); return t.dispatchEvent(e); }],

  // ---- Blob, File, FormData -----------------------------------------------------------------------
  ["blob basics", async () => { const b = new Blob(["ab", new Uint8Array([99]), new Blob(["d"])], { type: "Text/Plain" }); return [b.size, b.type, await b.text(), await b.arrayBuffer(), Object.prototype.toString.call(b)]; }],
  ["blob type non-ascii dropped", () => new Blob([], { type: "a\u00e9" }).type],
  ["blob slice", async () => { const b = new Blob(["abcdef"]); return [await b.slice(1, 3).text(), await b.slice(-2).text(), await b.slice(4, 2).text(), b.slice(0, 1, "X/Y").type, b.slice().size]; }],
  ["blob stream", async () => await new Response(new Blob(["st"]).stream()).text()],
  ["blob bad parts throws", () => new Blob("abc")],
  ["blob lone surrogate part", async () => (await new Blob(["\ud800"]).arrayBuffer()).byteLength],
  ["file basics", () => { const f = new File(["x"], "a.txt", { type: "text/plain", lastModified: 42 }); return [f.name, f.size, f.type, f.lastModified, f instanceof Blob, Object.prototype.toString.call(f)]; }],
  ["file name required", () => new File(["x"])],
  ["formdata basics", () => { const f = new FormData(); f.append("a", "1"); f.append("a", "2"); f.append("b", "x\ny"); f.set("c", "3"); f.delete("b"); return [f.get("a"), f.getAll("a"), f.has("b"), f.get("zz"), [...f], [...f.keys()]]; }],
  ["formdata blob entry becomes file", () => { const f = new FormData(); f.append("f", new Blob(["abc"], { type: "text/x" })); f.append("g", new Blob(["d"]), "named.bin"); const a = f.get("f"), b = f.get("g"); return [a instanceof File, a.name, a.type, a.size, b.name]; }],
  ["formdata iterator tag", () => Object.prototype.toString.call(new FormData().entries())],
  ["request body blob sets type", async () => { const r = new Request("https://x/", { method: "POST", body: new Blob(["hi"], { type: "text/x" }) }); return [r.headers.get("content-type"), await r.text()]; }],
  ["response blob body without type", () => new Response(new Blob(["hi"])).headers.has("content-type")],
  ["response.blob()", async () => { const b = await new Response("hey", { headers: { "content-type": "text/x" } }).blob(); return [b instanceof Blob, b.type, b.size, await b.text()]; }],
  ["formdata body roundtrip", async () => { const f = new FormData(); f.append("a", "1\n2"); f.append("file", new File(["xyz"], "f.txt", { type: "text/plain" })); const r = new Response(f); const ct = r.headers.get("content-type"); const g = await r.formData(); const file = g.get("file"); return [ct.startsWith("multipart/form-data; boundary="), g.get("a"), file instanceof File, file.name, file.type, await file.text()]; }],
  ["formdata urlencoded parse", async () => { const g = await new Request("https://x/", { method: "POST", body: new URLSearchParams("a=1&b=x+y&a=3") }).formData(); return [...g]; }],
  ["formdata parse multipart by hand", async () => { const body = "--XyZ\r\nContent-Disposition: form-data; name=\"t\"\r\n\r\nhello\r\n--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n\u0001\u0002\r\n--XyZ--\r\n"; const g = await new Response(body, { headers: { "content-type": "multipart/form-data; boundary=XyZ" } }).formData(); const f = g.get("f"); return [g.get("t"), f.name, f.type, [...new Uint8Array(await f.arrayBuffer())]]; }],
  ["formdata wrong type rejects", async () => await new Response("a=1").formData()],
  ["formdata bad multipart rejects", async () => await new Response("garbage", { headers: { "content-type": "multipart/form-data; boundary=q" } }).formData()],
  ["formdata multipart bytes (boundary masked)", async () => { const f = new FormData(); f.append("a", "1\n2"); f.append("q\"uote", "v"); f.append("file", new File(["xyz"], "f\".txt", { type: "text/plain" })); f.append("blob", new Blob(["b"])); const r = new Response(f); const ct = r.headers.get("content-type"); const boundary = ct.split("boundary=")[1]; return [ct.replace(boundary, "B"), (await r.text()).split(boundary).join("B")]; }],
];

globalThis.runCases = async function runCases() {
  const out = {};
  for (const [name, f] of globalThis.CASES) {
    try {
      out[name] = describe(await f());
    } catch (e) {
      out[name] = "throws " + errorName(e);
    }
  }
  return out;
};
