//! The host calls the engine makes: `tenantry:js/v1` `code_read`, WASI `random_get`, and thin
//! wrappers over the `tenantry:worker/v1` calls of the SDK.
//!
//! Off wasm32 (native `cargo test`) every host call fails with `UNSUPPORTED`, as in the SDK, and
//! `random_fill` reads the operating system's generator.

use tenantry_sdk::sys;

pub use tenantry_sdk::sys::{LOG_ERROR, LOG_WARN};

/// First guess for `code_read`: a small Worker's bundle fits, so it costs one call.
const CODE_FIRST: usize = 16 * 1024;
/// First guess for the request's header list.
const HEADERS_FIRST: usize = 1024;
/// First guesses for method and URL.
const METHOD_FIRST: usize = 16;
const URL_FIRST: usize = 256;
/// Growth step while reading a request body of unknown length.
const BODY_CHUNK: usize = 16 * 1024;

// SAFETY (both blocks): the signatures are the host's (docs/worker-abi.md, `core/src/abi.rs`),
// which type-checks every import when it links the engine; callers pass pointers into this
// module's own memory with the lengths of those buffers.
#[cfg(target_arch = "wasm32")]
mod raw {
    #[link(wasm_import_module = "tenantry:js/v1")]
    unsafe extern "C" {
        /// The bundle (source in compile mode, compiled in run mode); buffer rule.
        pub fn code_read(out_ptr: *mut u8, out_cap: usize) -> i32;
    }

    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    unsafe extern "C" {
        /// Fills `len` bytes from the host's CSPRNG; returns a WASI errno (0 = success).
        pub fn random_get(buf: *mut u8, len: usize) -> i32;
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod raw {
    /// Off wasm32: `UNSUPPORTED`.
    pub unsafe fn code_read(_out_ptr: *mut u8, _out_cap: usize) -> i32 {
        tenantry_sdk::sys::UNSUPPORTED
    }
}

/// The bundle the host hands in, or the host's error code.
pub fn code_read() -> Result<Vec<u8>, tenantry_sdk::Error> {
    // SAFETY: `read_value` passes a pointer to `cap` writable bytes it owns.
    tenantry_sdk::read_value(CODE_FIRST, |ptr, cap| unsafe { raw::code_read(ptr, cap) })
}

/// Fills `buf` with random bytes from the host (never from the snapshot).
pub fn random_fill(buf: &mut [u8]) {
    #[cfg(target_arch = "wasm32")]
    {
        // SAFETY: `buf` is a live, writable slice of `buf.len()` bytes.
        let errno = unsafe { raw::random_get(buf.as_mut_ptr(), buf.len()) };
        if errno != 0 {
            // The host's generator failed; fall back to the clock rather than a fixed seed.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            for (i, b) in buf.iter_mut().enumerate() {
                *b = (now >> ((i % 16) * 8)) as u8;
            }
        }
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        use std::io::Read;
        if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
            let _ = f.read_exact(buf);
        }
    }
}

/// Logs one line at `level` (the host tags, truncates and bounds it).
pub fn log(level: i32, text: &str) {
    // SAFETY: `text` is a live `&str` the host only reads.
    unsafe { sys::log(level, text.as_ptr(), text.len()) };
}

/// Reads a buffer-rule value of the incoming request; empty if the host refused.
fn request_value(first: usize, call: impl FnMut(*mut u8, usize) -> i32) -> Vec<u8> {
    tenantry_sdk::read_value(first, call).unwrap_or_default()
}

/// The incoming request's method, e.g. `GET`.
pub fn request_method() -> Vec<u8> {
    // SAFETY: `read_value` passes a pointer to `cap` writable bytes it owns.
    request_value(METHOD_FIRST, |p, c| unsafe {
        sys::request_method(sys::REQUEST, p, c)
    })
}

/// The incoming request's absolute URL.
pub fn request_url() -> Vec<u8> {
    // SAFETY: as in `request_method`.
    request_value(URL_FIRST, |p, c| unsafe {
        sys::request_url(sys::REQUEST, p, c)
    })
}

/// Every header field of the incoming request as `name: value\n`, in order.
pub fn request_headers() -> Vec<u8> {
    // SAFETY: as in `request_method`.
    request_value(HEADERS_FIRST, |p, c| unsafe {
        sys::request_headers(sys::REQUEST, p, c)
    })
}

/// The whole body of the incoming request (copied once, from the host into this buffer).
pub fn request_body() -> Result<Vec<u8>, tenantry_sdk::Error> {
    // SAFETY: `read_body` passes `room` writable bytes of its buffer's spare capacity.
    read_body(|buf, room| unsafe { sys::request_body_read(sys::REQUEST, buf, room) })
        .map_err(tenantry_sdk::Error::from_code)
}

/// The rest of a fetched response's body (`response_body_read` to its end); `Err` with the
/// host's code if a read failed.
pub fn fetched_body(resp: i32) -> Result<Vec<u8>, i32> {
    // SAFETY: as in `request_body`.
    read_body(|buf, room| unsafe { sys::response_body_read(resp, buf, room) })
}

/// A body read to its end by `read(buf, room)`, a host call that writes at most `room` bytes at
/// `buf` and answers how many (0 at the end), or a negative code, which is returned.
fn read_body(mut read: impl FnMut(*mut u8, usize) -> i32) -> Result<Vec<u8>, i32> {
    let mut body: Vec<u8> = Vec::new();
    loop {
        if body.len() == body.capacity() {
            body.reserve(BODY_CHUNK);
        }
        let len = body.len();
        let room = body.capacity() - len;
        // SAFETY: `len <= capacity`, so `add(len)` stays within the allocation, and `room`
        // bytes after it are spare capacity the host may write.
        let n = read(unsafe { body.as_mut_ptr().add(len) }, room);
        if n < 0 {
            return Err(n);
        }
        let n = (n as usize).min(room);
        if n == 0 {
            return Ok(body);
        }
        // SAFETY: the host wrote `n <= room` bytes starting at `len`.
        unsafe { body.set_len(len + n) };
    }
}

/// Makes a fetched response this invocation's response, its body unread by the guest
/// (`response_forward`); `Err` with the host's code.
pub fn response_forward(resp: i32) -> Result<(), i32> {
    // SAFETY: no pointers.
    check(unsafe { sys::response_forward(resp) })
}

/// A fetched response's status (a negative code for a bad handle).
pub fn fetched_status(resp: i32) -> i32 {
    // SAFETY: no pointers.
    unsafe { sys::response_status(resp) }
}

/// Sets the response status; `Err` with the host's code (e.g. `INVALID` outside 200..=599).
pub fn response_status(status: i32) -> Result<(), i32> {
    // SAFETY: no pointers.
    check(unsafe { sys::response_set_status(sys::RESPONSE, status) })
}

/// Adds a response header field.
pub fn response_header(name: &[u8], value: &[u8]) -> Result<(), i32> {
    // SAFETY: both slices are live and only read by the host.
    check(unsafe {
        sys::response_header_append(
            sys::RESPONSE,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    })
}

/// Appends to the response body.
pub fn response_body(bytes: &[u8]) -> Result<(), i32> {
    if bytes.is_empty() {
        return Ok(());
    }
    // SAFETY: `bytes` is live and only read by the host.
    check(unsafe { sys::response_body_write(sys::RESPONSE, bytes.as_ptr(), bytes.len()) })
}

fn check(ret: i32) -> Result<(), i32> {
    if ret < 0 { Err(ret) } else { Ok(()) }
}
