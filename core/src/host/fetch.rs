//! Building outgoing requests and calling other Workers through bindings (docs/worker-abi.md,
//! "Requests to other Workers"): `request_new` … `request_body_write`, `service_fetch`,
//! `dispatch_fetch`, and the `response_*` read calls on the responses they return.
//!
//! Handles: request handle `0` is the incoming request and response handle `0` the response
//! being built, as in the rest of v1; `request_new`/`request_clone` return request handles from
//! `1`, and each fetch returns a response handle from `1`. Handles live until the invocation
//! ends; at most [`MAX_CALL_HANDLES`] of each kind. Every handle's bytes count against the
//! invocation's host memory budget ([`HostBudget`]) at their full size, also where a clone shares
//! its body with the original: simpler, and never under-counted.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use wasmtime::{Caller, Linker};

use super::budget::HostBudget;
use super::v1::{
    check_out, headers_text, headers_text_len, is_field_value, is_token, return_value,
};
use super::{HostState, charge_alloc, charge_copy, parts};
use crate::abi::{WORKER_V1, code};
use crate::guest_mem::{slice, slice_mut};
use crate::http::{header_value, header_value_len, headers_bytes};
use crate::limits::{HANDLE_OVERHEAD_BYTES, MAX_CALL_HANDLES, MAX_RESPONSE_BODY_BYTES};
use crate::nested::{
    CallContext, MAX_CALL_DEPTH, Outbound, PLATFORM_NAMESPACE, Target, spawn_call,
};
use crate::{Binding, BindingKind, DispatchSpec, Fault, Limits, OutboundSpec, Request, Response};

type Ctx<'a> = Caller<'a, HostState>;
type R = wasmtime::Result<i32>;

/// The requests a guest built, the responses its fetches returned, and what it has spent.
#[derive(Default)]
pub(crate) struct Calls {
    /// Request handle `n` is `requests[n - 1]`.
    requests: Vec<Built>,
    /// Response handle `n` is `responses[n - 1]`.
    responses: Vec<Fetched>,
    /// Fetches made so far, against `Limits::subrequests`.
    made: u32,
    /// Why the last fetch failed, for `fetch_error`.
    last_error: String,
    /// KV operations so far, against [`crate::limits::MAX_KV_OPS`].
    kv_ops: u32,
}

/// A request the guest builds.
struct Built {
    request: Request,
    /// The body while the guest appends to it (`request.body` is empty then): a growable buffer,
    /// so that building a body by appends is linear. Frozen into `request.body` when the request
    /// is cloned or sent.
    body: Option<Vec<u8>>,
}

impl Built {
    fn body_len(&self) -> usize {
        self.body.as_ref().map_or(self.request.body.len(), Vec::len)
    }

    /// Bytes this handle counts against the budget.
    fn size(&self) -> usize {
        request_size(&self.request) + self.body.as_ref().map_or(0, Vec::len)
    }

    fn freeze(&mut self) -> &Request {
        if let Some(body) = self.body.take() {
            self.request.body = body.into();
        }
        &self.request
    }
}

/// Bytes a request handle counts against the budget: all it holds, plus
/// [`HANDLE_OVERHEAD_BYTES`].
fn request_size(r: &Request) -> usize {
    HANDLE_OVERHEAD_BYTES
        + r.method.len()
        + r.host.len()
        + r.target.len()
        + headers_bytes(&r.headers)
        + r.body.len()
}

/// Bytes of a request's head (all but the body).
fn head_size(r: &Request) -> usize {
    request_size(r) - HANDLE_OVERHEAD_BYTES - r.body.len()
}

struct Fetched {
    /// The head, and in `body` the part of the body at hand (both count against the budget).
    response: Response,
    /// How much of `response.body` the guest has read.
    body_pos: usize,
    /// The rest of the body, still arriving (a subrequest's streamed response).
    stream: Option<u64>,
}

impl Drop for Calls {
    fn drop(&mut self) {
        for f in &self.responses {
            if let Some(id) = f.stream {
                crate::nested::drop_stream(id);
            }
        }
    }
}

impl Fetched {
    /// Bytes this handle counts against the budget.
    fn size(&self) -> usize {
        HANDLE_OVERHEAD_BYTES + headers_bytes(&self.response.headers) + self.response.body.len()
    }
}

impl Calls {
    /// A built request, for its head: its body may still be in the making (see [`Calls::frozen`]).
    pub fn request(&self, handle: i32) -> Option<&Request> {
        let i = usize::try_from(handle).ok()?.checked_sub(1)?;
        self.requests.get(i).map(|b| &b.request)
    }

    /// A built request with its body complete, to clone or send.
    pub fn frozen(&mut self, handle: i32) -> Option<&Request> {
        let i = usize::try_from(handle).ok()?.checked_sub(1)?;
        self.requests.get_mut(i).map(Built::freeze)
    }

    fn built_mut(&mut self, handle: i32) -> Option<&mut Built> {
        let i = usize::try_from(handle).ok()?.checked_sub(1)?;
        self.requests.get_mut(i)
    }

    fn response(&mut self, handle: i32) -> Option<&mut Fetched> {
        let i = usize::try_from(handle).ok()?.checked_sub(1)?;
        self.responses.get_mut(i)
    }

