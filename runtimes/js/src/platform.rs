//! The platform from JavaScript: global `fetch()`, and the `service`, `kv_namespace` and
//! `dispatch_namespace` bindings, on the `tenantry:worker/v1` calls a wasm Worker uses (so a
//! JavaScript subrequest goes through the same per-core client, subrequest budget, egress policy
//! and outbound Worker: there is no second path).
//!
//! The shapes (Cloudflare's) are JavaScript, `src/platform.js`, evaluated once after the prelude
//! (so in the snapshot); this module gives it thin natives over the host calls. A native returns
//! the host's code as it is (a negative number for an error) and JavaScript decides what to throw,
//! reading the host's explanation with `fetchError()`.

use rquickjs::function::Func;
use rquickjs::{Array, ArrayBuffer, Ctx, Function, Object, TypedArray, Value};
use tenantry_sdk::sys;

/// The platform's JavaScript (see the file).
const PLATFORM: &str = include_str!("platform.js");
/// Its file name in stack traces.
const PLATFORM_NAME: &str = "tenantry:platform";

/// How much of a fetched body one `response_body_read` asks for: what a stream's `pull` gets at
/// a time, so a body is read in constant memory by a Worker that streams it.
const BODY_CHUNK: usize = 64 * 1024;
/// First guess for a fetched response's header list and for `fetch_error`'s text.
const HEADERS_FIRST: usize = 1024;
const ERROR_FIRST: usize = 256;

/// Evaluates `platform.js` with the natives and keeps what it returns as `internals.platform`
/// (the binding factory [`binding`] calls). Defines the global `fetch`.
pub fn install<'js>(ctx: &Ctx<'js>, internals: &Object<'js>) -> rquickjs::Result<()> {
    let native = Object::new(ctx.clone())?;
    native.set("requestNew", Func::from(request_new))?;
    native.set("requestClone", Func::from(request_clone))?;
    native.set("requestSetMethod", Func::from(request_set_method))?;
    native.set("requestSetUrl", Func::from(request_set_url))?;
    native.set("requestHeaderSet", Func::from(request_header_set))?;
    native.set("requestBodyWrite", Func::from(request_body_write))?;
    native.set("fetch", Func::from(fetch))?;
    native.set("serviceFetch", Func::from(service_fetch))?;
    native.set("dispatchFetch", Func::from(dispatch_fetch))?;
    native.set("fetchError", Func::from(fetch_error))?;
    native.set("responseStatus", Func::from(response_status))?;
    native.set("responseHeaders", Func::from(response_headers))?;
    native.set("responseHeaderList", Func::from(response_header_list))?;
    native.set("responseBodyRead", Func::from(response_body_read))?;
    native.set("kvGet", Func::from(kv_get))?;
    native.set("kvGetMany", Func::from(kv_get_many))?;
    native.set("kvPut", Func::from(kv_put))?;
    native.set("kvDelete", Func::from(kv_delete))?;
    native.set("kvList", Func::from(kv_list))?;
    let mut options = rquickjs::context::EvalOptions::default();
    options.global = true;
    options.strict = true;
    options.filename = Some(PLATFORM_NAME.to_string());
    let make: Function = ctx.eval_with_options(PLATFORM, options)?;
    let platform: Object = make.call((native, internals.clone()))?;
    internals.set("platform", platform)
}

/// The JavaScript value of a binding of kind `kind` (`service`, `kv_namespace`,
/// `dispatch_namespace`; another an object whose every use throws naming the kind) named `name`.
pub fn binding<'js>(ctx: &Ctx<'js>, name: &str, kind: &str) -> rquickjs::Result<Value<'js>> {
    let internals = crate::engine::get()
        .map_err(|e| rquickjs::Error::new_from_js_message("engine", "binding", e))?
        .internals
        .clone()
        .restore(ctx)?;
    let platform: Object = internals.get("platform")?;
    let make: Function = platform.get("binding")?;
    make.call((kind, name))
}

/// Runs `f` on the bytes of `value`: a string (as UTF-8), an `ArrayBuffer` or a `Uint8Array`
/// (JavaScript hands other views over as `Uint8Array`s). `INVALID` for anything else.
fn with_bytes(value: &Value<'_>, f: impl FnOnce(&[u8]) -> i32) -> i32 {
    if let Some(text) = value.as_string() {
        return match text.to_string() {
            Ok(text) => f(text.as_bytes()),
            Err(_) => sys::INVALID,
        };
    }
    let raw = if let Some(buffer) = ArrayBuffer::from_value(value.clone()) {
        buffer.as_raw()
    } else if let Ok(view) = TypedArray::<u8>::from_value(value.clone()) {
        view.as_raw()
    } else {
        return sys::INVALID;
    };
    match raw {
        // SAFETY: the buffer is live (`value` holds it) and no JavaScript runs while the host
        // copies it, so it can be neither detached nor resized under the slice.
        Some(raw) => f(unsafe { raw.as_ref() }),
        // A detached buffer.
        None => sys::INVALID,
    }
}

