//! The host side of the Worker ABI: the per-store [`HostState`], the memory limiter, and the
//! [`Linker`] that serves `tenantry:worker/v1` ([`v1`]) and the WASI subset ([`wasi`]).
//!
//! Lifecycle (Spin's factors, mapped onto engine / worker / request):
//! - once per engine: [`base_linker`] defines every host function ([`crate::Engine`] keeps it);
//! - once per Worker: ENOSYS stubs for other preview 1 imports are added to a clone of it, if the
//!   module has any ([`linker_for`]), then `instantiate_pre` type-checks the imports once;
//! - once per request: a [`HostState`] carries the request, the response being built and the
//!   limits (in reuse mode it is [`HostState::reset`] instead).

pub(crate) mod budget;
pub(crate) mod fetch;
pub(crate) mod js;
pub(crate) mod kv;
pub(crate) mod v1;
pub(crate) mod wasi;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use wasmtime::{Caller, Extern, Linker, Memory, Module, ResourceLimiter, Trap, Val};

use crate::abi::{self, ImportUse};
use crate::limits::{
    HOST_ALLOC_FUEL_PER_BYTE, HOST_COPY_BYTES_PER_FUEL, LOG_LINE_FUEL,
    MAX_LOG_BYTES_PER_INVOCATION, MAX_LOG_LINE_BYTES,
};
use crate::{Bindings, Limits, Request, Response};
use budget::{HostBudget, LogAllowance};

/// Who a store belongs to, for log lines: `namespace` and `script` fields.
#[derive(Debug)]
pub(crate) struct WorkerIdent {
    /// `"ns/script"` as given in the spec.
    pub name: String,
    pub namespace: String,
    pub script: String,
}

impl WorkerIdent {
    pub fn new(name: &str) -> Self {
        let (namespace, script) = name.split_once('/').unwrap_or(("", name));
        WorkerIdent {
            name: name.to_string(),
            namespace: namespace.to_string(),
            script: script.to_string(),
        }
    }
}

/// The data of one store: everything a host call may touch. It must be `Send` (wasmtime's async
/// calls require it), hence `Arc`, never `Rc`.
pub(crate) struct HostState {
    pub ident: Arc<WorkerIdent>,
    pub bindings: Bindings,
    pub request: Request,
    /// How much of `request.body` `request_body_read` has handed out.
    pub body_pos: usize,
    /// `request_headers` text, built on first use: guests usually call twice (size, then read).
    pub headers_text: Option<Bytes>,
    pub response: ResponseBuilder,
    pub limiter: MemoryLimiter,
    /// The wall-clock deadline of the current invocation, checked on every epoch tick.
    pub deadline: Instant,
    /// The guest's exported memory, cached after the first lookup.
    pub memory: Option<Memory>,
    /// The limits of this invocation (for the subrequest budget and nested calls' deadlines).
    pub limits: Limits,
    /// Nesting depth of this invocation: 0 for a request from the network.
    pub depth: u32,
    /// The outbound Worker this invocation's subrequests go through, if it was dispatched with one.
    pub outbound: Option<Arc<crate::nested::Outbound>>,
    /// Outgoing requests, responses of fetches and the error detail of the last failed fetch.
    pub calls: fetch::Calls,
    /// Host memory this invocation holds, against its memory limit.
    pub budget: HostBudget,
    /// Log volume of this invocation.
    pub logs: LogAllowance,
    /// The Worker's JavaScript bundle, read by the engine with `code_read` (empty for wasm).
    pub code: Bytes,
    /// When the guest last started running, and how long it ran before that (between yields).
    pub slice_start: Arc<crate::yielding::SliceStart>,
    pub ran: std::time::Duration,
    /// Times it yielded at an epoch tick (see `invoke::CPU_BOUND_YIELDS`).
    pub yields: u32,
    /// Held from the yield at which the invocation had run `invoke::CPU_BOUND_AFTER` to its end:
    /// it counts as CPU-bound on its core (`Worker::cpu_bound_requests`).
    pub rotation: Option<crate::yielding::InRotation>,
}

