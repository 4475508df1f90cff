//! Service-worker scripts to bytecode and back, through QuickJS's C API (rquickjs wraps this
//! only for modules). The unsafe code of the crate lives here.

use std::ffi::CString;

use rquickjs::{Ctx, Error, Result, Value, qjs};

/// Compiles `source` as a classic script named `name` (the file name in stack traces) and
/// returns its bytecode. A syntax error is left pending on `ctx` as `Error::Exception`.
pub fn compile_script(ctx: &Ctx<'_>, name: &str, source: &[u8]) -> Result<Vec<u8>> {
    let name = CString::new(name)?;
    // JS_Eval reads `input[input_len]` and needs it to be 0.
    let mut input = Vec::with_capacity(source.len() + 1);
    input.extend_from_slice(source);
    input.push(0);
    let raw = ctx.as_raw().as_ptr();
    let flags = (qjs::JS_EVAL_TYPE_GLOBAL | qjs::JS_EVAL_FLAG_COMPILE_ONLY) as i32;
    // SAFETY: `input` is NUL-terminated and outlives the call; `name` is a C string; `raw` is the
    // live context `ctx` borrows.
    let func = unsafe {
        qjs::JS_Eval(
            raw,
            input.as_ptr().cast(),
            source.len() as _,
            name.as_ptr(),
            flags,
        )
    };
    // SAFETY: inspects the tag only.
    if unsafe { qjs::JS_IsException(func) } {
        return Err(Error::Exception);
    }
    let mut size: qjs::size_t = 0;
    // SAFETY: `func` is the live function object JS_Eval returned; `size` is writable.
    let buf =
        unsafe { qjs::JS_WriteObject(raw, &mut size, func, qjs::JS_WRITE_OBJ_BYTECODE as i32) };
    // SAFETY: we own the one reference to `func`.
    unsafe { qjs::JS_FreeValue(raw, func) };
    if buf.is_null() {
        return Err(Error::Exception);
    }
    // SAFETY: JS_WriteObject returned `size` initialised bytes at `buf`, allocated with the
    // context's allocator, which `js_free` releases after the copy.
    let bytes = unsafe { std::slice::from_raw_parts(buf, size as usize).to_vec() };
    unsafe { qjs::js_free(raw, buf.cast()) };
    Ok(bytes)
}

/// Reads script bytecode written by [`compile_script`] and runs it in the global scope,
/// returning the script's completion value. An exception is left pending on `ctx`.
pub fn run_script<'js>(ctx: &Ctx<'js>, bytecode: &[u8]) -> Result<Value<'js>> {
    let raw = ctx.as_raw().as_ptr();
    // SAFETY: `bytecode` is live for the call and was written by this engine build from the
    // compiled bundle the host stores (recompiled from source when the engine changes); QuickJS
    // checks the bytecode version. The data is copied (`JS_READ_OBJ_ROM_DATA` is obsolete).
    let func = unsafe {
        qjs::JS_ReadObject(
            raw,
            bytecode.as_ptr(),
            bytecode.len() as _,
            qjs::JS_READ_OBJ_BYTECODE as i32,
        )
    };
    // SAFETY: inspects the tag only.
    if unsafe { qjs::JS_IsException(func) } {
        return Err(Error::Exception);
    }
    // SAFETY: JS_EvalFunction takes ownership of `func`; the result is a new reference that
    // `Value::from_raw` takes over.
    let ret = unsafe { qjs::JS_EvalFunction(raw, func) };
    // SAFETY: inspects the tag only.
    if unsafe { qjs::JS_IsException(ret) } {
        return Err(Error::Exception);
    }
    // SAFETY: `ret` is an owned, non-exception value of this context.
    Ok(unsafe { Value::from_raw(ctx.clone(), ret) })
}
