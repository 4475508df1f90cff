//! Run mode (`tenantry_fetch`): load the compiled bundle once per instance, then per request
//! build a `Request`, call the handler, drive the event loop, write the `Response`, and finish the
//! `waitUntil` work.

use std::cell::RefCell;
use std::rc::Rc;

use rquickjs::promise::PromiseState;
use rquickjs::{
    Array, ArrayBuffer, Ctx, Function, Module, Object, Persistent, Promise, TypedArray, Value,
};

use crate::bundle::{Bundle, Format, Kind};
use crate::engine::{self, Settled};
use crate::error::{Thrown, uncaught};
use crate::{bytecode, host, modules};

/// What workerd answers for an uncaught exception and for a handler that never responds
/// (checked with workerd 1.20261117.1: `500 Internal Server Error`, `Content-Length: 21`, no
/// content type; workerd also sends `Connection: close`, which is the host's to decide).
pub const INTERNAL_ERROR_STATUS: i32 = 500;
pub const INTERNAL_ERROR_BODY: &[u8] = b"Internal Server Error";

/// workerd's log line for a handler whose promise can never settle.
pub const HUNG: &str = "The Workers runtime canceled this request because it detected that your Worker's code had hung and would never generate a response.";

/// An evaluated Worker, kept for the next request on this instance (reuse mode).
struct Worker {
    format: Format,
    /// Modules: the default export. Service worker: undefined (the listeners are in the prelude).
    handler: Persistent<Value<'static>>,
    /// Modules: the `env` object, made once (bindings do not change within an instance).
    env: Persistent<Value<'static>>,
}

thread_local! {
    static WORKER: RefCell<Option<Rc<Worker>>> = const { RefCell::new(None) };
}

/// Why a request could not reach the handler.
enum Failure {
    /// JS threw (e.g. at the module's top level): logged as uncaught, answered as workerd does.
    Thrown(Thrown),
    /// Anything else (a bad bundle from the host, a failed host call).
    Other(String),
}

/// The export.
pub fn export() -> i32 {
    engine::begin_invocation();
    let engine = match engine::get() {
        Ok(engine) => engine,
        Err(message) => return fail(Failure::Other(message)),
    };
    engine.ctx.with(|ctx| {
        let worker = match worker(&ctx) {
            Ok(worker) => worker,
            Err(failure) => return fail(failure),
        };
        let result = match call_handler(&ctx, engine, &worker)
            .and_then(|result| respond(&ctx, engine, result))
        {
            Ok(result) => result,
            Err(failure) => return fail(failure),
        };
        // The parts, at once when the handler's Response was at hand, else a promise of them.
        let Some(promise) = result.as_promise().cloned() else {
            let code = match result.into_array() {
                Some(parts) => write_response(&parts),
                None => fail(Failure::Other("the response could not be read".into())),
            };
            finish_wait_until(&ctx, engine);
            engine::report_unhandled(&ctx, None);
            return code;
        };
        let code = match engine::drive(&ctx, &promise) {
            Settled::Never => {
                host::log(host::LOG_ERROR, HUNG);
                internal_error()
            }
            Settled::Yes => match promise.state() {
                PromiseState::Resolved => match promise.result::<Array>().and_then(Result::ok) {
                    Some(parts) => write_response(&parts),
                    None => fail(Failure::Other("the response could not be read".into())),
                },
                _ => {
                    let reason = promise.result::<Value>().and_then(Result::err);
                    let thrown = match reason {
                        Some(e) if e.is_exception() => Thrown::catch(&ctx),
                        _ => Thrown::default(),
                    };
                    fail(Failure::Thrown(thrown))
                }
            },
        };
        finish_wait_until(&ctx, engine);
        engine::report_unhandled(&ctx, Some(&promise));
        code
    })
}

