//! Import resolution against the bundle, and loading of the modules it names.
//!
//! The main module is imported by name (`Module::import`, QuickJS's `JS_LoadModule`), which
//! loads it through the loader, then its static imports, recursively, then evaluates it; so
//! every module of a Worker, main included, is declared by [`BundleLoader`]. Both look at the bundle of
//! the current Worker, kept here in a thread-local registry:
//! - the resolver normalises a specifier against the importing module's name (`./lib/x.js` from
//!   `src/a.js` is `src/lib/x.js`) and refuses names the bundle does not have;
//! - the loader compiles an ES module from source (compile mode, recording its bytecode), reads
//!   it from bytecode (run mode), or makes a text or data module (`export default` a string or an
//!   `ArrayBuffer`, as Cloudflare's Text and Data modules).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use rquickjs::loader::{ImportAttributes, Loader, Resolver};
use rquickjs::module::{Declarations, Exports, ModuleDef};
use rquickjs::{ArrayBuffer, Ctx, Error, Module, Result, WriteOptions, WriteOptionsEndianness};

use crate::bundle::{Bundle, Kind};

/// One module the registry can load: where its bytes are in the shared buffer.
#[derive(Debug, Clone)]
struct Slot {
    kind: Kind,
    data: std::ops::Range<usize>,
}

/// The modules of the current Worker.
#[derive(Default)]
struct Registry {
    /// The bundle's bytes (source in compile mode, compiled in run mode).
    bytes: Rc<[u8]>,
    slots: HashMap<String, Slot>,
    /// Compile mode: the bytecode of every ES module declared so far, by name.
    compiled: Option<HashMap<String, Vec<u8>>>,
    /// The first import that could not be resolved: (importing module, specifier).
    unresolved: Option<(String, String)>,
}

thread_local! {
    static REGISTRY: RefCell<Registry> = RefCell::new(Registry::default());
}

/// Makes `bundle` (parsed from `bytes`) the source of modules. `compile` records the bytecode of
/// each ES module the loader declares, for [`take_compiled`].
pub fn register(bytes: Rc<[u8]>, bundle: &Bundle<'_>, compile: bool) {
    let base = bytes.as_ptr() as usize;
    let slots = bundle
        .entries
        .iter()
        .map(|e| {
            let start = e.data.as_ptr() as usize - base;
            let slot = Slot {
                kind: e.kind,
                data: start..start + e.data.len(),
            };
            (e.name.to_string(), slot)
        })
        .collect();
    REGISTRY.with(|r| {
        *r.borrow_mut() = Registry {
            bytes,
            slots,
            compiled: compile.then(HashMap::new),
            unresolved: None,
        }
    });
}

/// Compile mode: the bytecode recorded for `name`, if the loader declared it.
pub fn take_compiled(name: &str) -> Option<Vec<u8>> {
    REGISTRY.with(|r| r.borrow_mut().compiled.as_mut()?.remove(name))
}

/// Compile mode: records bytecode declared outside the loader (the main module).
pub fn record_compiled(name: &str, bytecode: Vec<u8>) {
    REGISTRY.with(|r| {
        if let Some(map) = r.borrow_mut().compiled.as_mut() {
            map.insert(name.to_string(), bytecode);
        }
    });
}

/// The first unresolvable import met since [`register`]: (importing module, specifier).
pub fn unresolved() -> Option<(String, String)> {
    REGISTRY.with(|r| r.borrow().unresolved.clone())
}

/// The bytecode format this engine writes: little-endian, with debug information (line numbers
/// for stack traces) and source (for `Function.prototype.toString`).
pub fn write_options() -> WriteOptions {
    WriteOptions {
        endianness: WriteOptionsEndianness::Little,
        ..WriteOptions::default()
    }
}

/// Resolves `specifier` as imported from `base`: relative specifiers (`./`, `../`) against
/// `base`'s directory, others from the bundle's root; `.` and `..` segments removed. `None` if
/// the specifier climbs above the root.
pub fn normalize(base: &str, specifier: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    let relative = specifier.starts_with("./") || specifier.starts_with("../");
    if relative && let Some((dir, _)) = base.rsplit_once('/') {
        parts.extend(dir.split('/'));
    }
    for segment in specifier.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            s => parts.push(s),
        }
    }
    // Names in a bundle are written without a leading "./".
    Some(parts.join("/"))
}

/// The runtime's resolver: the bundle's names only.
pub struct BundleResolver;

