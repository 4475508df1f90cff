//! Bounds-checked access to a guest's linear memory.
//!
//! Every pointer and length a guest passes is an untrusted `i32`, read as an unsigned offset
//! (wasm32). These helpers turn a `(ptr, len)` pair into a slice of the memory or into
//! [`BadPointer`], which the host call returns as an error so the guest traps (docs/worker-abi.md:
//! "A pointer/length pair that does not lie inside guest memory is a guest bug: the call traps").
//!
//! All of it is safe code: wasmtime's `Memory::data_and_store_mut` hands out the memory as a
//! `&mut [u8]` for the duration of a host call (the guest cannot run, so cannot alias it), and
//! slicing with `get` cannot go out of bounds. Nothing here needs `unsafe`, and it should stay
//! that way: a future zero-copy path (e.g. writing a response straight from guest memory) belongs
//! in this module, with a `// SAFETY:` note on each block.

/// A guest passed a pointer/length pair that does not lie inside its memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("host call `{call}` was passed a pointer/length outside the Worker's memory")]
pub(crate) struct BadPointer {
    /// The host function that received it.
    pub call: &'static str,
}

/// The range `ptr..ptr + len` as `usize` offsets, or `None` if it overflows.
fn range(ptr: i32, len: i32) -> Option<std::ops::Range<usize>> {
    let start = ptr as u32 as usize;
    let end = start.checked_add(len as u32 as usize)?;
    Some(start..end)
}

/// The bytes at `ptr..ptr + len`.
pub(crate) fn slice<'m>(
    mem: &'m [u8],
    ptr: i32,
    len: i32,
    call: &'static str,
) -> Result<&'m [u8], BadPointer> {
    range(ptr, len)
        .and_then(|r| mem.get(r))
        .ok_or(BadPointer { call })
}

/// The bytes at `ptr..ptr + len`, writable.
pub(crate) fn slice_mut<'m>(
    mem: &'m mut [u8],
    ptr: i32,
    len: i32,
    call: &'static str,
) -> Result<&'m mut [u8], BadPointer> {
    range(ptr, len)
        .and_then(|r| mem.get_mut(r))
        .ok_or(BadPointer { call })
}

/// Reads a little-endian `u32` at `ptr` (wasm is little-endian; no alignment required).
pub(crate) fn read_u32(mem: &[u8], ptr: i32, call: &'static str) -> Result<u32, BadPointer> {
    let bytes = slice(mem, ptr, 4, call)?;
    let mut le = [0; 4];
    le.copy_from_slice(bytes);
    Ok(u32::from_le_bytes(le))
}

/// Writes a little-endian `u32` at `ptr`.
pub(crate) fn write_u32(
    mem: &mut [u8],
    ptr: i32,
    value: u32,
    call: &'static str,
) -> Result<(), BadPointer> {
    slice_mut(mem, ptr, 4, call)?.copy_from_slice(&value.to_le_bytes());
    Ok(())
}

/// Writes a little-endian `u64` at `ptr`.
pub(crate) fn write_u64(
    mem: &mut [u8],
    ptr: i32,
    value: u64,
    call: &'static str,
) -> Result<(), BadPointer> {
    slice_mut(mem, ptr, 8, call)?.copy_from_slice(&value.to_le_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        let mut mem = vec![0u8; 16];
        assert_eq!(slice(&mem, 0, 16, "t").unwrap().len(), 16);
        assert_eq!(slice(&mem, 16, 0, "t").unwrap().len(), 0);
        assert!(slice(&mem, 17, 0, "t").is_err());
        assert!(slice(&mem, 1, 16, "t").is_err());
        // Negative values are large unsigned offsets, never wrap around.
        assert!(slice(&mem, -1, 2, "t").is_err());
        assert!(slice(&mem, 0, -1, "t").is_err());
        assert!(slice_mut(&mut mem, i32::MAX, i32::MAX, "t").is_err());
        write_u32(&mut mem, 12, 0x0102_0304, "t").unwrap();
        assert_eq!(read_u32(&mem, 12, "t").unwrap(), 0x0102_0304);
        assert!(write_u64(&mut mem, 12, 1, "t").is_err());
    }
}
