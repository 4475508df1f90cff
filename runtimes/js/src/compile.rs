//! Compile mode (`tenantry_js_compile`), run by the host at upload: the source bundle in, the
//! compiled bundle (or a one-line error naming file, line and column) out.

use std::rc::Rc;

use rquickjs::promise::PromiseState;
use rquickjs::{Ctx, Function, Module, Object, Value};

use crate::bundle::{Bundle, Format, Kind, Writer};
use crate::engine::{self, Settled};
use crate::error::{Thrown, compile_message};
use crate::{bytecode, host, modules, run};

/// The message for a Worker that defines no handler.
const NO_HANDLER: &str =
    "no fetch handler (export default { fetch } or addEventListener(\"fetch\", ...))";

/// The export: reads the source bundle, answers `200` + compiled bundle or `400` + the reason.
pub fn export() -> i32 {
    engine::begin_invocation();
    let source = match host::code_read() {
        Ok(source) => source,
        Err(e) => {
            host::log(host::LOG_ERROR, &format!("code_read failed: {e:?}"));
            return 1;
        }
    };
    let written = match compile(source) {
        Ok(compiled) => host::response_body(&compiled),
        Err(message) => host::response_status(400)
            .and_then(|()| host::response_header(b"content-type", b"text/plain;charset=UTF-8"))
            .and_then(|()| host::response_body(message.as_bytes())),
    };
    match written {
        Ok(()) => 0,
        Err(code) => {
            host::log(
                host::LOG_ERROR,
                &format!("writing the compile result failed ({code})"),
            );
            1
        }
    }
}

/// Compiles a source bundle into a compiled bundle; `Err` is the one-line `400` message.
pub fn compile(source: Vec<u8>) -> Result<Vec<u8>, String> {
    let engine = engine::get()?;
    let bytes: Rc<[u8]> = source.into();
    let bundle = Bundle::parse(&bytes).map_err(|e| e.to_string())?;
    check_kinds(&bundle)?;
    modules::register(bytes.clone(), &bundle, true);
    engine.ctx.with(|ctx| match bundle.format {
        Format::Modules => compile_modules(&ctx, engine, &bundle),
        Format::ServiceWorker => compile_script(&ctx, engine, &bundle),
    })
}

/// Each format takes its own kinds, and names are unique.
fn check_kinds(bundle: &Bundle<'_>) -> Result<(), String> {
    let main = bundle.main();
    for (i, e) in bundle.entries.iter().enumerate() {
        if bundle.entries[..i].iter().any(|o| o.name == e.name) {
            return Err(format!("{}: two modules have this name", e.name));
        }
        let fits = match (bundle.format, e.kind) {
            (Format::Modules, Kind::ModuleSource) => true,
            (Format::Modules, Kind::Text | Kind::Data) => i > 0,
            (Format::ServiceWorker, Kind::ScriptSource) => i == 0,
            _ => false,
        };
        if !fits {
            let what = match bundle.format {
                Format::Modules => {
                    "an ES modules Worker takes ES modules, text and data modules, its main module an ES module"
                }
                Format::ServiceWorker => "a service-worker Worker is one script",
            };
            return Err(format!("{}: {what} (main module: {})", e.name, main.name));
        }
    }
    Ok(())
}

fn compile_modules<'js>(
    ctx: &Ctx<'js>,
    engine: &engine::Engine,
    bundle: &Bundle<'_>,
) -> Result<Vec<u8>, String> {
    let main = bundle.main();
    let namespace = evaluate_main(ctx, bundle)?;
    let default: Value = namespace
        .get("default")
        .unwrap_or_else(|_| Value::new_undefined(ctx.clone()));
    if !has_handler(ctx, engine, default) {
        return Err(format!("{}: {NO_HANDLER}", main.name));
    }
    let mut out = Writer::new(Format::Modules);
    for e in &bundle.entries {
        match e.kind {
            Kind::ModuleSource => {
                // Modules main does not import are compiled here (they may be imported later
                // with `import()`), so their syntax errors are found at upload too.
                let code = match modules::take_compiled(e.name) {
                    Some(code) => code,
                    None => {
                        modules::declare(ctx, e.name, e.kind, e.data, true)
                            .map_err(|err| failure(ctx, bundle, err, e.name))?;
                        modules::take_compiled(e.name).ok_or_else(|| {
                            format!("{}: compiled, but no bytecode was recorded", e.name)
                        })?
                    }
                };
                out.push(Kind::ModuleBytecode, e.name, &code)
            }
            kind => out.push(kind, e.name, e.data),
        }
        .map_err(|err| err.to_string())?;
    }
    Ok(out.finish())
}