impl Resolver for BundleResolver {
    fn resolve<'js>(
        &mut self,
        _ctx: &Ctx<'js>,
        base: &str,
        name: &str,
        _attributes: Option<ImportAttributes<'js>>,
    ) -> Result<String> {
        let found = normalize(base, name)
            .filter(|n| REGISTRY.with(|r| r.borrow().slots.contains_key(n)) || name == base);
        match found {
            Some(n) => Ok(n),
            None => {
                REGISTRY.with(|r| {
                    r.borrow_mut()
                        .unresolved
                        .get_or_insert_with(|| (base.to_string(), name.to_string()));
                });
                Err(Error::new_resolving_message(
                    base,
                    name,
                    format!("cannot resolve import \"{name}\" (no such module in the Worker)"),
                ))
            }
        }
    }
}

/// The runtime's loader: declares a module of the bundle (see the module docs).
pub struct BundleLoader;

impl Loader for BundleLoader {
    fn load<'js>(
        &mut self,
        ctx: &Ctx<'js>,
        name: &str,
        _attributes: Option<ImportAttributes<'js>>,
    ) -> Result<Module<'js>> {
        // The borrow ends before any JS runs: declaring a module loads its imports, re-entering.
        let (bytes, slot, compile) = REGISTRY.with(|r| {
            let r = r.borrow();
            let slot = r.slots.get(name).cloned();
            (r.bytes.clone(), slot, r.compiled.is_some())
        });
        let slot = slot.ok_or_else(|| Error::new_loading_message(name, "no such module"))?;
        let data = &bytes[slot.data.clone()];
        declare(ctx, name, slot.kind, data, compile)
    }
}

/// Declares the module `name` of kind `kind` from `data` (see [`BundleLoader`]).
pub fn declare<'js>(
    ctx: &Ctx<'js>,
    name: &str,
    kind: Kind,
    data: &[u8],
    compile: bool,
) -> Result<Module<'js>> {
    match kind {
        Kind::ModuleSource => {
            let module = Module::declare(ctx.clone(), name, data)?;
            if compile {
                record_compiled(name, module.write(write_options())?);
            }
            Ok(module)
        }
        Kind::ModuleBytecode => {
            // SAFETY: the host hands in the compiled bundle this engine build wrote at upload (it
            // recompiles from source when the engine changes); QuickJS checks the bytecode version.
            // Its imports are loaded by QuickJS when this returns to it (`js_resolve_module`).
            unsafe { Module::load(ctx.clone(), data) }
        }
        Kind::Text | Kind::Data => Module::declare_def::<Synthetic, _>(ctx.clone(), name),
        Kind::ScriptSource | Kind::ScriptBytecode => Err(Error::new_loading_message(
            name,
            "a service-worker script cannot be imported as a module",
        )),
    }
}

/// A text or data module: `export default` the entry's content, made when the module is
/// evaluated (a data module's `ArrayBuffer` is a fresh copy per instance).
struct Synthetic;

impl ModuleDef for Synthetic {
    fn declare(decl: &Declarations<'_>) -> Result<()> {
        decl.declare("default")?;
        Ok(())
    }

    fn evaluate<'js>(ctx: &Ctx<'js>, exports: &Exports<'js>) -> Result<()> {
        let name: String = exports.module().name()?;
        let (bytes, slot) = REGISTRY.with(|r| {
            let r = r.borrow();
            (r.bytes.clone(), r.slots.get(&name).cloned())
        });
        let slot = slot.ok_or_else(|| Error::new_loading_message(&name, "no such module"))?;
        let data = &bytes[slot.data];
        match slot.kind {
            Kind::Text => {
                let text = std::str::from_utf8(data).map_err(|_| {
                    Error::new_loading_message(&name, "a text module must be UTF-8")
                })?;
                exports.export("default", rquickjs::String::from_str(ctx.clone(), text)?)?;
            }
            _ => {
                exports.export("default", ArrayBuffer::new_copy(ctx.clone(), data)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specifiers_normalise_against_the_importer() {
        assert_eq!(
            normalize("worker.js", "./util.js").as_deref(),
            Some("util.js")
        );
        assert_eq!(
            normalize("src/a.js", "./lib/x.js").as_deref(),
            Some("src/lib/x.js")
        );
        assert_eq!(normalize("src/a.js", "../b.js").as_deref(), Some("b.js"));
        assert_eq!(normalize("src/a.js", "util.js").as_deref(), Some("util.js"));
        assert_eq!(
            normalize("a.js", "./x/../y/./z.js").as_deref(),
            Some("y/z.js")
        );
        assert_eq!(normalize("a.js", "../escape.js"), None);
    }
}
