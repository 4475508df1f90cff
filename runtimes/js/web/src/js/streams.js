// A minimal ReadableStream (Streams Standard §4): default streams with start/pull/cancel,
// default readers, async iteration, tee() and ReadableStream.from(). Enough for Response and
// Request bodies built or read chunk by chunk. Not here: BYOB readers, queuing strategies'
// size(), pipeTo/pipeThrough, WritableStream and TransformStream (they throw, naming
// themselves).
(function (native, internal, global) {
  "use strict";
  const { toU8 } = internal;
  const resolvedUndefined = () => Promise.resolve(undefined);
  // workerd's read() result at the end of a stream has no `value` key.
  const DONE = () => ({ done: true });
  const unsupported = (what) => new Error(`${what} is not supported by Tenantry yet`);

  class ReadableStream {
    #state = "readable"; // "readable" | "closed" | "errored"
    #queue = [];
    #error = undefined;
    #reader = null;
    #disturbed = false;
    #source = null;
    #controller = null;
    #started = false;
    #pulling = false;
    #pullAgain = false;
    #closeRequested = false;
    #highWaterMark = 1;
    #bytes = undefined; // a Uint8Array when built by the prelude from a known body
    #origin = undefined; // the byte source it reads, when built by `streamFromSource`

    constructor(underlyingSource = undefined, strategy = undefined) {
      const source = underlyingSource ?? {};
      if (typeof source !== "object" && typeof source !== "function") {
        throw new TypeError("Failed to construct 'ReadableStream': underlyingSource must be an object");
      }
      if (source.type !== undefined && String(source.type) !== "bytes") {
        throw new TypeError(`Failed to construct 'ReadableStream': invalid type "${source.type}"`);
      }
      if (strategy?.highWaterMark !== undefined) {
        const hwm = Number(strategy.highWaterMark);
        if (Number.isNaN(hwm) || hwm < 0) throw new RangeError("highWaterMark must be a non-negative number");
        this.#highWaterMark = hwm;
      } else if (source.type === "bytes") {
        this.#highWaterMark = 0;
      }
      this.#source = source;
      this.#controller = newController(this);
      const start = source.start === undefined ? undefined : source.start.call(source, this.#controller);
      Promise.resolve(start).then(
        () => { this.#started = true; this.#pullIfNeeded(); },
        (e) => this.#fail(e),
      );
    }

    static from(asyncIterable) {
      const method = asyncIterable?.[Symbol.asyncIterator] ?? asyncIterable?.[Symbol.iterator];
      if (typeof method !== "function") throw new TypeError("ReadableStream.from: argument is not iterable");
      const iterator = method.call(asyncIterable);
      return new ReadableStream({
        async pull(c) {
          const r = await iterator.next();
          if (r.done) c.close();
          else c.enqueue(await r.value);
        },
        async cancel(reason) {
          if (typeof iterator.return === "function") await iterator.return(reason);
        },
      }, { highWaterMark: 0 });
    }

    get locked() { return this.#reader !== null; }

    cancel(reason = undefined) {
      if (this.#reader !== null) return Promise.reject(new TypeError("This ReadableStream is locked to a reader."));
      return this.#cancel(reason);
    }

    getReader(options = undefined) {
      if (options?.mode !== undefined) {
        if (String(options.mode) === "byob") throw unsupported("ReadableStream.getReader({ mode: \"byob\" })");
        throw new TypeError(`getReader: invalid mode "${options.mode}"`);
      }
      return new ReadableStreamDefaultReader(this);
    }

    tee() {
      if (this.#reader !== null) throw new TypeError("This ReadableStream is locked to a reader.");
      const reader = this.getReader();
      let canceled = 0;
      const reasons = [];
      let branches;
      let reading = false;
      const pull = () => {
        if (reading) return resolvedUndefined();
        reading = true;
        return reader.read().then(({ value, done }) => {
          reading = false;
          for (const b of branches) {
            if (b.#state !== "readable" || b.#closeRequested) continue;
            if (done) b.#controller.close();
            else b.#controller.enqueue(value);
          }
        }, (e) => { for (const b of branches) b.#fail(e); });
      };
      const cancel = (reason) => {
        reasons.push(reason);
        if (++canceled === 2) return reader.cancel(reasons);
        return resolvedUndefined();
      };
      branches = [new ReadableStream({ pull, cancel }), new ReadableStream({ pull, cancel })];
      return branches;
    }

    pipeTo() { return Promise.reject(unsupported("ReadableStream.pipeTo")); }
    pipeThrough() { throw unsupported("ReadableStream.pipeThrough"); }

    values(options = undefined) {
      const reader = this.getReader();
      const preventCancel = Boolean(options?.preventCancel);
      const it = Object.create(asyncIteratorProto);
      iterators.set(it, { reader, preventCancel, done: false });
      return it;
    }

    // ---- internals (stream "abstract operations") -------------------------------------
    #pullIfNeeded() {
      if (!this.#started || this.#state !== "readable" || this.#closeRequested) return;
      const waiting = this.#reader !== null && readRequests(this.#reader).length > 0;
      if (!waiting && this.#highWaterMark - this.#queue.length <= 0) return;
      if (this.#pulling) { this.#pullAgain = true; return; }
      const pull = this.#source.pull;
      if (pull === undefined) return;
      this.#pulling = true;
      let result;
      try {
        result = pull.call(this.#source, this.#controller);
      } catch (e) {
        this.#fail(e);
        return;
      }
      Promise.resolve(result).then(() => {
        this.#pulling = false;
        if (this.#pullAgain) { this.#pullAgain = false; this.#pullIfNeeded(); }
      }, (e) => this.#fail(e));
    }

    #enqueue(chunk) {
      if (this.#state !== "readable" || this.#closeRequested) {
        throw new TypeError("Cannot enqueue to a closed or errored ReadableStream.");
      }
      const requests = this.#reader === null ? null : readRequests(this.#reader);
      if (requests !== null && requests.length > 0) requests.shift().resolve({ value: chunk, done: false });
      else this.#queue.push(chunk);
      this.#pullIfNeeded();
    }

    #close() {
      if (this.#state !== "readable" || this.#closeRequested) {
        throw new TypeError("Cannot close a closed or errored ReadableStream.");
      }
      this.#closeRequested = true;
      if (this.#queue.length === 0) this.#finishClose();
    }

    #finishClose() {
      this.#state = "closed";
      if (this.#reader !== null) {
        for (const r of readRequests(this.#reader).splice(0)) r.resolve(DONE());
        readerClosed(this.#reader).resolve();
      }
    }

    #fail(e) {
      if (this.#state !== "readable") return;
      this.#state = "errored";
      this.#error = e;
      this.#queue = [];
      if (this.#reader !== null) {
        for (const r of readRequests(this.#reader).splice(0)) r.reject(e);
        readerClosed(this.#reader).reject(e);
      }
    }

    #cancel(reason) {
      this.#disturbed = true;
      this.#origin = undefined;
      if (this.#state === "closed") return resolvedUndefined();
      if (this.#state === "errored") return Promise.reject(this.#error);
      this.#queue = [];
      this.#finishClose();
      const cancel = this.#source.cancel;
      if (cancel === undefined) return resolvedUndefined();
      try {
        return Promise.resolve(cancel.call(this.#source, reason)).then(() => undefined);
      } catch (e) {
        return Promise.reject(e);
      }
    }

    #read(reader) {
      this.#disturbed = true;
      this.#bytes = undefined;
      this.#origin = undefined;
      if (this.#queue.length > 0) {
        const value = this.#queue.shift();
        if (this.#closeRequested && this.#queue.length === 0) this.#finishClose();
        else this.#pullIfNeeded();
        return Promise.resolve({ value, done: false });
      }
      if (this.#state === "closed") return Promise.resolve(DONE());
      if (this.#state === "errored") return Promise.reject(this.#error);
      return new Promise((resolve, reject) => {
        readRequests(reader).push({ resolve, reject });
        this.#pullIfNeeded();
      });
    }

    static {
      internal.streamLock = (stream, reader) => {
        if (stream.#reader !== null) throw new TypeError("This ReadableStream is currently locked to a reader.");
        stream.#reader = reader;
        return stream.#state === "readable" ? 0 : stream.#state === "closed" ? 1 : 2;
      };
      internal.streamError = (stream) => stream.#error;
      internal.streamUnlock = (stream) => { stream.#reader = null; };
      internal.streamRead = (stream, reader) => stream.#read(reader);
      internal.streamCancel = (stream, reason) => stream.#cancel(reason);
      internal.streamEnqueue = (stream, chunk) => stream.#enqueue(chunk);
      internal.streamClose = (stream) => stream.#close();
      internal.streamFail = (stream, e) => stream.#fail(e);
      internal.streamDesiredSize = (stream) =>
        stream.#state === "errored" ? null : stream.#state === "closed" ? 0 : stream.#highWaterMark - stream.#queue.length;
      internal.isReadableStream = (x) => x !== null && typeof x === "object" && #state in x;
      internal.streamUnusable = (stream) => stream.#disturbed || stream.#reader !== null;
      internal.streamDisturbed = (stream) => stream.#disturbed;
      // A stream over known bytes; the body code can take them back without reading.
      internal.streamFromBytes = (bytes) => {
        const s = new ReadableStream({
          start(c) {
            if (bytes.length > 0) c.enqueue(bytes);
            c.close();
          },
        }, { highWaterMark: 0 });
        s.#bytes = bytes;
        return s;
      };
      // A stream over a byte source (see `readSource`), pulled only when read: untouched, it
      // can give the source back (`streamTakeSource`) for its owner to hand on unread.
      internal.streamFromSource = (source) => {
        const s = new ReadableStream({
          pull(c) {
            const chunk = source.read();
            if (chunk === null) c.close();
            else c.enqueue(chunk);
          },
        }, { highWaterMark: 0 });
        s.#origin = source;
        return s;
      };
      // The stream's byte source without reading it, if it was built from one and is untouched.
      internal.streamTakeSource = (stream) => {
        const source = stream.#origin;
        if (source === undefined || stream.#disturbed || stream.#reader !== null) return undefined;
        stream.#disturbed = true;
        stream.#origin = undefined;
        stream.#state = "closed";
        return source;
      };
      // The stream's bytes without reading it, if it was built from bytes and is untouched.
      internal.streamTakeBytes = (stream) => {
        const bytes = stream.#bytes;
        if (bytes === undefined || stream.#disturbed || stream.#reader !== null) return undefined;
        stream.#disturbed = true;
        stream.#bytes = undefined;
        stream.#queue = [];
        stream.#state = "closed";
        return bytes;
      };
    }
  }
  Object.defineProperty(ReadableStream.prototype, Symbol.asyncIterator, {
    value: ReadableStream.prototype.values, writable: true, configurable: true,
  });
  internal.tag(ReadableStream.prototype, "ReadableStream");

  // ---- controller ----------------------------------------------------------------------
  const controllerStreams = new WeakMap();
  let constructingController = false;
  class ReadableStreamDefaultController {
    constructor() {
      if (!constructingController) throw new TypeError("Illegal constructor");
    }
    get desiredSize() { return internal.streamDesiredSize(streamOf(this)); }
    enqueue(chunk = undefined) { internal.streamEnqueue(streamOf(this), chunk); }
    close() { internal.streamClose(streamOf(this)); }
    error(e = undefined) { internal.streamFail(streamOf(this), e); }
    // For `type: "bytes"` sources, which this implementation serves as default streams.
    get byobRequest() { return null; }
  }
  internal.tag(ReadableStreamDefaultController.prototype, "ReadableStreamDefaultController");
  const streamOf = (c) => {
    const s = controllerStreams.get(c);
    if (s === undefined) throw new TypeError("Illegal invocation");
    return s;
  };
  const newController = (stream) => {
    constructingController = true;
    try {
      const c = new ReadableStreamDefaultController();
      controllerStreams.set(c, stream);
      return c;
    } finally {
      constructingController = false;
    }
  };

  // ---- reader --------------------------------------------------------------------------
  let readRequests, readerClosed;
  class ReadableStreamDefaultReader {
    #stream;
    #requests = [];
    #closed;
    #closedResolvers;

    constructor(stream) {
      if (!internal.isReadableStream(stream)) {
        throw new TypeError("Failed to construct 'ReadableStreamDefaultReader': parameter 1 is not a ReadableStream.");
      }
      const state = internal.streamLock(stream, this);
      this.#stream = stream;
      let resolvers;
      this.#closed = new Promise((resolve, reject) => { resolvers = { resolve, reject }; });
      this.#closed.catch(() => {});
      this.#closedResolvers = resolvers;
      if (state === 1) resolvers.resolve();
      else if (state === 2) resolvers.reject(internal.streamError(stream));
    }

    get closed() { return this.#closed; }

    read() {
      if (this.#stream === undefined) return Promise.reject(new TypeError("This reader has been released."));
      return internal.streamRead(this.#stream, this);
    }

    cancel(reason = undefined) {
      if (this.#stream === undefined) return Promise.reject(new TypeError("This reader has been released."));
      return internal.streamCancel(this.#stream, reason);
    }

    releaseLock() {
      if (this.#stream === undefined) return;
      const e = new TypeError("This reader has been released.");
      for (const r of this.#requests.splice(0)) r.reject(e);
      this.#closedResolvers.reject(e);
      this.#closed = Promise.reject(e);
      this.#closed.catch(() => {});
      internal.streamUnlock(this.#stream);
      this.#stream = undefined;
    }

    static {
      readRequests = (r) => r.#requests;
      readerClosed = (r) => r.#closedResolvers;
    }
  }
  internal.tag(ReadableStreamDefaultReader.prototype, "ReadableStreamDefaultReader");

  // ---- async iteration -------------------------------------------------------------------
  const iterators = new WeakMap();
  const asyncIteratorProto = Object.create(Object.getPrototypeOf(Object.getPrototypeOf((async function* () {})())));
  internal.define(asyncIteratorProto, {
    next() {
      const state = iterators.get(this);
      if (state === undefined) return Promise.reject(new TypeError("Illegal invocation"));
      if (state.done) return Promise.resolve({ value: undefined, done: true });
      return state.reader.read().then((r) => {
        if (r.done) { state.done = true; state.reader.releaseLock(); }
        return r;
      }, (e) => { state.done = true; state.reader.releaseLock(); throw e; });
    },
    return(value = undefined) {
      const state = iterators.get(this);
      if (state === undefined) return Promise.reject(new TypeError("Illegal invocation"));
      if (state.done) return Promise.resolve({ value, done: true });
      state.done = true;
      const finish = () => { state.reader.releaseLock(); return { value, done: true }; };
      if (state.preventCancel) return Promise.resolve(finish());
      return state.reader.cancel(value).then(finish);
    },
  });
  internal.tag(asyncIteratorProto, "ReadableStream AsyncIterator");

  // A byte source: an object whose `read()` returns the next chunk of a body as a Uint8Array,
  // or null at its end, and throws if the body cannot be read (what a body fetched by the
  // engine is, until something makes a stream of it). Read to the end, at once.
  const readSource = (source) => {
    const chunks = [];
    let total = 0;
    for (;;) {
      const chunk = source.read();
      if (chunk === null) break;
      chunks.push(chunk);
      total += chunk.byteLength;
    }
    if (chunks.length === 1) return chunks[0];
    const out = new Uint8Array(total);
    let at = 0;
    for (const c of chunks) { out.set(c, at); at += c.byteLength; }
    return out;
  };
  internal.readSource = readSource;

  // Reads a body stream (or a byte source) to the end; chunks must be bytes, as workerd requires.
  internal.readAllBytes = async (stream) => {
    if (!internal.isReadableStream(stream)) return readSource(stream);
    const taken = internal.streamTakeBytes(stream);
    if (taken !== undefined) return taken;
    const source = internal.streamTakeSource(stream);
    if (source !== undefined) return readSource(source);
    const reader = new ReadableStreamDefaultReader(stream);
    const chunks = [];
    let total = 0;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      const u8 = toU8(value);
      if (u8 === undefined) {
        reader.releaseLock();
        throw new TypeError("This ReadableStream did not return bytes.");
      }
      chunks.push(u8);
      total += u8.byteLength;
    }
    reader.releaseLock();
    if (chunks.length === 1) return chunks[0];
    const out = new Uint8Array(total);
    let at = 0;
    for (const c of chunks) { out.set(c, at); at += c.byteLength; }
    return out;
  };

  const notSupported = (name) => {
    const f = function () { throw unsupported(name); };
    Object.defineProperty(f, "name", { value: name });
    return f;
  };

  internal.defineGlobals({
    ReadableStream,
    ReadableStreamDefaultReader,
    ReadableStreamDefaultController,
    WritableStream: notSupported("WritableStream"),
    TransformStream: notSupported("TransformStream"),
    ReadableStreamBYOBReader: notSupported("ReadableStreamBYOBReader"),
    CompressionStream: notSupported("CompressionStream"),
    DecompressionStream: notSupported("DecompressionStream"),
    TextEncoderStream: notSupported("TextEncoderStream"),
    TextDecoderStream: notSupported("TextDecoderStream"),
  });
})