/// A header string as bytes: Latin-1 code points as single bytes (the Fetch standard's
/// `ByteString`), UTF-8 if it holds a code point above U+00FF (workerd accepts those).
fn header_bytes(s: &str) -> std::borrow::Cow<'_, [u8]> {
    if s.is_ascii() || s.chars().any(|c| u32::from(c) > 0xFF) {
        return s.as_bytes().into();
    }
    s.chars().map(|c| c as u8).collect::<Vec<u8>>().into()
}

fn request_new() -> i32 {
    // SAFETY: no pointers.
    unsafe { sys::request_new() }
}

fn request_clone(req: i32) -> i32 {
    // SAFETY: no pointers.
    unsafe { sys::request_clone(req) }
}

fn request_set_method(req: i32, method: String) -> i32 {
    // SAFETY: `method` is live and only read by the host.
    unsafe { sys::request_set_method(req, method.as_ptr(), method.len()) }
}

fn request_set_url(req: i32, url: String) -> i32 {
    // SAFETY: as in `request_set_method`.
    unsafe { sys::request_set_url(req, url.as_ptr(), url.len()) }
}

fn request_header_set(req: i32, name: String, value: String) -> i32 {
    let (n, v) = (header_bytes(&name), header_bytes(&value));
    // SAFETY: both slices are live and only read by the host.
    unsafe { sys::request_header_set(req, n.as_ptr(), n.len(), v.as_ptr(), v.len()) }
}

fn request_body_write(req: i32, body: Value<'_>) -> i32 {
    with_bytes(&body, |bytes| {
        if bytes.is_empty() {
            return 0;
        }
        // SAFETY: `bytes` is live and only read by the host.
        unsafe { sys::request_body_write(req, bytes.as_ptr(), bytes.len()) }
    })
}

fn fetch(req: i32) -> i32 {
    // SAFETY: no pointers.
    unsafe { sys::fetch(req) }
}

fn service_fetch(binding: String, req: i32) -> i32 {
    // SAFETY: `binding` is live and only read by the host.
    unsafe { sys::service_fetch(binding.as_ptr(), binding.len(), req) }
}

/// `opts`: an empty string, or a `Uint8Array` of the ABI's call options (16 bytes of limits,
/// then optionally the outbound parameters' JSON), made by `platform.js`.
fn dispatch_fetch(binding: String, name: String, opts: Value<'_>, req: i32) -> i32 {
    with_bytes(&opts, |opts| {
        // SAFETY: every slice is live and only read by the host.
        unsafe {
            sys::dispatch_fetch(
                binding.as_ptr(),
                binding.len(),
                name.as_ptr(),
                name.len(),
                opts.as_ptr(),
                opts.len(),
                req,
            )
        }
    })
}

/// The host's explanation of the last failed call (empty if it has none).
pub fn fetch_error() -> String {
    // SAFETY: `read_value` passes `cap` writable bytes it owns.
    tenantry_sdk::read_value(ERROR_FIRST, |p, c| unsafe { sys::fetch_error(p, c) })
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn response_status(resp: i32) -> i32 {
    // SAFETY: no pointers.
    unsafe { sys::response_status(resp) }
}

/// A fetched response's header block, `name: value` lines (empty if the handle is bad).
pub fn host_header_block(resp: i32) -> Vec<u8> {
    // SAFETY: `read_value` passes `cap` writable bytes it owns.
    tenantry_sdk::read_value(HEADERS_FIRST, |p, c| unsafe {
        sys::response_headers(resp, p, c)
    })
    .unwrap_or_default()
}

/// The `(name, value)` fields of a header block, in order: each line split at its first colon,
/// the value trimmed; lines without a colon skipped.
pub fn header_fields(block: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    block.split(|&b| b == b'\n').filter_map(|line| {
        let colon = line.iter().position(|&b| b == b':')?;
        Some((&line[..colon], line[colon + 1..].trim_ascii()))
    })
}

/// A fetched response's header fields as a flat `[name, value, …]` list, in order (bytes as
/// Latin-1 code points, as the incoming request's).
fn response_headers<'js>(ctx: Ctx<'js>, resp: i32) -> rquickjs::Result<Array<'js>> {
    let block = host_header_block(resp);
    let list = Array::new(ctx.clone())?;
    for (n, (name, value)) in header_fields(&block).enumerate() {
        list.set(2 * n, latin1(name))?;
        list.set(2 * n + 1, latin1(value))?;
    }
    Ok(list)
}

