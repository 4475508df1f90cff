// DOMException, byte and string helpers shared by the other prelude files, queueMicrotask,
// atob/btoa, TextEncoder/TextDecoder and structuredClone.
(function (native, internal, global) {
  "use strict";

  const define = (obj, props) => {
    for (const key of Reflect.ownKeys(props)) {
      Object.defineProperty(obj, key, {
        value: props[key], writable: true, configurable: true, enumerable: false,
      });
    }
  };
  // Globals are writable, configurable and not enumerable, like Web IDL interfaces.
  internal.defineGlobals = (props) => define(global, props);
  internal.define = define;
  internal.tag = (proto, name) =>
    Object.defineProperty(proto, Symbol.toStringTag, { value: name, configurable: true });

  // ---- DOMException (WebIDL §2.8.1) -------------------------------------------------------
  const LEGACY_CODES = {
    IndexSizeError: 1, HierarchyRequestError: 3, WrongDocumentError: 4, InvalidCharacterError: 5,
    NoModificationAllowedError: 7, NotFoundError: 8, NotSupportedError: 9, InUseAttributeError: 10,
    InvalidStateError: 11, SyntaxError: 12, InvalidModificationError: 13, NamespaceError: 14,
    InvalidAccessError: 15, TypeMismatchError: 17, SecurityError: 18, NetworkError: 19,
    AbortError: 20, URLMismatchError: 21, QuotaExceededError: 22, TimeoutError: 23,
    InvalidNodeTypeError: 24, DataCloneError: 25,
  };
  class DOMException extends Error {
    #name;
    constructor(message = "", name = "Error") {
      super(String(message));
      // workerd takes the second argument as the name only (no { name, cause } form).
      this.#name = String(name);
    }
    get name() { return this.#name; }
    get code() { return LEGACY_CODES[this.#name] ?? 0; }
  }
  internal.tag(DOMException.prototype, "DOMException");
  const CONSTANT_NAMES = [
    "INDEX_SIZE_ERR", 1, "DOMSTRING_SIZE_ERR", 2, "HIERARCHY_REQUEST_ERR", 3,
    "WRONG_DOCUMENT_ERR", 4, "INVALID_CHARACTER_ERR", 5, "NO_DATA_ALLOWED_ERR", 6,
    "NO_MODIFICATION_ALLOWED_ERR", 7, "NOT_FOUND_ERR", 8, "NOT_SUPPORTED_ERR", 9,
    "INUSE_ATTRIBUTE_ERR", 10, "INVALID_STATE_ERR", 11, "SYNTAX_ERR", 12,
    "INVALID_MODIFICATION_ERR", 13, "NAMESPACE_ERR", 14, "INVALID_ACCESS_ERR", 15,
    "VALIDATION_ERR", 16, "TYPE_MISMATCH_ERR", 17, "SECURITY_ERR", 18, "NETWORK_ERR", 19,
    "ABORT_ERR", 20, "URL_MISMATCH_ERR", 21, "QUOTA_EXCEEDED_ERR", 22, "TIMEOUT_ERR", 23,
    "INVALID_NODE_TYPE_ERR", 24, "DATA_CLONE_ERR", 25,
  ];
  for (let i = 0; i < CONSTANT_NAMES.length; i += 2) {
    const desc = { value: CONSTANT_NAMES[i + 1], enumerable: true };
    Object.defineProperty(DOMException, CONSTANT_NAMES[i], desc);
    Object.defineProperty(DOMException.prototype, CONSTANT_NAMES[i], desc);
  }
  internal.DOMException = DOMException;

  // ---- helpers ---------------------------------------------------------------------------
  // A Uint8Array over any BufferSource (no copy), or undefined when it is not one.
  const toU8 = (x) => {
    if (x instanceof Uint8Array) return x;
    if (x instanceof ArrayBuffer || (typeof SharedArrayBuffer === "function" && x instanceof SharedArrayBuffer)) {
      return new Uint8Array(x);
    }
    if (ArrayBuffer.isView(x)) return new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
    return undefined;
  };
  internal.toU8 = toU8;
  // A fresh ArrayBuffer holding a copy of the bytes.
  internal.copyToArrayBuffer = (u8) => u8.buffer.slice(u8.byteOffset, u8.byteOffset + u8.byteLength);
  // WebIDL USVString: lone surrogates become U+FFFD.
  const usv = (v) => {
    if (typeof v === "symbol") throw new TypeError("Cannot convert a Symbol to a string");
    const s = String(v);
    return s.isWellFormed() ? s : s.toWellFormed();
  };
  internal.usv = usv;
  const requireArgs = (got, want, what) => {
    if (got < want) {
      throw new TypeError(`Failed to execute '${what}': ${want} argument${want > 1 ? "s" : ""} required, but only ${got} present.`);
    }
  };
  internal.requireArgs = requireArgs;
  internal.utf8Encode = (s) => native.utf8Encode(usv(s));
  // Prototypes for WebIDL pair iterators (kind 0 entries, 1 keys, 2 values) sharing one `next`,
  // tagged as workerd tags them.
  const iteratorPrototype = Object.getPrototypeOf(Object.getPrototypeOf([][Symbol.iterator]()));
  internal.makeIteratorPrototypes = (next) => ["EntryIterator", "KeyIterator", "ValueIterator"].map((tag) => {
    const proto = Object.create(iteratorPrototype);
    Object.defineProperty(proto, "next", { value: next, writable: true, configurable: true, enumerable: true });
    internal.tag(proto, tag);
    return proto;
  });

  // ---- queueMicrotask --------------------------------------------------------------------
  const resolved = Promise.resolve();
  function queueMicrotask(callback) {
    requireArgs(arguments.length, 1, "queueMicrotask");
    if (typeof callback !== "function") {
      throw new TypeError("Failed to execute 'queueMicrotask': parameter 1 is not of type 'Function'.");
    }
    resolved.then(() => callback());
  }

  // ---- atob / btoa (HTML §8.3) -------------------------------------------------------------
  function btoa(data) {
    requireArgs(arguments.length, 1, "btoa");
    const s = String(data);
    const out = s.isWellFormed() ? native.btoa(s) : undefined;
    if (out === undefined) {
      throw new DOMException("The string to be encoded contains characters outside of the Latin1 range.", "InvalidCharacterError");
    }
    return out;
  }
  function atob(data) {
    requireArgs(arguments.length, 1, "atob");
    const s = String(data);
    const out = s.isWellFormed() ? native.atob(s) : undefined;
    if (out === undefined) {
      throw new DOMException("The string to be decoded is not correctly encoded.", "InvalidCharacterError");
    }
    return out;
  }

  // ---- TextEncoder / TextDecoder (Encoding Standard) -------------------------------------
  class TextEncoder {
    get encoding() { return "utf-8"; }
    encode(input = "") { return native.utf8Encode(usv(input)); }
    encodeInto(source, destination) {
      requireArgs(arguments.length, 2, "encodeInto");
      if (!(destination instanceof Uint8Array)) {
        throw new TypeError("Failed to execute 'encodeInto': parameter 2 is not of type 'Uint8Array'.");
      }
      const [read, written] = native.utf8EncodeInto(usv(source), destination);
      return { read, written };
    }
  }
  internal.tag(TextEncoder.prototype, "TextEncoder");

  const UTF8_LABELS = ["unicode-1-1-utf-8", "unicode11utf8", "unicode20utf8", "utf-8", "utf8", "x-unicode20utf8"];
  const EMPTY = new Uint8Array(0);
  class TextDecoder {
    #fatal; #ignoreBOM; #pending = EMPTY; #bomSeen = false;
    constructor(label = "utf-8", options = undefined) {
      const name = String(label).trim().toLowerCase();
      if (!UTF8_LABELS.includes(name)) {
        throw new RangeError(`TextDecoder: the encoding "${label}" is not supported (only utf-8 is)`);
      }
      const opts = options ?? {};
      this.#fatal = Boolean(opts.fatal);
      this.#ignoreBOM = Boolean(opts.ignoreBOM);
    }
    get encoding() { return "utf-8"; }
    get fatal() { return this.#fatal; }
    get ignoreBOM() { return this.#ignoreBOM; }
    decode(input = undefined, options = undefined) {
      let bytes = EMPTY;
      if (input !== undefined && input !== null) {
        bytes = toU8(input);
        if (bytes === undefined) {
          throw new TypeError("Failed to execute 'decode': parameter 1 is not of type 'ArrayBuffer or ArrayBufferView'.");
        }
      }
      const stream = Boolean(options?.stream);
      if (this.#pending.length > 0) {
        const joined = new Uint8Array(this.#pending.length + bytes.length);
        joined.set(this.#pending);
        joined.set(bytes, this.#pending.length);
        bytes = joined;
        this.#pending = EMPTY;
      }
      if (stream) {
        const keep = native.utf8IncompleteTail(bytes);
        if (keep > 0) {
          this.#pending = bytes.slice(bytes.length - keep);
          bytes = bytes.subarray(0, bytes.length - keep);
        }
      }
      let out = native.utf8Decode(bytes, this.#fatal);
      if (out === undefined) {
        this.#bomSeen = false;
        this.#pending = EMPTY;
        throw new TypeError("Failed to execute 'decode': the encoded data was not valid utf-8.");
      }
      if (!this.#bomSeen && out.length > 0) {
        if (!this.#ignoreBOM && out.charCodeAt(0) === 0xfeff) out = out.slice(1);
        this.#bomSeen = true;
      }
      if (!stream) this.#bomSeen = false;
      return out;
    }
  }
  internal.tag(TextDecoder.prototype, "TextDecoder");

  // ---- structuredClone (HTML §2.7 StructuredSerialize, in-realm) --------------------------
  const ERROR_TYPES = { Error, EvalError, RangeError, ReferenceError, SyntaxError, TypeError, URIError };
  const TYPED_ARRAYS = [Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array,
    Uint32Array, Float32Array, Float64Array, BigInt64Array, BigUint64Array];
  if (typeof Float16Array === "function") TYPED_ARRAYS.push(Float16Array);
  // Platform objects without a serialisation (the prelude's classes add themselves).
  internal.unclonable = [];
  const cloneError = (what) => new DOMException(`${what} could not be cloned.`, "DataCloneError");
  const toStr = Object.prototype.toString;

  function clone(value, memo) {
    const type = typeof value;
    if (type === "symbol") throw cloneError(String(value));
    if (type === "function") throw cloneError(value.toString().slice(0, 80));
    if (value === null || type !== "object") return value;
    if (memo.has(value)) return memo.get(value);
    let out;
    const tag = toStr.call(value);
    if (Array.isArray(value)) {
      out = new Array(value.length);
      memo.set(value, out);
      for (const key of Object.keys(value)) out[key] = clone(value[key], memo);
      return out;
    }
    if (value instanceof ArrayBuffer) {
      out = value.slice(0);
      memo.set(value, out);
      return out;
    }
    if (ArrayBuffer.isView(value)) {
      const buffer = clone(value.buffer, memo);
      if (value instanceof DataView) {
        out = new DataView(buffer, value.byteOffset, value.byteLength);
      } else {
        const ctor = TYPED_ARRAYS.find((c) => value instanceof c);
        out = new ctor(buffer, value.byteOffset, value.length);
      }
      memo.set(value, out);
      return out;
    }
    if (value instanceof Date) out = new Date(value.getTime());
    else if (value instanceof RegExp) out = new RegExp(value.source, value.flags);
    else if (tag === "[object Boolean]") out = Object(Boolean.prototype.valueOf.call(value));
    else if (tag === "[object Number]") out = Object(Number.prototype.valueOf.call(value));
    else if (tag === "[object String]") out = Object(String.prototype.valueOf.call(value));
    else if (tag === "[object BigInt]") out = Object(BigInt.prototype.valueOf.call(value));
    if (out !== undefined) {
      memo.set(value, out);
      return out;
    }
    if (value instanceof Map) {
      out = new Map();
      memo.set(value, out);
      for (const [k, v] of value) out.set(clone(k, memo), clone(v, memo));
      return out;
    }
    if (value instanceof Set) {
      out = new Set();
      memo.set(value, out);
      for (const v of value) out.add(clone(v, memo));
      return out;
    }
    if (value instanceof DOMException) {
      out = new DOMException(value.message, value.name);
      memo.set(value, out);
      return out;
    }
    if (value instanceof Error) {
      const name = value.name;
      const ctor = Object.hasOwn(ERROR_TYPES, name) ? ERROR_TYPES[name] : Error;
      out = new ctor();
      memo.set(value, out);
      const message = Object.getOwnPropertyDescriptor(value, "message");
      if (message !== undefined && "value" in message) {
        Object.defineProperty(out, "message", { value: String(message.value), writable: true, configurable: true, enumerable: false });
      }
      if (typeof value.stack === "string") {
        Object.defineProperty(out, "stack", { value: value.stack, writable: true, configurable: true, enumerable: false });
      }
      if (Object.hasOwn(value, "cause")) {
        Object.defineProperty(out, "cause", { value: clone(value.cause, memo), writable: true, configurable: true, enumerable: false });
      }
      return out;
    }
    if (value instanceof Promise || value instanceof WeakMap || value instanceof WeakSet ||
        (typeof WeakRef === "function" && value instanceof WeakRef) ||
        internal.unclonable.some((c) => value instanceof c)) {
      throw cloneError(tag === "[object Object]" ? "#<Object>" : tag.slice(8, -1));
    }
    out = {};
    memo.set(value, out);
    for (const key of Object.keys(value)) out[key] = clone(value[key], memo);
    return out;
  }

  function structuredClone(value, options = undefined) {
    requireArgs(arguments.length, 1, "structuredClone");
    const memo = new Map();
    if (options?.transfer !== undefined) {
      // Transferred ArrayBuffers end up detached, as in workerd. The clone gets a copy first
      // (views in the value must still see the original offsets while they are cloned), and
      // the originals are detached only once the whole value has cloned without error.
      const list = [...options.transfer];
      for (const t of list) {
        if (!(t instanceof ArrayBuffer)) throw new TypeError("structuredClone: only ArrayBuffers can be transferred");
        if (memo.has(t)) throw new DOMException("An ArrayBuffer is listed twice in the transfer list.", "DataCloneError");
        memo.set(t, t.slice(0));
      }
      const out = clone(value, memo);
      for (const t of list) t.transfer();
      return out;
    }
    return clone(value, memo);
  }

  internal.defineGlobals({ DOMException, queueMicrotask, atob, btoa, TextEncoder, TextDecoder, structuredClone });
})