/// An error of a call into JS: the exception it threw, or what else went wrong.
fn failure(ctx: &Ctx<'_>, e: rquickjs::Error) -> Failure {
    if e.is_exception() {
        Failure::Thrown(Thrown::catch(ctx))
    } else {
        Failure::Other(e.to_string())
    }
}

/// Logs a failure and answers as workerd does for an uncaught exception.
fn fail(failure: Failure) -> i32 {
    let line = match failure {
        Failure::Thrown(thrown) => uncaught(&thrown, "Uncaught"),
        Failure::Other(message) => message,
    };
    host::log(host::LOG_ERROR, &line);
    internal_error()
}

/// Writes workerd's `500` answer. Returns the export's code: `0`, or `1` if even that failed.
fn internal_error() -> i32 {
    let written = host::response_status(INTERNAL_ERROR_STATUS)
        .and_then(|()| host::response_body(INTERNAL_ERROR_BODY));
    i32::from(written.is_err())
}

/// The `tenantry_js_preload` export: loads and evaluates the Worker now, so that a host may
/// snapshot an instance per Worker and start every request from an evaluated Worker. `0` when
/// loaded; `1` (and the reason logged) when it could not be, which the first request meets again.
pub fn preload() -> i32 {
    engine::begin_invocation();
    let loaded = engine::get().map_err(Failure::Other).and_then(|engine| {
        engine.ctx.with(|ctx| {
            let worker = worker(&ctx).map(drop);
            engine::report_unhandled(&ctx, None);
            worker
        })
    });
    match loaded {
        Ok(()) => 0,
        Err(failure) => {
            let line = match failure {
                Failure::Thrown(thrown) => uncaught(&thrown, "Uncaught"),
                Failure::Other(message) => message,
            };
            host::log(host::LOG_ERROR, &line);
            1
        }
    }
}

/// The evaluated Worker of this instance, loading it on the first request.
fn worker(ctx: &Ctx<'_>) -> Result<Rc<Worker>, Failure> {
    if let Some(worker) = WORKER.with(|w| w.borrow().clone()) {
        return Ok(worker);
    }
    let worker = Rc::new(load(ctx)?);
    WORKER.with(|w| *w.borrow_mut() = Some(worker.clone()));
    Ok(worker)
}

fn load(ctx: &Ctx<'_>) -> Result<Worker, Failure> {
    let code = host::code_read().map_err(|e| Failure::Other(format!("code_read failed: {e:?}")))?;
    let bytes: Rc<[u8]> = code.into();
    let bundle = Bundle::parse(&bytes).map_err(|e| Failure::Other(e.to_string()))?;
    let thrown = |e| failure(ctx, e);
    let undefined = || Persistent::save(ctx, Value::new_undefined(ctx.clone()));
    match bundle.format {
        Format::ServiceWorker => {
            let main = bundle.main();
            if main.kind != Kind::ScriptBytecode {
                return Err(Failure::Other(format!("{}: not compiled", main.name)));
            }
            install_global_bindings(ctx).map_err(thrown)?;
            bytecode::run_script(ctx, main.data).map_err(thrown)?;
            Ok(Worker {
                format: Format::ServiceWorker,
                handler: undefined(),
                env: undefined(),
            })
        }
        Format::Modules => {
            let main = bundle.main().name.to_string();
            modules::register(bytes.clone(), &bundle, false);
            let promise = Module::import(ctx, main.as_str()).map_err(thrown)?;
            if engine::drive(ctx, &promise) == Settled::Never {
                return Err(Failure::Other(format!(
                    "{main}: the module's top-level await never settles"
                )));
            }
            let namespace: Object = match promise.result::<Object>() {
                Some(Ok(namespace)) => namespace,
                Some(Err(e)) => return Err(thrown(e)),
                None => return Err(Failure::Other(format!("{main}: not evaluated"))),
            };
            let handler: Value = namespace.get("default").map_err(thrown)?;
            let env = env_object(ctx).map_err(thrown)?;
            Ok(Worker {
                format: Format::Modules,
                handler: Persistent::save(ctx, handler),
                env: Persistent::save(ctx, env.into_value()),
            })
        }
    }
}

