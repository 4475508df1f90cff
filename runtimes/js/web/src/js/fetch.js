// Request and Response (Fetch Standard §5.3–5.5) and their Body mixin.
//
// A body is either absent (null) or a small record [src, stream, used, source] (an array: QuickJS
// makes an array literal in one step, an object literal one property at a time): `src` is the
// string or the Uint8Array it was built from (kept as is, so text() of a string body and the
// engine writing it out need no conversion), `stream` the ReadableStream once one exists (made
// lazily when `.body` is read, or given by the Worker), `used` whether it was consumed, and
// `source` (absent in most records) the byte source of a body the engine fetched (see
// `newResponse`), until something reads it or makes a stream of it.
(function (native, internal, global) {
  "use strict";
  const { requireArgs, usv, toU8, Headers, URLSearchParams, headersList, headersFromList } = internal;
  const B_SRC = 0, B_STREAM = 1, B_USED = 2, B_SOURCE = 3;

  const TEXT_PLAIN = "text/plain;charset=UTF-8";
  const FORM = "application/x-www-form-urlencoded;charset=UTF-8";
  const USED = "Body has already been used. It can only be used once. Use tee() first if you need to read it twice.";

  // Fetch "extract a body": returns the record and leaves its content type (or null) in
  // `extractedType` (no array to destructure: QuickJS destructures through the iterator protocol).
  let extractedType = null;
  const extract = (init) => {
    // USVString: lone surrogates become U+FFFD, so the string is always valid UTF-8 to write.
    if (typeof init === "string") {
      extractedType = TEXT_PLAIN;
      return [init.isWellFormed() ? init : init.toWellFormed(), null, false];
    }
    extractedType = null;
    const u8 = toU8(init);
    if (u8 !== undefined) return [u8.slice(), null, false];
    if (init instanceof URLSearchParams) {
      extractedType = FORM;
      return [init.toString(), null, false];
    }
    if (init instanceof internal.Blob) {
      extractedType = init.type === "" ? null : init.type;
      return [internal.blobBytes(init).slice(), null, false];
    }
    if (init instanceof internal.FormData) {
      const [bytes, boundary] = internal.encodeMultipart(init);
      extractedType = `multipart/form-data; boundary=${boundary}`;
      return [bytes, null, false];
    }
    if (internal.isReadableStream(init)) {
      if (internal.streamUnusable(init)) throw new TypeError("This ReadableStream is disturbed or locked and cannot be used as a body.");
      return [null, init, false];
    }
    extractedType = TEXT_PLAIN;
    return [usv(init), null, false];
  };

  const addContentType = (list, type) => {
    if (type === null) return;
    for (let i = 0; i < list.length; i += 3) if (list[i] === "content-type") return;
    list.push("content-type", type, "Content-Type");
  };

  const isUsed = (b) =>
    b !== null && (b[B_USED] || (b[B_STREAM] !== null && internal.streamDisturbed(b[B_STREAM])));

  const streamOf = (b) => {
    if (b === null) return null;
    if (b[B_STREAM] === null) {
      const source = b[B_SOURCE];
      if (source !== undefined) {
        b[B_SOURCE] = undefined;
        b[B_STREAM] = internal.streamFromSource(source);
        return b[B_STREAM];
      }
      const src = b[B_SRC];
      // A consumed body keeps no bytes: its stream is an empty one, disturbed below.
      const bytes = src === null ? new Uint8Array(0) : typeof src === "string" ? internal.utf8Encode(src) : src;
      b[B_STREAM] = internal.streamFromBytes(bytes);
      b[B_SRC] = null;
      if (b[B_USED]) internal.streamTakeBytes(b[B_STREAM]); // a used body's stream is disturbed
    }
    return b[B_STREAM];
  };

  // workerd's text() keeps a leading BOM (Fetch's "UTF-8 decode" would strip it).
  const decodeKeepingBom = (u8) => native.utf8Decode(u8, false);

  // Fetch "consume body": resolves to a string (text) or a Uint8Array the caller owns.
  const consume = (b, asText) => {
    if (b === null) return Promise.resolve(asText ? "" : new Uint8Array(0));
    if (isUsed(b) || (b[B_STREAM] !== null && internal.streamUnusable(b[B_STREAM]))) {
      return Promise.reject(new TypeError(USED));
    }
    b[B_USED] = true;
    if (b[B_STREAM] === null) {
      const source = b[B_SOURCE];
      if (source !== undefined) {
        // A fetched body read at once, without a stream and a microtask per chunk.
        b[B_SOURCE] = undefined;
        let u8;
        try {
          u8 = internal.readSource(source);
        } catch (e) {
          return Promise.reject(e);
        }
        return Promise.resolve(asText ? decodeKeepingBom(u8) : u8);
      }
      const src = b[B_SRC];
      b[B_SRC] = null;
      if (typeof src === "string") return Promise.resolve(asText ? src : internal.utf8Encode(src));
      return Promise.resolve(asText ? decodeKeepingBom(src) : src);
    }
    return internal.readAllBytes(b[B_STREAM]).then((u8) => (asText ? decodeKeepingBom(u8) : u8.slice()));
  };

  const toArrayBuffer = (u8) =>
    u8.byteOffset === 0 && u8.byteLength === u8.buffer.byteLength ? u8.buffer : internal.copyToArrayBuffer(u8);

  // A second record for clone(): bytes are shared (consumers copy), a stream is teed.
  const cloneBody = (b) => {
    if (b === null) return null;
    if (isUsed(b)) throw new TypeError("Body has already been used. It can only be used once.");
    if (b[B_SOURCE] !== undefined) streamOf(b); // a fetched body is teed like a stream
    if (b[B_STREAM] === null) return [b[B_SRC], null, false];
    if (internal.streamUnusable(b[B_STREAM])) throw new TypeError("This body's stream is locked.");
    const [a, c] = b[B_STREAM].tee();
    b[B_STREAM] = a;
    return [null, c, false];
  };

  // The Body mixin's methods, the same for Request and Response; `body(this)` brand-checks.
  const bodyMethods = (body, name) => ({
    get body() { return streamOf(body(this)); },
    get bodyUsed() { return isUsed(body(this)); },
    arrayBuffer() {
      try {
        return consume(body(this), false).then((u8) => (u8.buffer === undefined ? u8 : toArrayBuffer(u8)));
      } catch (e) { return Promise.reject(e); }
    },
    bytes() {
      try { return consume(body(this), false); } catch (e) { return Promise.reject(e); }
    },
    text() {
      try { return consume(body(this), true); } catch (e) { return Promise.reject(e); }
    },
    json() {
      try { return consume(body(this), true).then(JSON.parse); } catch (e) { return Promise.reject(e); }
    },
    formData() {
      try {
        const type = this.headers.get("content-type");
        return consume(body(this), false).then((u8) => internal.parseFormData(u8, type));
      } catch (e) { return Promise.reject(e); }
    },
    blob() {
      try {
        const type = this.headers.get("content-type") ?? "";
        return consume(body(this), false).then((u8) => internal.newBlob(u8, type));
      } catch (e) { return Promise.reject(e); }
    },
  });

  const installBody = (cls, body, name) => {
    const methods = bodyMethods(body, name);
    for (const key of Object.keys(methods)) {
      const d = Object.getOwnPropertyDescriptor(methods, key);
      d.enumerable = true;
      Object.defineProperty(cls.prototype, key, d);
    }
  };

  // ---- Request -----------------------------------------------------------------------------
  // workerd upper-cases every method and accepts only those its HTTP library knows
  // (kj::HttpMethod); CONNECT is refused as in Fetch.
  const METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "PURGE", "OPTIONS", "TRACE",
    "COPY", "LOCK", "MKCOL", "MOVE", "PROPFIND", "PROPPATCH", "SEARCH", "UNLOCK", "ACL", "REPORT",
    "MKACTIVITY", "CHECKOUT", "MERGE", "MSEARCH", "NOTIFY", "SUBSCRIBE", "UNSUBSCRIBE", "QUERY", "BAN"];
  const normalizeMethod = (m) => {
    const upper = String(m).toUpperCase();
    if (!METHODS.includes(upper)) throw new TypeError(`Invalid HTTP method string: ${String(m)}`);
    return upper;
  };
  const REDIRECTS = ["follow", "manual", "error"];
  // Passed as `input` by the prelude's own fast constructors; Workers can never reach it.
  const TRUSTED = Object.freeze({});
  let trusted = null;

  // Request and Response keep their state in one array (a single private field): QuickJS makes
  // an array literal in one step, where each private field is a property added to the object,
  // and these are built on every request.
  const RQ_METHOD = 0, RQ_URL = 1, RQ_HEADERS = 2, RQ_RAW = 3, RQ_BODY = 4, RQ_REDIRECT = 5,
    RQ_CF = 6, RQ_SIGNAL = 7, RQ_GIVEN_URL = 8;

  // The URL of a Request's state: the engine's incoming request keeps the URL as the host gave
  // it until something reads it (a hello Worker never does, and parsing is a tenth of a
  // request's cost); it is normalised then, once.
  const urlOf = (s) => {
    const given = s[RQ_GIVEN_URL];
    if (given !== null) {
      s[RQ_URL] = native.urlHref(usv(given)) ?? given;
      s[RQ_GIVEN_URL] = null;
    }
    return s[RQ_URL];
  };

  // RFC 9110 §5.6.3 whitespace the engine's header block may have around a value (as Rust's
  // `trim_ascii`: tab, LF, FF, CR, space).
  const BLOCK_VALUE_EDGES = /^[\t\n\f\r ]+|[\t\n\f\r ]+$/g;
  // The engine's raw headers as [name, value, ...]: already that array, or the host's block of
  // `name: value` lines (split at the first colon; lines without one are skipped).
  const rawPairs = (raw) => {
    if (raw === null || raw === undefined) return [];
    if (typeof raw !== "string") return raw;
    const pairs = [];
    for (const line of raw.split("\n")) {
      const colon = line.indexOf(":");
      if (colon < 0) continue;
      pairs.push(line.slice(0, colon), line.slice(colon + 1).replace(BLOCK_VALUE_EDGES, ""));
    }
    return pairs;
  };

  class Request {
    // [method, url, headers (null until first use when the engine gave raw headers),
    //  raw headers, body record, redirect, cf, signal, url as given (null once normalised)]
    #s;

    // Neither `arguments` nor a default parameter: each costs bytecode on every construction,
    // the engine's trusted one included (`length` is set to 1 below, as `(input, init =
    // undefined)` makes it). A missing `input` is met as `undefined`, from which no URL parses.
    constructor(input, init) {
      if (input === TRUSTED) {
        this.#s = trusted;
        trusted = null;
        return;
      }
      if (input === undefined) requireArgs(0, 1, "Request");
      const s = ["GET", "", null, null, null, "follow", undefined, null, null];
      this.#s = s;
      let inputBody = null;
      let inputHeaders = null;
      if (input instanceof Request) {
        const t = input.#s;
        s[RQ_URL] = urlOf(t);
        s[RQ_METHOD] = t[RQ_METHOD];
        s[RQ_REDIRECT] = t[RQ_REDIRECT];
        s[RQ_CF] = t[RQ_CF];
        s[RQ_SIGNAL] = t[RQ_SIGNAL];
        inputHeaders = input.headers;
        inputBody = t[RQ_BODY];
      } else {
        const href = native.urlHref(usv(input));
        if (href === undefined) throw new TypeError(`Failed to parse URL from ${String(input)}`);
        s[RQ_URL] = href;
      }
      const opts = init ?? {};
      if (typeof opts !== "object" && typeof opts !== "function") {
        throw new TypeError("Failed to construct 'Request': The provided value is not of type 'RequestInit'.");
      }
      if (opts.method !== undefined) s[RQ_METHOD] = normalizeMethod(opts.method);
      if (opts.redirect !== undefined) {
        const r = String(opts.redirect);
        if (!REDIRECTS.includes(r)) throw new TypeError(`Invalid redirect value: ${r}`);
        s[RQ_REDIRECT] = r;
      }
      if (opts.cf !== undefined) s[RQ_CF] = opts.cf;
      if (opts.signal !== undefined && opts.signal !== null) {
        if (!(opts.signal instanceof internal.AbortSignal)) throw new TypeError("Request: signal must be an AbortSignal");
        s[RQ_SIGNAL] = opts.signal;
      }
      const headers = new Headers(opts.headers !== undefined ? opts.headers : inputHeaders ?? undefined);
      s[RQ_HEADERS] = headers;
      const hasInitBody = opts.body !== undefined && opts.body !== null;
      if ((hasInitBody || inputBody !== null) && (s[RQ_METHOD] === "GET" || s[RQ_METHOD] === "HEAD")) {
        throw new TypeError("Request with a GET or HEAD method cannot have a body.");
      }
      if (hasInitBody) {
        s[RQ_BODY] = extract(opts.body);
        addContentType(headersList(headers), extractedType);
      } else if (inputBody !== null) {
        if (isUsed(inputBody)) throw new TypeError(USED);
        // The new request takes the body over; the input's is used up (Fetch "create a proxy").
        s[RQ_BODY] = [inputBody[B_SRC], inputBody[B_STREAM], false, inputBody[B_SOURCE]];
        inputBody[B_USED] = true;
      }
    }

    get method() { return this.#s[RQ_METHOD]; }
    get url() { return urlOf(this.#s); }
    get headers() {
      const s = this.#s;
      if (s[RQ_HEADERS] === null) {
        // The engine's [name, value, ...] as it came off the wire, made into the Headers
        // triples now, once.
        const raw = rawPairs(s[RQ_RAW]);
        const list = new Array((raw.length >> 1) * 3);
        for (let r = 0, w = 0; r + 1 < raw.length; r += 2, w += 3) {
          const given = String(raw[r]);
          list[w] = given.toLowerCase();
          list[w + 1] = String(raw[r + 1]);
          list[w + 2] = given;
        }
        s[RQ_HEADERS] = headersFromList(list, true);
        s[RQ_RAW] = null;
      }
      return s[RQ_HEADERS];
    }
    get redirect() { return this.#s[RQ_REDIRECT]; }
    get cf() { return this.#s[RQ_CF]; }
    get integrity() { return ""; }
    get keepalive() { return false; }
    // A signal that never aborts unless the init gave one (workerd's incoming requests'
    // signals abort on client disconnect; this crate has no client to watch).
    get signal() {
      const s = this.#s;
      if (s[RQ_SIGNAL] === null) s[RQ_SIGNAL] = internal.newAbortSignal();
      return s[RQ_SIGNAL];
    }

    clone() {
      const s = this.#s;
      const body = cloneBody(s[RQ_BODY]);
      trusted = [s[RQ_METHOD], urlOf(s), new Headers(this.headers), null, body, s[RQ_REDIRECT], s[RQ_CF], s[RQ_SIGNAL], null];
      return new Request(TRUSTED);
    }

    static {
      installBody(Request, (r) => r.#s[RQ_BODY], "Request");
      // The engine's incoming request: headers immutable, as workerd gives them.
      internal.newRequest = (method, url, headers, body, cf) => {
        let record = null;
        if (body !== null && body !== undefined) {
          record = internal.isReadableStream(body)
            ? [null, body, false]
            : [typeof body === "string" ? body : toU8(body), null, false];
        }
        // The engine passes strings; String() is only for other callers.
        trusted = [typeof method === "string" ? method : String(method), "", null, headers, record,
          "follow", cf, null, typeof url === "string" ? url : String(url)];
        return new Request(TRUSTED);
      };
    }
  }
  Object.defineProperty(Request, "length", { value: 1 });
  internal.tag(Request.prototype, "Request");
  for (const name of ["method", "url", "headers", "redirect", "cf", "integrity", "keepalive", "clone"]) {
    const d = Object.getOwnPropertyDescriptor(Request.prototype, name);
    d.enumerable = true;
    Object.defineProperty(Request.prototype, name, d);
  }

  // ---- Response ----------------------------------------------------------------------------
  const NULL_BODY_STATUS = [101, 204, 205, 304];
  // WebIDL `unsigned short` conversion: truncate, wrap modulo 2^16; NaN and infinities are 0.
  const unsignedShort = (v) => {
    const n = Math.trunc(Number(v));
    return Number.isFinite(n) ? ((n % 65536) + 65536) % 65536 : 0;
  };
  const REDIRECT_STATUS = [301, 302, 303, 307, 308];
  const REASON_PHRASE = /^[\t\x20-\x7e\x80-\xff]*$/;
  const RS_STATUS = 0, RS_TEXT = 1, RS_HEADERS = 2, RS_LIST = 3, RS_BODY = 4, RS_TYPE = 5, RS_CF = 6,
    RS_URL = 7, RS_REDIRECTED = 8;

  class Response {
    // [status, statusText, headers (null until first use), flat header list while there is no
    //  Headers object, body record, type, cf, and for a fetched response its URL and whether it was
    //  redirected (absent otherwise)]
    #s;

    // No default parameters (each costs bytecode on every call); `length` is set to 0 below, as
    // `(body = null, init = undefined)` would make it.
    constructor(body, init) {
      if (body === TRUSTED) {
        this.#s = trusted;
        trusted = null;
        return;
      }
      if (typeof body === "string" && init === undefined) {
        // The common case, what `extract` and `addContentType` would make, built in one step.
        const src = body.isWellFormed() ? body : body.toWellFormed();
        this.#s = [200, "", null, ["content-type", TEXT_PLAIN, "Content-Type"],
          [src, null, false], "default", undefined];
        return;
      }
      const s = [200, "", null, null, null, "default", undefined];
      this.#s = s;
      if (init !== undefined && init !== null) Response.#init(s, init);
      else s[RS_LIST] = [];
      if (body !== null && body !== undefined) {
        if (s[RS_STATUS] !== 200 && NULL_BODY_STATUS.includes(s[RS_STATUS])) {
          throw new TypeError(`Response with null body status (${s[RS_STATUS]}) cannot have a body.`);
        }
        s[RS_BODY] = extract(body);
        addContentType(listOf(s), extractedType);
      }
    }

    static #init(s, opts) {
      if (typeof opts !== "object" && typeof opts !== "function") {
        throw new TypeError("Failed to construct 'Response': The provided value is not of type 'ResponseInit'.");
      }
      if (opts.status !== undefined) {
        const status = unsignedShort(opts.status);
        if (status < 200 || status > 599) {
          throw new RangeError(`Responses may only be constructed with status codes in the range 200 to 599, inclusive.`);
        }
        s[RS_STATUS] = status;
      }
      if (opts.statusText !== undefined) {
        const text = String(opts.statusText);
        if (!REASON_PHRASE.test(text)) throw new TypeError(`Invalid statusText: "${text}"`);
        s[RS_TEXT] = text;
      }
      if (opts.cf !== undefined) s[RS_CF] = opts.cf;
      if (opts.headers !== undefined) s[RS_HEADERS] = new Headers(opts.headers);
      else s[RS_LIST] = [];
    }

    static json(data, init = undefined) {
      // workerd sends "undefined" for what JSON cannot represent (undefined, a function).
      const text = String(JSON.stringify(data));
      const r = new Response(null, init);
      const s = r.#s;
      if (NULL_BODY_STATUS.includes(s[RS_STATUS])) {
        throw new TypeError(`Response with null body status (${s[RS_STATUS]}) cannot have a body.`);
      }
      s[RS_BODY] = [text, null, false];
      addContentType(listOf(s), "application/json");
      return r;
    }

    static redirect(url, status = 302) {
      requireArgs(arguments.length, 1, "redirect");
      const href = native.urlHref(usv(url));
      if (href === undefined) throw new TypeError(`Unable to parse URL: ${String(url)}`);
      const code = Number(status);
      if (!REDIRECT_STATUS.includes(code)) throw new RangeError(`Invalid redirect status code: ${status}`);
      trusted = [code, "", headersFromList(["location", href, "Location"], true), null, null, "default", undefined];
      return new Response(TRUSTED);
    }

    static error() {
      // workerd leaves these headers mutable.
      trusted = [0, "", null, [], null, "error", undefined];
      return new Response(TRUSTED);
    }

    get type() { return this.#s[RS_TYPE]; }
    get url() { return this.#s[RS_URL] ?? ""; }
    get redirected() { return this.#s[RS_REDIRECTED] === true; }
    get status() { return this.#s[RS_STATUS]; }
    get ok() { const status = this.#s[RS_STATUS]; return status >= 200 && status <= 299; }
    get statusText() { return this.#s[RS_TEXT]; }
    get headers() {
      const s = this.#s;
      if (s[RS_HEADERS] === null) {
        s[RS_HEADERS] = headersFromList(s[RS_LIST], false);
        s[RS_LIST] = null;
      }
      return s[RS_HEADERS];
    }
    get cf() { return this.#s[RS_CF]; }
    get webSocket() { return null; }

    clone() {
      const s = this.#s;
      const body = cloneBody(s[RS_BODY]);
      trusted = [s[RS_STATUS], s[RS_TEXT], new Headers(this.headers), null, body, s[RS_TYPE], s[RS_CF],
        s[RS_URL], s[RS_REDIRECTED]];
      return new Response(TRUSTED);
    }

    static {
      installBody(Response, (r) => r.#s[RS_BODY], "Response");
      // For the engine: [status, statusText, headers, body]; headers the flat triples
      // [lower-case name, value, name as written, ...]; body null, a string, a Uint8Array or
      // a ReadableStream (read it with readAllBytes). The body is marked used.
      internal.responseParts = (r) => {
        if (r === null || typeof r !== "object" || !(#s in r)) throw new TypeError("The handler did not return a Response.");
        const s = r.#s;
        const b = s[RS_BODY];
        let body = null;
        if (b !== null) {
          if (b[B_USED] || (b[B_STREAM] !== null && isUsed(b))) throw new TypeError(USED);
          b[B_USED] = true;
          if (b[B_STREAM] !== null) {
            const stream = b[B_STREAM];
            body = internal.streamTakeBytes(stream) ?? internal.streamTakeSource(stream) ?? stream;
          } else if (b[B_SOURCE] !== undefined) {
            body = b[B_SOURCE];
            b[B_SOURCE] = undefined;
          } else {
            body = b[B_SRC];
          }
          b[B_SRC] = null;
        }
        return [s[RS_STATUS], s[RS_TEXT], s[RS_HEADERS] === null ? s[RS_LIST] : listOf(s), body];
      };
      internal.isResponse = (r) => r !== null && typeof r === "object" && #s in r;
      // A fetched response, as `new Response(body, { status, headers })` makes it (the same
      // status checks and errors) but in one step: `list` its header list as Headers keeps it
      // (flat [lower-case name, value, name as received, ...] triples, checked by the caller as
      // append() checks them), `source` null or the body's byte source (an object whose
      // `read()` gives the next Uint8Array, null at the end, and throws when the body cannot be
      // read), read only when the Worker reads the body (untouched, `responseParts` hands the
      // source back), `url` its URL (Response.url, without the fragment), if given.
      internal.newResponse = (status, list, source, url) => {
        const code = unsignedShort(status);
        if (code < 200 || code > 599) {
          throw new RangeError(`Responses may only be constructed with status codes in the range 200 to 599, inclusive.`);
        }
        let record = null;
        if (source !== null && source !== undefined) {
          if (NULL_BODY_STATUS.includes(code)) throw new TypeError(`Response with null body status (${code}) cannot have a body.`);
          record = [null, null, false, source];
        }
        trusted = [code, "", null, list, record, "default", undefined];
        if (typeof url === "string") {
          const hash = url.indexOf("#");
          trusted.push(hash < 0 ? url : url.slice(0, hash), false);
        }
        return new Response(TRUSTED);
      };
      // A fetched response's URL (Fetch §6.4: the last of its URL list, without the fragment)
      // and whether a redirect was followed to reach it; set by the engine's fetch().
      internal.setResponseUrl = (r, url, redirected) => {
        if (r === null || typeof r !== "object" || !(#s in r)) throw new TypeError("not a Response");
        const hash = url.indexOf("#");
        r.#s[RS_URL] = hash < 0 ? url : url.slice(0, hash);
        r.#s[RS_REDIRECTED] = redirected === true;
      };
    }
  }
  // The header list of a Response's state, whether or not its Headers object exists yet.
  const listOf = (s) => (s[RS_HEADERS] === null ? s[RS_LIST] : headersList(s[RS_HEADERS]));
  Object.defineProperty(Response, "length", { value: 0 });
  internal.tag(Response.prototype, "Response");
  for (const name of ["type", "url", "redirected", "status", "ok", "statusText", "headers", "cf", "webSocket", "clone"]) {
    const d = Object.getOwnPropertyDescriptor(Response.prototype, name);
    d.enumerable = true;
    Object.defineProperty(Response.prototype, name, d);
  }

  internal.defineGlobals({ Request, Response });
})
