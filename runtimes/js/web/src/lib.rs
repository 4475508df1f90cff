//! The Web APIs a Cloudflare Worker expects (`Headers`, `Request`, `Response`, `URL`,
//! `URLSearchParams`, `TextEncoder`/`TextDecoder`, `atob`/`btoa`, `structuredClone`,
//! `queueMicrotask`, `DOMException`, `crypto`, `Blob`/`File`/`FormData`, `Event`/`EventTarget`,
//! `AbortController`/`AbortSignal`, a minimal `ReadableStream`), for Tenantry's
//! JavaScript engine on QuickJS-ng, behaving as Cloudflare's runtime (workerd) does wherever a
//! Worker can observe it. README.md lists what is there and what is not.
//!
//! The classes are written in JavaScript (`src/js/*.js`, evaluated once by [`install`], in the
//! engine's pre-initialised snapshot); Rust supplies what it does better (`natives`): URL
//! parsing, UTF-8, base64, hashing, HMAC and randomness.
//!
//! ```
//! use rquickjs::{Context, Runtime};
//! let rt = Runtime::new().unwrap();
//! let ctx = Context::full(&rt).unwrap();
//! ctx.with(|ctx| {
//!     tenantry_js_web::install(&ctx).unwrap();
//!     let ct: String = ctx.eval(r#"new Response("hi").headers.get("content-type")"#).unwrap();
//!     assert_eq!(ct, "text/plain;charset=UTF-8");
//! });
//! ```
//!
//! The engine reaches the classes' internals (to build the incoming `Request` and read the
//! returned `Response` without copies) through [`internals`].

mod bytes;
mod natives;

use rquickjs::context::EvalOptions;
use rquickjs::object::Property;
use rquickjs::{Ctx, Function, Object, Result};

/// The prelude, in evaluation order (later files use what earlier ones put on `internal`).
/// Each file is one function expression `(native, internal, global) => void`.
const PRELUDE: &[(&str, &str)] = &[
    ("tenantry:web/core.js", include_str!("js/core.js")),
    ("tenantry:web/headers.js", include_str!("js/headers.js")),
    ("tenantry:web/url.js", include_str!("js/url.js")),
    ("tenantry:web/events.js", include_str!("js/events.js")),
    ("tenantry:web/blob.js", include_str!("js/blob.js")),
    ("tenantry:web/streams.js", include_str!("js/streams.js")),
    ("tenantry:web/fetch.js", include_str!("js/fetch.js")),
    ("tenantry:web/crypto.js", include_str!("js/crypto.js")),
];

/// Name of the global property holding the internals object (non-enumerable, read-only).
const INTERNALS: &str = "__tenantry_web";

/// The functions of `internal` the engine calls, documented at [`internals`].
const ENGINE_FUNCTIONS: &[&str] = &[
    "newRequest",
    "responseParts",
    "isResponse",
    "readAllBytes",
    "setResponseUrl",
    "newResponse",
];

/// Defines the Web APIs on the context's global object.
pub fn install(ctx: &Ctx<'_>) -> Result<()> {
    let natives = natives::object(ctx)?;
    let internal = Object::new(ctx.clone())?;
    let global = ctx.globals();
    for (name, source) in PRELUDE {
        let mut options = EvalOptions::default();
        options.global = true;
        options.strict = true;
        options.filename = Some((*name).to_owned());
        let setup: Function = ctx.eval_with_options(*source, options)?;
        setup.call::<_, ()>((natives.clone(), internal.clone(), global.clone()))?;
    }
    // Only what the engine needs is reachable from the global; the rest of `internal` (raw
    // header lists and the like) stays inside the prelude's closures.
    let exposed = Object::new(ctx.clone())?;
    for name in ENGINE_FUNCTIONS {
        exposed.prop(*name, Property::from(internal.get::<_, Function>(*name)?))?;
    }
    global.prop(INTERNALS, Property::from(exposed))?;
    Ok(())
}

/// The object of internal functions the engine uses, installed by [`install`]:
///
/// - `newRequest(method, url, headers, body, cf)` → `Request`: `headers` a flat array
///   `[name, value, ...]` or the host's block of `name: value` lines (split when first read),
///   `body` `null`, a string, a `Uint8Array` or a `ReadableStream`; the URL is kept as given
///   and normalised when first read; the headers are immutable, as workerd gives an incoming
///   request's.
/// - `responseParts(response)` → `[status, statusText, headers, body]`: `headers` the flat
///   triples `[lower-case name, value, name as the Worker wrote it, ...]` in insertion order
///   (the response's own list, not a copy: read it before running more JavaScript), `body`
///   `null`, a string, a `Uint8Array`, a `ReadableStream`, or the byte source given to
///   `newResponse` if nothing read the body (also when the Worker passed its untouched `.body`
///   on to another `Response`); marks the body used. Throws a `TypeError` if the value is not a
///   `Response` or its body was used.
/// - `isResponse(value)` → bool.
/// - `readAllBytes(stream)` → `Promise<Uint8Array>`, rejecting with a `TypeError` if a chunk is
///   not bytes; `stream` may also be a byte source (read to its end).
/// - `newResponse(status, list, source, url)` → `Response`: what `new Response(body, { status,
///   headers })` makes of a fetched response (same status checks and errors), in one step:
///   `list` the header list as `Headers` keeps it, flat triples `[lower-case name, value, name
///   as received, ...]` the caller has checked as `append` would (a fetched response's fields);
///   `source` `null` or the body's *byte source*, an object whose `read()` returns the next
///   chunk as a `Uint8Array`, `null` at the end, and throws if the body cannot be read. It is
///   read only when the Worker reads the body (`text()` and the like read it at once; `.body`
///   makes a stream pulling it chunk by chunk). `url` (optional) is its `url`, as
///   `setResponseUrl(response, url, false)` would set it.
pub fn internals<'js>(ctx: &Ctx<'js>) -> Result<Object<'js>> {
    ctx.globals().get(INTERNALS)
}