impl HostState {
    pub fn new(
        ident: Arc<WorkerIdent>,
        bindings: Bindings,
        request: Request,
        limits: Limits,
    ) -> Self {
        HostState {
            ident,
            bindings,
            request,
            body_pos: 0,
            headers_text: None,
            response: ResponseBuilder::default(),
            limiter: MemoryLimiter::new(limits.memory_bytes),
            deadline: deadline(limits),
            memory: None,
            limits,
            depth: 0,
            outbound: None,
            calls: fetch::Calls::default(),
            budget: HostBudget::new(limits.memory_bytes),
            logs: LogAllowance::default(),
            code: Bytes::new(),
            slice_start: {
                let start = Arc::<crate::yielding::SliceStart>::default();
                start.mark();
                start
            },
            ran: std::time::Duration::ZERO,
            yields: 0,
            rotation: None,
        }
    }

    /// The request a handle names: `0` the incoming one, others built with `request_new`.
    pub fn request_by_handle(&self, handle: i32) -> Option<&Request> {
        if handle == 0 {
            Some(&self.request)
        } else {
            self.calls.request(handle)
        }
    }

    /// The request a handle names, with its body complete: to clone or send.
    pub fn request_to_send(&mut self, handle: i32) -> Option<&Request> {
        if handle == 0 {
            Some(&self.request)
        } else {
            self.calls.frozen(handle)
        }
    }

    /// Prepares a reused instance's state for the next request; nothing of the previous request
    /// survives except the instance's own memory.
    pub fn reset(&mut self, request: Request, limits: Limits) {
        self.request = request;
        self.body_pos = 0;
        self.headers_text = None;
        self.response = ResponseBuilder::default();
        self.limiter = MemoryLimiter::new(limits.memory_bytes);
        self.deadline = deadline(limits);
        self.limits = limits;
        self.calls = fetch::Calls::default();
        self.budget = HostBudget::new(limits.memory_bytes);
        self.logs = LogAllowance::default();
        self.ran = std::time::Duration::ZERO;
        self.yields = 0;
        self.rotation = None;
    }

    /// Emits one guest log line, if the invocation's log allowance has room for it; otherwise
    /// the line is dropped and counted. The caller has charged fuel with [`charge_log`].
    pub fn log(&mut self, level: LogLevel, line: &[u8]) {
        let line = &line[..line.len().min(MAX_LOG_LINE_BYTES + 1)];
        if self.logs.admit(line.len().min(MAX_LOG_LINE_BYTES)) {
            emit_log(&self.ident, level, line);
        }
    }

    /// Says in one line how much of this invocation's log was dropped, if any; called once
    /// when the invocation ends.
    pub fn report_dropped_logs(&self) {
        let logs = &self.logs;
        if logs.dropped_lines > 0 {
            tracing::warn!(
                target: "tenantry::guest",
                namespace = %self.ident.namespace,
                script = %self.ident.script,
                dropped_lines = logs.dropped_lines,
                dropped_bytes = logs.dropped_bytes,
                "dropped {} log lines ({} bytes) of this invocation: past its allowance of {} bytes",
                logs.dropped_lines,
                logs.dropped_bytes,
                MAX_LOG_BYTES_PER_INVOCATION
            );
        }
    }
}

fn deadline(limits: Limits) -> Instant {
    let now = Instant::now();
    now.checked_add(std::time::Duration::from_millis(u64::from(limits.wall_ms)))
        .unwrap_or(now)
}

/// The response a guest builds through `response_*` calls; limits are checked as it grows.
#[derive(Debug)]
pub(crate) struct ResponseBuilder {
    pub status: u16,
    pub headers: Vec<(Bytes, Bytes)>,
    /// Bytes of `headers` as on the wire (`name: value\r\n`), against `MAX_RESPONSE_HEADER_BYTES`.
    pub header_bytes: usize,
    pub body: Vec<u8>,
}

