//! `tenantry:worker/v1`: the request, response, environment and log calls of docs/worker-abi.md.
//!
//! Every function returns `i32`: `>= 0` success, a negative [`code`] otherwise. A pointer/length
//! pair outside guest memory returns an error instead, which traps the guest.

use bytes::Bytes;
use wasmtime::{Caller, Linker};

use super::{HostState, LogLevel, ResponseBuilder, charge_alloc, charge_copy, charge_log, parts};
use crate::abi::{WORKER_V1, code};
use crate::guest_mem::{slice, slice_mut};
use crate::http::{FINAL_STATUS_MAX, FINAL_STATUS_MIN, header_value, header_value_len};
use crate::limits::{
    MAX_RESPONSE_BODY_BYTES, MAX_RESPONSE_HEADER_BYTES, MAX_RESPONSE_HEADER_FIELDS,
};

type Ctx<'a> = Caller<'a, HostState>;
type R = wasmtime::Result<i32>;

/// The only request handle in v1: the incoming request.
const REQUEST: i32 = 0;
/// The only response handle in v1: the response of this invocation.
const RESPONSE: i32 = 0;

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(WORKER_V1, "request_method", request_method)?;
    linker.func_wrap(WORKER_V1, "request_url", request_url)?;
    linker.func_wrap(WORKER_V1, "request_header", request_header)?;
    linker.func_wrap(WORKER_V1, "request_headers", request_headers)?;
    linker.func_wrap(WORKER_V1, "request_body_read", request_body_read)?;
    linker.func_wrap(WORKER_V1, "response_set_status", response_set_status)?;
    linker.func_wrap(WORKER_V1, "response_header_set", response_header_set)?;
    linker.func_wrap(WORKER_V1, "response_header_append", response_header_append)?;
    linker.func_wrap(WORKER_V1, "response_body_write", response_body_write)?;
    linker.func_wrap(WORKER_V1, "env_get", env_get)?;
    linker.func_wrap(WORKER_V1, "env_kind", env_kind)?;
    linker.func_wrap(WORKER_V1, "env_list", env_list)?;
    linker.func_wrap(WORKER_V1, "log", log)?;
    Ok(())
}

/// The buffer-returning convention: the full length `n` of `value`; the bytes are written to
/// `out_ptr` only if `n <= out_cap`, otherwise nothing is written. The whole `(out_ptr, out_cap)`
/// pair must lie in guest memory either way.
pub(crate) fn return_value(
    caller: &mut Ctx<'_>,
    value: &[u8],
    out_ptr: i32,
    out_cap: i32,
    call: &'static str,
) -> R {
    let Ok(n) = i32::try_from(value.len()) else {
        return Ok(code::LIMIT);
    };
    let fits = value.len() <= out_cap as u32 as usize;
    if fits {
        charge_copy(caller, value.len())?;
    }
    let (mem, _) = parts(caller)?;
    let out = slice_mut(mem, out_ptr, out_cap, call)?;
    if fits {
        out[..value.len()].copy_from_slice(value);
    }
    Ok(n)
}

/// Checks the out pair of a call that has nothing to return (so a bad pointer still traps).
pub(crate) fn check_out(
    caller: &mut Ctx<'_>,
    out_ptr: i32,
    out_cap: i32,
    call: &'static str,
) -> wasmtime::Result<()> {
    let (mem, _) = parts(caller)?;
    slice_mut(mem, out_ptr, out_cap, call)?;
    Ok(())
}

fn request_method(mut caller: Ctx<'_>, req: i32, out_ptr: i32, out_cap: i32) -> R {
    let Some(request) = caller.data().request_by_handle(req) else {
        return Ok(code::BAD_HANDLE);
    };
    let method = request.method.clone();
    return_value(&mut caller, &method, out_ptr, out_cap, "request_method")
}

fn request_url(mut caller: Ctx<'_>, req: i32, out_ptr: i32, out_cap: i32) -> R {
    let Some(request) = caller.data().request_by_handle(req) else {
        return Ok(code::BAD_HANDLE);
    };
    // The URL is built on every call (a guest asks for the size first, then the bytes).
    let size = request.host.len() + request.target.len() + "https://".len();
    charge_alloc(&mut caller, size)?;
    let Some(request) = caller.data().request_by_handle(req) else {
        return Ok(code::BAD_HANDLE);
    };
    let url = request.url();
    return_value(&mut caller, &url, out_ptr, out_cap, "request_url")
}

