//! The raw `tenantry:worker/v1` imports, exactly as `docs/worker-abi.md` lists them.
//!
//! Every function returns an `i32`: `>= 0` is success (usually a length), a negative value is one
//! of the [error codes](crate::Error). Pointers and lengths are offsets into the guest's linear
//! memory; on wasm32 a `*const u8` and a `usize` are both passed as `i32`, so the Rust signatures
//! below have the same wasm type as the ABI's `(i32, …) -> i32`.
//!
//! These are only real on `target_arch = "wasm32"`. Elsewhere (so that `cargo check`, `cargo test`
//! and `cargo doc` work on the build machine) each function is a stub that returns
//! [`UNSUPPORTED`] and touches no memory.
//!
//! Prefer the safe API ([`Request`](crate::Request), [`Response`](crate::Response),
//! [`env`](crate::env), [`log`](crate::log)); this module is for code that wants to manage its own
//! buffers.
//!
//! # Safety
//!
//! Every `(ptr, len)` / `(out_ptr, out_cap)` pair must describe memory the caller owns: readable
//! for inputs, writable for outputs. The host traps the instance on a pair that lies outside linear
//! memory, but it cannot tell a live buffer from a freed one, so Rust's aliasing rules are the
//! caller's to keep.

/// The import module of ABI version 1.
pub const IMPORT_MODULE: &str = "tenantry:worker/v1";

/// Error code: no such header / binding.
pub const NOT_FOUND: i32 = -1;
/// Error code: an argument is malformed.
pub const INVALID: i32 = -2;
/// Error code: a per-response limit would be exceeded.
pub const LIMIT: i32 = -3;
/// Error code: no object with this handle.
pub const BAD_HANDLE: i32 = -4;
/// Error code: reserved for a later version, or not available here (every call off wasm32).
pub const UNSUPPORTED: i32 = -5;
/// Error code: a fetch named a Worker that does not exist.
pub const WORKER_NOT_FOUND: i32 = -6;
/// Error code: the called Worker exceeded a limit (CPU, wall clock or memory).
pub const EXCEEDED: i32 = -7;
/// Error code: a subrequest was refused (egress policy) or failed (unreachable, timed out,
/// malformed response), or the outbound Worker is missing.
pub const NETWORK: i32 = -8;
/// Error code: the KV store failed (the operation may be retried).
pub const STORE: i32 = -9;

/// The handle of the incoming request (read only).
pub const REQUEST: i32 = 0;
/// The handle of the response this invocation returns.
pub const RESPONSE: i32 = 0;

/// `log` level: debug.
pub const LOG_DEBUG: i32 = 0;
/// `log` level: info.
pub const LOG_INFO: i32 = 1;
/// `log` level: warn.
pub const LOG_WARN: i32 = 2;
/// `log` level: error.
pub const LOG_ERROR: i32 = 3;

/// `env_kind` result: a `plain_text` binding.
pub const KIND_PLAIN_TEXT: i32 = 1;
/// `env_kind` result: a `json` binding.
pub const KIND_JSON: i32 = 2;
/// `env_kind` result: a `secret_text` binding.
pub const KIND_SECRET_TEXT: i32 = 3;
/// `env_kind` result: a `service` binding (another Worker of the same namespace).
pub const KIND_SERVICE: i32 = 4;
/// `env_kind` result: a `dispatch_namespace` binding (platform Workers only).
pub const KIND_DISPATCH_NAMESPACE: i32 = 5;
/// `env_kind` result: a `kv_namespace` binding.
pub const KIND_KV_NAMESPACE: i32 = 6;