    /// Records why the last call failed, for `fetch_error`.
    pub(super) fn fail(&mut self, code: i32, why: impl Into<String>) -> i32 {
        self.last_error = why.into();
        code
    }

    /// Counts one KV operation against the per-invocation budget; `false` past it.
    pub(super) fn count_kv(&mut self) -> bool {
        self.kv_ops += 1;
        self.kv_ops <= crate::limits::MAX_KV_OPS
    }

    /// `LIMIT`, with `fetch_error` saying that the host memory budget is spent.
    pub(super) fn over_budget(&mut self, budget: &HostBudget) -> i32 {
        let limit = budget.limit();
        self.fail(
            code::LIMIT,
            format!(
                "the host memory this invocation holds would pass its memory limit of {limit} bytes"
            ),
        )
    }

    /// Hands a response (a KV read's, or a fetch's) to the guest as a response handle, counting
    /// it against the budget. A stream the response cannot be given for is dropped.
    pub(super) fn push_response(&mut self, budget: &mut HostBudget, response: Response) -> i32 {
        self.push_fetched(budget, response, None)
    }

    fn push_fetched(
        &mut self,
        budget: &mut HostBudget,
        response: Response,
        stream: Option<u64>,
    ) -> i32 {
        let fetched = Fetched {
            response,
            body_pos: 0,
            stream,
        };
        let refused = if self.responses.len() >= MAX_CALL_HANDLES {
            Some(self.fail(
                code::LIMIT,
                format!("at most {MAX_CALL_HANDLES} responses per invocation"),
            ))
        } else if !budget.reserve(fetched.size()) {
            Some(self.over_budget(budget))
        } else {
            None
        };
        if let Some(code) = refused {
            if let Some(id) = stream {
                crate::nested::drop_stream(id);
            }
            return code;
        }
        self.responses.push(fetched);
        self.responses.len() as i32
    }

    fn add_request(&mut self, budget: &mut HostBudget, request: Request) -> i32 {
        if self.requests.len() >= MAX_CALL_HANDLES {
            return self.fail(
                code::LIMIT,
                format!("at most {MAX_CALL_HANDLES} requests per invocation"),
            );
        }
        let built = Built {
            request,
            body: None,
        };
        if !budget.reserve(built.size()) {
            return self.over_budget(budget);
        }
        self.requests.push(built);
        self.requests.len() as i32
    }
}

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(WORKER_V1, "request_new", request_new)?;
    linker.func_wrap(WORKER_V1, "request_clone", request_clone)?;
    linker.func_wrap(WORKER_V1, "request_set_method", request_set_method)?;
    linker.func_wrap(WORKER_V1, "request_set_url", request_set_url)?;
    linker.func_wrap(WORKER_V1, "request_header_set", request_header_set)?;
    linker.func_wrap(WORKER_V1, "request_header_remove", request_header_remove)?;
    linker.func_wrap(WORKER_V1, "request_body_write", request_body_write)?;
    linker.func_wrap_async(
        WORKER_V1,
        "service_fetch",
        |caller: Ctx<'_>, (binding_ptr, binding_len, req): (i32, i32, i32)| {
            Box::new(service_fetch(caller, (binding_ptr, binding_len), req))
        },
    )?;
    linker.func_wrap_async(
        WORKER_V1,
        "dispatch_fetch",
        |caller: Ctx<'_>,
         (binding_ptr, binding_len, name_ptr, name_len, opts_ptr, opts_len, req): (
            i32,
            i32,
            i32,
            i32,
            i32,
            i32,
            i32,
        )| {
            Box::new(dispatch_fetch(
                caller,
                (binding_ptr, binding_len),
                (name_ptr, name_len),
                (opts_ptr, opts_len),
                req,
            ))
        },
    )?;
    linker.func_wrap_async(WORKER_V1, "fetch", |caller: Ctx<'_>, (req,): (i32,)| {
        Box::new(fetch(caller, req))
    })?;
    linker.func_wrap(WORKER_V1, "fetch_error", fetch_error)?;
    linker.func_wrap(WORKER_V1, "response_status", response_status)?;
    linker.func_wrap(WORKER_V1, "response_header", response_header)?;
    linker.func_wrap(WORKER_V1, "response_headers", response_headers)?;
    linker.func_wrap_async(
        WORKER_V1,
        "response_body_read",
        |caller: Ctx<'_>, (resp, out_ptr, out_cap): (i32, i32, i32)| {
            Box::new(response_body_read(caller, resp, out_ptr, out_cap))
        },
    )?;
    linker.func_wrap_async(
        WORKER_V1,
        "response_forward",
        |caller: Ctx<'_>, (resp,): (i32,)| Box::new(response_forward(caller, resp)),
    )?;
    Ok(())
}

// ---- building requests ---------------------------------------------------------------------

fn request_new(mut caller: Ctx<'_>) -> R {
    let req = Request {
        method: Bytes::from_static(b"GET"),
        target: Bytes::from_static(b"/"),
        ..Request::default()
    };
    let state = caller.data_mut();
    Ok(state.calls.add_request(&mut state.budget, req))
}

