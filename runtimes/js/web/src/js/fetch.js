// Request and Response (Fetch Standard §5.3–5.5) and their Body mixin.
//
// A body is either absent (null) or a small record { src, stream, used }: `src` is the string
// or the Uint8Array it was built from (kept as is, so text() of a string body and the engine
// writing it out need no conversion), `stream` the ReadableStream once one exists (made lazily
// when `.body` is read, or given by the Worker).
(function (native, internal, global) {
  "use strict";
  const { requireArgs, usv, toU8, Headers, URLSearchParams, headersList, headersFromList } = internal;

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
      return { src: init.isWellFormed() ? init : init.toWellFormed(), stream: null, used: false };
    }
    extractedType = null;
    const u8 = toU8(init);
    if (u8 !== undefined) return { src: u8.slice(), stream: null, used: false };
    if (init instanceof URLSearchParams) {
      extractedType = FORM;
      return { src: init.toString(), stream: null, used: false };
    }
    if (init instanceof internal.Blob) {
      extractedType = init.type === "" ? null : init.type;
      return { src: internal.blobBytes(init).slice(), stream: null, used: false };
    }
    if (init instanceof internal.FormData) {
      const [bytes, boundary] = internal.encodeMultipart(init);
      extractedType = `multipart/form-data; boundary=${boundary}`;
      return { src: bytes, stream: null, used: false };
    }
    if (internal.isReadableStream(init)) {
      if (internal.streamUnusable(init)) throw new TypeError("This ReadableStream is disturbed or locked and cannot be used as a body.");
      return { src: null, stream: init, used: false };
    }
    extractedType = TEXT_PLAIN;
    return { src: usv(init), stream: null, used: false };
  };

  const addContentType = (list, type) => {
    if (type === null) return;
    for (let i = 0; i < list.length; i += 3) if (list[i] === "content-type") return;
    list.push("content-type", type, "Content-Type");
  };

  const isUsed = (b) => b !== null && (b.used || (b.stream !== null && internal.streamDisturbed(b.stream)));

  const streamOf = (b) => {
    if (b === null) return null;
    if (b.stream === null) {
      const bytes = typeof b.src === "string" ? internal.utf8Encode(b.src) : b.src;
      b.stream = internal.streamFromBytes(bytes);
      b.src = null;
      if (b.used) internal.streamTakeBytes(b.stream); // a used body's stream is disturbed
    }
    return b.stream;
  };

  // workerd's text() keeps a leading BOM (Fetch's "UTF-8 decode" would strip it).
  const decodeKeepingBom = (u8) => native.utf8Decode(u8, false);

  // Fetch "consume body": resolves to a string (text) or a Uint8Array the caller owns.
  const consume = (b, asText) => {
    if (b === null) return Promise.resolve(asText ? "" : new Uint8Array(0));
    if (isUsed(b) || (b.stream !== null && internal.streamUnusable(b.stream))) {
      return Promise.reject(new TypeError(USED));
    }
    b.used = true;
    if (b.stream === null) {
      const src = b.src;
      b.src = null;
      if (typeof src === "string") return Promise.resolve(asText ? src : internal.utf8Encode(src));
      return Promise.resolve(asText ? decodeKeepingBom(src) : src);
    }
    return internal.readAllBytes(b.stream).then((u8) => (asText ? decodeKeepingBom(u8) : u8.slice()));
  };

  const toArrayBuffer = (u8) =>
    u8.byteOffset === 0 && u8.byteLength === u8.buffer.byteLength ? u8.buffer : internal.copyToArrayBuffer(u8);

  // A second record for clone(): bytes are shared (consumers copy), a stream is teed.
  const cloneBody = (b) => {
    if (b === null) return null;
    if (isUsed(b)) throw new TypeError("Body has already been used. It can only be used once.");
    if (b.stream === null) return { src: b.src, stream: null, used: false };
    if (internal.streamUnusable(b.stream)) throw new TypeError("This body's stream is locked.");
    const [a, c] = b.stream.tee();
    b.stream = a;
    return { src: null, stream: c, used: false };
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

  class Request {
    #method = "GET";
    #url;
    #headers = null; // made on first use when the engine gave #rawHeaders
    #rawHeaders = null;
    #body = null;
    #redirect = "follow";
    #cf = undefined;
    #signal = null;

    constructor(input, init = undefined) {
      if (input === TRUSTED) {
        const t = trusted;
        trusted = null;
        this.#method = t.method;
        this.#url = t.url;
        this.#headers = t.headers;
        this.#rawHeaders = t.rawHeaders;
        this.#body = t.body;
        this.#cf = t.cf;
        this.#redirect = t.redirect;
        return;
      }
      requireArgs(arguments.length, 1, "Request");
      let inputBody = null;
      let inputHeaders = null;
      if (input instanceof Request) {
        this.#url = input.#url;
        this.#method = input.#method;
        this.#redirect = input.#redirect;
        this.#cf = input.#cf;
        this.#signal = input.#signal;
        inputHeaders = input.headers;
        inputBody = input.#body;
      } else {
        const href = native.urlHref(usv(input));
        if (href === undefined) throw new TypeError(`Failed to parse URL from ${String(input)}`);
        this.#url = href;
      }
      const opts = init ?? {};
      if (typeof opts !== "object" && typeof opts !== "function") {
        throw new TypeError("Failed to construct 'Request': The provided value is not of type 'RequestInit'.");
      }
      if (opts.method !== undefined) this.#method = normalizeMethod(opts.method);
      if (opts.redirect !== undefined) {
        const r = String(opts.redirect);
        if (!REDIRECTS.includes(r)) throw new TypeError(`Invalid redirect value: ${r}`);
        this.#redirect = r;
      }
      if (opts.cf !== undefined) this.#cf = opts.cf;
      if (opts.signal !== undefined && opts.signal !== null) {
        if (!(opts.signal instanceof internal.AbortSignal)) throw new TypeError("Request: signal must be an AbortSignal");
        this.#signal = opts.signal;
      }
      if (opts.headers !== undefined) this.#headers = new Headers(opts.headers);
      else this.#headers = new Headers(inputHeaders ?? undefined);
      const hasInitBody = opts.body !== undefined && opts.body !== null;
      if ((hasInitBody || inputBody !== null) && (this.#method === "GET" || this.#method === "HEAD")) {
        throw new TypeError("Request with a GET or HEAD method cannot have a body.");
      }
      if (hasInitBody) {
        this.#body = extract(opts.body);
        addContentType(headersList(this.#headers), extractedType);
      } else if (inputBody !== null) {
        if (isUsed(inputBody)) throw new TypeError(USED);
        // The new request takes the body over; the input's is used up (Fetch "create a proxy").
        this.#body = { src: inputBody.src, stream: inputBody.stream, used: false };
        inputBody.used = true;
      }
    }

    get method() { return this.#method; }
    get url() { return this.#url; }
    get headers() {
      if (this.#headers === null) {
        // The engine's [name, value, ...] as it came off the wire, made into the Headers
        // triples now, once.
        const raw = this.#rawHeaders ?? [];
        const list = new Array((raw.length >> 1) * 3);
        for (let r = 0, w = 0; r + 1 < raw.length; r += 2, w += 3) {
          const given = String(raw[r]);
          list[w] = given.toLowerCase();
          list[w + 1] = String(raw[r + 1]);
          list[w + 2] = given;
        }
        this.#headers = headersFromList(list, true);
        this.#rawHeaders = null;
      }
      return this.#headers;
    }
    get redirect() { return this.#redirect; }
    get cf() { return this.#cf; }
    get integrity() { return ""; }
    get keepalive() { return false; }
    // A signal that never aborts unless the init gave one (workerd's incoming requests'
    // signals abort on client disconnect; this crate has no client to watch).
    get signal() {
      if (this.#signal === null) this.#signal = internal.newAbortSignal();
      return this.#signal;
    }

    clone() {
      const body = cloneBody(this.#body);
      trusted = {
        method: this.#method, url: this.#url, headers: new Headers(this.headers), rawHeaders: null, body,
        cf: this.#cf, redirect: this.#redirect,
      };
      return new Request(TRUSTED);
    }

    static {
      installBody(Request, (r) => r.#body, "Request");
      // The engine's incoming request: headers immutable, as workerd gives them.
      internal.newRequest = (method, url, headers, body, cf) => {
        let record = null;
        if (body !== null && body !== undefined) {
          record = internal.isReadableStream(body)
            ? { src: null, stream: body, used: false }
            : { src: typeof body === "string" ? body : toU8(body), stream: null, used: false };
        }
        const href = native.urlHref(usv(url));
        if (href === undefined) throw new TypeError(`Invalid request URL: ${url}`);
        trusted = {
          method: String(method), url: href, headers: null, rawHeaders: headers, body: record,
          cf, redirect: "follow",
        };
        return new Request(TRUSTED);
      };
    }
  }
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

  class Response {
    #status = 200;
    #statusText = "";
    #headers = null; // made on first use; until then the flat list #list holds the headers
    #list = null;
    #body = null;
    #type = "default";
    #cf = undefined;

    constructor(body = null, init = undefined) {
      if (body === TRUSTED) {
        const t = trusted;
        trusted = null;
        this.#status = t.status;
        this.#headers = t.headers;
        this.#list = t.list;
        this.#type = t.type;
        return;
      }
      if (init !== undefined && init !== null) this.#init(init);
      else this.#list = [];
      if (body !== null && body !== undefined) {
        if (this.#status !== 200 && NULL_BODY_STATUS.includes(this.#status)) {
          throw new TypeError(`Response with null body status (${this.#status}) cannot have a body.`);
        }
        this.#body = extract(body);
        addContentType(this.#headerList(), extractedType);
      }
    }

    #init(opts) {
      if (typeof opts !== "object" && typeof opts !== "function") {
        throw new TypeError("Failed to construct 'Response': The provided value is not of type 'ResponseInit'.");
      }
      if (opts.status !== undefined) {
        const status = unsignedShort(opts.status);
        if (status < 200 || status > 599) {
          throw new RangeError(`Responses may only be constructed with status codes in the range 200 to 599, inclusive.`);
        }
        this.#status = status;
      }
      if (opts.statusText !== undefined) {
        const text = String(opts.statusText);
        if (!REASON_PHRASE.test(text)) throw new TypeError(`Invalid statusText: "${text}"`);
        this.#statusText = text;
      }
      if (opts.cf !== undefined) this.#cf = opts.cf;
      if (opts.headers !== undefined) this.#headers = new Headers(opts.headers);
      else this.#list = [];
    }

    #headerList() { return this.#headers === null ? this.#list : headersList(this.#headers); }

    static json(data, init = undefined) {
      // workerd sends "undefined" for what JSON cannot represent (undefined, a function).
      const text = String(JSON.stringify(data));
      const r = new Response(null, init);
      if (NULL_BODY_STATUS.includes(r.#status)) {
        throw new TypeError(`Response with null body status (${r.#status}) cannot have a body.`);
      }
      r.#body = { src: text, stream: null, used: false };
      addContentType(r.#headerList(), "application/json");
      return r;
    }

    static redirect(url, status = 302) {
      requireArgs(arguments.length, 1, "redirect");
      const href = native.urlHref(usv(url));
      if (href === undefined) throw new TypeError(`Unable to parse URL: ${String(url)}`);
      const code = Number(status);
      if (!REDIRECT_STATUS.includes(code)) throw new RangeError(`Invalid redirect status code: ${status}`);
      trusted = { status: code, headers: headersFromList(["location", href, "Location"], true), list: null, type: "default" };
      return new Response(TRUSTED);
    }

    static error() {
      // workerd leaves these headers mutable.
      trusted = { status: 0, headers: null, list: [], type: "error" };
      return new Response(TRUSTED);
    }

    get type() { return this.#type; }
    get url() { return ""; }
    get redirected() { return false; }
    get status() { return this.#status; }
    get ok() { return this.#status >= 200 && this.#status <= 299; }
    get statusText() { return this.#statusText; }
    get headers() {
      if (this.#headers === null) {
        this.#headers = headersFromList(this.#list, false);
        this.#list = null;
      }
      return this.#headers;
    }
    get cf() { return this.#cf; }
    get webSocket() { return null; }

    clone() {
      const body = cloneBody(this.#body);
      const r = new Response(null, { status: this.#status === 0 ? 200 : this.#status });
      r.#status = this.#status;
      r.#statusText = this.#statusText;
      r.#headers = new Headers(this.headers);
      r.#type = this.#type;
      r.#cf = this.#cf;
      r.#body = body;
      return r;
    }

    static {
      installBody(Response, (r) => r.#body, "Response");
      // For the engine: [status, statusText, headers, body]; headers the flat triples
      // [lower-case name, value, name as written, ...]; body
      // is null, a string, a Uint8Array or a ReadableStream (read it with readAllBytes). The
      // body is marked used.
      internal.responseParts = (r) => {
        if (!(#body in r)) throw new TypeError("The handler did not return a Response.");
        const b = r.#body;
        let body = null;
        if (b !== null) {
          if (isUsed(b)) throw new TypeError(USED);
          b.used = true;
          body = b.stream !== null ? (internal.streamTakeBytes(b.stream) ?? b.stream) : b.src;
          b.src = null;
        }
        return [r.#status, r.#statusText, r.#headerList(), body];
      };
      internal.isResponse = (r) => r !== null && typeof r === "object" && #body in r;
    }
  }
  internal.tag(Response.prototype, "Response");
  for (const name of ["type", "url", "redirected", "status", "ok", "statusText", "headers", "cf", "webSocket", "clone"]) {
    const d = Object.getOwnPropertyDescriptor(Response.prototype, name);
    d.enumerable = true;
    Object.defineProperty(Response.prototype, name, d);
  }

  internal.defineGlobals({ Request, Response });
})
