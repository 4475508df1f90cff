//! `tenantry:js/v1`: what the shared JavaScript engine (`runtimes/js`) needs beyond the Worker
//! ABI. Every JavaScript Worker runs the same engine module; what makes it *this* Worker is its
//! bundle (compiled modules, or the sources when the engine compiles them at upload), which the
//! engine reads with `code_read`. For a wasm Worker the bundle is empty, and uploads importing
//! this module are refused (`abi::check_module`).

use wasmtime::{Caller, Linker};

use super::HostState;
use super::v1::return_value;
use crate::abi::JS_V1;

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(JS_V1, "code_read", code_read)?;
    Ok(())
}

/// `code_read(out_ptr, out_cap)`: the Worker's bundle, by the buffer rule.
fn code_read(
    mut caller: Caller<'_, HostState>,
    out_ptr: i32,
    out_cap: i32,
) -> wasmtime::Result<i32> {
    // A cheap clone (shared bytes), so the borrow of the state ends before guest memory is written.
    let code = caller.data().code.clone();
    return_value(&mut caller, &code, out_ptr, out_cap, "code_read")
}