fn request_header(
    mut caller: Ctx<'_>,
    req: i32,
    name_ptr: i32,
    name_len: i32,
    out_ptr: i32,
    out_cap: i32,
) -> R {
    const CALL: &str = "request_header";
    if caller.data().request_by_handle(req).is_none() {
        return Ok(code::BAD_HANDLE);
    }
    let value = {
        let (mem, state) = parts(&mut caller)?;
        let name = slice(mem, name_ptr, name_len, CALL)?;
        let headers = &state.request_by_handle(req).expect("checked above").headers;
        name.len() + header_value_len(headers, name)
    };
    // Comparing the name with every field, and joining several values.
    charge_alloc(&mut caller, value)?;
    let value = {
        let (mem, state) = parts(&mut caller)?;
        let name = slice(mem, name_ptr, name_len, CALL)?;
        let headers = &state.request_by_handle(req).expect("checked above").headers;
        header_value(headers, name)
    };
    match value {
        Some(value) => return_value(&mut caller, &value, out_ptr, out_cap, CALL),
        None => {
            check_out(&mut caller, out_ptr, out_cap, CALL)?;
            Ok(code::NOT_FOUND)
        }
    }
}

fn request_headers(mut caller: Ctx<'_>, req: i32, out_ptr: i32, out_cap: i32) -> R {
    let state = caller.data_mut();
    let cached = req == REQUEST && state.headers_text.is_some();
    let Some(size) = state
        .request_by_handle(req)
        .map(|r| headers_text_len(&r.headers))
    else {
        return Ok(code::BAD_HANDLE);
    };
    if !cached {
        charge_alloc(&mut caller, size)?;
    }
    let state = caller.data_mut();
    let text = if req == REQUEST {
        match &state.headers_text {
            Some(text) => text.clone(),
            None => {
                // Kept for the invocation: host memory it holds.
                if !state.budget.reserve(size) {
                    return Ok(code::LIMIT);
                }
                let text = headers_text(&state.request.headers);
                state.headers_text = Some(text.clone());
                text
            }
        }
    } else {
        match state.request_by_handle(req) {
            Some(r) => headers_text(&r.headers),
            None => return Ok(code::BAD_HANDLE),
        }
    };
    return_value(&mut caller, &text, out_ptr, out_cap, "request_headers")
}

/// The length of [`headers_text`] for `headers`, without building it.
pub(crate) fn headers_text_len(headers: &[(Bytes, Bytes)]) -> usize {
    headers.iter().map(|(n, v)| n.len() + v.len() + 3).sum()
}

/// Header fields as `name: value\n` lines, the form `request_headers` and `response_headers`
/// return.
pub(crate) fn headers_text(headers: &[(Bytes, Bytes)]) -> Bytes {
    let mut text = Vec::new();
    for (name, value) in headers {
        text.extend_from_slice(name);
        text.extend_from_slice(b": ");
        text.extend_from_slice(value);
        text.push(b'\n');
    }
    Bytes::from(text)
}

fn request_body_read(mut caller: Ctx<'_>, req: i32, out_ptr: i32, out_cap: i32) -> R {
    const CALL: &str = "request_body_read";
    if req != REQUEST {
        return Ok(code::BAD_HANDLE);
    }
    let (pos, len) = {
        let state = caller.data();
        (state.body_pos, state.request.body.len())
    };
    let n = len.saturating_sub(pos).min(out_cap as u32 as usize);
    charge_copy(&mut caller, n)?;
    let (mem, state) = parts(&mut caller)?;
    let out = slice_mut(mem, out_ptr, out_cap, CALL)?;
    out[..n].copy_from_slice(&state.request.body[pos..pos + n]);
    state.body_pos = pos + n;
    // `n <= out_cap <= i32::MAX` unless out_cap was negative, which failed the bounds check
    // for any memory under 2 GiB; clamp rather than trust that.
    Ok(i32::try_from(n).unwrap_or(i32::MAX))
}

fn response_set_status(mut caller: Ctx<'_>, resp: i32, status: i32) -> R {
    if resp != RESPONSE {
        return Ok(code::BAD_HANDLE);
    }
    match u16::try_from(status) {
        Ok(status @ FINAL_STATUS_MIN..=FINAL_STATUS_MAX) => {
            caller.data_mut().response.status = status;
            Ok(0)
        }
        _ => Ok(code::INVALID),
    }
}

fn response_header_set(
    caller: Ctx<'_>,
    resp: i32,
    name_ptr: i32,
    name_len: i32,
    val_ptr: i32,
    val_len: i32,
) -> R {
    header_write(caller, resp, (name_ptr, name_len), (val_ptr, val_len), true)
}

