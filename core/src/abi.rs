//! The Worker ABI contract (`docs/worker-abi.md`) as data: import modules, function signatures,
//! error codes and required exports, and the upload-time check of a module against them.
//!
//! The host functions themselves live in [`crate::host`]; a test there checks that every
//! signature listed here is linked with exactly this type, so the two cannot drift apart.

use wasmtime::{ExternType, FuncType, Module, ValType};

use crate::engine::CompileError;

/// The import module of ABI version 1.
pub(crate) const WORKER_V1: &str = "tenantry:worker/v1";
/// The JavaScript engine's own import module (`runtimes/js`): how the shared engine reads the
/// bundle of the Worker it runs. Linked for every module, refused in uploads ([`check_module`]).
pub(crate) const JS_V1: &str = "tenantry:js/v1";
/// The WASI preview 1 import module, of which a subset is served (see [`WASI_SUBSET`]).
pub(crate) const WASI_P1: &str = "wasi_snapshot_preview1";

/// Export names.
pub(crate) const EXPORT_MEMORY: &str = "memory";
pub(crate) const EXPORT_FETCH: &str = "tenantry_fetch";
pub(crate) const EXPORT_INITIALIZE: &str = "_initialize";

/// Error codes returned by `tenantry:worker/v1` calls (negative `i32`).
pub(crate) mod code {
    /// No such header / binding.
    pub const NOT_FOUND: i32 = -1;
    /// An argument is malformed.
    pub const INVALID: i32 = -2;
    /// A per-response limit would be exceeded.
    pub const LIMIT: i32 = -3;
    /// No object with this handle.
    pub const BAD_HANDLE: i32 = -4;
    /// Not available here (e.g. a fetch where no invoker runs Workers).
    pub const UNSUPPORTED: i32 = -5;
    /// A fetch named a Worker that does not exist.
    pub const WORKER_NOT_FOUND: i32 = -6;
    /// The called Worker exceeded a limit (CPU, wall clock or memory).
    pub const EXCEEDED: i32 = -7;
    /// A subrequest was refused (egress policy) or failed (unreachable, timed out, malformed
    /// response), or the outbound Worker is missing.
    pub const NETWORK: i32 = -8;
    /// The KV store failed (not the guest's mistake; the operation may be retried).
    pub const STORE: i32 = -9;
}

/// WASI errno values the subset returns.
pub(crate) mod errno {
    pub const SUCCESS: i32 = 0;
    pub const BADF: i32 = 8;
    pub const INVAL: i32 = 28;
    /// Returned by every preview 1 function outside the subset: no files, sockets or preopens.
    pub const NOSYS: i32 = 52;
}

/// A wasm value type as it appears in ABI signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ty {
    I32,
    I64,
}

impl Ty {
    fn matches(self, v: &ValType) -> bool {
        match self {
            Ty::I32 => v.is_i32(),
            Ty::I64 => v.is_i64(),
        }
    }
}

/// The signature of one host function.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HostSig {
    pub name: &'static str,
    pub params: &'static [Ty],
    pub results: &'static [Ty],
}

impl HostSig {
    fn matches(&self, ty: &FuncType) -> bool {
        ty.params().len() == self.params.len()
            && ty.results().len() == self.results.len()
            && ty.params().zip(self.params).all(|(v, t)| t.matches(&v))
            && ty.results().zip(self.results).all(|(v, t)| t.matches(&v))
    }

