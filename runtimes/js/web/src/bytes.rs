//! Borrowing the bytes behind a `Uint8Array` without copying them.
//!
//! The only unsafe code of the crate. rquickjs hands out the backing store of a typed array
//! as a raw slice that stays valid only while no JavaScript runs (JS could detach or resize
//! the buffer). The helpers here take a closure that receives no `Ctx`, so it cannot run
//! JavaScript while the slice is alive.

use rquickjs::TypedArray;

/// Runs `f` over the bytes viewed by `array` (its byte offset and length respected).
/// A detached buffer reads as empty.
pub fn with_bytes<R>(array: &TypedArray<'_, u8>, f: impl FnOnce(&[u8]) -> R) -> R {
    // SAFETY: the slice lives only for the call to `f`, which has no `Ctx` and so cannot run
    // JavaScript that would detach, resize or otherwise invalidate the backing store.
    let bytes = unsafe { array.as_bytes() }.unwrap_or(&[]);
    f(bytes)
}

/// Runs `f` over the bytes viewed by `array`, mutably. A detached buffer is empty.
pub fn with_bytes_mut<R>(array: &TypedArray<'_, u8>, f: impl FnOnce(&mut [u8]) -> R) -> R {
    match array.as_raw() {
        // SAFETY: the pointer comes from the live typed array (which keeps its buffer alive
        // for the call), it is the only Rust reference to that memory, and `f` has no `Ctx`
        // so no JavaScript can run (and alias, detach or resize it) while the slice exists.
        Some(mut raw) => f(unsafe { raw.as_mut() }),
        None => f(&mut []),
    }
}
