//! The buffer rule of `tenantry:worker/v1`, in one place: the host returns the value's full length
//! `n` and writes it only if `n <= out_cap`; otherwise the guest calls again with `n` bytes.
//!
//! Values are read straight into a `Vec`'s spare capacity, so a value that fits the first guess
//! costs one host call and no copy inside the guest.

use crate::error::{Error, check};

/// Reads a buffer-returning value. `first` is the capacity of the first attempt (sized per call so
/// that the common case needs one call); `call(out_ptr, out_cap)` makes the host call.
///
/// Public for guests that declare imports of their own with the same rule (e.g. the JS engine's
/// `tenantry:js/v1` `code_read`).
pub fn read_value(
    first: usize,
    mut call: impl FnMut(*mut u8, usize) -> i32,
) -> Result<Vec<u8>, Error> {
    let mut buf: Vec<u8> = Vec::with_capacity(first);
    loop {
        let cap = buf.capacity();
        let n = check(call(buf.as_mut_ptr(), cap))?;
        if n <= cap {
            // SAFETY: the host wrote exactly `n <= capacity` bytes at `as_mut_ptr()` (the buffer
            // rule), so the first `n` bytes are initialised.
            unsafe { buf.set_len(n) };
            return Ok(buf);
        }
        // Nothing was written. Ask again with room for `n` bytes. Values do not change within an
        // invocation, so this loops at most once more; the loop only guards against a host that
        // breaks that promise.
        buf.reserve_exact(n);
    }
}

/// Reads the next chunk of a streamed value (`request_body_read`) into `buf`'s spare capacity,
/// reserving `chunk` more bytes first if it is full. Returns the number of bytes appended; `0`
/// means the end (the call always offers at least one byte of room, since a call with
/// `out_cap == 0` also returns `0`).
pub(crate) fn read_chunk(
    buf: &mut Vec<u8>,
    chunk: usize,
    call: impl FnOnce(*mut u8, usize) -> i32,
) -> Result<usize, Error> {
    if buf.len() == buf.capacity() {
        buf.reserve(chunk.max(1));
    }
    let len = buf.len();
    let room = buf.capacity() - len;
    // SAFETY: `len <= capacity`, so the pointer stays within (or one past) the allocation.
    let out = unsafe { buf.as_mut_ptr().add(len) };
    let n = check(call(out, room))?;
    if n > room {
        // A host that claims to have written more than it was offered; take nothing.
        return Err(Error::Other(n.try_into().unwrap_or(i32::MAX)));
    }
    // SAFETY: the host wrote `n <= room` bytes starting at `len`.
    unsafe { buf.set_len(len + n) };
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake host call following the buffer rule for `value`, counting calls.
    fn host<'a>(value: &'a [u8], calls: &'a mut u32) -> impl FnMut(*mut u8, usize) -> i32 + 'a {
        move |ptr, cap| {
            *calls += 1;
            if value.len() <= cap {
                // SAFETY: `read_value` passes a pointer to `cap` writable bytes.
                unsafe { std::ptr::copy_nonoverlapping(value.as_ptr(), ptr, value.len()) };
            }
            value.len() as i32
        }
    }

    #[test]
    fn fits_in_one_call() {
        let mut calls = 0;
        assert_eq!(read_value(16, host(b"GET", &mut calls)).unwrap(), b"GET");
        assert_eq!(calls, 1);
    }

    #[test]
    fn too_small_retries_once_with_the_full_length() {
        let value = vec![b'x'; 1000];
        let mut calls = 0;
        assert_eq!(read_value(16, host(&value, &mut calls)).unwrap(), value);
        assert_eq!(calls, 2);
        let mut calls = 0;
        assert_eq!(read_value(0, host(b"", &mut calls)).unwrap(), b"");
        assert_eq!(calls, 1);
    }

    #[test]
    fn negative_codes_are_errors() {
        assert_eq!(read_value(8, |_, _| -1), Err(Error::NotFound));
        assert_eq!(read_value(8, |_, _| -42), Err(Error::Other(-42)));
    }

    #[test]
    fn chunks_append_until_zero() {
        let body = b"hello, world";
        let mut pos = 0;
        let mut buf = Vec::new();
        loop {
            let n = read_chunk(&mut buf, 5, |ptr, cap| {
                assert!(cap > 0);
                let n = (body.len() - pos).min(cap);
                // SAFETY: `read_chunk` passes `cap` writable bytes.
                unsafe { std::ptr::copy_nonoverlapping(body[pos..].as_ptr(), ptr, n) };
                pos += n;
                n as i32
            })
            .unwrap();
            if n == 0 {
                break;
            }
        }
        assert_eq!(buf, body);
    }
}
