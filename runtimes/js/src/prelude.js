// The engine's own globals and the glue between the Rust event loop and a Worker's handler.
// Evaluated once in `wizer.initialize` (so its cost is in the snapshot, not in a request); it is a
// function expression called with the native helpers and returning the internals Rust calls.
//
// native: { log(level, text), setTimer(callback, ms, repeat) -> id, clearTimer(id), random(),
//           waited() (a waitUntil promise was added: Rust asks for them after the response) }
(function (native) {
  "use strict";
  const LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3;
  const MAX_DEPTH = 2;
  const IDENT = /^[A-Za-z_$][A-Za-z0-9_$]*$/;
  // Taken now, before any Worker code could replace the globals.
  const ResponseClass = globalThis.Response;
  const RequestClass = globalThis.Request;
  // The Web APIs' entry points for the engine, when they offer them (tenantry-js-web's
  // `__tenantry_web`): cheaper than the standard shapes, which are the fallback.
  const web = globalThis.__tenantry_web;
  const fast = !!web && ["newRequest", "responseParts", "isResponse", "readAllBytes"].every((f) => typeof web[f] === "function");
  const isResponse = fast ? web.isResponse : (v) => v instanceof ResponseClass;

  // ---- console: formats its arguments like workerd (Node's util.inspect, on one line) ----
  function errorText(e) {
    const head = `${e.name}: ${e.message}`;
    const stack = typeof e.stack === "string" ? e.stack.replace(/\n$/, "") : "";
    return stack ? `${head}\n${stack}` : head;
  }
  function key(k) {
    return typeof k === "symbol" ? `[${k.toString()}]` : IDENT.test(k) ? k : `'${k}'`;
  }
  function inspect(v, depth, seen) {
    switch (typeof v) {
      case "string": return depth === 0 ? v : `'${v.replace(/'/g, "\\'")}'`;
      case "number": return Object.is(v, -0) ? "-0" : String(v);
      case "bigint": return `${v}n`;
      case "symbol": return v.toString();
      case "undefined": return "undefined";
      case "boolean": return String(v);
      case "function": {
        const src = Function.prototype.toString.call(v);
        if (src.startsWith("class")) return `[class ${v.name || "(anonymous)"}]`;
        return v.name ? `[Function: ${v.name}]` : "[Function (anonymous)]";
      }
    }
    if (v === null) return "null";
    if (v instanceof Error) return errorText(v);
    if (seen.includes(v)) return "[Circular]";
    if (v instanceof Date) return isNaN(v) ? "Invalid Date" : v.toISOString();
    if (v instanceof RegExp) return String(v);
    if (v instanceof Promise) return "Promise {}";
    const inner = (x) => inspect(x, depth + 1, seen);
    const list = (name, items, open = "[", close = "]") => {
      if (items.length === 0) return `${name}${open}${close}`;
      return `${name}${open} ${items.join(", ")} ${close}`;
    };
    seen.push(v);
    try {
      if (Array.isArray(v)) {
        if (depth > MAX_DEPTH) return "[Array]";
        return list("", v.map(inner));
      }
      if (ArrayBuffer.isView(v) && !(v instanceof DataView)) {
        return list(`${v.constructor.name}(${v.length}) `, Array.from(v, inner));
      }
      if (v instanceof ArrayBuffer) {
        const hex = Array.from(new Uint8Array(v), (b) => b.toString(16).padStart(2, "0"));
        return `ArrayBuffer { [Uint8Contents]: <${hex.join(" ")}>, byteLength: ${v.byteLength} }`;
      }
      if (v instanceof Map) {
        if (depth > MAX_DEPTH) return "[Map]";
        const items = Array.from(v, ([k, x]) => `${inner(k)} => ${inner(x)}`);
        return list(`Map(${v.size}) `, items, "{", "}");
      }
      if (v instanceof Set) {
        if (depth > MAX_DEPTH) return "[Set]";
        return list(`Set(${v.size}) `, Array.from(v, inner), "{", "}");
      }
      const proto = Object.getPrototypeOf(v);
      const ctor = proto && proto.constructor && proto.constructor.name;
      const name = proto === null ? "[Object: null prototype] " : ctor && ctor !== "Object" ? `${ctor} ` : "";
      if (depth > MAX_DEPTH) return `[${ctor || "Object"}]`;
      const items = Reflect.ownKeys(v)
        .filter((k) => Object.prototype.propertyIsEnumerable.call(v, k))
        .map((k) => `${key(k)}: ${inner(v[k])}`);
      return list(name, items, "{", "}");
    } finally {
      seen.pop();
    }
  }
  function format(args) {
    let out = "";
    for (let i = 0; i < args.length; i++) {
      if (i > 0) out += " ";
      out += inspect(args[i], 0, []);
    }
    return out;
  }
  const counts = new Map();
  const timers = new Map();
  const console = {
    log: (...a) => native.log(LOG_INFO, format(a)),
    info: (...a) => native.log(LOG_INFO, format(a)),
    debug: (...a) => native.log(LOG_DEBUG, format(a)),
    trace: (...a) => native.log(LOG_DEBUG, format(["Trace:", ...a]) + "\n" + new Error().stack.replace(/\n$/, "")),
    warn: (...a) => native.log(LOG_WARN, format(a)),
    error: (...a) => native.log(LOG_ERROR, format(a)),
    assert: (ok, ...a) => { if (!ok) native.log(LOG_ERROR, format(["Assertion failed" + (a.length ? ":" : ""), ...a])); },
    count: (label = "default") => {
      const n = (counts.get(label) || 0) + 1;
      counts.set(label, n);
      native.log(LOG_INFO, `${label}: ${n}`);
    },
    countReset: (label = "default") => counts.delete(label),
    time: (label = "default") => timers.set(label, Date.now()),
    timeEnd: (label = "default") => {
      const start = timers.get(label);
      timers.delete(label);
      if (start !== undefined) native.log(LOG_INFO, `${label}: ${Date.now() - start}ms`);
    },
    timeLog: (label = "default", ...a) => {
      const start = timers.get(label);
      if (start !== undefined) native.log(LOG_INFO, format([`${label}: ${Date.now() - start}ms`, ...a]));
    },
  };
  console.dir = console.log;
  console.table = console.log;
  console.group = console.log;
  console.groupEnd = () => {};

  // ---- timers: the queue lives in Rust, which also sleeps until the next one is due ----
  const callable = (cb, name) => {
    if (typeof cb !== "function") throw new TypeError(`${name}: the callback must be a function`);
    return cb;
  };
  function setTimeout(cb, ms = 0, ...args) {
    callable(cb, "setTimeout");
    return native.setTimer(args.length ? () => cb(...args) : cb, Number(ms) || 0, false);
  }
  function setInterval(cb, ms = 0, ...args) {
    callable(cb, "setInterval");
    return native.setTimer(args.length ? () => cb(...args) : cb, Number(ms) || 0, true);
  }
  function clearTimer(id) {
    if (typeof id === "number") native.clearTimer(id);
  }

  // ---- the invocation: one per request ----
  let waits = [];
  const wait = (promise) => {
    if (waits.length === 0) native.waited();
    waits.push(Promise.resolve(promise));
  };
  class ExecutionContext {
    waitUntil(promise) {
      wait(promise);
    }
    passThroughOnException() {
      throw new Error("passThroughOnException() is not supported: a Tenantry Worker has no origin to pass through to");
    }
  }
  const listeners = [];
  function addEventListener(type, listener) {
    if (type === "fetch") {
      if (typeof listener !== "function" && !(listener && typeof listener.handleEvent === "function"))
        throw new TypeError("addEventListener: the listener must be a function");
      listeners.push(listener);
      return;
    }
    throw new Error(`addEventListener("${type}") is not supported: only "fetch" events are delivered`);
  }
  function removeEventListener(type, listener) {
    const i = listeners.indexOf(listener);
    if (type === "fetch" && i >= 0) listeners.splice(i, 1);
  }
  class FetchEvent {
    #request;
    #response = undefined;
    #responded = false;
    #dispatching = true;
    constructor(request) {
      this.#request = request;
    }
    get type() { return "fetch"; }
    get request() { return this.#request; }
    respondWith(response) {
      if (this.#responded) throw new Error("FetchEvent.respondWith() was already called");
      if (!this.#dispatching)
        throw new Error("FetchEvent.respondWith() must be called while the event is dispatched, not later");
      this.#responded = true;
      this.#response = response;
    }
    waitUntil(promise) { wait(promise); }
    passThroughOnException() { ExecutionContext.prototype.passThroughOnException(); }
    static finish(event) {
      event.#dispatching = false;
      return [event.#responded, event.#response];
    }
  }

  // The incoming request, when the Web APIs have no `newRequest` (which Rust calls directly
  // otherwise, with the same arguments): `head` the host's block of `name: value` lines, `body`
  // a Uint8Array or null.
  function standardRequest(method, url, head, body) {
    const pairs = [];
    for (const line of head.split("\n")) {
      const colon = line.indexOf(":");
      if (colon >= 0) pairs.push([line.slice(0, colon), line.slice(colon + 1).replace(/^[\t\n\f\r ]+|[\t\n\f\r ]+$/g, "")]);
    }
    return new RequestClass(url, { method, headers: pairs, body });
  }

  // The handler's result in `responseParts`' shape, [status, statusText, [lower-case name,
  // value, name as written, ...], body] with body null, a string, a Uint8Array, an ArrayBuffer
  // or a number: the host's handle of a fetched response whose body nothing read (the
  // platform's `hostHandle`), which Rust forwards without copying it through JavaScript; or a
  // promise of it. A handler that returns a Response whose body is at hand is answered without
  // a promise or a microtask turn (the common case, and each turn costs thousands of
  // instructions); Rust reads the header list at once, before more JS runs.
  function respond(result) {
    if (!isResponse(result)) return respondLater(result);
    if (!fast) return standardParts(result);
    const p = web.responseParts(result);
    const body = p[3];
    if (body === null || typeof body === "string" || body instanceof Uint8Array) return p;
    return hostBody(p) ?? readBody(p);
  }

  // The parts with the body as the host's handle, if it is the unread body of a fetched response.
  function hostBody(p) {
    const handle = internals.hostHandle?.(p[3]);
    if (handle === undefined) return undefined;
    p[2] = p[2].slice();
    p[3] = handle;
    return p;
  }

  async function respondLater(result) {
    const response = await result;
    if (!isResponse(response))
      throw new TypeError("Incorrect type for Promise: the Promise did not resolve to 'Response'.");
    if (!fast) return standardParts(response);
    const p = web.responseParts(response);
    // Other JS may run before Rust reads the parts: copy the response's own header list now.
    p[2] = p[2].slice();
    const body = p[3];
    if (body === null || typeof body === "string" || body instanceof Uint8Array) return p;
    return hostBody(p) ?? readBody(p);
  }

  function readBody(p) {
    p[2] = p[2].slice();
    return web.readAllBytes(p[3]).then((bytes) => {
      p[3] = bytes;
      return p;
    });
  }

  function standardParts(response) {
    const headers = [];
    for (const [name, value] of response.headers) headers.push(name, value, name);
    const status = response.status, text = response.statusText;
    if (response.body === null) return [status, text, headers, null];
    return response.arrayBuffer().then((bytes) => [status, text, headers, bytes]);
  }

  // `default` is the module's default export: an object with `fetch`, or a class whose
  // instances have one (constructed per request with (ctx, env), as WorkerEntrypoint is).
  // A synchronous throw propagates to Rust as an exception, answered like a rejection. Returns
  // what the handler returned; Rust passes it (or, when it is a promise that already fulfilled,
  // its value) to `respond`.
  function runModule(handler, request, env) {
    if (waits.length !== 0) waits = []; // left by a request that failed before takeWaits
    const ctx = new ExecutionContext();
    if (typeof handler === "function") {
      const target = new handler(ctx, env);
      return target.fetch(request, env, ctx);
    }
    return handler.fetch(request, env, ctx);
  }

  function runServiceWorker(request) {
    if (waits.length !== 0) waits = [];
    const event = new FetchEvent(request);
    for (const listener of listeners) {
      if (typeof listener === "function") listener.call(globalThis, event);
      else listener.handleEvent(event);
    }
    const [responded, response] = FetchEvent.finish(event);
    if (!responded)
      throw new Error("No response: no fetch listener called event.respondWith(), and a Tenantry Worker has no origin to fall back to");
    return response;
  }

  function hasHandler(handler) {
    if (handler === null || handler === undefined) return false;
    if (typeof handler === "function") return !!handler.prototype && typeof handler.prototype.fetch === "function";
    return typeof handler === "object" && typeof handler.fetch === "function";
  }

  // A binding of a kind this engine does not serve yet (issue 12): any real use throws an Error
  // naming the kind; inspection (JSON.stringify, console.log, await) sees an empty object.
  function unsupportedBinding(kind) {
    const fail = () => { throw new Error(`${kind} bindings are not supported yet`); };
    const quiet = new Set(["toJSON", "then", "constructor"]);
    return new Proxy(Object.create(null), {
      get: (_, key) => (typeof key === "symbol" || quiet.has(key) ? undefined : fail()),
      set: fail, defineProperty: fail, deleteProperty: fail, has: fail,
    });
  }

  function uncaught(e, prefix) {
    if (e instanceof Error) return `${prefix} ${errorText(e)}`;
    return `${prefix} ${inspect(e, 1, [])}`;
  }

  const define = (name, value) =>
    Object.defineProperty(globalThis, name, { value, writable: true, configurable: true, enumerable: false });
  define("console", console);
  define("setTimeout", setTimeout);
  define("setInterval", setInterval);
  define("clearTimeout", clearTimer);
  define("clearInterval", clearTimer);
  define("addEventListener", addEventListener);
  define("removeEventListener", removeEventListener);
  define("FetchEvent", FetchEvent);
  // Subrequests come with the platform bindings (issue 12); until then fetch() says so.
  if (typeof globalThis.fetch !== "function") {
    define("fetch", function fetch() {
      return Promise.reject(new Error("fetch() is not supported yet: this node's JavaScript Workers cannot make subrequests"));
    });
  }
  define("ExecutionContext", ExecutionContext);
  // QuickJS seeds Math.random once, when the context is made: in a snapshot every instance would
  // draw the same sequence. The native one is reseeded from the host at each invocation.
  Object.defineProperty(Math, "random", { value: native.random, writable: true, configurable: true, enumerable: false });

  const internals = {
    makeRequest: fast ? web.newRequest : standardRequest,
    runModule,
    runServiceWorker,
    respond,
    hasHandler,
    hasListener: () => listeners.length > 0,
    // The waitUntil promises of the invocation, all settled; null if there were none.
    takeWaits: () => {
      if (waits.length === 0) return null;
      const all = Promise.allSettled(waits);
      waits = [];
      return all;
    },
    uncaught,
    format,
    unsupportedBinding,
    // Set by the platform: the host's handle of a fetched body nothing read, else undefined.
    hostHandle: undefined,
  };
  return internals;
})