/// Imports the main module (loading and compiling every module it reaches) and runs its
/// top level; its namespace, or the `400` message.
fn evaluate_main<'js>(ctx: &Ctx<'js>, bundle: &Bundle<'_>) -> Result<Object<'js>, String> {
    let main = bundle.main().name;
    let promise = Module::import(ctx, main).map_err(|e| failure(ctx, bundle, e, main))?;
    if engine::drive(ctx, &promise) == Settled::Never {
        return Err(format!(
            "{main}: the module's top-level await never settles"
        ));
    }
    match promise.state() {
        PromiseState::Resolved => promise
            .result::<Object>()
            .and_then(Result::ok)
            .ok_or_else(|| format!("{main}: the module has no namespace")),
        _ => {
            let err = promise
                .result::<Value>()
                .and_then(Result::err)
                .unwrap_or(rquickjs::Error::Exception);
            Err(failure(ctx, bundle, err, main))
        }
    }
}

fn compile_script(
    ctx: &Ctx<'_>,
    engine: &engine::Engine,
    bundle: &Bundle<'_>,
) -> Result<Vec<u8>, String> {
    let main = bundle.main();
    let code = bytecode::compile_script(ctx, main.name, main.data)
        .map_err(|e| failure(ctx, bundle, e, main.name))?;
    // Bindings are globals in this format; the top level may read them. Without them (a host
    // that gives none at upload) a reference fails here as it would at run time.
    run::install_global_bindings(ctx).map_err(|e| failure(ctx, bundle, e, main.name))?;
    bytecode::run_script(ctx, &code).map_err(|e| failure(ctx, bundle, e, main.name))?;
    while ctx.execute_pending_job() {}
    let has_listener = engine
        .internals
        .clone()
        .restore(ctx)
        .and_then(|i| i.get::<_, Function>("hasListener"))
        .and_then(|f| f.call::<_, bool>(()))
        .unwrap_or(false);
    if !has_listener {
        return Err(format!("{}: {NO_HANDLER}", main.name));
    }
    let mut out = Writer::new(Format::ServiceWorker);
    out.push(Kind::ScriptBytecode, main.name, &code)
        .map_err(|e| e.to_string())?;
    Ok(out.finish())
}

fn has_handler<'js>(ctx: &Ctx<'js>, engine: &engine::Engine, default: Value<'js>) -> bool {
    engine
        .internals
        .clone()
        .restore(ctx)
        .and_then(|i| i.get::<_, Function>("hasHandler"))
        .and_then(|f| f.call::<_, bool>((default,)))
        .unwrap_or(false)
}

/// The `400` message for an error while compiling or evaluating: an import that did not
/// resolve, else the exception's `file:line:col: Name: message`.
fn failure(ctx: &Ctx<'_>, bundle: &Bundle<'_>, err: rquickjs::Error, file: &str) -> String {
    let thrown = if err.is_exception() {
        Some(Thrown::catch(ctx))
    } else {
        None
    };
    if let Some((importer, specifier)) = modules::unresolved() {
        let (line, col) = bundle
            .get(&importer)
            .and_then(|e| find_specifier(e.data, &specifier))
            .unwrap_or((1, 1));
        return format!("{importer}:{line}:{col}: cannot resolve import \"{specifier}\"");
    }
    match thrown {
        Some(thrown) => compile_message(&thrown, file),
        None => format!("{file}: {err}"),
    }
}

