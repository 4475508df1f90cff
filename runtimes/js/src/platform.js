// The platform from JavaScript: global fetch() and the service, kv_namespace and
// dispatch_namespace bindings, in Cloudflare's shapes, on the tenantry:worker/v1 calls (through
// the natives of `platform.rs`, which return the host's codes as they are). Evaluated once, after
// the prelude, in `wizer.initialize`.
//
// native: requestNew, requestClone, requestSetMethod, requestSetUrl, requestHeaderSet,
//   requestBodyWrite, fetch, serviceFetch, dispatchFetch, fetchError, responseStatus,
//   responseHeaders, responseHeaderList, responseBodyRead, kvGet, kvGetMany, kvPut, kvDelete, kvList
// internals: the prelude's internals (its makeRequest is wrapped to know the incoming request).
(function (native, internals) {
  "use strict";
  const NOT_FOUND = -1, WORKER_NOT_FOUND = -6, EXCEEDED = -7, NETWORK = -8;
  const INVALID = -2;
  // Fetch Standard §4.4 (HTTP-redirect fetch): at most 20 redirects are followed.
  const MAX_REDIRECTS = 20;
  const REDIRECT = new Set([301, 302, 303, 307, 308]);
  const NULL_BODY = new Set([101, 204, 205, 304]);
  const RequestClass = globalThis.Request;
  const ResponseClass = globalThis.Response;
  const ReadableStreamClass = globalThis.ReadableStream;
  const URLClass = globalThis.URL;
  const decoder = new TextDecoder();
  const web = globalThis.__tenantry_web;
  const setResponseUrl = web?.setResponseUrl;

  // The incoming request of the invocation: forwarding it untouched is one request_clone(0).
  // `invocation` counts requests: host handles are the invocation's, and a later request on a
  // reused instance reuses their numbers.
  let incoming = null;
  let invocation = 0;
  const makeRequest = internals.makeRequest;
  internals.makeRequest = (method, url, headers, body) => {
    invocation++;
    return (incoming = makeRequest(method, url, headers, body));
  };
  // workerd's words for the same mistake.
  const OTHER_REQUEST = "Cannot perform I/O on behalf of a different request. I/O objects (such as streams, request/response bodies, and others) created in the context of one request handler cannot be accessed from a different request's handler.";

  const why = () => native.fetchError() || "no explanation from the host";

  // The bytes of a body for the host: a string, an ArrayBuffer or a Uint8Array.
  function bytesOf(body) {
    if (typeof body === "string" || body instanceof ArrayBuffer || body instanceof Uint8Array) return body;
    if (ArrayBuffer.isView(body)) return new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
    return undefined;
  }

  // Builds the host's outgoing request for a Request. `bytes` is the body (null for none).
  function hostRequest(request, method, url, bytes, fail) {
    const h = native.requestNew();
    if (h < 0) fail(h, "building the request");
    let code = native.requestSetMethod(h, method);
    if (code < 0) fail(code, `method ${method}`);
    code = native.requestSetUrl(h, url);
    if (code < 0) fail(code, `URL ${url}`);
    for (const [name, value] of request.headers) {
      // The URL names the host; a Host field copied from another request must not contradict it.
      if (name === "host") continue;
      code = native.requestHeaderSet(h, name, value);
      if (code < 0) fail(code, `header ${name}`);
    }
    if (bytes !== null) {
      code = native.requestBodyWrite(h, bytes);
      if (code < 0) fail(code, "the request body");
    }
    return h;
  }

  // The body of a fetched response, read from the host only when the Worker reads it (the Web
  // APIs' byte source: `read()` gives the next chunk, null at the end, or throws). A body nobody
  // read is handed back to the engine, which forwards it without copying it through JavaScript
  // (`hostHandle`).
  // One private field, [handle, invocation, touched]: each field is a property added per body.
  const HB_HANDLE = 0, HB_INVOCATION = 1, HB_TOUCHED = 2;
  class HostBody {
    #s;
    constructor(handle) {
      this.#s = [handle, invocation, false];
    }
    read() {
      const s = this.#s;
      s[HB_TOUCHED] = true;
      if (s[HB_INVOCATION] !== invocation) throw new Error(OTHER_REQUEST);
      const chunk = native.responseBodyRead(s[HB_HANDLE]);
      if (chunk === null) return null;
      if (typeof chunk === "number") throw new TypeError(`Network connection lost: ${why()}`);
      return new Uint8Array(chunk);
    }
    // The host's handle of an unread body of this invocation, else undefined.
    static handle(body) {
      if (body === null || typeof body !== "object" || !(#s in body)) return undefined;
      const s = body.#s;
      if (s[HB_TOUCHED] || s[HB_INVOCATION] !== invocation) return undefined;
      s[HB_TOUCHED] = true;
      return s[HB_HANDLE];
    }
  }
  internals.hostHandle = HostBody.handle;

  // A fetched response handle as a Response (of `url`) whose body is read from the host when it
  // is read. Its header list comes checked from Rust (`responseHeaderList`).
  function makeResponse(h, method, url) {
    const status = native.responseStatus(h);
    const body = method !== "HEAD" && !NULL_BODY.has(status) ? new HostBody(h) : null;
    return web.newResponse(status, native.responseHeaderList(h), body, url);
  }

  // Sends `input`/`init` through `call(handle) -> code`; `fail(code, what)` throws the caller's
  // error. `follow`: redirects are followed as the Request's `redirect` says (network fetches).
  async function send(input, init, call, fail, follow) {
    let request, bytes, response;
    if (input === incoming && incoming !== null && init === undefined && !input.bodyUsed) {
      // The untouched incoming request: the host copies it, body included, with no JavaScript.
      const h = native.requestClone(0);
      if (h < 0) fail(h, "copying the incoming request");
      request = input;
      response = respond(call(h), request.method, request.url, fail);
    } else {
      request = new RequestClass(input, init);
      bytes = request.body === null ? null : bytesOf(await request.arrayBuffer());
      response = respond(call(hostRequest(request, request.method, request.url, bytes, fail)), request.method, request.url, fail);
    }
    if (!follow) return response;
    let method = request.method;
    let url = request.url;
    for (let redirects = 0; ; redirects++) {
      if (request.redirect === "manual" || !REDIRECT.has(response.status)) return located(response, url, redirects);
      const location = response.headers.get("location");
      if (location === null) return located(response, url, redirects);
      if (request.redirect === "error") throw new TypeError(`fetch() of ${url} was redirected, and its redirect mode is "error"`);
      if (redirects === MAX_REDIRECTS) throw new TypeError(`fetch() of ${request.url}: too many redirects (more than ${MAX_REDIRECTS})`);
      url = new URLClass(location, url).href;
      if (bytes === undefined) bytes = request.body === null ? null : bytesOf(await request.arrayBuffer());
      // Fetch Standard §4.4 step 12: 303 (but HEAD), and 301/302 of a POST, become GET without a body.
      if ((response.status === 303 && method !== "HEAD") || ((response.status === 301 || response.status === 302) && method === "POST")) {
        method = "GET";
        bytes = null;
      }
      response = respond(call(hostRequest(request, method, url, bytes, fail)), method, url, fail);
    }
  }

  // Response.redirected, as Fetch gives it to a fetched response (its url is set when made).
  function located(response, url, redirects) {
    if (redirects > 0 && setResponseUrl !== undefined) setResponseUrl(response, url, true);
    return response;
  }

  function respond(code, method, url, fail) {
    if (code < 0) fail(code, "");
    return makeResponse(code, method, url);
  }

  // ---- fetch(): the network, through the node's egress policy and the outbound Worker ----
  const fetchFailed = (code, what) => {
    const reason = why();
    if (code === NETWORK) throw new TypeError(`fetch() failed: ${reason}`);
    throw new TypeError(`fetch() refused${what ? ` (${what})` : ""}: ${reason}`);
  };
  function fetch(input, init) {
    return send(input, init, native.fetch, fetchFailed, true);
  }

  // ---- Worker calls: service bindings and dispatch namespaces ----
  const callFailed = (target) => (code, what) => {
    const reason = why();
    if (code === WORKER_NOT_FOUND)
      throw new Error(reason.startsWith("Worker not found") ? reason : `Worker not found: ${target}${reason ? ` (${reason})` : ""}`);
    if (code === EXCEEDED) throw new Error(reason);
    if (code === NETWORK) throw new TypeError(`fetch() failed: ${reason}`);
    throw new Error(`calling ${target} failed${what ? ` (${what})` : ""}: ${reason}`);
  };

  function serviceBinding(name) {
    const fail = callFailed(`the Worker of service binding ${name}`);
    const service = {
      fetch: (input, init) => send(input, init, (h) => native.serviceFetch(name, h), fail, false),
    };
    return Object.freeze(service);
  }

  // The ABI's per-call options: 16 bytes of cpu_ms, memory_mb, wall_ms, subrequests (little-endian
  // u32, 0 = the Worker's own), then the outbound parameters' JSON; "" for none.
  function callOptions(options) {
    if (options === undefined || options === null) return "";
    if (typeof options !== "object") throw new TypeError("get(): options must be an object");
    const limits = options.limits ?? {};
    if (typeof limits !== "object") throw new TypeError("get(): options.limits must be an object");
    const fields = [["cpuMs", 0], ["memoryMb", 4], ["wallMs", 8], ["subRequests", 12]];
    const bytes = new Uint8Array(16);
    const view = new DataView(bytes.buffer);
    let any = false;
    for (const [field, at] of fields) {
      const v = limits[field];
      if (v === undefined) continue;
      if (typeof v !== "number" || !Number.isInteger(v) || v < 1 || v > 0xffffffff)
        throw new RangeError(`get(): options.limits.${field} must be a whole number from 1 to ${0xffffffff}, not ${v}`);
      view.setUint32(at, v, true);
      any = true;
    }
    const outbound = options.outbound;
    if (outbound === undefined || outbound === null) return any ? bytes : "";
    if (typeof outbound !== "object") throw new TypeError("get(): options.outbound must be an object");
    const json = new TextEncoder().encode(JSON.stringify(outbound));
    const all = new Uint8Array(16 + json.length);
    all.set(bytes);
    all.set(json, 16);
    return all;
  }

  function dispatchBinding(binding) {
    const namespace = {
      get(name, args, options) {
        if (typeof name !== "string") throw new TypeError("get(): the Worker's name must be a string");
        const opts = callOptions(options);
        const fail = callFailed(`Worker ${name}`);
        return Object.freeze({
          fetch: (input, init) => send(input, init, (h) => native.dispatchFetch(binding, name, opts, h), fail, false),
        });
      },
    };
    return Object.freeze(namespace);
  }

  // ---- KV ----
  // Cloudflare's limits, and its words for breaking them (workerd's checks in the binding, the
  // KV service's answers as workerd reports them: "KV <op> failed: <status> <text>").
  const MAX_KEY_BYTES = 512;
  // Keys per multi-key get (Cloudflare's bulk read).
  const MAX_BULK_KEYS = 100;
  // The shortest cacheTtl Cloudflare takes (seconds); also its default.
  const MIN_CACHE_TTL = 60;
  const TYPES = ["text", "json", "arrayBuffer", "stream"];
  const encoder = new TextEncoder();
  const kvError = (op, status, text) => new Error(`KV ${op} failed: ${status} ${text}`);
  function kvType(options) {
    const type = typeof options === "string" ? options : options === undefined || options === null ? "text" : options.type ?? "text";
    if (!TYPES.includes(type))
      throw new TypeError(`Unknown response type "${type}". Possible types are "text", "arrayBuffer", "json", and "stream".`);
    return type;
  }
  // workerd's key checks, before anything reaches the store.
  function kvKey(op, key) {
    const name = String(key);
    if (name === "") throw new TypeError("Key name cannot be empty.");
    if (name === "." || name === "..") throw new TypeError(`"${name}" is not allowed as a key name.`);
    const bytes = encoder.encode(name).length;
    if (bytes > MAX_KEY_BYTES) throw kvError(op, 414, `UTF-8 encoded length of ${bytes} exceeds key length limit of ${MAX_KEY_BYTES}.`);
    return name;
  }
  // `cacheTtl` is checked as Cloudflare checks it, then has nothing to do: a node has one copy
  // of each namespace, so every read already sees the latest write.
  function kvCacheTtl(op, options) {
    if (options === undefined || options === null || typeof options !== "object") return;
    const ttl = options.cacheTtl;
    if (ttl === undefined) return;
    if (typeof ttl !== "number" || !Number.isInteger(ttl) || ttl < MIN_CACHE_TTL)
      throw kvError(op, 400, `Invalid cache_ttl of ${ttl}. Cache TTL must be at least ${MIN_CACHE_TTL}.`);
  }
  function readAll(h) {
    const chunks = [];
    let size = 0;
    for (;;) {
      const chunk = native.responseBodyRead(h);
      if (chunk === null) break;
      if (typeof chunk === "number") throw new Error(`KV read failed: ${why()}`);
      chunks.push(chunk);
      size += chunk.byteLength;
    }
    if (chunks.length === 1) return chunks[0];
    const all = new Uint8Array(size);
    let at = 0;
    for (const c of chunks) {
      all.set(new Uint8Array(c), at);
      at += c.byteLength;
    }
    return all.buffer;
  }
  function kvValue(buffer, type) {
    switch (type) {
      case "text": return decoder.decode(buffer);
      case "json": return JSON.parse(decoder.decode(buffer));
      case "arrayBuffer": return buffer;
      default: return new ResponseClass(buffer).body ?? new ReadableStreamClass({ start: (c) => c.close() });
    }
  }
  function kvMetadata(h) {
    const flat = native.responseHeaders(h);
    for (let i = 0; i < flat.length; i += 2) if (flat[i].toLowerCase() === "kv-metadata") return JSON.parse(flat[i + 1]);
    return null;
  }
  const kvFailed = (op, code) => {
    throw new Error(`KV ${op} failed: ${why()}`);
  };

  function kvBinding(binding) {
    async function getOne(key, options) {
      const type = kvType(options);
      const name = kvKey("GET", key);
      kvCacheTtl("GET", options);
      const h = native.kvGet(binding, name);
      if (h === NOT_FOUND) return { value: null, metadata: null, cacheStatus: null };
      if (h < 0) kvFailed("GET", h);
      const metadata = kvMetadata(h);
      return { value: kvValue(readAll(h), type), metadata, cacheStatus: null };
    }
    // Several keys at once, as Cloudflare's bulk read answers them: a Map from each key to its
    // value (text or json only), `{value, metadata}` with metadata, `null` for an absent key.
    async function getMany(keys, options, withMetadata) {
      const op = "GET_BULK";
      const type = typeof options === "string" ? options : options === undefined || options === null ? "text" : options.type ?? "text";
      if (type !== "text" && type !== "json") throw kvError(op, 400, `"${type}" is not a valid type. Use "json" or "text"`);
      if (keys.length > MAX_BULK_KEYS) throw kvError(op, 400, `You can request a maximum of ${MAX_BULK_KEYS} keys`);
      if (keys.length < 1) throw kvError(op, 400, "You must request a minimum of 1 key");
      kvCacheTtl(op, options);
      const names = keys.map((k) => kvKey(op, k));
      // One host call, one KV operation, one handle: the host answers a JSON array in the keys'
      // order, each null or {value (text), metadata?}.
      const h = native.kvGetMany(binding, JSON.stringify(names));
      if (h < 0) {
        const reason = why();
        throw h === INVALID ? kvError(op, 400, reason) : new Error(`KV ${op} failed: ${reason}`);
      }
      const entries = JSON.parse(decoder.decode(readAll(h)));
      const map = new Map();
      for (let i = 0; i < names.length; i++) {
        const entry = entries[i];
        if (entry === null) {
          map.set(names[i], null);
          continue;
        }
        let value = entry.value;
        if (type === "json") {
          try {
            value = JSON.parse(value);
          } catch {
            throw kvError(op, 400, "At least one of the requested keys corresponds to a non-json value");
          }
        }
        map.set(names[i], withMetadata ? { value, metadata: entry.metadata ?? null } : value);
      }
      return map;
    }
    const kv = {
      async get(key, options) {
        if (Array.isArray(key)) return getMany(key, options, false);
        return (await getOne(key, options)).value;
      },
      async getWithMetadata(key, options) {
        if (Array.isArray(key)) return getMany(key, options, true);
        return getOne(key, options);
      },
      async put(key, value, options) {
        const name = kvKey("PUT", key);
        let bytes = bytesOf(value);
        if (bytes === undefined && value instanceof ReadableStreamClass) bytes = await new ResponseClass(value).arrayBuffer();
        if (bytes === undefined)
          throw new TypeError("KV put() accepts only strings, ArrayBuffers, ArrayBufferViews, and ReadableStreams as values.");
        let opts = "";
        if (options !== undefined && options !== null) {
          const o = {};
          if (options.expiration !== undefined) o.expiration = Number(options.expiration);
          if (options.expirationTtl !== undefined) o.expiration_ttl = Number(options.expirationTtl);
          if (options.metadata !== undefined && options.metadata !== null) o.metadata = options.metadata;
          opts = JSON.stringify(o);
        }
        const code = native.kvPut(binding, name, bytes, opts);
        if (code < 0) kvFailed("PUT", code);
      },
      async delete(key) {
        const code = native.kvDelete(binding, kvKey("DELETE", key));
        if (code < 0) kvFailed("DELETE", code);
      },
      async list(options) {
        const o = {};
        if (options !== undefined && options !== null) {
          if (options.prefix !== undefined && options.prefix !== null) o.prefix = String(options.prefix);
          if (options.limit !== undefined && options.limit !== null) o.limit = Number(options.limit);
          if (options.cursor !== undefined && options.cursor !== null && options.cursor !== "") o.cursor = String(options.cursor);
        }
        const h = native.kvList(binding, JSON.stringify(o));
        if (h < 0) kvFailed("LIST", h);
        const result = JSON.parse(decoder.decode(readAll(h)));
        // Cloudflare's field order (the host's JSON sorts them): name, expiration, metadata.
        const keys = result.keys.map((k) => {
          const key = { name: k.name };
          if (k.expiration !== undefined) key.expiration = k.expiration;
          if (k.metadata !== undefined) key.metadata = k.metadata;
          return key;
        });
        const out = { keys, list_complete: result.list_complete };
        if (result.cursor !== undefined) out.cursor = result.cursor;
        out.cacheStatus = null;
        return out;
      },
    };
    return Object.freeze(kv);
  }

  Object.defineProperty(globalThis, "fetch", { value: fetch, writable: true, configurable: true, enumerable: false });

  return {
    // The value of a binding the prelude does not make itself.
    binding(kind, name) {
      switch (kind) {
        case "service": return serviceBinding(name);
        case "kv_namespace": return kvBinding(name);
        case "dispatch_namespace": return dispatchBinding(name);
        default: return internals.unsupportedBinding(kind);
      }
    },
  };
})
