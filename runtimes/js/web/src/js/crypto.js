// crypto.getRandomValues, crypto.randomUUID and the part of crypto.subtle (WebCrypto) Workers
// use most: digest (SHA-1/256/384/512) and HMAC keys (importKey "raw"/"jwk", generateKey,
// exportKey "raw"/"jwk", sign, verify). Everything else rejects with NotSupportedError naming it.
(function (native, internal, global) {
  "use strict";
  const { requireArgs, toU8, DOMException } = internal;

  const MAX_RANDOM_BYTES = 65536; // WebCrypto §10.1.1: QuotaExceededError above this
  const INTEGER_ARRAYS = [Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array,
    Int32Array, Uint32Array, BigInt64Array, BigUint64Array];
  const HASHES = ["SHA-1", "SHA-256", "SHA-384", "SHA-512", "MD5"]; // workerd has MD5 too
  // HMAC's default key length is the hash's block size (WebCrypto §29.6, generateKey).
  const BLOCK_BITS = { MD5: 512, "SHA-1": 512, "SHA-256": 512, "SHA-384": 1024, "SHA-512": 1024 };

  const notSupported = (what) => new DOMException(`${what} is not supported by Tenantry`, "NotSupportedError");

  // ---- crypto ------------------------------------------------------------------------------
  let constructing = false;
  const illegal = () => { if (!constructing) throw new TypeError("Illegal constructor"); };

  class Crypto {
    constructor() { illegal(); }
    get subtle() { return subtle; }
    getRandomValues(array) {
      requireArgs(arguments.length, 1, "getRandomValues");
      if (!ArrayBuffer.isView(array)) {
        throw new TypeError("getRandomValues: the argument must be an ArrayBufferView");
      }
      if (!INTEGER_ARRAYS.some((c) => array instanceof c)) {
        throw new DOMException("The data argument must be an integer-type TypedArray", "TypeMismatchError");
      }
      if (array.byteLength > MAX_RANDOM_BYTES) {
        throw new DOMException(
          `The ArrayBufferView's byte length (${array.byteLength}) exceeds the number of bytes of entropy available via this API (${MAX_RANDOM_BYTES})`,
          "QuotaExceededError");
      }
      native.randomFill(new Uint8Array(array.buffer, array.byteOffset, array.byteLength));
      return array;
    }
    randomUUID() {
      const b = new Uint8Array(16);
      native.randomFill(b);
      b[6] = (b[6] & 0x0f) | 0x40; // version 4
      b[8] = (b[8] & 0x3f) | 0x80; // RFC 9562 variant
      let s = "";
      for (let i = 0; i < 16; i++) {
        if (i === 4 || i === 6 || i === 8 || i === 10) s += "-";
        s += (b[i] < 16 ? "0" : "") + b[i].toString(16);
      }
      return s;
    }
  }
  internal.tag(Crypto.prototype, "Crypto");

  // ---- CryptoKey ---------------------------------------------------------------------------
  const keyData = new WeakMap(); // CryptoKey -> Uint8Array (secret key bytes)
  class CryptoKey {
    #algorithm; #extractable; #usages;
    constructor(algorithm, extractable, usages) {
      illegal();
      this.#algorithm = algorithm;
      this.#extractable = extractable;
      this.#usages = usages;
    }
    get type() { return "secret"; }
    get extractable() { return this.#extractable; }
    // Fresh copies, so a Worker cannot change what the key is used for.
    get algorithm() { const a = this.#algorithm; return { name: a.name, hash: { name: a.hash.name }, length: a.length }; }
    get usages() { return this.#usages.slice(); }
    static {
      internal.keyInfo = (k) => (#algorithm in k ? { algorithm: k.#algorithm, extractable: k.#extractable, usages: k.#usages } : undefined);
    }
  }
  internal.tag(CryptoKey.prototype, "CryptoKey");
  const newKey = (algorithm, extractable, usages, bytes) => {
    constructing = true;
    try {
      const k = new CryptoKey(algorithm, extractable, usages);
      keyData.set(k, bytes);
      return k;
    } finally {
      constructing = false;
    }
  };

  // ---- algorithm normalisation (WebCrypto §18.4) ---------------------------------------------
  const algorithmName = (alg) => {
    if (typeof alg === "string") return alg;
    if (alg !== null && typeof alg === "object" && alg.name !== undefined) return String(alg.name);
    throw new TypeError("Algorithm: name is missing");
  };
  const hashName = (alg, op) => {
    const name = algorithmName(alg);
    const upper = name.toUpperCase();
    if (!HASHES.includes(upper)) throw notSupported(`${op}: algorithm "${name}"`);
    return upper;
  };
  // WebCrypto's algorithm names: with an HMAC key in hand, a known one that is not HMAC is the
  // wrong key for it (InvalidAccessError, as workerd says); an unknown one is not supported.
  const KNOWN = ["RSASSA-PKCS1-V1_5", "RSA-PSS", "RSA-OAEP", "ECDSA", "ECDH", "AES-CTR", "AES-CBC",
    "AES-GCM", "AES-KW", "HMAC", "SHA-1", "SHA-256", "SHA-384", "SHA-512", "HKDF", "PBKDF2",
    "ED25519", "X25519", "NODE-ED25519"];
  const requireHmac = (alg, op, withKey = false) => {
    const name = algorithmName(alg);
    const upper = name.toUpperCase();
    if (upper === "HMAC") return;
    if (withKey && KNOWN.includes(upper)) {
      throw new DOMException(`${op}: the key is an HMAC key, not a "${name}" key`, "InvalidAccessError");
    }
    throw notSupported(`${op}: algorithm "${name}"`);
  };
  const bufferSource = (x, what) => {
    const u8 = toU8(x);
    if (u8 === undefined) throw new TypeError(`${what} must be an ArrayBuffer or ArrayBufferView`);
    return u8;
  };
  const HMAC_USAGES = ["sign", "verify"];
  const checkUsages = (usages) => {
    const list = [...usages].map(String);
    for (const u of list) {
      if (!HMAC_USAGES.includes(u)) throw new DOMException(`Usage "${u}" is not valid for an HMAC key`, "SyntaxError");
    }
    if (list.length === 0) throw new DOMException("Usages cannot be empty when creating a key.", "SyntaxError");
    return [...new Set(list)];
  };
  const hmacAlgorithm = (alg, bytes, op) => {
    requireHmac(alg, op);
    if (alg.hash === undefined) throw new TypeError("HMAC: the hash member is required");
    const hash = hashName(alg.hash, "HMAC hash");
    let length = bytes === undefined ? BLOCK_BITS[hash] : bytes.length * 8;
    if (alg.length !== undefined) {
      const l = Number(alg.length);
      if (bytes !== undefined && (l > length || l <= length - 8)) {
        throw new DOMException("HMAC: the length does not match the key data", "DataError");
      }
      if (l === 0) throw new DOMException("HMAC: the key length cannot be zero", "DataError");
      length = l;
    }
    return { name: "HMAC", hash: { name: hash }, length };
  };
  const useKey = (key, alg, usage) => {
    const info = key instanceof CryptoKey ? internal.keyInfo(key) : undefined;
    if (info === undefined) throw new TypeError(`${usage}: key must be a CryptoKey`);
    requireHmac(alg, usage, true);
    if (info.algorithm.name !== "HMAC") {
      throw new DOMException(`${usage}: the key is not an HMAC key`, "InvalidAccessError");
    }
    if (!info.usages.includes(usage)) {
      throw new DOMException(`${usage}: the key's usages do not include "${usage}"`, "InvalidAccessError");
    }
    return info.algorithm.hash.name;
  };
  // Runs `f` and turns a synchronous throw into a rejection, as WebCrypto methods do.
  const promised = (f) => {
    try {
      return Promise.resolve(f());
    } catch (e) {
      return Promise.reject(e);
    }
  };

  // ---- crypto.subtle -------------------------------------------------------------------------
  class SubtleCrypto {
    constructor() { illegal(); }

    digest(algorithm, data) {
      return promised(() => {
        requireArgs(arguments.length, 2, "digest");
        const hash = hashName(algorithm, "digest");
        return native.digest(hash, bufferSource(data, "digest: data"));
      });
    }

    importKey(format, keyData, algorithm, extractable, keyUsages) {
      return promised(() => {
        requireArgs(arguments.length, 5, "importKey");
        const fmt = String(format);
        let bytes;
        if (fmt === "raw") {
          bytes = bufferSource(keyData, "importKey: keyData").slice();
        } else if (fmt === "jwk") {
          if (keyData === null || typeof keyData !== "object" || keyData.kty !== "oct" || typeof keyData.k !== "string") {
            throw new DOMException("importKey: a JWK HMAC key needs kty \"oct\" and k", "DataError");
          }
          const b64 = keyData.k.replace(/-/g, "+").replace(/_/g, "/");
          let binary;
          try { binary = atob(b64); } catch { throw new DOMException("importKey: k is not base64url", "DataError"); }
          bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
        } else {
          throw notSupported(`importKey: format "${fmt}"`);
        }
        const alg = hmacAlgorithm(algorithm, bytes, "importKey");
        if (bytes.length === 0) throw new DOMException("importKey: HMAC key data must not be empty", "DataError");
        return newKey(alg, Boolean(extractable), checkUsages(keyUsages), bytes);
      });
    }

    generateKey(algorithm, extractable, keyUsages) {
      return promised(() => {
        requireArgs(arguments.length, 3, "generateKey");
        const alg = hmacAlgorithm(algorithm, undefined, "generateKey");
        const bytes = new Uint8Array(Math.ceil(alg.length / 8));
        native.randomFill(bytes);
        return newKey(alg, Boolean(extractable), checkUsages(keyUsages), bytes);
      });
    }

    exportKey(format, key) {
      return promised(() => {
        requireArgs(arguments.length, 2, "exportKey");
        const info = key instanceof CryptoKey ? internal.keyInfo(key) : undefined;
        if (info === undefined) throw new TypeError("exportKey: key must be a CryptoKey");
        if (!info.extractable) throw new DOMException("exportKey: the key is not extractable", "InvalidAccessError");
        const fmt = String(format);
        const bytes = keyData.get(key);
        if (fmt === "raw") return internal.copyToArrayBuffer(bytes);
        if (fmt === "jwk") {
          const k = btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
          const alg = "HS" + info.algorithm.hash.name.slice(4);
          return { kty: "oct", k, alg, key_ops: info.usages.slice(), ext: true };
        }
        throw notSupported(`exportKey: format "${fmt}"`);
      });
    }

    sign(algorithm, key, data) {
      return promised(() => {
        requireArgs(arguments.length, 3, "sign");
        const hash = useKey(key, algorithm, "sign");
        const out = native.hmacSign(hash, keyData.get(key), bufferSource(data, "sign: data"));
        if (out === undefined) throw new DOMException("sign: HMAC failed", "OperationError");
        return out;
      });
    }

    verify(algorithm, key, signature, data) {
      return promised(() => {
        requireArgs(arguments.length, 4, "verify");
        const hash = useKey(key, algorithm, "verify");
        const sig = bufferSource(signature, "verify: signature");
        return native.hmacVerify(hash, keyData.get(key), bufferSource(data, "verify: data"), sig);
      });
    }

    // workerd's extension: constant-time comparison of two equal-length buffers.
    timingSafeEqual(a, b) {
      requireArgs(arguments.length, 2, "timingSafeEqual");
      const x = bufferSource(a, "timingSafeEqual: a");
      const y = bufferSource(b, "timingSafeEqual: b");
      if (x.byteLength !== y.byteLength) throw new RangeError("Input buffers must have the same byte length");
      return native.timingSafeEqual(x, y);
    }
  }
  for (const op of ["encrypt", "decrypt", "deriveBits", "deriveKey", "wrapKey", "unwrapKey"]) {
    Object.defineProperty(SubtleCrypto.prototype, op, {
      value: function () { return Promise.reject(notSupported(`crypto.subtle.${op}`)); },
      writable: true, configurable: true, enumerable: true,
    });
  }
  internal.tag(SubtleCrypto.prototype, "SubtleCrypto");

  constructing = true;
  const subtle = new SubtleCrypto();
  const crypto = new Crypto();
  constructing = false;

  internal.unclonable.push(CryptoKey);
  internal.defineGlobals({ Crypto, CryptoKey, SubtleCrypto });
  Object.defineProperty(global, "crypto", { value: crypto, writable: true, configurable: true, enumerable: true });
})