fn response_header_append(
    caller: Ctx<'_>,
    resp: i32,
    name_ptr: i32,
    name_len: i32,
    val_ptr: i32,
    val_len: i32,
) -> R {
    header_write(
        caller,
        resp,
        (name_ptr, name_len),
        (val_ptr, val_len),
        false,
    )
}

fn header_write(
    mut caller: Ctx<'_>,
    resp: i32,
    name: (i32, i32),
    value: (i32, i32),
    replace: bool,
) -> R {
    let call = if replace {
        "response_header_set"
    } else {
        "response_header_append"
    };
    if resp != RESPONSE {
        return Ok(code::BAD_HANDLE);
    }
    charge_alloc(
        &mut caller,
        (name.1 as u32 as usize).saturating_add(value.1 as u32 as usize),
    )?;
    let (mem, state) = parts(&mut caller)?;
    let name = slice(mem, name.0, name.1, call)?;
    let value = slice(mem, value.0, value.1, call)?;
    // Reserve the most the field can add, then give back what it did not.
    let most = name.len() + value.len() + 4;
    if !state.budget.reserve(most) {
        return Ok(code::LIMIT);
    }
    let before = state.response.header_bytes;
    let result = put_header(&mut state.response, name, value, replace);
    state
        .budget
        .settle(most, before, state.response.header_bytes);
    Ok(result)
}

/// Adds (or, with `replace`, sets) a response header field, applying the ABI's validation and
/// limits. Returns the ABI result code.
pub(crate) fn put_header(
    resp: &mut ResponseBuilder,
    name: &[u8],
    value: &[u8],
    replace: bool,
) -> i32 {
    if !is_token(name) || !is_field_value(value) {
        return code::INVALID;
    }
    // The host frames the response itself (docs/worker-abi.md, "Response (write)").
    if is_framing_header(name) {
        return 0;
    }
    let wire = |n: &[u8], v: &[u8]| n.len() + v.len() + 4; // "name: value\r\n"
    let (removed_fields, removed_bytes) = if replace {
        resp.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .fold((0, 0), |(c, b), (n, v)| (c + 1, b + wire(n, v)))
    } else {
        (0, 0)
    };
    let fields = resp.headers.len() - removed_fields + 1;
    let bytes = resp.header_bytes - removed_bytes + wire(name, value);
    if fields > MAX_RESPONSE_HEADER_FIELDS || bytes > MAX_RESPONSE_HEADER_BYTES {
        return code::LIMIT;
    }
    if removed_fields > 0 {
        resp.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }
    resp.headers
        .push((Bytes::copy_from_slice(name), Bytes::copy_from_slice(value)));
    resp.header_bytes = bytes;
    0
}

/// RFC 9110 §5.1: a field name is a `token`, 1*tchar.
pub(crate) fn is_token(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|&c| crate::is_tchar(c))
}

/// RFC 9110 §5.5: CR, LF and NUL in a field value must be rejected (they would let a guest
/// split the response or smuggle a header).
pub(crate) fn is_field_value(value: &[u8]) -> bool {
    !value.iter().any(|&c| matches!(c, b'\r' | b'\n' | 0))
}

fn is_framing_header(name: &[u8]) -> bool {
    [&b"content-length"[..], b"transfer-encoding", b"connection"]
        .iter()
        .any(|h| h.eq_ignore_ascii_case(name))
}

fn response_body_write(mut caller: Ctx<'_>, resp: i32, ptr: i32, len: i32) -> R {
    const CALL: &str = "response_body_write";
    if resp != RESPONSE {
        return Ok(code::BAD_HANDLE);
    }
    {
        let (mem, state) = parts(&mut caller)?;
        let bytes = slice(mem, ptr, len, CALL)?;
        if state.response.body.len() + bytes.len() > MAX_RESPONSE_BODY_BYTES {
            return Ok(code::LIMIT);
        }
    }
    charge_alloc(&mut caller, len as u32 as usize)?;
    let (mem, state) = parts(&mut caller)?;
    let bytes = slice(mem, ptr, len, CALL)?;
    if !state.budget.reserve(bytes.len()) {
        return Ok(code::LIMIT);
    }
    state.response.body.extend_from_slice(bytes);
    // The bounds check passed, and the body limit is far below i32::MAX.
    Ok(len)
}