    /// `(i32, i32) -> i32`, the form used in error messages.
    fn render(&self) -> String {
        let list = |tys: &[Ty]| {
            tys.iter()
                .map(|t| match t {
                    Ty::I32 => "i32",
                    Ty::I64 => "i64",
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        render_sig(&list(self.params), &list(self.results))
    }
}

fn render_sig(params: &str, results: &str) -> String {
    if results.is_empty() {
        format!("({params}) -> ()")
    } else {
        format!("({params}) -> {results}")
    }
}

fn render_func_type(ty: &FuncType) -> String {
    let join = |it: &mut dyn Iterator<Item = ValType>| {
        it.map(|v| v.to_string()).collect::<Vec<_>>().join(", ")
    };
    render_sig(&join(&mut ty.params()), &join(&mut ty.results()))
}

const I: Ty = Ty::I32;

const fn sig(name: &'static str, params: &'static [Ty], results: &'static [Ty]) -> HostSig {
    HostSig {
        name,
        params,
        results,
    }
}

/// Every function of `tenantry:worker/v1` (docs/worker-abi.md, "Functions").
pub(crate) const WORKER_V1_FUNCS: &[HostSig] = &[
    sig("request_method", &[I, I, I], &[I]),
    sig("request_url", &[I, I, I], &[I]),
    sig("request_header", &[I, I, I, I, I], &[I]),
    sig("request_headers", &[I, I, I], &[I]),
    sig("request_body_read", &[I, I, I], &[I]),
    sig("response_set_status", &[I, I], &[I]),
    sig("response_header_set", &[I, I, I, I, I], &[I]),
    sig("response_header_append", &[I, I, I, I, I], &[I]),
    sig("response_body_write", &[I, I, I], &[I]),
    sig("env_get", &[I, I, I, I], &[I]),
    sig("env_kind", &[I, I], &[I]),
    sig("env_list", &[I, I], &[I]),
    sig("log", &[I, I, I], &[I]),
    sig("request_new", &[], &[I]),
    sig("request_clone", &[I], &[I]),
    sig("request_set_method", &[I, I, I], &[I]),
    sig("request_set_url", &[I, I, I], &[I]),
    sig("request_header_set", &[I, I, I, I, I], &[I]),
    sig("request_header_remove", &[I, I, I], &[I]),
    sig("request_body_write", &[I, I, I], &[I]),
    sig("service_fetch", &[I, I, I], &[I]),
    sig("dispatch_fetch", &[I, I, I, I, I, I, I], &[I]),
    sig("fetch", &[I], &[I]),
    sig("fetch_error", &[I, I], &[I]),
    sig("response_status", &[I], &[I]),
    sig("response_header", &[I, I, I, I, I], &[I]),
    sig("response_headers", &[I, I, I], &[I]),
    sig("response_body_read", &[I, I, I], &[I]),
    sig("response_forward", &[I], &[I]),
    sig("kv_get", &[I, I, I, I], &[I]),
    sig("kv_get_many", &[I, I, I, I], &[I]),
    sig("kv_put", &[I, I, I, I, I, I, I, I], &[I]),
    sig("kv_delete", &[I, I, I, I], &[I]),
    sig("kv_list", &[I, I, I, I], &[I]),
];

/// The `wasi_snapshot_preview1` functions given a real implementation (docs/worker-abi.md,
/// "WASI subset"), with their witx signatures.
pub(crate) const WASI_SUBSET: &[HostSig] = &[
    sig("fd_write", &[I, I, I, I], &[I]),
    sig("environ_sizes_get", &[I, I], &[I]),
    sig("environ_get", &[I, I], &[I]),
    sig("args_sizes_get", &[I, I], &[I]),
    sig("args_get", &[I, I], &[I]),
    sig("clock_time_get", &[I, Ty::I64, I], &[I]),
    sig("clock_res_get", &[I, I], &[I]),
    sig("random_get", &[I, I], &[I]),
    sig("proc_exit", &[I], &[]),
    sig("sched_yield", &[], &[I]),
    sig("fd_prestat_get", &[I, I], &[I]),
    sig("poll_oneoff", &[I, I, I, I], &[I]),
];

/// Every function of `tenantry:js/v1`.
pub(crate) const JS_V1_FUNCS: &[HostSig] = &[sig("code_read", &[I, I], &[I])];

/// How one function import is satisfied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ImportUse {
    /// By a host function of the shared linker (v1 or the WASI subset).
    Host,
    /// By a stub returning `ENOSYS`, linked per module with the import's own type: any other
    /// preview 1 function whose result is a single `i32` (an errno).
    Enosys,
    /// Not at all; the message names the import and, if the name is known, the expected type.
    Rejected(String),
}

/// Decides how the import `module::name` of type `ty` is satisfied.
pub(crate) fn classify_import(module: &str, name: &str, ty: &ExternType) -> ImportUse {
    let qualified = format!("{module}::{name}");
    let table = match module {
        WORKER_V1 => WORKER_V1_FUNCS,
        WASI_P1 => WASI_SUBSET,
        JS_V1 => JS_V1_FUNCS,
        _ => return ImportUse::Rejected(qualified),
    };
    let known = table.iter().find(|s| s.name == name);
    let ExternType::Func(func) = ty else {
        return ImportUse::Rejected(match known {
            Some(s) => format!("{qualified} (not a function; expected {})", s.render()),
            None => qualified,
        });
    };
    match known {
        Some(s) if s.matches(func) => ImportUse::Host,
        Some(s) => ImportUse::Rejected(format!(
            "{qualified} with type {} (expected {})",
            render_func_type(func),
            s.render()
        )),
        None if module == WASI_P1
            && func.results().len() == 1
            && func.results().all(|r| r.is_i32()) =>
        {
            ImportUse::Enosys
        }
        None => ImportUse::Rejected(qualified),
    }
}

/// Checks a module against the Worker ABI at upload time, so that a module that passes always
/// links: every import is known with the right type, and the required exports exist.
pub(crate) fn check_module(module: &Module) -> Result<(), CompileError> {
    check_guest(module, false)
}

/// [`check_module`] for the JavaScript engine, which alone may import `tenantry:js/v1`.
pub(crate) fn check_js_engine(module: &Module) -> Result<(), CompileError> {
    check_guest(module, true)
}

fn check_guest(module: &Module, js_engine: bool) -> Result<(), CompileError> {
    let rejected: Vec<String> = module
        .imports()
        .filter_map(|i| match classify_import(i.module(), i.name(), &i.ty()) {
            ImportUse::Rejected(message) => Some(message),
            // The engine's interface is the engine's alone: a wasm Worker has no bundle to read.
            ImportUse::Host if i.module() == JS_V1 && !js_engine => Some(format!(
                "{JS_V1}::{} (the JavaScript engine's own interface)",
                i.name()
            )),
            ImportUse::Host | ImportUse::Enosys => None,
        })
        .collect();
    if !rejected.is_empty() {
        return Err(CompileError::UnknownImports(rejected));
    }

    // The pooling allocator reserves one memory and one table per instance slot.
    let resources = module.resources_required();
    if resources.num_memories > 1 {
        return Err(CompileError::Invalid(format!(
            "a Worker may define at most one memory, this module defines {}",
            resources.num_memories
        )));
    }
    if resources.num_tables > 1 {
        return Err(CompileError::Invalid(format!(
            "a Worker may define at most one table, this module defines {}",
            resources.num_tables
        )));
    }

    match module.get_export(EXPORT_MEMORY) {
        Some(ExternType::Memory(m)) if !m.is_64() && !m.is_shared() => {}
        Some(ExternType::Memory(_)) => {
            return Err(bad_export(
                "export `memory` must be a 32-bit, unshared linear memory",
            ));
        }
        Some(_) => return Err(bad_export("export `memory` must be a memory")),
        None => {
            return Err(bad_export(
                "missing export `memory` (the guest's linear memory)",
            ));
        }
    }
    check_func_export(module, EXPORT_FETCH, &[], &[I], true)?;
    check_func_export(module, EXPORT_INITIALIZE, &[], &[], false)?;
    Ok(())
}

fn check_func_export(
    module: &Module,
    name: &'static str,
    params: &'static [Ty],
    results: &'static [Ty],
    required: bool,
) -> Result<(), CompileError> {
    let expected = sig(name, params, results);
    match module.get_export(name) {
        Some(ExternType::Func(f)) if expected.matches(&f) => Ok(()),
        Some(ExternType::Func(f)) => Err(bad_export(&format!(
            "export `{name}` has type {}, expected {}",
            render_func_type(&f),
            expected.render()
        ))),
        Some(_) => Err(bad_export(&format!(
            "export `{name}` must be a function {}",
            expected.render()
        ))),
        None if required => Err(bad_export(&format!(
            "missing export `{name}`: {}",
            expected.render()
        ))),
        None => Ok(()),
    }
}

fn bad_export(message: &str) -> CompileError {
    CompileError::BadExport(message.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::engine;

    fn check(wat: &str) -> Result<Vec<u8>, CompileError> {
        engine().precompile(wat.as_bytes())
    }

    const EXPORTS: &str = r#"(memory (export "memory") 1)
        (func (export "tenantry_fetch") (result i32) i32.const 0)"#;

    #[test]
    fn minimal_module_passes() {
        check(&format!("(module {EXPORTS})")).unwrap();
    }

    #[test]
    fn every_listed_import_passes_and_stubs_are_accepted() {
        let mut imports = String::new();
        for (module, table) in [(WORKER_V1, WORKER_V1_FUNCS), (WASI_P1, WASI_SUBSET)] {
            for s in table {
                let p: Vec<_> = s
                    .params
                    .iter()
                    .map(|t| if *t == I { "i32" } else { "i64" })
                    .collect();
                let r = if s.results.is_empty() {
                    ""
                } else {
                    "(result i32)"
                };
                imports.push_str(&format!(
                    "(import \"{module}\" \"{}\" (func (param {}) {r}))\n",
                    s.name,
                    p.join(" ")
                ));
            }
        }
        imports.push_str(
            "(import \"wasi_snapshot_preview1\" \"path_open\" \
             (func (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))",
        );
        check(&format!("(module {imports} {EXPORTS})")).unwrap();
    }

    #[test]
    fn unknown_imports_are_all_named() {
        let err = check(
            r#"(module
                (import "env" "abort" (func))
                (import "tenantry:worker/v1" "kv_watch" (func (param i32) (result i32)))
                (import "wasi_snapshot_preview1" "proc_raise_void" (func (param i32)))
                (import "env" "mem" (memory 1))
                (func (export "tenantry_fetch") (result i32) i32.const 0))"#,
        )
        .unwrap_err();
        let CompileError::UnknownImports(names) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(
            names,
            &[
                "env::abort",
                "tenantry:worker/v1::kv_watch",
                "wasi_snapshot_preview1::proc_raise_void",
                "env::mem"
            ]
        );
        assert!(
            err.to_string()
                .contains("env::abort, tenantry:worker/v1::kv_watch")
        );
    }

    #[test]
    fn wrong_import_type_names_the_expected_type() {
        let err = check(&format!(
            r#"(module
                (import "tenantry:worker/v1" "log" (func (param i32 i32) (result i32)))
                (import "wasi_snapshot_preview1" "clock_time_get"
                    (func (param i32 i32 i32) (result i32)))
                {EXPORTS})"#
        ))
        .unwrap_err();
        assert_eq!(
            err,
            CompileError::UnknownImports(vec![
                "tenantry:worker/v1::log with type (i32, i32) -> i32 \
                 (expected (i32, i32, i32) -> i32)"
                    .into(),
                "wasi_snapshot_preview1::clock_time_get with type (i32, i32, i32) -> i32 \
                 (expected (i32, i64, i32) -> i32)"
                    .into(),
            ])
        );
    }

    #[test]
    fn missing_or_mistyped_exports() {
        let no_memory =
            check(r#"(module (func (export "tenantry_fetch") (result i32) i32.const 0))"#)
                .unwrap_err();
        assert!(matches!(&no_memory, CompileError::BadExport(m) if m.contains("`memory`")));

        let no_fetch = check(r#"(module (memory (export "memory") 1))"#).unwrap_err();
        assert_eq!(
            no_fetch,
            CompileError::BadExport("missing export `tenantry_fetch`: () -> i32".into())
        );

        let bad_fetch =
            check(r#"(module (memory (export "memory") 1) (func (export "tenantry_fetch")))"#)
                .unwrap_err();
        assert_eq!(
            bad_fetch,
            CompileError::BadExport(
                "export `tenantry_fetch` has type () -> (), expected () -> i32".into()
            )
        );

        let bad_init = check(&format!(
            r#"(module {EXPORTS} (func (export "_initialize") (result i32) i32.const 1))"#
        ))
        .unwrap_err();
        assert!(matches!(&bad_init, CompileError::BadExport(m) if m.contains("`_initialize`")));

        let memory_is_global = check(
            r#"(module (global (export "memory") i32 (i32.const 0))
                (func (export "tenantry_fetch") (result i32) i32.const 0))"#,
        )
        .unwrap_err();
        assert!(
            matches!(&memory_is_global, CompileError::BadExport(m) if m.contains("must be a memory"))
        );
    }

    #[test]
    fn invalid_wasm_is_invalid() {
        assert!(matches!(
            check("(module (func"),
            Err(CompileError::Invalid(_))
        ));
    }
}
