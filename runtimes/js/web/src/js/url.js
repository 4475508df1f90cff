// URL and URLSearchParams (URL Standard §6). Parsing and every setter run in Rust (the `url`
// crate's WHATWG implementation), which hands back the serialisation and twelve offsets into it
// (see natives/url.rs): a URL keeps those, and each getter is a substring.
(function (native, internal, global) {
  "use strict";
  const { requireArgs, usv } = internal;

  // Offsets, in the order natives/url.rs writes them.
  const AFTER_SCHEME = 0, BEFORE_USERNAME = 1, AFTER_USERNAME = 2, BEFORE_PASSWORD = 3,
    AFTER_PASSWORD = 4, BEFORE_HOST = 5, AFTER_HOST = 6, BEFORE_PORT = 7, AFTER_PORT = 8,
    BEFORE_PATH = 9, AFTER_PATH = 10, AFTER_QUERY = 11;
  // Setter numbers, as natives/url.rs takes them.
  const SET_HREF = 0, SET_PROTOCOL = 1, SET_USERNAME = 2, SET_PASSWORD = 3, SET_HOST = 4,
    SET_HOSTNAME = 5, SET_PORT = 6, SET_PATHNAME = 7, SET_SEARCH = 8, SET_HASH = 9;

  // Where the natives write the offsets; copied out right after each call.
  const scratch = new Uint32Array(12);
  const scratchBytes = new Uint8Array(scratch.buffer);
  // A URL's whole state is one array (one private field; see fetch.js on why):
  // [the twelve offsets, href, linked URLSearchParams or null].
  const HREF = 12, PARAMS = 13;
  const state = (href, params) => [scratch[0], scratch[1], scratch[2], scratch[3], scratch[4],
    scratch[5], scratch[6], scratch[7], scratch[8], scratch[9], scratch[10], scratch[11], href, params];

  const parse = (url, base) =>
    native.urlParse(usv(url), base === undefined ? undefined : usv(base), scratchBytes);
  // "?" alone and "#" alone read as "" (URL Standard's search and hash getters).
  const unlessAlone = (s) => (s.length === 1 ? "" : s);
  const slice = (s, from, to) => s[HREF].slice(s[from], to === undefined ? undefined : s[to]);

  let setParamsFromQuery; // (params, query) => void, defined by URLSearchParams
  let newLinkedParams; // (url, query) => URLSearchParams

  class URL {
    #s;

    // Neither `arguments` nor a default parameter: each costs bytecode on every construction
    // (`length` is set to 1 below, as `(url, base = undefined)` makes it). A missing `url` is met
    // as `undefined`, which does not parse.
    constructor(url, base) {
      if (url === undefined) requireArgs(0, 1, "URL");
      const href = parse(url, base);
      if (href === undefined) throw new TypeError(`Invalid URL string.`);
      this.#s = state(href, null);
    }

    static canParse(url, base = undefined) {
      requireArgs(arguments.length, 1, "canParse");
      return parse(url, base) !== undefined;
    }

    static parse(url, base = undefined) {
      requireArgs(arguments.length, 1, "parse");
      try {
        return new URL(url, base);
      } catch {
        return null;
      }
    }

    #set(which, value) {
      const href = native.urlSet(this.#s[HREF], which, usv(value), scratchBytes);
      if (href === undefined) throw new TypeError(`Invalid URL string.`);
      const params = this.#s[PARAMS];
      this.#s = state(href, params);
      if (params !== null && (which === SET_HREF || which === SET_SEARCH)) {
        setParamsFromQuery(params, this.search);
      }
    }

    get href() { return this.#s[HREF]; }
    set href(v) { this.#set(SET_HREF, v); }
    get origin() { return native.urlOrigin(this.#s[HREF]); }
    get protocol() { return this.#s[HREF].slice(0, this.#s[AFTER_SCHEME] + 1); }
    set protocol(v) { this.#set(SET_PROTOCOL, v); }
    get username() { return slice(this.#s, BEFORE_USERNAME, AFTER_USERNAME); }
    set username(v) { this.#set(SET_USERNAME, v); }
    get password() { return slice(this.#s, BEFORE_PASSWORD, AFTER_PASSWORD); }
    set password(v) { this.#set(SET_PASSWORD, v); }
    get host() { return slice(this.#s, BEFORE_HOST, AFTER_PORT); }
    set host(v) { this.#set(SET_HOST, v); }
    get hostname() { return slice(this.#s, BEFORE_HOST, AFTER_HOST); }
    set hostname(v) { this.#set(SET_HOSTNAME, v); }
    get port() { return slice(this.#s, BEFORE_PORT, AFTER_PORT); }
    set port(v) { this.#set(SET_PORT, v); }
    get pathname() { return slice(this.#s, BEFORE_PATH, AFTER_PATH); }
    set pathname(v) { this.#set(SET_PATHNAME, v); }
    get search() { return unlessAlone(slice(this.#s, AFTER_PATH, AFTER_QUERY)); }
    set search(v) { this.#set(SET_SEARCH, v); }
    get hash() { return unlessAlone(slice(this.#s, AFTER_QUERY)); }
    set hash(v) { this.#set(SET_HASH, v); }
    get searchParams() {
      const s = this.#s;
      if (s[PARAMS] === null) s[PARAMS] = newLinkedParams(this, this.search);
      return s[PARAMS];
    }
    toString() { return this.#s[HREF]; }
    toJSON() { return this.#s[HREF]; }

    static {
      // URLSearchParams writes the query back through this (URL Standard "update steps").
      internal.urlSetQuery = (url, serialized) => {
        const href = native.urlSet(url.#s[HREF], SET_SEARCH, serialized, scratchBytes);
        url.#s = state(href, url.#s[PARAMS]);
      };
    }
  }
  for (const name of ["createObjectURL", "revokeObjectURL"]) {
    Object.defineProperty(URL, name, {
      value() { throw new Error(`URL.${name} is not supported (there are no Blobs)`); },
      writable: true, configurable: true,
    });
  }
  Object.defineProperty(URL, "length", { value: 1 });
  internal.tag(URL.prototype, "URL");
  for (const name of ["href", "origin", "protocol", "username", "password", "host", "hostname",
    "port", "pathname", "search", "hash", "searchParams", "toString", "toJSON"]) {
    const d = Object.getOwnPropertyDescriptor(URL.prototype, name);
    d.enumerable = true;
    Object.defineProperty(URL.prototype, name, d);
  }

  class URLSearchParams {
    #list = []; // flat [name, value, ...]
    #url = null;

    constructor(init = "") {
      if (init === undefined || init === null) return;
      if (typeof init === "object" || typeof init === "function") {
        if (#list in init) {
          this.#list = init.#list.slice();
        } else if (typeof init[Symbol.iterator] === "function") {
          for (const pair of init) {
            if (typeof pair !== "object" || pair === null || typeof pair[Symbol.iterator] !== "function") {
              throw new TypeError("Failed to construct 'URLSearchParams': The provided value cannot be converted to a sequence.");
            }
            const items = [...pair];
            if (items.length !== 2) {
              throw new TypeError("Failed to construct 'URLSearchParams': Each query pair must be an iterable [name, value] tuple");
            }
            this.#list.push(usv(items[0]), usv(items[1]));
          }
        } else {
          for (const key of Reflect.ownKeys(init)) {
            const desc = Reflect.getOwnPropertyDescriptor(init, key);
            if (desc === undefined || !desc.enumerable) continue;
            if (typeof key === "symbol") throw new TypeError("Cannot convert a Symbol to a string");
            this.#list.push(usv(key), usv(init[key]));
          }
        }
      } else {
        let s = usv(init);
        if (s.charCodeAt(0) === 0x3f) s = s.slice(1);
        this.#list = native.formParse(s);
      }
    }

    #update() {
      if (this.#url === null) return;
      const s = native.formSerialize(this.#list);
      internal.urlSetQuery(this.#url, s);
    }

    get size() { return this.#list.length / 2; }

    append(name, value) {
      requireArgs(arguments.length, 2, "append");
      this.#list.push(usv(name), usv(value));
      this.#update();
    }

    delete(name, value = undefined) {
      requireArgs(arguments.length, 1, "delete");
      const n = usv(name);
      const v = value === undefined ? undefined : usv(value);
      const list = this.#list;
      let w = 0;
      for (let r = 0; r < list.length; r += 2) {
        if (list[r] === n && (v === undefined || list[r + 1] === v)) continue;
        list[w] = list[r];
        list[w + 1] = list[r + 1];
        w += 2;
      }
      list.length = w;
      this.#update();
    }

    get(name) {
      requireArgs(arguments.length, 1, "get");
      const n = usv(name);
      const list = this.#list;
      for (let i = 0; i < list.length; i += 2) if (list[i] === n) return list[i + 1];
      return null;
    }

    getAll(name) {
      requireArgs(arguments.length, 1, "getAll");
      const n = usv(name);
      const list = this.#list;
      const out = [];
      for (let i = 0; i < list.length; i += 2) if (list[i] === n) out.push(list[i + 1]);
      return out;
    }

    has(name, value = undefined) {
      requireArgs(arguments.length, 1, "has");
      const n = usv(name);
      const v = value === undefined ? undefined : usv(value);
      const list = this.#list;
      for (let i = 0; i < list.length; i += 2) {
        if (list[i] === n && (v === undefined || list[i + 1] === v)) return true;
      }
      return false;
    }

    set(name, value) {
      requireArgs(arguments.length, 2, "set");
      const n = usv(name);
      const v = usv(value);
      const list = this.#list;
      let found = false;
      let w = 0;
      for (let r = 0; r < list.length; r += 2) {
        if (list[r] === n) {
          if (found) continue;
          found = true;
          list[r + 1] = v;
        }
        list[w] = list[r];
        list[w + 1] = list[r + 1];
        w += 2;
      }
      list.length = w;
      if (!found) list.push(n, v);
      this.#update();
    }

    sort() {
      // Stable sort by name in UTF-16 code unit order (JS string comparison is exactly that).
      const pairs = [];
      for (let i = 0; i < this.#list.length; i += 2) pairs.push([this.#list[i], this.#list[i + 1]]);
      pairs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
      this.#list = pairs.flat();
      this.#update();
    }

    forEach(callback, thisArg = undefined) {
      requireArgs(arguments.length, 1, "forEach");
      if (typeof callback !== "function") {
        throw new TypeError("Failed to execute 'forEach' on 'URLSearchParams': parameter 1 is not of type 'Function'.");
      }
      for (let i = 0; i < this.#list.length; i += 2) {
        callback.call(thisArg, this.#list[i + 1], this.#list[i], this);
      }
    }

    entries() { return makeIterator(this, 0); }
    keys() { return makeIterator(this, 1); }
    values() { return makeIterator(this, 2); }

    toString() { return native.formSerialize(this.#list); }

    static {
      setParamsFromQuery = (params, query) => {
        params.#list = query === "" ? [] : native.formParse(query.slice(1));
      };
      newLinkedParams = (url, query) => {
        const p = new URLSearchParams();
        if (query !== "") p.#list = native.formParse(query.slice(1));
        p.#url = url;
        return p;
      };
      internal.searchParamsList = (p) => p.#list;
    }
  }
  Object.defineProperty(URLSearchParams.prototype, Symbol.iterator, {
    value: URLSearchParams.prototype.entries, writable: true, configurable: true,
  });
  internal.tag(URLSearchParams.prototype, "URLSearchParams");

  // Live iteration, as the URL Standard's iterable declaration gives: each next() reads the
  // current list.
  class ParamsIterator {
    #params; #kind; #index = 0;
    constructor(params, kind) { this.#params = params; this.#kind = kind; }
    next() {
      const list = internal.searchParamsList(this.#params);
      const i = this.#index;
      if (i >= list.length) return { value: undefined, done: true };
      this.#index = i + 2;
      const kind = this.#kind;
      const value = kind === 0 ? [list[i], list[i + 1]] : kind === 1 ? list[i] : list[i + 1];
      return { value, done: false };
    }
  }
  const iteratorProtos = internal.makeIteratorPrototypes(ParamsIterator.prototype.next);
  const makeIterator = (params, kind) => {
    const it = new ParamsIterator(params, kind);
    Object.setPrototypeOf(it, iteratorProtos[kind]);
    return it;
  };

  internal.URLSearchParams = URLSearchParams;
  internal.unclonable.push(URL, URLSearchParams);
  internal.defineGlobals({ URL, URLSearchParams });
})