fn request_clone(mut caller: Ctx<'_>, req: i32) -> R {
    // The head is copied field by field; the body is shared (but counted in full).
    let Some(head) = caller.data_mut().request_to_send(req).map(head_size) else {
        return Ok(code::BAD_HANDLE);
    };
    charge_copy(&mut caller, head)?;
    let state = caller.data_mut();
    let Some(copy) = state.request_to_send(req).cloned() else {
        return Ok(code::BAD_HANDLE);
    };
    Ok(state.calls.add_request(&mut state.budget, copy))
}

/// The built request `req` (not the incoming one, which is read only).
fn built(calls: &mut Calls, req: i32) -> Result<&mut Built, i32> {
    if req == 0 {
        return Err(code::INVALID);
    }
    calls.built_mut(req).ok_or(code::BAD_HANDLE)
}

fn request_set_method(mut caller: Ctx<'_>, req: i32, ptr: i32, len: i32) -> R {
    charge_alloc(&mut caller, len as u32 as usize)?;
    let (mem, state) = parts(&mut caller)?;
    let method = slice(mem, ptr, len, "request_set_method")?;
    if !is_token(method) {
        return Ok(code::INVALID);
    }
    let b = match built(&mut state.calls, req) {
        Ok(b) => b,
        Err(code) => return Ok(code),
    };
    let before = b.size();
    let after = before + method.len() - b.request.method.len();
    if !state.budget.resize(before, after) {
        return Ok(state.calls.over_budget(&state.budget));
    }
    b.request.method = Bytes::copy_from_slice(method);
    Ok(0)
}

/// The authority of an absolute URL, and whether its scheme is `https`.
type Authority<'a> = (&'a [u8], bool);

/// A request target found in a URL, not yet copied: `rest`, after a `/` if `slash`.
struct UrlTarget<'a> {
    slash: bool,
    rest: &'a [u8],
}

impl UrlTarget<'_> {
    fn len(&self) -> usize {
        usize::from(self.slash) + self.rest.len()
    }

    fn to_bytes(&self) -> Bytes {
        match (self.slash, self.rest.is_empty()) {
            (true, true) => Bytes::from_static(b"/"),
            (true, false) => Bytes::from([&b"/"[..], self.rest].concat()),
            (false, _) => Bytes::copy_from_slice(self.rest),
        }
    }
}

/// Splits `http(s)://authority/path?query` (or an origin-form `/path?query`, which keeps the
/// host) into authority and target. `None` for anything else, or bytes a request line or a
/// `Host` field cannot carry.
fn split_url(url: &[u8]) -> Option<(Option<Authority<'_>>, UrlTarget<'_>)> {
    // Without an early exit the scan vectorises: 0.06 ns/byte rather than ~0.5 (host-copy-cost).
    let bad = url
        .iter()
        .fold(false, |bad, &c| bad | (c <= b' ') | (c == 0x7f));
    if bad {
        return None;
    }
    if url.first() == Some(&b'/') {
        return Some((
            None,
            UrlTarget {
                slash: false,
                rest: url,
            },
        ));
    }
    let lower = |n: usize| url.get(..n).map(|p| p.to_ascii_lowercase());
    let (rest, secure) = if lower(7).as_deref() == Some(b"http://") {
        (&url[7..], false)
    } else if lower(8).as_deref() == Some(b"https://") {
        (&url[8..], true)
    } else {
        return None;
    };
    let end = rest
        .iter()
        .position(|&c| c == b'/' || c == b'?' || c == b'#')
        .unwrap_or(rest.len());
    let (authority, target) = rest.split_at(end);
    if authority.is_empty() || authority.contains(&b'@') {
        return None;
    }
    // The fragment is never sent.
    let target = &target[..target
        .iter()
        .position(|&c| c == b'#')
        .unwrap_or(target.len())];
    let target = UrlTarget {
        slash: target.first() != Some(&b'/'),
        rest: target,
    };
    Some((Some((authority, secure)), target))
}

fn request_set_url(mut caller: Ctx<'_>, req: i32, ptr: i32, len: i32) -> R {
    charge_alloc(&mut caller, len as u32 as usize)?;
    let (mem, state) = parts(&mut caller)?;
    let url = slice(mem, ptr, len, "request_set_url")?;
    let Some((authority, target)) = split_url(url) else {
        return Ok(code::INVALID);
    };
    let b = match built(&mut state.calls, req) {
        Ok(b) => b,
        Err(code) => return Ok(code),
    };
    let before = b.size();
    let r = &mut b.request;
    let mut after = before + target.len() - r.target.len();
    if let Some((host, _)) = authority {
        // `host` and one `Host` field replace the old host and every `Host` field.
        let old_fields: usize = r
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(b"host"))
            .map(|(n, v)| n.len() + v.len())
            .sum();
        after = after + 2 * host.len() + "host".len() - r.host.len() - old_fields;
    }
    if !state.budget.resize(before, after) {
        return Ok(state.calls.over_budget(&state.budget));
    }
    r.target = target.to_bytes();
    if let Some((host, secure)) = authority {
        let host = Bytes::copy_from_slice(host);
        r.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(b"host"));
        r.headers.push((Bytes::from_static(b"host"), host.clone()));
        r.host = host;
        r.secure = secure;
    }
    Ok(0)
}

