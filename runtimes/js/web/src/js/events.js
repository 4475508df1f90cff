// Event, EventTarget (DOM Standard §2), AbortController and AbortSignal (§3.1–3.2), as far as a
// Worker uses them: there is no tree, so dispatch is at-target only.
(function (native, internal, global) {
  "use strict";
  const { requireArgs, DOMException } = internal;

  class Event {
    #type; #bubbles; #cancelable; #composed;
    #defaultPrevented = false;
    #stop = 0; // 1 stopPropagation, 2 stopImmediatePropagation
    #target = undefined; // workerd: undefined, not null, outside dispatch
    #currentTarget = undefined;
    #dispatching = false;
    #timeStamp = Date.now();

    constructor(type, init = undefined) {
      requireArgs(arguments.length, 1, "Event");
      this.#type = String(type);
      this.#bubbles = Boolean(init?.bubbles);
      this.#cancelable = Boolean(init?.cancelable);
      this.#composed = Boolean(init?.composed);
    }
    get type() { return this.#type; }
    get bubbles() { return this.#bubbles; }
    get cancelable() { return this.#cancelable; }
    get composed() { return this.#composed; }
    get defaultPrevented() { return this.#defaultPrevented; }
    get returnValue() { return !this.#defaultPrevented; }
    get target() { return this.#target; }
    get srcElement() { return this.#target; }
    get currentTarget() { return this.#currentTarget; }
    get eventPhase() { return this.#dispatching ? Event.AT_TARGET : Event.NONE; }
    get isTrusted() { return false; }
    get timeStamp() { return this.#timeStamp; }
    get cancelBubble() { return this.#stop !== 0; }
    set cancelBubble(v) { if (v) this.#stop = Math.max(this.#stop, 1); }
    composedPath() { return this.#dispatching ? [this.#currentTarget] : []; }
    // workerd also marks a non-cancelable event prevented while it is being dispatched
    // (dispatchEvent then returns false); outside dispatch only a cancelable one.
    preventDefault() { if (this.#cancelable || this.#dispatching) this.#defaultPrevented = true; }
    stopPropagation() { this.#stop = Math.max(this.#stop, 1); }
    stopImmediatePropagation() { this.#stop = 2; }

    static {
      internal.eventBeginDispatch = (e, target) => {
        if (e.#dispatching) throw new DOMException("The event is already being dispatched.", "InvalidStateError");
        e.#dispatching = true;
        e.#target = target;
        e.#currentTarget = target;
        e.#stop = 0;
      };
      internal.eventStoppedImmediately = (e) => e.#stop === 2;
      internal.eventEndDispatch = (e) => {
        e.#dispatching = false;
        // workerd leaves currentTarget set after dispatch.
        return !e.#defaultPrevented;
      };
    }
  }
  for (const [name, value] of [["NONE", 0], ["CAPTURING_PHASE", 1], ["AT_TARGET", 2], ["BUBBLING_PHASE", 3]]) {
    Object.defineProperty(Event, name, { value, enumerable: true });
    Object.defineProperty(Event.prototype, name, { value, enumerable: true });
  }
  internal.tag(Event.prototype, "Event");

  // Listeners per type: arrays of { callback, once, capture, removed }.
  class EventTarget {
    #listeners = new Map();

    addEventListener(type, callback, options = undefined) {
      requireArgs(arguments.length, 2, "addEventListener");
      if (callback === null || callback === undefined) return;
      if (typeof callback !== "function" && typeof callback !== "object") {
        throw new TypeError("addEventListener: the listener must be a function or an object with handleEvent");
      }
      const capture = typeof options === "boolean" ? options : Boolean(options?.capture);
      const once = typeof options === "object" && options !== null && Boolean(options.once);
      const signal = typeof options === "object" && options !== null ? options.signal : undefined;
      if (signal !== undefined && !(signal instanceof AbortSignal)) {
        throw new TypeError("addEventListener: signal must be an AbortSignal");
      }
      if (signal?.aborted) return;
      const key = String(type);
      let list = this.#listeners.get(key);
      if (list === undefined) this.#listeners.set(key, (list = []));
      if (list.some((l) => l.callback === callback && l.capture === capture)) return;
      const entry = { callback, once, capture, removed: false };
      list.push(entry);
      if (signal !== undefined) {
        signal.addEventListener("abort", () => this.removeEventListener(key, callback, { capture }));
      }
    }

    removeEventListener(type, callback, options = undefined) {
      requireArgs(arguments.length, 2, "removeEventListener");
      const capture = typeof options === "boolean" ? options : Boolean(options?.capture);
      const list = this.#listeners.get(String(type));
      if (list === undefined) return;
      const i = list.findIndex((l) => l.callback === callback && l.capture === capture);
      if (i >= 0) {
        list[i].removed = true;
        list.splice(i, 1);
      }
    }

    dispatchEvent(event) {
      requireArgs(arguments.length, 1, "dispatchEvent");
      if (!(event instanceof Event)) throw new TypeError("dispatchEvent: the argument must be an Event");
      internal.eventBeginDispatch(event, this);
      let notCanceled;
      try {
        const list = this.#listeners.get(event.type);
        if (list !== undefined) {
          for (const entry of list.slice()) {
            if (entry.removed) continue;
            if (entry.once) this.removeEventListener(event.type, entry.callback, { capture: entry.capture });
            try {
              if (typeof entry.callback === "function") entry.callback.call(this, event);
              else entry.callback.handleEvent(event);
            } catch (e) {
              // A throwing listener does not stop the others (DOM "report the exception").
              Promise.reject(e);
            }
            if (internal.eventStoppedImmediately(event)) break;
          }
        }
      } finally {
        notCanceled = internal.eventEndDispatch(event);
      }
      return notCanceled;
    }
  }
  internal.tag(EventTarget.prototype, "EventTarget");

  // ---- AbortSignal / AbortController ------------------------------------------------------
  let constructing = false;
  class AbortSignal extends EventTarget {
    #aborted = false;
    #reason = undefined;
    #onabort = null;

    constructor() {
      if (!constructing) throw new TypeError("Illegal constructor");
      super();
    }
    get aborted() { return this.#aborted; }
    get reason() { return this.#reason; }
    get onabort() { return this.#onabort; }
    set onabort(f) {
      if (this.#onabort !== null) this.removeEventListener("abort", this.#onabort);
      this.#onabort = typeof f === "function" ? f : null;
      if (this.#onabort !== null) this.addEventListener("abort", this.#onabort);
    }
    throwIfAborted() { if (this.#aborted) throw this.#reason; }

    static abort(reason = undefined) {
      const s = newSignal();
      s.#aborted = true;
      s.#reason = reason === undefined ? abortError() : reason;
      return s;
    }
    static timeout(ms) {
      requireArgs(arguments.length, 1, "timeout");
      if (typeof global.setTimeout !== "function") {
        throw new Error("AbortSignal.timeout needs setTimeout, which this context does not have");
      }
      const s = newSignal();
      global.setTimeout(() => {
        signalAbort(s, new DOMException("The operation was aborted due to timeout", "TimeoutError"));
      }, Number(ms));
      return s;
    }
    static any(signals) {
      const s = newSignal();
      const list = [...signals];
      for (const dep of list) {
        if (!(dep instanceof AbortSignal)) throw new TypeError("AbortSignal.any: every item must be an AbortSignal");
        if (dep.aborted) {
          s.#aborted = true;
          s.#reason = dep.reason;
          return s;
        }
      }
      for (const dep of list) dep.addEventListener("abort", () => signalAbort(s, dep.reason), { once: true });
      return s;
    }

    static {
      // DOM "signal abort": set the reason, then fire "abort" once.
      internal.signalAbort = (s, reason) => {
        if (s.#aborted) return;
        s.#aborted = true;
        s.#reason = reason === undefined ? abortError() : reason;
        s.dispatchEvent(new Event("abort"));
      };
    }
  }
  internal.tag(AbortSignal.prototype, "AbortSignal");
  const abortError = () => new DOMException("This operation was aborted", "AbortError");
  const signalAbort = (s, reason) => internal.signalAbort(s, reason);
  const newSignal = () => {
    constructing = true;
    try {
      return new AbortSignal();
    } finally {
      constructing = false;
    }
  };
  internal.newAbortSignal = newSignal;

  class AbortController {
    #signal = newSignal();
    get signal() { return this.#signal; }
    abort(reason = undefined) { signalAbort(this.#signal, reason); }
  }
  internal.tag(AbortController.prototype, "AbortController");

  internal.AbortSignal = AbortSignal;
  internal.defineGlobals({ Event, EventTarget, AbortSignal, AbortController });
})