impl Default for ResponseBuilder {
    fn default() -> Self {
        ResponseBuilder {
            status: 200,
            headers: Vec::new(),
            header_bytes: 0,
            body: Vec::new(),
        }
    }
}

impl ResponseBuilder {
    pub fn take(&mut self) -> Response {
        let built = std::mem::take(self);
        Response {
            status: built.status,
            headers: built.headers,
            body: built.body.into(),
        }
    }
}

/// Enforces a Worker's memory limit below the engine's maximum, and remembers that it refused a
/// grow: the guest sees `memory.grow` return -1, and if it then traps (the usual outcome of a
/// failed allocation) the fault is reported as `MemoryLimit`, not as a bare trap.
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    limit: usize,
    pub denied: bool,
}

impl MemoryLimiter {
    pub fn new(limit_bytes: u64) -> Self {
        MemoryLimiter {
            limit: usize::try_from(limit_bytes).unwrap_or(usize::MAX),
            denied: false,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.denied = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        // Past the module's own maximum or the engine's: a memory limit all the same.
        self.denied = true;
        Ok(())
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // The pooling allocator bounds table elements per slot.
        Ok(true)
    }

    // One instance, memory and table per store: a Worker module, nothing else.
    fn instances(&self) -> usize {
        1
    }
    fn memories(&self) -> usize {
        1
    }
    fn tables(&self) -> usize {
        1
    }
}

/// `proc_exit(code)` unwinds the guest with this error.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the Worker called proc_exit({0})")]
pub(crate) struct ProcExit(pub i32);

/// The epoch callback's error once the wall-clock deadline has passed.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the Worker ran past its wall-clock deadline")]
pub(crate) struct DeadlineExceeded;

/// A host call could not find the guest's `memory` export (only reachable by a module that
/// bypassed the upload check).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the Worker does not export `memory`")]
pub(crate) struct NoMemory;

/// The guest's memory: cached in the state after the first lookup.
fn memory(caller: &mut Caller<'_, HostState>) -> wasmtime::Result<Memory> {
    if let Some(memory) = caller.data().memory {
        return Ok(memory);
    }
    let memory = caller
        .get_export(abi::EXPORT_MEMORY)
        .and_then(Extern::into_memory)
        .ok_or(NoMemory)?;
    caller.data_mut().memory = Some(memory);
    Ok(memory)
}

/// The guest's memory and the host state, borrowed together for one host call.
pub(crate) fn parts<'a>(
    caller: &'a mut Caller<'_, HostState>,
) -> wasmtime::Result<(&'a mut [u8], &'a mut HostState)> {
    let memory = memory(caller)?;
    Ok(memory.data_and_store_mut(caller))
}

/// Charges fuel for `bytes` copied, parsed or allocated by the host (see
/// [`HOST_COPY_BYTES_PER_FUEL`]); runs out of fuel exactly like wasm code would. Host calls
/// charge before they do the work, so a call that cannot pay does nothing.
pub(crate) fn charge_copy(
    caller: &mut Caller<'_, HostState>,
    bytes: usize,
) -> wasmtime::Result<()> {
    charge_fuel(caller, bytes as u64 / HOST_COPY_BYTES_PER_FUEL)
}

/// Charges fuel for `bytes` the host copies into memory it allocates for the invocation (see
/// [`HOST_ALLOC_FUEL_PER_BYTE`]), before it allocates them.
pub(crate) fn charge_alloc(
    caller: &mut Caller<'_, HostState>,
    bytes: usize,
) -> wasmtime::Result<()> {
    charge_fuel(
        caller,
        (bytes as u64).saturating_mul(HOST_ALLOC_FUEL_PER_BYTE),
    )
}

/// Takes `units` of fuel from the store; out of fuel (a trap) if there is not that much left.
pub(crate) fn charge_fuel(caller: &mut Caller<'_, HostState>, units: u64) -> wasmtime::Result<()> {
    if units == 0 {
        return Ok(());
    }
    let fuel = caller.get_fuel()?;
    match fuel.checked_sub(units) {
        Some(left) => caller.set_fuel(left),
        None => {
            caller.set_fuel(0)?;
            Err(Trap::OutOfFuel.into())
        }
    }
}