/// Calls the handler with a `Request` for the incoming request; what it returned (a `Response`,
/// a promise of one, or anything else, which [`respond`] refuses as workerd does).
fn call_handler<'js>(
    ctx: &Ctx<'js>,
    engine: &engine::Engine,
    worker: &Worker,
) -> Result<Value<'js>, Failure> {
    let thrown = |e| failure(ctx, e);
    let calls = &engine.per_request;
    let make = calls.make_request.clone().restore(ctx).map_err(thrown)?;
    let request = build_request(ctx, &make)?;
    match worker.format {
        Format::Modules => {
            let run = calls.run_module.clone().restore(ctx).map_err(thrown)?;
            let handler = worker.handler.clone().restore(ctx).map_err(thrown)?;
            let env = worker.env.clone().restore(ctx).map_err(thrown)?;
            run.call((handler, request, env)).map_err(thrown)
        }
        Format::ServiceWorker => {
            let run = calls
                .run_service_worker
                .clone()
                .restore(ctx)
                .map_err(thrown)?;
            run.call((request,)).map_err(thrown)
        }
    }
}

/// The response's parts (see [`write_response`]), or a promise of them, from what the handler
/// returned, through the prelude's `respond`. An `async` handler that never awaited has returned
/// a promise that is already fulfilled: when no microtask is waiting either, its value is taken
/// here, as the result of a handler that returned the `Response` itself — without the prelude's
/// `await` and the microtask turn it costs (~30 000 wasm instructions of QuickJS's promise
/// machinery, a third of a hello's). With a microtask queued, the handler's promise goes the long
/// way, so those jobs still run before the response is read, as they would with the `await`.
fn respond<'js>(
    ctx: &Ctx<'js>,
    engine: &engine::Engine,
    result: Value<'js>,
) -> Result<Value<'js>, Failure> {
    let thrown = |e| failure(ctx, e);
    let settled = match result.as_promise() {
        Some(promise) if promise.state() == PromiseState::Resolved && !engine::job_pending(ctx) => {
            promise.result::<Value>().and_then(Result::ok)
        }
        _ => None,
    };
    let respond = engine
        .per_request
        .respond
        .clone()
        .restore(ctx)
        .map_err(thrown)?;
    respond.call((settled.unwrap_or(result),)).map_err(thrown)
}

/// The incoming request as a JS `Request`, through the prelude's `makeRequest` (the Web APIs'
/// `newRequest` when they have it, else `new Request(url, { method, headers, body })`): the
/// header block as the host gave it (`name: value` lines, split only if the Worker reads
/// `request.headers`), the body a `Uint8Array` that takes over the bytes read from the host (no
/// copy), or `null` for `GET`/`HEAD` and empty bodies.
fn build_request<'js>(ctx: &Ctx<'js>, make: &Function<'js>) -> Result<Value<'js>, Failure> {
    let js = |e: rquickjs::Error| {
        if e.is_exception() {
            Failure::Thrown(Thrown::catch(ctx))
        } else {
            Failure::Other(format!("building the Request: {e}"))
        }
    };
    let method = host::request_method();
    let url = host::request_url();
    let head = host::request_headers();
    let body = if method != b"GET" && method != b"HEAD" {
        let body = host::request_body()
            .map_err(|e| Failure::Other(format!("reading the request body: {e:?}")))?;
        if body.is_empty() {
            Value::new_null(ctx.clone())
        } else {
            TypedArray::<u8>::new(ctx.clone(), body)
                .map_err(js)?
                .into_value()
        }
    } else {
        Value::new_null(ctx.clone())
    };
    make.call((
        latin1(ctx, &method).map_err(js)?,
        latin1(ctx, &url).map_err(js)?,
        latin1(ctx, &head).map_err(js)?,
        body,
    ))
    .map_err(js)
}

