// Blob and File (File API §3–4) and FormData (XHR §4.3), with the multipart/form-data and
// application/x-www-form-urlencoded codecs that Request/Response bodies need (HTML §4.10.21.8,
// RFC 7578). A Blob holds one Uint8Array.
(function (native, internal, global) {
  "use strict";
  const { requireArgs, usv, toU8 } = internal;
  const EMPTY = new Uint8Array(0);

  // File API: a type of printable ASCII is lower-cased, anything else becomes "".
  const normalizeType = (t) => {
    const s = String(t);
    return /^[\x20-\x7e]*$/.test(s) ? s.toLowerCase() : "";
  };

  const concat = (chunks, total) => {
    if (chunks.length === 1) return chunks[0];
    const out = new Uint8Array(total);
    let at = 0;
    for (const c of chunks) { out.set(c, at); at += c.byteLength; }
    return out;
  };

  class Blob {
    #bytes = EMPTY;
    #type = "";

    constructor(blobParts = undefined, options = undefined) {
      if (blobParts !== undefined && blobParts !== null) {
        if (typeof blobParts !== "object" || typeof blobParts[Symbol.iterator] !== "function") {
          throw new TypeError("Failed to construct 'Blob': The provided value cannot be converted to a sequence.");
        }
        const chunks = [];
        let total = 0;
        for (const part of blobParts) {
          let u8;
          if (part instanceof Blob) u8 = part.#bytes;
          else u8 = toU8(part);
          if (u8 === undefined) u8 = internal.utf8Encode(usv(part));
          else u8 = u8.slice();
          chunks.push(u8);
          total += u8.byteLength;
        }
        this.#bytes = chunks.length === 0 ? EMPTY : concat(chunks, total);
      }
      if (options?.type !== undefined) this.#type = normalizeType(options.type);
    }

    get size() { return this.#bytes.byteLength; }
    get type() { return this.#type; }

    slice(start = undefined, end = undefined, contentType = undefined) {
      const size = this.#bytes.byteLength;
      const clamp = (v, dflt) => {
        if (v === undefined) return dflt;
        const n = Math.trunc(Number(v)) || 0;
        return n < 0 ? Math.max(size + n, 0) : Math.min(n, size);
      };
      const from = clamp(start, 0);
      const to = clamp(end, size);
      const b = new Blob();
      b.#bytes = this.#bytes.slice(from, Math.max(from, to));
      b.#type = contentType === undefined ? "" : normalizeType(contentType);
      return b;
    }

    text() { return Promise.resolve(native.utf8Decode(this.#bytes, false)); }
    arrayBuffer() { return Promise.resolve(internal.copyToArrayBuffer(this.#bytes)); }
    bytes() { return Promise.resolve(this.#bytes.slice()); }
    stream() { return internal.streamFromBytes(this.#bytes.slice()); }

    static {
      internal.blobBytes = (b) => b.#bytes;
      internal.newBlob = (bytes, type) => {
        const b = new Blob();
        b.#bytes = bytes;
        b.#type = normalizeType(type);
        return b;
      };
    }
  }
  internal.tag(Blob.prototype, "Blob");

  class File extends Blob {
    #name;
    #lastModified;
    constructor(fileBits, fileName, options = undefined) {
      requireArgs(arguments.length, 2, "File");
      super(fileBits, options);
      this.#name = usv(fileName);
      this.#lastModified = options?.lastModified === undefined ? Date.now() : Math.trunc(Number(options.lastModified)) || 0;
    }
    get name() { return this.#name; }
    get lastModified() { return this.#lastModified; }
    get webkitRelativePath() { return ""; }
  }
  internal.tag(File.prototype, "File");

  // ---- FormData ----------------------------------------------------------------------------
  // XHR "create an entry": a Blob value becomes a File named by `filename` or its own name; a
  // nameless Blob takes the entry's name (workerd; XHR says "blob").
  const entryValue = (name, value, filename) => {
    if (value instanceof Blob) {
      if (value instanceof File && filename === undefined) return value;
      name = filename !== undefined ? usv(filename) : value instanceof File ? value.name : name;
      return new File([value], name, { type: value.type, lastModified: value instanceof File ? value.lastModified : undefined });
    }
    return usv(value);
  };

  class FormData {
    #list = []; // flat [name, value, ...]

    constructor(form = undefined) {
      if (form !== undefined) throw new TypeError("Failed to construct 'FormData': there are no HTML forms here.");
    }

    append(name, value, filename = undefined) {
      requireArgs(arguments.length, 2, "append");
      const n = usv(name);
      this.#list.push(n, entryValue(n, value, filename));
    }
    delete(name) {
      requireArgs(arguments.length, 1, "delete");
      const n = usv(name);
      const list = this.#list;
      let w = 0;
      for (let r = 0; r < list.length; r += 2) {
        if (list[r] === n) continue;
        list[w] = list[r];
        list[w + 1] = list[r + 1];
        w += 2;
      }
      list.length = w;
    }
    get(name) {
      requireArgs(arguments.length, 1, "get");
      const n = usv(name);
      for (let i = 0; i < this.#list.length; i += 2) if (this.#list[i] === n) return this.#list[i + 1];
      return null;
    }
    getAll(name) {
      requireArgs(arguments.length, 1, "getAll");
      const n = usv(name);
      const out = [];
      for (let i = 0; i < this.#list.length; i += 2) if (this.#list[i] === n) out.push(this.#list[i + 1]);
      return out;
    }
    has(name) {
      requireArgs(arguments.length, 1, "has");
      const n = usv(name);
      for (let i = 0; i < this.#list.length; i += 2) if (this.#list[i] === n) return true;
      return false;
    }
    set(name, value, filename = undefined) {
      requireArgs(arguments.length, 2, "set");
      const n = usv(name);
      const v = entryValue(n, value, filename);
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
    }
    forEach(callback, thisArg = undefined) {
      requireArgs(arguments.length, 1, "forEach");
      if (typeof callback !== "function") throw new TypeError("Failed to execute 'forEach' on 'FormData': parameter 1 is not of type 'Function'.");
      for (let i = 0; i < this.#list.length; i += 2) callback.call(thisArg, this.#list[i + 1], this.#list[i], this);
    }
    entries() { return makeIterator(this.#list, 0); }
    keys() { return makeIterator(this.#list, 1); }
    values() { return makeIterator(this.#list, 2); }

    static {
      internal.formDataList = (f) => f.#list;
    }
  }
  Object.defineProperty(FormData.prototype, Symbol.iterator, {
    value: FormData.prototype.entries, writable: true, configurable: true,
  });
  internal.tag(FormData.prototype, "FormData");

  // Live over the list, like URLSearchParams' iterators.
  class FormDataIterator {
    #list; #kind; #index = 0;
    constructor(list, kind) { this.#list = list; this.#kind = kind; }
    next() {
      const list = this.#list;
      const i = this.#index;
      if (i >= list.length) return { value: undefined, done: true };
      this.#index = i + 2;
      const kind = this.#kind;
      return { value: kind === 0 ? [list[i], list[i + 1]] : kind === 1 ? list[i] : list[i + 1], done: false };
    }
  }
  const iteratorProtos = internal.makeIteratorPrototypes(FormDataIterator.prototype.next);
  const makeIterator = (list, kind) => Object.setPrototypeOf(new FormDataIterator(list, kind), iteratorProtos[kind]);

  // ---- multipart/form-data (RFC 7578; HTML's encoding algorithm) ------------------------------
  const escapeName = (s) => s.replace(/\n/g, "%0A").replace(/\r/g, "%0D").replace(/"/g, "%22");

  // Returns [bytes, boundary].
  internal.encodeMultipart = (form) => {
    const random = new Uint8Array(12);
    global.crypto.getRandomValues(random);
    let boundary = "----formdata-tenantry-";
    for (const b of random) boundary += (b < 16 ? "0" : "") + b.toString(16);
    const chunks = [];
    let total = 0;
    const add = (u8) => { chunks.push(u8); total += u8.byteLength; };
    const text = (s) => add(internal.utf8Encode(s));
    const list = internal.formDataList(form);
    for (let i = 0; i < list.length; i += 2) {
      // workerd sends names and values as they are (HTML would turn lone CR/LF into CRLF).
      const name = escapeName(list[i]);
      const value = list[i + 1];
      if (typeof value === "string") {
        text(`--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`);
      } else {
        const type = value.type === "" ? "application/octet-stream" : value.type;
        text(`--${boundary}\r\nContent-Disposition: form-data; name="${name}"; filename="${escapeName(value.name)}"\r\nContent-Type: ${type}\r\n\r\n`);
        add(internal.blobBytes(value));
        text("\r\n");
      }
    }
    text(`--${boundary}--`); // workerd ends without a CRLF
    return [concat(chunks, total), boundary];
  };

  // A parameter of a header value: `name="quoted"` or `name=token`.
  const param = (header, key) => {
    const re = new RegExp(`;\\s*${key}\\s*=\\s*(?:"((?:[^"\\\\]|\\\\.)*)"|([^;\\s]*))`, "i");
    const m = re.exec(header);
    if (m === null) return undefined;
    return m[1] !== undefined ? m[1].replace(/\\(.)/g, "$1") : m[2];
  };

  const indexOf = (hay, needle, from) => native.bytesFind(hay, needle, from);

  const parseMultipart = (bytes, boundary) => {
    const form = new FormData();
    const delimiter = internal.utf8Encode(`--${boundary}`);
    const bad = () => new TypeError("Failed to parse the body as multipart/form-data.");
    let at = indexOf(bytes, delimiter, 0);
    if (at < 0) throw bad();
    for (;;) {
      at += delimiter.length;
      // "--" after a delimiter ends the body.
      if (bytes[at] === 0x2d && bytes[at + 1] === 0x2d) return form;
      if (bytes[at] !== 0x0d || bytes[at + 1] !== 0x0a) throw bad();
      at += 2;
      const headEnd = indexOf(bytes, CRLFCRLF, at);
      if (headEnd < 0) throw bad();
      const head = native.utf8Decode(bytes.subarray(at, headEnd), false);
      const bodyStart = headEnd + 4;
      const next = indexOf(bytes, crlfDelimiter(delimiter), bodyStart);
      if (next < 0) throw bad();
      const body = bytes.subarray(bodyStart, next);
      let disposition, type;
      for (const line of head.split("\r\n")) {
        const colon = line.indexOf(":");
        if (colon < 0) continue;
        const key = line.slice(0, colon).trim().toLowerCase();
        const value = line.slice(colon + 1).trim();
        if (key === "content-disposition") disposition = value;
        else if (key === "content-type") type = value;
      }
      if (disposition === undefined || !/^form-data\b/i.test(disposition)) throw bad();
      const name = param(disposition, "name");
      if (name === undefined) throw bad();
      const filename = param(disposition, "filename");
      if (filename === undefined) form.append(name, native.utf8Decode(body, false));
      else form.append(name, new File([body], filename, { type: type ?? "" }));
      at = next + 2;
    }
  };
  const CRLFCRLF = new Uint8Array([13, 10, 13, 10]);
  const crlfDelimiter = (delimiter) => {
    const out = new Uint8Array(delimiter.length + 2);
    out[0] = 13;
    out[1] = 10;
    out.set(delimiter, 2);
    return out;
  };

  // Fetch "package data" for formData(): by the body's Content-Type.
  internal.parseFormData = (bytes, contentType) => {
    const essence = (contentType ?? "").split(";")[0].trim().toLowerCase();
    if (essence === "multipart/form-data") {
      const boundary = param(contentType, "boundary");
      if (boundary === undefined || boundary === "") throw new TypeError("multipart/form-data without a boundary");
      return parseMultipart(bytes, boundary);
    }
    if (essence === "application/x-www-form-urlencoded") {
      const form = new FormData();
      const list = native.formParse(native.utf8Decode(bytes, false));
      for (let i = 0; i < list.length; i += 2) form.append(list[i], list[i + 1]);
      return form;
    }
    throw new TypeError("Unrecognized Content-Type header value. FormData can only parse the following MIME types: multipart/form-data, application/x-www-form-urlencoded");
  };

  internal.Blob = Blob;
  internal.FormData = FormData;
  internal.defineGlobals({ Blob, File, FormData });
})