fn request_header_set(
    mut caller: Ctx<'_>,
    req: i32,
    name_ptr: i32,
    name_len: i32,
    val_ptr: i32,
    val_len: i32,
) -> R {
    const CALL: &str = "request_header_set";
    charge_alloc(
        &mut caller,
        (name_len as u32 as usize).saturating_add(val_len as u32 as usize),
    )?;
    let (mem, state) = parts(&mut caller)?;
    let name = slice(mem, name_ptr, name_len, CALL)?;
    let value = slice(mem, val_ptr, val_len, CALL)?;
    if !is_token(name) || !is_field_value(value) {
        return Ok(code::INVALID);
    }
    let b = match built(&mut state.calls, req) {
        Ok(b) => b,
        Err(code) => return Ok(code),
    };
    if b.request.headers.len() >= crate::limits::MAX_RESPONSE_HEADER_FIELDS {
        return Ok(code::LIMIT);
    }
    let is_host = name.eq_ignore_ascii_case(b"host");
    let before = b.size();
    let replaced: usize = b
        .request
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(n, v)| n.len() + v.len())
        .sum();
    let mut after = before + name.len() + value.len() - replaced;
    if is_host {
        after = after + value.len() - b.request.host.len();
    }
    if !state.budget.resize(before, after) {
        return Ok(state.calls.over_budget(&state.budget));
    }
    let r = &mut b.request;
    let (name, value) = (Bytes::copy_from_slice(name), Bytes::copy_from_slice(value));
    r.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
    if is_host {
        r.host = value.clone();
    }
    r.headers.push((name, value));
    Ok(0)
}

fn request_header_remove(mut caller: Ctx<'_>, req: i32, name_ptr: i32, name_len: i32) -> R {
    charge_copy(&mut caller, name_len as u32 as usize)?;
    let (mem, state) = parts(&mut caller)?;
    let name = slice(mem, name_ptr, name_len, "request_header_remove")?;
    let b = match built(&mut state.calls, req) {
        Ok(b) => b,
        Err(code) => return Ok(code),
    };
    let before = b.size();
    let r = &mut b.request;
    let count = r.headers.len();
    r.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    let removed = r.headers.len() != count;
    let after = b.size();
    let _shrinks = state.budget.resize(before, after);
    Ok(if removed { 0 } else { code::NOT_FOUND })
}

/// Appends to a built request's body: linear, into a growable buffer (see [`Built`]). If the
/// request was cloned or sent since the last append, its body is copied back into a buffer
/// first, and the call pays for that copy too.
fn request_body_write(mut caller: Ctx<'_>, req: i32, ptr: i32, len: i32) -> R {
    const CALL: &str = "request_body_write";
    let n = len as u32 as usize;
    let thaw = {
        let (mem, state) = parts(&mut caller)?;
        slice(mem, ptr, len, CALL)?;
        let b = match built(&mut state.calls, req) {
            Ok(b) => b,
            Err(code) => return Ok(code),
        };
        if b.body_len() + n > MAX_RESPONSE_BODY_BYTES {
            return Ok(code::LIMIT);
        }
        if b.body.is_none() {
            b.request.body.len()
        } else {
            0
        }
    };
    charge_alloc(&mut caller, n + thaw)?;
    let (mem, state) = parts(&mut caller)?;
    let bytes = slice(mem, ptr, len, CALL)?;
    if !state.budget.reserve(n) {
        return Ok(state.calls.over_budget(&state.budget));
    }
    let Ok(b) = built(&mut state.calls, req) else {
        return Ok(code::BAD_HANDLE);
    };
    let body = b
        .body
        .get_or_insert_with(|| Vec::from(std::mem::take(&mut b.request.body)));
    body.extend_from_slice(bytes);
    Ok(len)
}

// ---- calling other Workers -----------------------------------------------------------------

/// A fetch ready to start: where it goes, with what, under which limits.
struct Call {
    target: Target,
    /// A subrequest handed to the outbound Worker.
    via_outbound: bool,
    /// For messages: the Worker's name, or the URL.
    what: String,
    request: Request,
    limits: Limits,
}

/// Where a guest's fetch should go, before the checks common to every fetch.
enum Dest {
    Worker {
        namespace: String,
        script: String,
        outbound: Option<Arc<Outbound>>,
        extra_bindings: Vec<Binding>,
        via_outbound: bool,
    },
    Network,
}