/// A header name or value as a JS string: bytes as Latin-1 code points, as the Fetch standard's
/// `ByteString` (ASCII, the common case, maps to itself).
fn latin1<'js>(ctx: &Ctx<'js>, bytes: &[u8]) -> rquickjs::Result<rquickjs::String<'js>> {
    if bytes.is_ascii() {
        // SAFETY-free: ASCII is valid UTF-8.
        return rquickjs::String::from_str(ctx.clone(), std::str::from_utf8(bytes).unwrap_or(""));
    }
    let text: String = bytes.iter().map(|&b| char::from(b)).collect();
    rquickjs::String::from_str(ctx.clone(), &text)
}

/// Writes `[status, statusText, [lower-case name, value, name as written, ...], body]` (the
/// Web APIs' `responseParts`) through the ABI, each header with its name as the Worker wrote it.
/// A body that is a number is the host's handle of a fetched response whose body nothing read
/// (the prelude's `hostBody`): forwarded as it is when the status and headers are the fetched
/// ones (the dispatcher's `return userWorker.fetch(request)`), else read here, in Rust.
fn write_response(parts: &Array<'_>) -> i32 {
    let status: i32 = parts.get(0).unwrap_or(INTERNAL_ERROR_STATUS);
    let headers: Array = match parts.get(2) {
        Ok(headers) => headers,
        Err(_) => return internal_error(),
    };
    let mut fields = Vec::with_capacity(headers.len() / 3);
    let mut i = 0;
    while i + 2 < headers.len() {
        let value: Option<String> = headers.get(i + 1).ok();
        let name: Option<String> = headers.get(i + 2).ok();
        i += 3;
        if let (Some(name), Some(value)) = (name, value) {
            fields.push((name, value));
        }
    }
    let body: Value = match parts.get(3) {
        Ok(body) => body,
        Err(_) => return internal_error(),
    };
    let mut fetched = None;
    if let Some(handle) = body.as_int() {
        if same_head(handle, status, &fields) {
            return match host::response_forward(handle) {
                Ok(()) => 0,
                Err(code) => fetched_body_failed(code),
            };
        }
        match host::fetched_body(handle) {
            Ok(bytes) => fetched = Some(bytes),
            Err(code) => return fetched_body_failed(code),
        }
    }
    if status != 200
        && let Err(code) = host::response_status(status)
    {
        host::log(
            host::LOG_ERROR,
            &format!(
                "the Worker's response has status {status}, which the host refuses ({code}); a Worker answers with 200..=599"
            ),
        );
        return internal_error();
    }
    for (name, value) in &fields {
        if let Err(code) = host::response_header(&to_bytes(name), &to_bytes(value)) {
            host::log(
                host::LOG_ERROR,
                &format!("the host refused the response header {name:?} ({code})"),
            );
            return 1;
        }
    }
    let written = match &fetched {
        Some(bytes) => host::response_body(bytes),
        None => write_body(&body),
    };
    if let Err(code) = written {
        host::log(
            host::LOG_ERROR,
            &format!("the host refused the response body ({code})"),
        );
        return 1;
    }
    0
}

/// Whether a fetched response still has the status and header fields (names as written, values,
/// order) the Worker's response has: then forwarding it writes what copying it would.
fn same_head(handle: i32, status: i32, fields: &[(String, String)]) -> bool {
    if host::fetched_status(handle) != status {
        return false;
    }
    let block = crate::platform::host_header_block(handle);
    let mut host_fields = crate::platform::header_fields(&block);
    for (name, value) in fields {
        match host_fields.next() {
            Some((n, v)) if *to_bytes(name) == *n && *to_bytes(value) == *v => {}
            _ => return false,
        }
    }
    host_fields.next().is_none()
}