/// Charges fuel for one log line of `bytes` (before the per-line cut, as far as the host reads
/// them): [`LOG_LINE_FUEL`] plus its bytes.
pub(crate) fn charge_log(caller: &mut Caller<'_, HostState>, bytes: usize) -> wasmtime::Result<()> {
    let bytes = bytes.min(MAX_LOG_LINE_BYTES + 1) as u64;
    charge_fuel(caller, LOG_LINE_FUEL + bytes / HOST_COPY_BYTES_PER_FUEL)
}

/// Guest log levels, as `log` numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

/// Emits one guest log line through `tracing` (target `tenantry::guest`), tagged with the
/// Worker's namespace and script and cut at [`MAX_LOG_LINE_BYTES`]. The host never logs binding
/// values itself; what a guest chooses to print is its own business.
pub(crate) fn emit_log(ident: &WorkerIdent, level: LogLevel, line: &[u8]) {
    let truncated = line.len() > MAX_LOG_LINE_BYTES;
    let line = &line[..line.len().min(MAX_LOG_LINE_BYTES)];
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches(['\n', '\r']);
    macro_rules! event {
        ($level:expr) => {
            tracing::event!(
                target: "tenantry::guest",
                $level,
                namespace = %ident.namespace,
                script = %ident.script,
                truncated,
                "{text}"
            )
        };
    }
    match level {
        LogLevel::Debug => event!(tracing::Level::DEBUG),
        LogLevel::Info => event!(tracing::Level::INFO),
        LogLevel::Warn => event!(tracing::Level::WARN),
        LogLevel::Error => event!(tracing::Level::ERROR),
    }
}

/// The linker shared by every Worker of an engine: all of `tenantry:worker/v1` and the WASI subset.
pub(crate) fn base_linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    v1::add_to_linker(&mut linker)?;
    fetch::add_to_linker(&mut linker)?;
    kv::add_to_linker(&mut linker)?;
    wasi::add_to_linker(&mut linker)?;
    js::add_to_linker(&mut linker)?;
    Ok(linker)
}

/// The linker for one module: the shared one, or, if the module imports preview 1 functions
/// outside the subset, a clone of it with an `ENOSYS` stub of each import's own type. Cloning
/// copies a few dozen `Arc`s, once per Worker load, and only for such modules.
pub(crate) fn linker_for(
    base: &Linker<HostState>,
    module: &Module,
) -> wasmtime::Result<Option<Linker<HostState>>> {
    let mut linker: Option<Linker<HostState>> = None;
    for import in module.imports() {
        let ty = import.ty();
        if abi::classify_import(import.module(), import.name(), &ty) != ImportUse::Enosys {
            continue;
        }
        let Some(func) = ty.func() else { continue };
        let linker = linker.get_or_insert_with(|| {
            let mut clone = base.clone();
            // A module may import the same function twice.
            clone.allow_shadowing(true);
            clone
        });
        linker.func_new(
            import.module(),
            import.name(),
            func.clone(),
            |_caller, _params, results| {
                if let Some(slot) = results.first_mut() {
                    *slot = Val::I32(abi::errno::NOSYS);
                }
                Ok(())
            },
        )?;
    }
    Ok(linker)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ident_splits_namespace_and_script() {
        let id = WorkerIdent::new("production/alice");
        assert_eq!(
            (id.namespace.as_str(), id.script.as_str()),
            ("production", "alice")
        );
        let id = WorkerIdent::new("bare");
        assert_eq!((id.namespace.as_str(), id.script.as_str()), ("", "bare"));
    }

    #[test]
    fn limiter_records_denial() {
        let mut l = MemoryLimiter::new(2 << 16);
        assert!(l.memory_growing(0, 2 << 16, None).unwrap());
        assert!(!l.denied);
        assert!(!l.memory_growing(2 << 16, 3 << 16, None).unwrap());
        assert!(l.denied);
    }
}