/// Checks everything a fetch needs before it starts; `Err(code)` is returned to the guest, with
/// `last_error` saying why.
fn prepare(
    state: &mut HostState,
    dest: Result<Dest, i32>,
    per_call: Limits,
    req: i32,
) -> Result<Call, i32> {
    let fail = |state: &mut HostState, code: i32, why: String| {
        state.calls.last_error = why;
        Err(code)
    };
    let dest = dest?;
    let Some(request) = state.request_to_send(req).cloned() else {
        return fail(
            state,
            code::BAD_HANDLE,
            format!("no request with handle {req}"),
        );
    };
    if state.calls.made >= state.limits.subrequests {
        let limit = state.limits.subrequests;
        return fail(
            state,
            code::LIMIT,
            format!("the subrequest limit of {limit} per invocation is reached"),
        );
    }
    let is_worker = matches!(dest, Dest::Worker { .. });
    if is_worker && state.depth + 1 > MAX_CALL_DEPTH {
        return fail(
            state,
            code::LIMIT,
            format!("Worker calls may nest at most {MAX_CALL_DEPTH} deep"),
        );
    }
    if state.calls.responses.len() >= MAX_CALL_HANDLES {
        return fail(
            state,
            code::LIMIT,
            format!("at most {MAX_CALL_HANDLES} responses per invocation"),
        );
    }
    state.calls.made += 1;
    // The callee must finish before the caller's own deadline.
    let left = state.deadline.saturating_duration_since(Instant::now());
    let left_ms = u32::try_from(left.as_millis()).unwrap_or(u32::MAX).max(1);
    let limits = per_call.min(Limits {
        wall_ms: left_ms,
        ..Limits::NONE
    });
    let mut via_outbound = false;
    let (target, what) = match dest {
        Dest::Worker {
            namespace,
            script,
            outbound,
            extra_bindings,
            via_outbound: via,
        } => (
            Target::Worker {
                namespace,
                script: script.clone(),
                ctx: CallContext {
                    depth: state.depth + 1,
                    outbound,
                    extra_bindings,
                },
            },
            {
                via_outbound = via;
                script
            },
        ),
        Dest::Network => (
            Target::Network {
                deadline: state.deadline,
            },
            String::from_utf8_lossy(&request.url()).into_owned(),
        ),
    };
    Ok(Call {
        target,
        via_outbound,
        what,
        request,
        limits,
    })
}

/// Looks up a binding of `kind` by the name at `name` in guest memory; its value.
pub(super) fn binding_value(
    caller: &mut Ctx<'_>,
    name: (i32, i32),
    kind: BindingKind,
    call: &'static str,
) -> wasmtime::Result<Result<String, i32>> {
    charge_copy(caller, name.1 as u32 as usize)?;
    let (mem, state) = parts(caller)?;
    let name = slice(mem, name.0, name.1, call)?;
    let found = state.bindings.get(name).map(|b| (b.kind, b.value.clone()));
    Ok(match found {
        Some((k, value)) if k == kind => Ok(value),
        Some((k, _)) => {
            state.calls.last_error = format!(
                "binding `{}` is a {} binding, not {}",
                String::from_utf8_lossy(name),
                k.as_str(),
                kind.as_str()
            );
            Err(code::INVALID)
        }
        None => {
            state.calls.last_error = format!("no binding `{}`", String::from_utf8_lossy(name));
            Err(code::NOT_FOUND)
        }
    })
}

async fn service_fetch(mut caller: Ctx<'_>, binding: (i32, i32), req: i32) -> R {
    let target = binding_value(&mut caller, binding, BindingKind::Service, "service_fetch")?;
    let state = caller.data_mut();
    // A service binding names a Worker of the caller's own namespace, and the callee's
    // subrequests go through the caller's outbound Worker too.
    let dest = target.map(|script| Dest::Worker {
        namespace: state.ident.namespace.clone(),
        script,
        outbound: state.outbound.clone(),
        extra_bindings: Vec::new(),
        via_outbound: false,
    });
    let call = prepare(state, dest, Limits::NONE, req);
    run(caller, call).await
}

async fn dispatch_fetch(
    mut caller: Ctx<'_>,
    binding: (i32, i32),
    name: (i32, i32),
    opts: (i32, i32),
    req: i32,
) -> R {
    const CALL: &str = "dispatch_fetch";
    let value = binding_value(&mut caller, binding, BindingKind::DispatchNamespace, CALL)?;
    // The script name is copied and the options parsed.
    charge_alloc(
        &mut caller,
        (name.1 as u32 as usize).saturating_add(opts.1 as u32 as usize),
    )?;
    let (mem, state) = parts(&mut caller)?;
    let script = String::from_utf8_lossy(slice(mem, name.0, name.1, CALL)?).into_owned();
    let opts = slice(mem, opts.0, opts.1, CALL)?;
    let dest = value.and_then(|value| {
        let spec = DispatchSpec::parse(&value).ok_or(code::INVALID)?;
        let (limits, params) = parse_call_options(opts, spec.outbound.as_ref()).map_err(|why| {
            state.calls.last_error = why;
            code::INVALID
        })?;
        let outbound = spec.outbound.map(|o| {
            Arc::new(Outbound {
                service: o.service,
                params,
            })
        });
        Ok((
            Dest::Worker {
                namespace: spec.namespace,
                script,
                outbound,
                extra_bindings: Vec::new(),
                via_outbound: false,
            },
            limits,
        ))
    });
    let (dest, per_call) = match dest {
        Ok((dest, limits)) => (Ok(dest), limits),
        Err(code) => (Err(code), Limits::NONE),
    };
    let call = prepare(state, dest, per_call, req);
    run(caller, call).await
}