/// A fetched body that could not be passed on: as reading it in JavaScript would have ended (an
/// uncaught `TypeError`, workerd's 500), or, past the host's body limit, as writing it would.
fn fetched_body_failed(code: i32) -> i32 {
    let why = crate::platform::fetch_error();
    if code == tenantry_sdk::sys::LIMIT {
        host::log(
            host::LOG_ERROR,
            &format!("the host refused the response body ({code}): {why}"),
        );
        return 1;
    }
    host::log(
        host::LOG_ERROR,
        &format!("Uncaught TypeError: Network connection lost: {why}"),
    );
    internal_error()
}

/// Writes a response body: `null`, a string (as UTF-8), a `Uint8Array` or an `ArrayBuffer`.
fn write_body(body: &Value<'_>) -> Result<(), i32> {
    if let Some(text) = body.as_string() {
        let text = text.to_string().map_err(|_| tenantry_sdk::sys::INVALID)?;
        return host::response_body(text.as_bytes());
    }
    let raw = if let Some(buffer) = ArrayBuffer::from_value(body.clone()) {
        buffer.as_raw()
    } else if let Ok(view) = TypedArray::<u8>::from_value(body.clone()) {
        view.as_raw()
    } else {
        None
    };
    if let Some(raw) = raw {
        // SAFETY: the buffer is live (`body` holds it) and no JS runs while the host copies it,
        // so it can be neither detached nor resized under the slice.
        let bytes = unsafe { raw.as_ref() };
        return host::response_body(bytes);
    }
    Ok(())
}

/// A header string back to bytes: Latin-1 code points as single bytes (see [`latin1`]).
fn to_bytes(s: &str) -> std::borrow::Cow<'_, [u8]> {
    if s.is_ascii() {
        return s.as_bytes().into();
    }
    s.chars()
        .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
        .collect::<Vec<u8>>()
        .into()
}

/// Runs the `waitUntil` promises to completion, after the response is written (same limits).
fn finish_wait_until(ctx: &Ctx<'_>, engine: &engine::Engine) {
    if !engine::take_waited() {
        return;
    }
    let Ok(take) = engine.per_request.take_waits.clone().restore(ctx) else {
        return;
    };
    let Ok(Some(all)): rquickjs::Result<Option<Promise>> = take.call(()) else {
        return;
    };
    if engine::drive(ctx, &all) == Settled::Never {
        host::log(
            host::LOG_WARN,
            "a promise passed to waitUntil() never settled; its work was dropped",
        );
    }
}

/// The Worker's bindings as JS values, in declaration order: `plain_text`/`secret_text` as
/// strings, `json` parsed; the platform's kinds (service, KV, dispatch) from [`crate::platform`].
fn bindings<'js>(ctx: &Ctx<'js>) -> rquickjs::Result<Vec<(String, Value<'js>)>> {
    use tenantry_sdk::env::{self, Kind as Binding};
    let Ok(names) = env::try_names() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let value = match env::kind(&name) {
            Some(Binding::PlainText | Binding::SecretText) => {
                let text = env::var(&name).unwrap_or_default();
                rquickjs::String::from_str(ctx.clone(), &text)?.into_value()
            }
            Some(Binding::Json) => ctx.json_parse(env::var(&name).unwrap_or_default())?,
            Some(kind) => crate::platform::binding(ctx, &name, kind.as_str())?,
            None => continue,
        };
        out.push((name, value));
    }
    Ok(out)
}

/// The `env` object of a module Worker.
fn env_object<'js>(ctx: &Ctx<'js>) -> rquickjs::Result<Object<'js>> {
    let env = Object::new(ctx.clone())?;
    for (name, value) in bindings(ctx)? {
        env.set(name, value)?;
    }
    Ok(env)
}

/// Service-worker format: the bindings become globals.
pub fn install_global_bindings(ctx: &Ctx<'_>) -> rquickjs::Result<()> {
    let globals = ctx.globals();
    for (name, value) in bindings(ctx)? {
        globals.set(name, value)?;
    }
    Ok(())
}