/// A fetched response's header fields as the Web APIs' header list, the flat triples
/// `[lower-case name, value, name as received, …]` `newResponse` takes, each field checked as
/// `Headers.append` checks it (a `TypeError` with its words otherwise): the same list JavaScript
/// would make of [`response_headers`], without a JavaScript call per field.
fn response_header_list<'js>(ctx: Ctx<'js>, resp: i32) -> rquickjs::Result<Array<'js>> {
    let block = host_header_block(resp);
    let list = Array::new(ctx.clone())?;
    for (n, (name, value)) in header_fields(&block).enumerate() {
        if let Err(message) = check_field(name, value) {
            return Err(rquickjs::Exception::throw_type(&ctx, &message));
        }
        list.set(3 * n, latin1(&name.to_ascii_lowercase()))?;
        list.set(3 * n + 1, latin1(value))?;
        list.set(3 * n + 2, latin1(name))?;
    }
    Ok(list)
}

/// The Web APIs' header checks (`headers.js`): a name of RFC 9110 token characters (empty
/// allowed, as workerd does), a value without CR, LF or NUL. `Err` with `Headers`' message.
fn check_field(name: &[u8], value: &[u8]) -> Result<(), String> {
    let tchar = |c: &u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(c);
    if !name.iter().all(tchar) {
        return Err(format!("Invalid header name: \"{}\"", latin1(name)));
    }
    if value.iter().any(|&c| c == b'\r' || c == b'\n' || c == 0) {
        return Err(format!("Invalid header value: \"{}\"", latin1(value)));
    }
    Ok(())
}

fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// The next chunk of a fetched body: an `ArrayBuffer`, `null` at the end, or the host's
/// (negative) code if the read failed (e.g. the connection broke mid-body).
fn response_body_read<'js>(ctx: Ctx<'js>, resp: i32) -> rquickjs::Result<Value<'js>> {
    let mut buf: Vec<u8> = Vec::with_capacity(BODY_CHUNK);
    // SAFETY: `buf` has `BODY_CHUNK` bytes of spare capacity for the host to write.
    let n = unsafe { sys::response_body_read(resp, buf.as_mut_ptr(), BODY_CHUNK) };
    if n < 0 {
        return Ok(Value::new_int(ctx, n));
    }
    if n == 0 {
        return Ok(Value::new_null(ctx));
    }
    // SAFETY: the host wrote `n` bytes (at most what it was offered).
    unsafe { buf.set_len((n as usize).min(BODY_CHUNK)) };
    Ok(ArrayBuffer::new(ctx, buf)?.into_value())
}

fn kv_get(binding: String, key: String) -> i32 {
    // SAFETY: both slices are live and only read by the host.
    unsafe { sys::kv_get(binding.as_ptr(), binding.len(), key.as_ptr(), key.len()) }
}

/// `keys`: the ABI's JSON array of keys.
fn kv_get_many(binding: String, keys: String) -> i32 {
    // SAFETY: both slices are live and only read by the host.
    unsafe { sys::kv_get_many(binding.as_ptr(), binding.len(), keys.as_ptr(), keys.len()) }
}

/// `opts`: the ABI's put options JSON (empty for none).
fn kv_put(binding: String, key: String, value: Value<'_>, opts: String) -> i32 {
    with_bytes(&value, |value| {
        // SAFETY: every slice is live and only read by the host.
        unsafe {
            sys::kv_put(
                binding.as_ptr(),
                binding.len(),
                key.as_ptr(),
                key.len(),
                value.as_ptr(),
                value.len(),
                opts.as_ptr(),
                opts.len(),
            )
        }
    })
}

fn kv_delete(binding: String, key: String) -> i32 {
    // SAFETY: both slices are live and only read by the host.
    unsafe { sys::kv_delete(binding.as_ptr(), binding.len(), key.as_ptr(), key.len()) }
}

fn kv_list(binding: String, opts: String) -> i32 {
    // SAFETY: both slices are live and only read by the host.
    unsafe { sys::kv_list(binding.as_ptr(), binding.len(), opts.as_ptr(), opts.len()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields_split_at_the_first_colon_and_trim_values() {
        let block = b"Content-Type: text/plain\nx-a:  1:2 \nno colon\n\n";
        let fields: Vec<_> = header_fields(block).collect();
        assert_eq!(
            fields,
            [(&b"Content-Type"[..], &b"text/plain"[..]), (b"x-a", b"1:2")]
        );
    }

    #[test]
    fn fields_are_checked_as_headers_append_checks_them() {
        assert_eq!(check_field(b"X-Ok_1", b"v\xe9 x"), Ok(()));
        assert_eq!(check_field(b"", b""), Ok(()));
        assert_eq!(
            check_field(b"bad name", b"1"),
            Err("Invalid header name: \"bad name\"".into())
        );
        assert_eq!(
            check_field(b"n\xe9", b"1"),
            Err("Invalid header name: \"n\u{e9}\"".into())
        );
        assert_eq!(
            check_field(b"a", b"1\r2"),
            Err("Invalid header value: \"1\r2\"".into())
        );
        assert!(check_field(b"a", b"1\x002").is_err());
    }
}