/// An HTTP subrequest: to the network, or to the outbound Worker if this invocation was
/// dispatched through a binding that has one.
async fn fetch(mut caller: Ctx<'_>, req: i32) -> R {
    let state = caller.data_mut();
    let dest = Ok(match &state.outbound {
        Some(outbound) => Dest::Worker {
            namespace: PLATFORM_NAMESPACE.to_string(),
            script: outbound.service.clone(),
            // The outbound Worker's own subrequests go out for real.
            outbound: None,
            extra_bindings: outbound.params.clone(),
            via_outbound: true,
        },
        None => Dest::Network,
    });
    let call = prepare(state, dest, Limits::NONE, req);
    run(caller, call).await
}

/// Per-call options of `dispatch_fetch`: empty (none), or 16 bytes of limits (four
/// little-endian `u32`: `cpu_ms`, `memory_mb`, `wall_ms`, `subrequests`; `0` leaves that limit
/// to the script) optionally followed by a JSON object of outbound parameters.
fn parse_call_options(
    opts: &[u8],
    outbound: Option<&OutboundSpec>,
) -> Result<(Limits, Vec<Binding>), String> {
    if opts.is_empty() {
        return Ok((Limits::NONE, Vec::new()));
    }
    if opts.len() < 16 {
        return Err(format!(
            "call options are {} bytes; expected 0, or 16 bytes of limits (cpu_ms, memory_mb, \
             wall_ms, subrequests as little-endian u32) and optionally a JSON object of outbound \
             parameters",
            opts.len()
        ));
    }
    let field = |i: usize| {
        let v = u32::from_le_bytes(opts[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
        (v != 0).then_some(v)
    };
    let limits = Limits {
        cpu_ms: field(0).unwrap_or(u32::MAX),
        memory_bytes: field(1).map_or(u64::MAX, |mb| u64::from(mb) << 20),
        wall_ms: field(2).unwrap_or(u32::MAX),
        subrequests: field(3).unwrap_or(u32::MAX),
    };
    let params = &opts[16..];
    if params.is_empty() {
        return Ok((limits, Vec::new()));
    }
    let Some(outbound) = outbound else {
        return Err("outbound parameters given, but the binding has no outbound Worker".into());
    };
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(params)
        .map_err(|e| format!("outbound parameters are not a JSON object: {e}"))?;
    let mut bindings = Vec::with_capacity(map.len());
    for (name, value) in map {
        if !outbound.parameters.contains(&name) {
            return Err(format!(
                "outbound parameter `{name}` is not declared in the binding's `parameters`"
            ));
        }
        let (kind, value) = match value {
            serde_json::Value::String(s) => (BindingKind::PlainText, s),
            other => (BindingKind::Json, other.to_string()),
        };
        bindings.push(Binding { name, kind, value });
    }
    Ok((limits, bindings))
}

/// Starts a prepared call, waits for it and stores the response under a new handle.
async fn run(mut caller: Ctx<'_>, call: Result<Call, i32>) -> R {
    let call = match call {
        Ok(call) => call,
        Err(code) => return Ok(code),
    };
    // A subrequest to the network is written out whole; a Worker gets the head copied and the
    // body shared.
    let sent = match call.target {
        Target::Network { .. } => head_size(&call.request) + call.request.body.len(),
        Target::Worker { .. } => head_size(&call.request),
    };
    charge_copy(&mut caller, sent)?;
    let Some(pending) = spawn_call(call.target, call.request, call.limits) else {
        caller.data_mut().calls.last_error = "fetch is not available here".into();
        return Ok(code::UNSUPPORTED);
    };
    let outcome = pending
        .await
        .unwrap_or_else(|_| Err(Fault::Unavailable("the call was cancelled".into())));
    // The call may have ended because this invocation's own time ran out: then so does it.
    if Instant::now() >= caller.data().deadline {
        return Err(super::DeadlineExceeded.into());
    }
    if let Ok((response, _)) = &outcome {
        // Parsing the response head.
        charge_copy(&mut caller, headers_bytes(&response.headers))?;
    }
    let state = caller.data_mut();
    let (response, stream) = match outcome {
        Ok(done) => done,
        Err(Fault::NotFound) if call.via_outbound => {
            state.calls.last_error = format!("the outbound Worker `{}` is not deployed", call.what);
            return Ok(code::NETWORK);
        }
        Err(Fault::NotFound) => {
            state.calls.last_error = format!("Worker not found: {}", call.what);
            return Ok(code::WORKER_NOT_FOUND);
        }
        Err(
            fault @ (Fault::OutOfFuel { .. } | Fault::Deadline { .. } | Fault::MemoryLimit { .. }),
        ) => {
            state.calls.last_error = fault.to_string();
            return Ok(code::EXCEEDED);
        }
        Err(Fault::Subrequest(why)) => {
            state.calls.last_error = why;
            return Ok(code::NETWORK);
        }
        // Any other failure of the callee is what a client calling it directly would get.
        Err(fault) => (fault.to_response(), None),
    };
    Ok(state
        .calls
        .push_fetched(&mut state.budget, response, stream))
}

fn fetch_error(mut caller: Ctx<'_>, out_ptr: i32, out_cap: i32) -> R {
    let text = caller.data().calls.last_error.clone();
    return_value(
        &mut caller,
        text.as_bytes(),
        out_ptr,
        out_cap,
        "fetch_error",
    )
}

// ---- reading responses ---------------------------------------------------------------------

fn response_status(mut caller: Ctx<'_>, resp: i32) -> R {
    Ok(caller
        .data_mut()
        .calls
        .response(resp)
        .map_or(code::BAD_HANDLE, |f| i32::from(f.response.status)))
}

fn response_header(
    mut caller: Ctx<'_>,
    resp: i32,
    name_ptr: i32,
    name_len: i32,
    out_ptr: i32,
    out_cap: i32,
) -> R {
    const CALL: &str = "response_header";
    let cost = {
        let (mem, state) = parts(&mut caller)?;
        let name = slice(mem, name_ptr, name_len, CALL)?;
        let Some(f) = state.calls.response(resp) else {
            return Ok(code::BAD_HANDLE);
        };
        name.len() + header_value_len(&f.response.headers, name)
    };
    charge_alloc(&mut caller, cost)?;
    let value = {
        let (mem, state) = parts(&mut caller)?;
        let name = slice(mem, name_ptr, name_len, CALL)?;
        let Some(f) = state.calls.response(resp) else {
            return Ok(code::BAD_HANDLE);
        };
        // The same joining rule as request headers.
        header_value(&f.response.headers, name)
    };
    match value {
        Some(value) => return_value(&mut caller, &value, out_ptr, out_cap, CALL),
        None => {
            check_out(&mut caller, out_ptr, out_cap, CALL)?;
            Ok(code::NOT_FOUND)
        }
    }
}

fn response_headers(mut caller: Ctx<'_>, resp: i32, out_ptr: i32, out_cap: i32) -> R {
    let Some(f) = caller.data_mut().calls.response(resp) else {
        return Ok(code::BAD_HANDLE);
    };
    let size = headers_text_len(&f.response.headers);
    charge_alloc(&mut caller, size)?;
    let Some(f) = caller.data_mut().calls.response(resp) else {
        return Ok(code::BAD_HANDLE);
    };
    let text = headers_text(&f.response.headers);
    return_value(&mut caller, &text, out_ptr, out_cap, "response_headers")
}

/// Makes sure the unread part of response `resp`'s body is at hand, pulling the next chunk of a
/// streamed body if it is not (the chunk replaces the previous one in the budget). `Ok(false)`
/// at the end of the body; `Err` is the code and the reason for the guest: a failed stream
/// (`NETWORK`) or a chunk past the budget (`LIMIT`).
async fn fill(caller: &mut Ctx<'_>, resp: i32) -> Result<bool, (i32, String)> {
    loop {
        let Some(f) = caller.data_mut().calls.response(resp) else {
            return Ok(false);
        };
        if f.body_pos < f.response.body.len() {
            return Ok(true);
        }
        let Some(id) = f.stream else {
            return Ok(false);
        };
        let chunk = crate::nested::spawn_read(id)
            .await
            .unwrap_or_else(|_| Err("the subrequest was cancelled".into()));
        let state = caller.data_mut();
        let Some(f) = state.calls.response(resp) else {
            return Ok(false);
        };
        match chunk {
            Ok(Some(chunk)) => {
                let held = f.response.body.len();
                if !state.budget.resize(held, chunk.len()) {
                    if let Some(id) = f.stream.take() {
                        crate::nested::drop_stream(id);
                    }
                    let code = state.calls.over_budget(&state.budget);
                    return Err((code, state.calls.last_error.clone()));
                }
                f.response.body = chunk;
                f.body_pos = 0;
            }
            Ok(None) => {
                f.stream = None;
                return Ok(false);
            }
            Err(why) => {
                f.stream = None;
                return Err((code::NETWORK, why));
            }
        }
    }
}

async fn response_body_read(mut caller: Ctx<'_>, resp: i32, out_ptr: i32, out_cap: i32) -> R {
    const CALL: &str = "response_body_read";
    if caller.data_mut().calls.response(resp).is_none() {
        return Ok(code::BAD_HANDLE);
    }
    // The out pair must be valid whatever happens next.
    check_out(&mut caller, out_ptr, out_cap, CALL)?;
    if out_cap <= 0 {
        return Ok(0);
    }
    if let Err((code, why)) = fill(&mut caller, resp).await {
        caller.data_mut().calls.last_error = why;
        return Ok(code);
    }
    let Some((pos, len)) = caller
        .data_mut()
        .calls
        .response(resp)
        .map(|f| (f.body_pos, f.response.body.len()))
    else {
        return Ok(code::BAD_HANDLE);
    };
    let n = len.saturating_sub(pos).min(out_cap as u32 as usize);
    charge_copy(&mut caller, n)?;
    let (mem, state) = parts(&mut caller)?;
    let out = slice_mut(mem, out_ptr, out_cap, CALL)?;
    let Some(f) = state.calls.response(resp) else {
        return Ok(code::BAD_HANDLE);
    };
    out[..n].copy_from_slice(&f.response.body[pos..pos + n]);
    f.body_pos = pos + n;
    Ok(i32::try_from(n).unwrap_or(i32::MAX))
}

/// Makes a fetched response this invocation's response: status, headers and body (the body
/// still unread, from where `response_body_read` left off; a streamed body is read to its end,
/// at most [`MAX_RESPONSE_BODY_BYTES`]). Later `response_*` calls on handle `0` modify it.
/// The body is copied (and paid for) chunk by chunk, each counted against the budget before it
/// is copied; the response built so far is released.
async fn response_forward(mut caller: Ctx<'_>, resp: i32) -> R {
    if caller.data_mut().calls.response(resp).is_none() {
        return Ok(code::BAD_HANDLE);
    }
    let mut body = Vec::new();
    loop {
        let failed = match fill(&mut caller, resp).await {
            Ok(true) => None,
            Ok(false) => break,
            Err(failure) => Some(failure),
        };
        let state = caller.data_mut();
        let chunk = match state.calls.response(resp) {
            Some(f) if failed.is_none() => f.response.body.slice(f.body_pos..),
            _ => Bytes::new(),
        };
        let failed = failed.or_else(|| {
            (body.len() + chunk.len() > MAX_RESPONSE_BODY_BYTES).then(|| {
                (
                    code::LIMIT,
                    format!(
                        "the response body is larger than {MAX_RESPONSE_BODY_BYTES} bytes; read \
                         it with response_body_read instead"
                    ),
                )
            })
        });
        let failed = failed.or_else(|| {
            (!state.budget.reserve(chunk.len())).then(|| {
                let code = state.calls.over_budget(&state.budget);
                (code, state.calls.last_error.clone())
            })
        });
        if let Some((code, why)) = failed {
            state.budget.release(body.len());
            state.calls.last_error = why;
            return Ok(code);
        }
        if let Err(e) = charge_alloc(&mut caller, chunk.len()) {
            caller.data_mut().budget.release(body.len() + chunk.len());
            return Err(e);
        }
        if let Some(f) = caller.data_mut().calls.response(resp) {
            f.body_pos = f.response.body.len();
        }
        body.extend_from_slice(&chunk);
    }
    let state = caller.data_mut();
    let Some(f) = state.calls.response(resp) else {
        state.budget.release(body.len());
        return Ok(code::BAD_HANDLE);
    };
    let status = f.response.status;
    let headers = f.response.headers.clone();
    let header_bytes = headers.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
    // The head replaces the one built so far; the body reserved above replaces the old body.
    let out = &mut state.response;
    let before = out.header_bytes + out.body.len();
    if !state.budget.resize(before, header_bytes) {
        state.budget.release(body.len());
        return Ok(state.calls.over_budget(&state.budget));
    }
    out.status = status;
    out.header_bytes = header_bytes;
    out.headers = headers;
    out.body = body;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_authority_and_target() {
        let s = |u: &str| {
            split_url(u.as_bytes()).map(|(a, t)| {
                assert_eq!(t.len(), t.to_bytes().len());
                (a.map(|(a, secure)| (a.to_vec(), secure)), t.to_bytes())
            })
        };
        assert_eq!(
            s("http://alice.example.test/x?y=1"),
            Some((
                Some((b"alice.example.test".to_vec(), false)),
                Bytes::from("/x?y=1")
            ))
        );
        assert_eq!(
            s("HTTPS://a.test:8443"),
            Some((Some((b"a.test:8443".to_vec(), true)), Bytes::from("/")))
        );
        assert_eq!(
            s("http://a.test?q#frag"),
            Some((Some((b"a.test".to_vec(), false)), Bytes::from("/?q")))
        );
        assert_eq!(s("/only/path"), Some((None, Bytes::from("/only/path"))));
        assert_eq!(s("ftp://a.test/"), None);
        assert_eq!(s("http:///x"), None);
        assert_eq!(s("http://user@a.test/"), None);
        assert_eq!(s("http://a.test/x y"), None);
        assert_eq!(s("http://a.test/\r\nx"), None);
    }

    #[test]
    fn call_options_are_limits_then_outbound_parameters() {
        assert_eq!(parse_call_options(b"", None), Ok((Limits::NONE, vec![])));
        assert!(parse_call_options(&[0; 12], None).is_err());
        let mut opts = Vec::new();
        for v in [5u32, 0, 100, 2] {
            opts.extend_from_slice(&v.to_le_bytes());
        }
        let limits = Limits {
            cpu_ms: 5,
            memory_bytes: u64::MAX,
            wall_ms: 100,
            subrequests: 2,
        };
        assert_eq!(parse_call_options(&opts, None), Ok((limits, vec![])));
        let spec = OutboundSpec {
            service: "out".into(),
            parameters: vec!["customer".into(), "plan".into()],
        };
        let mut with = opts.clone();
        with.extend_from_slice(br#"{"customer": "acme", "plan": {"tier": 2}}"#);
        let (_, params) = parse_call_options(&with, Some(&spec)).unwrap();
        assert_eq!(params[0].value, "acme");
        assert_eq!(params[0].kind, BindingKind::PlainText);
        assert_eq!(params[1].value, r#"{"tier":2}"#);
        assert_eq!(params[1].kind, BindingKind::Json);
        assert!(
            parse_call_options(&with, None)
                .unwrap_err()
                .contains("no outbound Worker")
        );
        let mut undeclared = opts.clone();
        undeclared.extend_from_slice(br#"{"other": "x"}"#);
        assert!(
            parse_call_options(&undeclared, Some(&spec))
                .unwrap_err()
                .contains("not declared")
        );
    }
}
