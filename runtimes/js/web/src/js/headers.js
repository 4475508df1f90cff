// Headers (Fetch Standard §5.2). The list is one flat array [name, value, given, ...] of
// triples: the lower-cased name, the value, and the name as the Worker wrote it (workerd keeps
// that case on the wire). No object per header, and a linear scan is faster than a Map for the
// dozen headers a request carries.
(function (native, internal, global) {
  "use strict";
  const { requireArgs } = internal;

  // RFC 9110 §5.6.2 token characters. workerd accepts the empty name, so `*`, not `+`.
  const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]*$/;
  // Fetch "normalize": strip leading and trailing HTTP whitespace (tab, space, CR, LF).
  const EDGE_WHITESPACE = /^[\t\n\r ]+|[\t\n\r ]+$/g;
  // Fetch forbids NUL, CR and LF in values; workerd lets code points above U+00FF through.

  // Names already validated, to their lower-case form: a Map lookup is a third of a regex
  // test in QuickJS, and a Worker uses the same few names on every request. Bounded in entries
  // and in name length, so a Worker inventing names cannot grow it without limit.
  const NAME_CACHE_LIMIT = 256;
  const NAME_CACHE_MAX_LENGTH = 64;
  const nameCache = new Map();
  const lowerName = (given) => {
    let lower = nameCache.get(given);
    if (lower === undefined) {
      if (!TOKEN.test(given)) throw new TypeError(`Invalid header name: "${given}"`);
      lower = given.toLowerCase();
      if (given.length <= NAME_CACHE_MAX_LENGTH) {
        if (nameCache.size >= NAME_CACHE_LIMIT) nameCache.clear();
        nameCache.set(given, lower);
      }
    }
    return lower;
  };
  const normalizeName = (name) => lowerName(typeof name === "string" ? name : String(name));
  // HTTP whitespace at either end (tab, LF, CR, space)?
  const edge = (c) => c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
  const normalizeValue = (value) => {
    let s = typeof value === "string" ? value : String(value);
    if (s.length > 0 && (edge(s.charCodeAt(0)) || edge(s.charCodeAt(s.length - 1)))) {
      s = s.replace(EDGE_WHITESPACE, "");
    }
    if (s.indexOf("\n") >= 0 || s.indexOf("\r") >= 0 || s.indexOf("\0") >= 0) {
      throw new TypeError(`Invalid header value: "${s}"`);
    }
    return s;
  };

  const IMMUTABLE = 1;
  class Headers {
    #list = [];
    #guard = 0;

    constructor(init = undefined) {
      if (init === undefined || init === null) return;
      if (typeof init !== "object" && typeof init !== "function") {
        throw new TypeError("Failed to construct 'Headers': The provided value is not of type '(record<ByteString, ByteString> or sequence<sequence<ByteString>>)'.");
      }
      if (#list in init) {
        this.#list = init.#list.slice();
      } else if (typeof init[Symbol.iterator] === "function") {
        for (const pair of init) {
          if (typeof pair !== "object" || pair === null || typeof pair[Symbol.iterator] !== "function") {
            throw new TypeError("Failed to construct 'Headers': The provided value cannot be converted to a sequence.");
          }
          const items = [...pair];
          if (items.length !== 2) {
            throw new TypeError("Failed to construct 'Headers': Invalid value: each header must be a [name, value] pair.");
          }
          this.append(items[0], items[1]);
        }
      } else {
        for (const key of Reflect.ownKeys(init)) {
          const desc = Reflect.getOwnPropertyDescriptor(init, key);
          if (desc === undefined || !desc.enumerable) continue;
          if (typeof key === "symbol") throw new TypeError("Cannot convert a Symbol to a string");
          this.append(key, init[key]);
        }
      }
    }

    #check() {
      if (this.#guard === IMMUTABLE) throw new TypeError("Can't modify immutable headers.");
    }

    append(name, value) {
      requireArgs(arguments.length, 2, "append");
      const given = typeof name === "string" ? name : String(name);
      const lower = lowerName(given);
      const v = normalizeValue(value);
      this.#check();
      this.#list.push(lower, v, given);
    }

    delete(name) {
      requireArgs(arguments.length, 1, "delete");
      const n = normalizeName(name);
      this.#check();
      const list = this.#list;
      let w = 0;
      for (let r = 0; r < list.length; r += 3) {
        if (list[r] !== n) {
          list[w] = list[r];
          list[w + 1] = list[r + 1];
          list[w + 2] = list[r + 2];
          w += 3;
        }
      }
      list.length = w;
    }

    get(name) {
      requireArgs(arguments.length, 1, "get");
      const n = normalizeName(name);
      const list = this.#list;
      let out = null;
      for (let i = 0; i < list.length; i += 3) {
        if (list[i] === n) out = out === null ? list[i + 1] : out + ", " + list[i + 1];
      }
      return out;
    }

    getSetCookie() {
      const list = this.#list;
      const out = [];
      for (let i = 0; i < list.length; i += 3) {
        if (list[i] === "set-cookie") out.push(list[i + 1]);
      }
      return out;
    }

    // workerd's extension: getAll("set-cookie"), the only name it allows.
    getAll(name) {
      requireArgs(arguments.length, 1, "getAll");
      const n = normalizeName(name);
      if (n !== "set-cookie") throw new TypeError('getAll() can only be used with the header name "Set-Cookie".');
      return this.getSetCookie();
    }

    has(name) {
      requireArgs(arguments.length, 1, "has");
      const n = normalizeName(name);
      const list = this.#list;
      for (let i = 0; i < list.length; i += 3) if (list[i] === n) return true;
      return false;
    }

    set(name, value) {
      requireArgs(arguments.length, 2, "set");
      const given = typeof name === "string" ? name : String(name);
      const n = lowerName(given);
      const v = normalizeValue(value);
      this.#check();
      const list = this.#list;
      let found = false;
      let w = 0;
      for (let r = 0; r < list.length; r += 3) {
        if (list[r] === n) {
          if (found) continue;
          found = true;
          list[r + 1] = v;
        }
        list[w] = list[r];
        list[w + 1] = list[r + 1];
        list[w + 2] = list[r + 2];
        w += 3;
      }
      list.length = w;
      if (!found) list.push(n, v, given);
    }

    // Fetch "sort and combine": names sorted, values of one name joined with ", ",
    // except set-cookie which stays one entry per value. Flat [name, value, ...].
    #sorted() {
      const list = this.#list;
      const names = [];
      for (let i = 0; i < list.length; i += 3) if (!names.includes(list[i])) names.push(list[i]);
      names.sort();
      const out = [];
      for (const n of names) {
        if (n === "set-cookie") {
          for (let i = 0; i < list.length; i += 3) if (list[i] === n) out.push(n, list[i + 1]);
        } else {
          out.push(n, this.get(n));
        }
      }
      return out;
    }

    forEach(callback, thisArg = undefined) {
      requireArgs(arguments.length, 1, "forEach");
      if (typeof callback !== "function") {
        throw new TypeError("Failed to execute 'forEach' on 'Headers': parameter 1 is not of type 'Function'.");
      }
      const pairs = this.#sorted();
      for (let i = 0; i < pairs.length; i += 2) callback.call(thisArg, pairs[i + 1], pairs[i], this);
    }

    entries() { return makeIterator(this.#sorted(), 0); }
    keys() { return makeIterator(this.#sorted(), 1); }
    values() { return makeIterator(this.#sorted(), 2); }

    static {
      // For Request/Response and the engine: raw access without copying or validation.
      internal.headersList = (h) => h.#list;
      internal.headersFromList = (list, immutable) => {
        const h = new Headers();
        h.#list = list;
        if (immutable) h.#guard = IMMUTABLE;
        return h;
      };
    }
  }
  Object.defineProperty(Headers.prototype, Symbol.iterator, {
    value: Headers.prototype.entries, writable: true, configurable: true,
  });
  internal.tag(Headers.prototype, "Headers");

  // kind: 0 entries, 1 keys, 2 values. The pairs are a snapshot taken when iteration starts.
  class HeadersIterator {
    #pairs; #kind; #index = 0;
    constructor(pairs, kind) { this.#pairs = pairs; this.#kind = kind; }
    next() {
      const i = this.#index;
      if (i >= this.#pairs.length) return { value: undefined, done: true };
      this.#index = i + 2;
      const kind = this.#kind;
      const value = kind === 0 ? [this.#pairs[i], this.#pairs[i + 1]] : kind === 1 ? this.#pairs[i] : this.#pairs[i + 1];
      return { value, done: false };
    }
  }
  // workerd's iterator objects are tagged EntryIterator, KeyIterator and ValueIterator.
  const iteratorProtos = internal.makeIteratorPrototypes(HeadersIterator.prototype.next);
  const makeIterator = (pairs, kind) => {
    const it = new HeadersIterator(pairs, kind);
    Object.setPrototypeOf(it, iteratorProtos[kind]);
    return it;
  };

  internal.Headers = Headers;
  internal.defineGlobals({ Headers });
})