// rustc gives imports from a module other than `env` a mangled *symbol* name while keeping the
// import *name*, so `log` here cannot collide with libm's `log` from wasi-libc at link time.
#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "tenantry:worker/v1")]
unsafe extern "C" {
    /// Writes the request method, e.g. `GET`. Returns its full length; writes only if it fits.
    pub fn request_method(req: i32, out_ptr: *mut u8, out_cap: usize) -> i32;
    /// Writes the absolute URL (`http://` + `Host` + target). Buffer rule as above.
    pub fn request_url(req: i32, out_ptr: *mut u8, out_cap: usize) -> i32;
    /// Writes one field's value (several joined by `", "`), or returns `NOT_FOUND`.
    pub fn request_header(
        req: i32,
        name_ptr: *const u8,
        name_len: usize,
        out_ptr: *mut u8,
        out_cap: usize,
    ) -> i32;
    /// Writes every field as `name: value\n`, in the order received.
    pub fn request_headers(req: i32, out_ptr: *mut u8, out_cap: usize) -> i32;
    /// Writes the next body chunk (at most `out_cap` bytes) and returns how many; `0` at the end.
    pub fn request_body_read(req: i32, out_ptr: *mut u8, out_cap: usize) -> i32;
    /// Sets the status (`200..=599`; default `200`).
    pub fn response_set_status(resp: i32, status: i32) -> i32;
    /// Replaces every field named `name` with one field.
    pub fn response_header_set(
        resp: i32,
        name_ptr: *const u8,
        name_len: usize,
        val_ptr: *const u8,
        val_len: usize,
    ) -> i32;
    /// Adds a field, keeping earlier ones of the same name.
    pub fn response_header_append(
        resp: i32,
        name_ptr: *const u8,
        name_len: usize,
        val_ptr: *const u8,
        val_len: usize,
    ) -> i32;
    /// Appends body bytes; returns `len`, or `LIMIT`.
    pub fn response_body_write(resp: i32, ptr: *const u8, len: usize) -> i32;
    /// Writes a binding's value (text, or JSON text), or returns `NOT_FOUND`.
    pub fn env_get(name_ptr: *const u8, name_len: usize, out_ptr: *mut u8, out_cap: usize) -> i32;
    /// Returns a binding's kind (`KIND_*`), or `NOT_FOUND`.
    pub fn env_kind(name_ptr: *const u8, name_len: usize) -> i32;
    /// Writes the Worker's binding names joined by `\n`, in declaration order (empty if none).
    /// Buffer rule as above.
    pub fn env_list(out_ptr: *mut u8, out_cap: usize) -> i32;
    /// Logs one line at `level` (`LOG_*`); the host truncates it at 4 KiB.
    pub fn log(level: i32, ptr: *const u8, len: usize) -> i32;
    /// Creates an outgoing request (`GET /`, no headers); returns its handle (`>= 1`).
    pub fn request_new() -> i32;
    /// Copies a request (e.g. the incoming one, handle 0) into a new outgoing request handle.
    pub fn request_clone(req: i32) -> i32;
    /// Sets an outgoing request's method (a token).
    pub fn request_set_method(req: i32, ptr: *const u8, len: usize) -> i32;
    /// Sets an outgoing request's URL (`http(s)://host/path?query`, or `/path?query` keeping the host).
    pub fn request_set_url(req: i32, ptr: *const u8, len: usize) -> i32;
    /// Sets a header of an outgoing request, replacing fields of that name.
    pub fn request_header_set(
        req: i32,
        name_ptr: *const u8,
        name_len: usize,
        val_ptr: *const u8,
        val_len: usize,
    ) -> i32;
    /// Removes every field of that name from an outgoing request; `NOT_FOUND` if none.
    pub fn request_header_remove(req: i32, name_ptr: *const u8, name_len: usize) -> i32;
    /// Appends to an outgoing request's body; returns `len`.
    pub fn request_body_write(req: i32, ptr: *const u8, len: usize) -> i32;
    /// Sends a request to the Worker a `service` binding names; returns a response handle (`>= 1`).
    pub fn service_fetch(binding_ptr: *const u8, binding_len: usize, req: i32) -> i32;
    /// Sends a request to the Worker `name` of a `dispatch_namespace` binding, with per-call limits in `opts` (0 or 16 bytes); returns a response handle.
    pub fn dispatch_fetch(
        binding_ptr: *const u8,
        binding_len: usize,
        name_ptr: *const u8,
        name_len: usize,
        opts_ptr: *const u8,
        opts_len: usize,
        req: i32,
    ) -> i32;
    /// Sends an HTTP subrequest (through the outbound Worker, if one is set); returns a response handle.
    pub fn fetch(req: i32) -> i32;
    /// Writes why the last fetch failed. Buffer rule as above.
    pub fn fetch_error(out_ptr: *mut u8, out_cap: usize) -> i32;
    /// The status of a fetched response.
    pub fn response_status(resp: i32) -> i32;
    /// Writes one header of a fetched response, or returns `NOT_FOUND`.
    pub fn response_header(
        resp: i32,
        name_ptr: *const u8,
        name_len: usize,
        out_ptr: *mut u8,
        out_cap: usize,
    ) -> i32;
    /// Writes every header of a fetched response as `name: value\\n`.
    pub fn response_headers(resp: i32, out_ptr: *mut u8, out_cap: usize) -> i32;
    /// Writes the next chunk of a fetched response's body; `0` at the end.
    pub fn response_body_read(resp: i32, out_ptr: *mut u8, out_cap: usize) -> i32;
    /// Makes a fetched response (status, headers, unread body) this invocation's response.
    pub fn response_forward(resp: i32) -> i32;
    /// Reads a key of a `kv_namespace` binding: a response handle (body = value; `kv-metadata`, `kv-expiration` headers), or `NOT_FOUND`.
    pub fn kv_get(
        binding_ptr: *const u8,
        binding_len: usize,
        key_ptr: *const u8,
        key_len: usize,
    ) -> i32;
    /// Reads 1 to 100 keys in one operation; `keys` is a JSON array of strings. A response handle whose body is a JSON array in the keys' order: `null` or `{"value": text, "metadata"?, "expiration"?}`.
    pub fn kv_get_many(
        binding_ptr: *const u8,
        binding_len: usize,
        keys_ptr: *const u8,
        keys_len: usize,
    ) -> i32;
    /// Writes a key; `opts` is empty or JSON `{expiration, expiration_ttl, metadata}`.
    pub fn kv_put(
        binding_ptr: *const u8,
        binding_len: usize,
        key_ptr: *const u8,
        key_len: usize,
        value_ptr: *const u8,
        value_len: usize,
        opts_ptr: *const u8,
        opts_len: usize,
    ) -> i32;
    /// Deletes a key (absent is fine).
    pub fn kv_delete(
        binding_ptr: *const u8,
        binding_len: usize,
        key_ptr: *const u8,
        key_len: usize,
    ) -> i32;
    /// Lists keys; `opts` is empty or JSON `{prefix, limit, cursor}`; a response handle whose body is Cloudflare's JSON list result.
    pub fn kv_list(
        binding_ptr: *const u8,
        binding_len: usize,
        opts_ptr: *const u8,
        opts_len: usize,
    ) -> i32;
}