/// Where `specifier` is written, quoted, in `source`: (line, column), 1-based, of the quote.
fn find_specifier(source: &[u8], specifier: &str) -> Option<(usize, usize)> {
    let text = std::str::from_utf8(source).ok()?;
    let at = [format!("\"{specifier}\""), format!("'{specifier}'")]
        .iter()
        .filter_map(|q| text.find(q.as_str()))
        .min()?;
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Some((line, col))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(format: Format, entries: &[(Kind, &str, &str)]) -> Vec<u8> {
        let mut w = Writer::new(format);
        for (kind, name, data) in entries {
            w.push(*kind, name, data.as_bytes()).unwrap();
        }
        w.finish()
    }

    /// Compiles on a thread of its own: like the host's fresh instance per upload, each compile
    /// gets a fresh engine (a context keeps every module it declared).
    fn fresh(source: Vec<u8>) -> Result<Vec<u8>, String> {
        std::thread::spawn(move || compile(source)).join().unwrap()
    }

    fn modules(entries: &[(Kind, &str, &str)]) -> Result<Vec<u8>, String> {
        fresh(source(Format::Modules, entries))
    }

    #[test]
    fn a_module_worker_compiles_to_bytecode() {
        let out = modules(&[
            (Kind::ModuleSource, "worker.js", "import { x } from './lib/util.js';\nexport default { fetch() { return new Response(x) } }"),
            (Kind::ModuleSource, "lib/util.js", "import t from '../t.txt'; export const x = t;"),
            (Kind::Text, "t.txt", "hi"),
            (Kind::ModuleSource, "unused.js", "export const y = 1;"),
        ])
        .unwrap();
        let b = Bundle::parse(&out).unwrap();
        let kinds: Vec<_> = b.entries.iter().map(|e| (e.kind, e.name)).collect();
        assert_eq!(
            kinds,
            [
                (Kind::ModuleBytecode, "worker.js"),
                (Kind::ModuleBytecode, "lib/util.js"),
                (Kind::Text, "t.txt"),
                (Kind::ModuleBytecode, "unused.js"),
            ]
        );
    }

    #[test]
    fn syntax_errors_name_file_line_and_column() {
        let err = modules(&[(
            Kind::ModuleSource,
            "worker.js",
            "export default {\n  fetch() {\n    return 1 +;\n  }\n}",
        )])
        .unwrap_err();
        assert!(err.starts_with("worker.js:3:"), "{err}");
        assert!(err.contains("SyntaxError"), "{err}");
        let err = modules(&[
            (
                Kind::ModuleSource,
                "worker.js",
                "import './util.js'; export default { fetch() {} }",
            ),
            (Kind::ModuleSource, "util.js", "\nlet = ;"),
        ])
        .unwrap_err();
        assert!(err.starts_with("util.js:2:"), "{err}");
        let err = modules(&[
            (
                Kind::ModuleSource,
                "worker.js",
                "export default { fetch() {} }",
            ),
            (Kind::ModuleSource, "unused.js", "}"),
        ])
        .unwrap_err();
        assert!(err.starts_with("unused.js:1:1: SyntaxError"), "{err}");
    }

    #[test]
    fn unresolvable_imports_name_the_importer() {
        let err = modules(&[
            (
                Kind::ModuleSource,
                "worker.js",
                "import { x } from './util.js'; export default { fetch() {} }",
            ),
            (
                Kind::ModuleSource,
                "util.js",
                "\n  import y from \"./missing.js\"; export const x = y;",
            ),
        ])
        .unwrap_err();
        assert_eq!(err, "util.js:2:17: cannot resolve import \"./missing.js\"");
    }

    #[test]
    fn a_missing_handler_is_refused() {
        for src in [
            "export default {}",
            "export const fetch = () => 1;",
            "export default class { get() {} }",
        ] {
            let err = modules(&[(Kind::ModuleSource, "worker.js", src)]).unwrap_err();
            assert_eq!(err, format!("worker.js: {NO_HANDLER}"), "{src}");
        }
        modules(&[(
            Kind::ModuleSource,
            "worker.js",
            "export default class { fetch() {} }",
        )])
        .unwrap();
        let err = fresh(source(
            Format::ServiceWorker,
            &[(Kind::ScriptSource, "sw.js", "1 + 1")],
        ))
        .unwrap_err();
        assert_eq!(err, format!("sw.js: {NO_HANDLER}"));
    }

    #[test]
    fn top_level_exceptions_are_upload_errors() {
        let err = modules(&[(
            Kind::ModuleSource,
            "worker.js",
            "\n\nnull.x;\nexport default { fetch() {} }",
        )])
        .unwrap_err();
        assert!(err.starts_with("worker.js:3:"), "{err}");
        assert!(err.contains("TypeError"), "{err}");
    }

    #[test]
    fn a_service_worker_compiles_to_script_bytecode() {
        let out = fresh(source(
            Format::ServiceWorker,
            &[(
                Kind::ScriptSource,
                "sw.js",
                "addEventListener('fetch', e => e.respondWith(new Response('x')))",
            )],
        ))
        .unwrap();
        let b = Bundle::parse(&out).unwrap();
        assert_eq!(b.format, Format::ServiceWorker);
        assert_eq!(b.main().kind, Kind::ScriptBytecode);
        let err = fresh(source(
            Format::ServiceWorker,
            &[(Kind::ScriptSource, "sw.js", "\n  )")],
        ))
        .unwrap_err();
        assert!(err.starts_with("sw.js:2:3: SyntaxError"), "{err}");
    }

    #[test]
    fn kinds_are_checked() {
        let err = modules(&[(Kind::Text, "a.txt", "x")]).unwrap_err();
        assert!(err.starts_with("a.txt: an ES modules Worker"), "{err}");
        let err = modules(&[
            (Kind::ModuleSource, "a.js", "export default { fetch() {} }"),
            (Kind::ModuleSource, "a.js", ""),
        ])
        .unwrap_err();
        assert_eq!(err, "a.js: two modules have this name");
    }

    #[test]
    fn specifiers_are_found_in_the_source() {
        assert_eq!(find_specifier(b"a\n  import 'x.js'", "x.js"), Some((2, 10)));
        assert_eq!(find_specifier(b"import \"y\"", "x"), None);
    }
}