fn env_get(mut caller: Ctx<'_>, name_ptr: i32, name_len: i32, out_ptr: i32, out_cap: i32) -> R {
    const CALL: &str = "env_get";
    charge_copy(&mut caller, name_len as u32 as usize)?;
    // An `Arc` clone, so the binding outlives the borrow of guest memory its name came from.
    let bindings = caller.data().bindings.clone();
    let binding = {
        let (mem, _) = parts(&mut caller)?;
        let name = slice(mem, name_ptr, name_len, CALL)?;
        bindings.get(name)
    };
    match binding {
        Some(b) => return_value(&mut caller, b.value.as_bytes(), out_ptr, out_cap, CALL),
        None => {
            check_out(&mut caller, out_ptr, out_cap, CALL)?;
            Ok(code::NOT_FOUND)
        }
    }
}

fn env_kind(mut caller: Ctx<'_>, name_ptr: i32, name_len: i32) -> R {
    charge_copy(&mut caller, name_len as u32 as usize)?;
    let (mem, state) = parts(&mut caller)?;
    let name = slice(mem, name_ptr, name_len, "env_kind")?;
    Ok(state
        .bindings
        .get(name)
        .map_or(code::NOT_FOUND, |b| b.kind.abi_code()))
}

/// `env_list(out_ptr, out_cap)`: the names of the Worker's bindings in name order, joined by
/// `\n` (buffer rule). Names only: values are read one at a time with `env_get`.
fn env_list(mut caller: Ctx<'_>, out_ptr: i32, out_cap: i32) -> R {
    let bindings = caller.data().bindings.clone();
    let mut names = Vec::new();
    for (i, b) in bindings.iter().enumerate() {
        if i > 0 {
            names.push(b'\n');
        }
        names.extend_from_slice(b.name.as_bytes());
    }
    // Building the list is a copy of every name, paid whether or not it fits.
    charge_copy(&mut caller, names.len())?;
    return_value(&mut caller, &names, out_ptr, out_cap, "env_list")
}

fn log(mut caller: Ctx<'_>, level: i32, ptr: i32, len: i32) -> R {
    let level = match level {
        0 => LogLevel::Debug,
        1 => LogLevel::Info,
        2 => LogLevel::Warn,
        3 => LogLevel::Error,
        _ => return Ok(code::INVALID),
    };
    charge_log(&mut caller, len as u32 as usize)?;
    let (mem, state) = parts(&mut caller)?;
    let line = slice(mem, ptr, len, "log")?;
    state.log(level, line);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_values() {
        assert!(is_token(b"x-custom_1.2~"));
        assert!(!is_token(b""));
        assert!(!is_token(b"bad name"));
        assert!(!is_token(b"bad:name"));
        assert!(!is_token("é".as_bytes()));
        assert!(is_field_value(b"text/plain; charset=utf-8\t"));
        assert!(!is_field_value(b"a\r\nx-injected: 1"));
        assert!(!is_field_value(b"a\0"));
    }

    #[test]
    fn set_replaces_append_keeps_and_framing_is_ignored() {
        let mut r = ResponseBuilder::default();
        assert_eq!(put_header(&mut r, b"Set-Cookie", b"a=1", false), 0);
        assert_eq!(put_header(&mut r, b"set-cookie", b"b=2", false), 0);
        assert_eq!(r.headers.len(), 2);
        assert_eq!(put_header(&mut r, b"SET-COOKIE", b"c=3", true), 0);
        assert_eq!(
            r.headers,
            vec![(Bytes::from("SET-COOKIE"), Bytes::from("c=3"))]
        );
        assert_eq!(r.header_bytes, "SET-COOKIE: c=3\r\n".len());
        assert_eq!(put_header(&mut r, b"Content-Length", b"5", true), 0);
        assert_eq!(put_header(&mut r, b"connection", b"close", false), 0);
        assert_eq!(r.headers.len(), 1);
        assert_eq!(
            put_header(&mut r, b"content-length", b"5\n", true),
            code::INVALID
        );
    }

    #[test]
    fn header_limits() {
        let mut r = ResponseBuilder::default();
        for i in 0..MAX_RESPONSE_HEADER_FIELDS {
            assert_eq!(
                put_header(&mut r, format!("x-{i}").as_bytes(), b"v", false),
                0
            );
        }
        assert_eq!(put_header(&mut r, b"x-one-more", b"v", false), code::LIMIT);
        // Replacing a field keeps the count.
        assert_eq!(put_header(&mut r, b"x-0", b"w", true), 0);

        let mut r = ResponseBuilder::default();
        let big = vec![b'a'; MAX_RESPONSE_HEADER_BYTES / 2];
        assert_eq!(put_header(&mut r, b"x-a", &big, false), 0);
        assert_eq!(put_header(&mut r, b"x-b", &big, false), code::LIMIT);
        // A replacement is measured after removing what it replaces.
        assert_eq!(put_header(&mut r, b"x-a", &big, true), 0);
    }
}