#[cfg(not(target_arch = "wasm32"))]
pub use fallback::*;

/// Stubs with the same signatures for non-wasm builds: they return `UNSUPPORTED`.
#[cfg(not(target_arch = "wasm32"))]
#[allow(clippy::missing_safety_doc, clippy::too_many_arguments)]
mod fallback {
    use super::UNSUPPORTED;

    /// Off wasm32: returns `UNSUPPORTED`.
    pub unsafe fn request_method(_req: i32, _out_ptr: *mut u8, _out_cap: usize) -> i32 {
        UNSUPPORTED
    }
    /// Off wasm32: returns `UNSUPPORTED`.
    pub unsafe fn request_url(_req: i32, _out_ptr: *mut u8, _out_cap: usize) -> i32 {
        UNSUPPORTED
    }
    /// Off wasm32: returns `UNSUPPORTED`.
    pub unsafe fn request_header(
        _req: i32,
        _name_ptr: *const u8,
        _name_len: usize,
        _out_ptr: *mut u8,
        _out_cap: usize,
    ) -> i32 {
        UNSUPPORTED
    }
    /// Off wasm32: returns `UNSUPPORTED`.
    pub unsafe fn request_headers(_req: i32, _out_ptr: *mut u8, _out_cap: usize) -> i32 {
        UNSUPPORTED
    }
    /// Off wasm32: returns `UNSUPPORTED`.
    pub unsafe fn request_body_read(_req: i32, _out_ptr: *mut u8, _out_cap: usize) -> i32 {
        UNSUPPORTED
    }
    /// Off wasm32: returns `UNSUPPORTED`.
    pub unsafe fn response_set_status(_resp: i32, _status: i32) -> i32 {
        UNSUPPORTED
    }
    /// Off wasm32: returns `UNSUPPORTED`.
    pub unsafe fn response_header_set(
        _resp: i32,
        _name_ptr: *const u8,
        _name_len: usize,
        _val_ptr: *const u8,
        _val_len: usize,
    ) -> i32 {
        UNSUPPORTED
    }
    /// Off wasm32: returns `UNSUPPORTED`.
    pub unsafe fn response_header_append(
        _resp: i32,
        _name_ptr: *const u8,
        _name_len: usize,
        _val_ptr: *const u8,
        _val_len: usize,
    ) -> i32 {
        UNSUPPORTED
    }
    /// Off wasm32: returns `UNSUPPORTED`.
    pub unsafe fn response_body_write(_resp: i32, _ptr: *const u8, _len: usize) -> i32 {
        UNSUPPORTED
    }
    /// Off wasm32: returns `UNSUPPORTED`.
    pub unsafe fn env_get(
        _name_ptr: *const u8,
        _name_len: usize,
        _out_ptr: *mut u8,
        _out_cap: usize,
    ) -> i32 {
        UNSUPPORTED
    }
    /// Off wasm32: returns `UNSUPPORTED`.
    pub unsafe fn env_kind(_name_ptr: *const u8, _name_len: usize) -> i32 {
        UNSUPPORTED
    }
    /// Off wasm32: returns `UNSUPPORTED`.
    pub unsafe fn env_list(_out_ptr: *mut u8, _out_cap: usize) -> i32 {
        UNSUPPORTED
    }
    /// Off wasm32: returns `UNSUPPORTED`.
    pub unsafe fn log(_level: i32, _ptr: *const u8, _len: usize) -> i32 {
        UNSUPPORTED
    }
    /// Off wasm32: returns `UNSUPPORTED`.
    pub unsafe fn request_new() -> i32 {
        UNSUPPORTED
    }
    /// Off wasm32: returns `UNSUPPORTED`.
    pub unsafe fn request_clone(_req: i32) -> i32 {
        UNSUPPORTED
    }
    /// Off wasm32: returns `UNSUPPORTED`.
    pub unsafe fn request_set_method(_req: i32, _ptr: *const u8, _len: usize) -> i32 {
        UNSUPPORTED
    }
    /// Off wasm32: returns `UNSUPPORTED`.
    pub unsafe fn request_set_url(_req: i32, _ptr: *const u8, _len: usize) -> i32 {
        UNSUPPORTED
    }
    /// Off wasm32: returns `UNSUPPORTED`.
    pub unsafe fn request_header_set(
        _req: i32,
        _name_ptr: *const u8,
        _name_len: usize,
        _val_ptr: *const u8,
        _val_len: usize,
    ) -> i32 {
        UNSUPPORTED
    }
    /// Off wasm32: returns `UNSUPPORTED`.
    pub unsafe fn request_header_remove(_req: i32, _name_ptr: *const u8, _name_len: usize) -> i32 {
        UNSUPPORTED
    }
    /// Off wasm32: returns `UNSUPPORTED`.
    pub unsafe fn request_body_write(_req: i32, _ptr: *const u8, _len: usize) -> i32 {
        UNSUPPORTED
    }
    /// Off wasm32: returns `UNSUPPORTED`.
    pub unsafe fn service_fetch(_binding_ptr: *const u8, _binding_len: usize, _req: i32) -> i32 {
        UNSUPPORTED
    }
    /// Off wasm32: returns `UNSUPPORTED`.
    pub unsafe fn dispatch_fetch(
        _binding_ptr: *const u8,
        _binding_len: usize,
        _name_ptr: *const u8,
        _name_len: usize,
        _opts_ptr: *const u8,
        _opts_len: usize,
        _req: i32,
    ) -> i32 {
        UNSUPPORTED
    }
    /// Off wasm32: returns `UNSUPPORTED`.
    pub unsafe fn fetch(_req: i32) -> i32 {
        UNSUPPORTED
    }
    /// Off wasm32: returns `UNSUPPORTED`.
    pub unsafe fn fetch_error(_out_ptr: *mut u8, _out_cap: usize) -> i32 {
        UNSUPPORTED
    }
    /// Off wasm32: returns `UNSUPPORTED`.
    pub unsafe fn response_status(_resp: i32) -> i32 {
        UNSUPPORTED
    }
    /// Off wasm32: returns `UNSUPPORTED`.
    pub unsafe fn response_header(
        _resp: i32,
        _name_ptr: *const u8,
        _name_len: usize,
        _out_ptr: *mut u8,
        _out_cap: usize,
    ) -> i32 {
        UNSUPPORTED
    }
    /// Off wasm32: returns `UNSUPPORTED`.
    pub unsafe fn response_headers(_resp: i32, _out_ptr: *mut u8, _out_cap: usize) -> i32 {
        UNSUPPORTED
    }
    /// Off wasm32: returns `UNSUPPORTED`.
    pub unsafe fn response_body_read(_resp: i32, _out_ptr: *mut u8, _out_cap: usize) -> i32 {
        UNSUPPORTED
    }
    /// Off wasm32: returns `UNSUPPORTED`.
    pub unsafe fn response_forward(_resp: i32) -> i32 {
        UNSUPPORTED
    }
    /// Off wasm32: returns `UNSUPPORTED`.
    pub unsafe fn kv_get(
        _binding_ptr: *const u8,
        _binding_len: usize,
        _key_ptr: *const u8,
        _key_len: usize,
    ) -> i32 {
        UNSUPPORTED
    }
    /// Off wasm32: returns `UNSUPPORTED`.
    pub unsafe fn kv_get_many(
        _binding_ptr: *const u8,
        _binding_len: usize,
        _keys_ptr: *const u8,
        _keys_len: usize,
    ) -> i32 {
        UNSUPPORTED
    }
    /// Off wasm32: returns `UNSUPPORTED`.
    pub unsafe fn kv_put(
        _binding_ptr: *const u8,
        _binding_len: usize,
        _key_ptr: *const u8,
        _key_len: usize,
        _value_ptr: *const u8,
        _value_len: usize,
        _opts_ptr: *const u8,
        _opts_len: usize,
    ) -> i32 {
        UNSUPPORTED
    }
    /// Off wasm32: returns `UNSUPPORTED`.
    pub unsafe fn kv_delete(
        _binding_ptr: *const u8,
        _binding_len: usize,
        _key_ptr: *const u8,
        _key_len: usize,
    ) -> i32 {
        UNSUPPORTED
    }
    /// Off wasm32: returns `UNSUPPORTED`.
    pub unsafe fn kv_list(
        _binding_ptr: *const u8,
        _binding_len: usize,
        _opts_ptr: *const u8,
        _opts_len: usize,
    ) -> i32 {
        UNSUPPORTED
    }
}
