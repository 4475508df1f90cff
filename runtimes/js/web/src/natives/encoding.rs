//! UTF-8 (Encoding Standard) and forgiving base64 (HTML's `atob`/`btoa`).

use base64::Engine;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use rquickjs::{Ctx, Function, Object, Result, TypedArray};

use crate::bytes::{with_bytes, with_bytes_mut};

/// The HTML "forgiving-base64 decode": padding optional, non-zero trailing bits allowed.
const FORGIVING: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone),
);

/// HTML §8.3 forgiving-base64 decode; `None` is the spec's "failure".
fn forgiving_decode(input: &str) -> Option<Vec<u8>> {
    let mut data: Vec<u8> = input
        .bytes()
        .filter(|b| !matches!(b, b'\t' | b'\n' | b'\x0C' | b'\r' | b' '))
        .collect();
    if data.len().is_multiple_of(4) {
        // At most two trailing '=' are padding; anything else with '=' fails below.
        for _ in 0..2 {
            if data.last() == Some(&b'=') {
                data.pop();
            }
        }
    }
    if data.len() % 4 == 1 {
        return None;
    }
    FORGIVING.decode(&data).ok()
}

/// Bytes after the last complete UTF-8 sequence that could still become one when more
/// bytes arrive (0..=3): what a streaming decoder keeps for the next chunk.
fn incomplete_tail(bytes: &[u8]) -> usize {
    let start = bytes.len().saturating_sub(3);
    for i in (start..bytes.len()).rev() {
        let b = bytes[i];
        if b & 0xC0 == 0x80 {
            continue; // continuation byte: look further back for the lead
        }
        let tail = &bytes[i..];
        return match std::str::from_utf8(tail) {
            Err(e) if e.error_len().is_none() && e.valid_up_to() == 0 => tail.len(),
            _ => 0,
        };
    }
    0
}

/// Index of `needle` in `hay` at or after `from`, or -1.
fn find(hay: &[u8], needle: &[u8], from: usize) -> i64 {
    if needle.is_empty() || from > hay.len() {
        return -1;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map_or(-1, |i| (from + i) as i64)
}

pub fn register<'js>(ctx: &Ctx<'js>, natives: &Object<'js>) -> Result<()> {
    // utf8Encode(wellFormedString) -> Uint8Array
    natives.set(
        "utf8Encode",
        Function::new(ctx.clone(), |ctx: Ctx<'js>, s: String| {
            TypedArray::<u8>::new(ctx, s.into_bytes())
        })?,
    )?;
    // utf8EncodeInto(wellFormedString, dest) -> [read (UTF-16 units), written (bytes)]
    natives.set(
        "utf8EncodeInto",
        Function::new(ctx.clone(), |s: String, dest: TypedArray<'js, u8>| {
            with_bytes_mut(&dest, |out| {
                let (mut read, mut written) = (0u32, 0usize);
                for c in s.chars() {
                    let n = c.len_utf8();
                    if written + n > out.len() {
                        break;
                    }
                    c.encode_utf8(&mut out[written..written + n]);
                    written += n;
                    read += c.len_utf16() as u32;
                }
                vec![read, written as u32]
            })
        })?,
    )?;
    // utf8Decode(bytes, fatal) -> string, or undefined on malformed input when fatal.
    // Malformed sequences become U+FFFD per maximal subpart, as the Encoding Standard's
    // decoder does (Rust's lossy decoding follows the same rule).
    natives.set(
        "utf8Decode",
        Function::new(ctx.clone(), |bytes: TypedArray<'js, u8>, fatal: bool| {
            with_bytes(&bytes, |b| {
                if fatal {
                    std::str::from_utf8(b).ok().map(str::to_owned)
                } else {
                    Some(String::from_utf8_lossy(b).into_owned())
                }
            })
        })?,
    )?;
    // utf8IncompleteTail(bytes) -> how many trailing bytes a streaming decode keeps back.
    natives.set(
        "utf8IncompleteTail",
        Function::new(ctx.clone(), |bytes: TypedArray<'js, u8>| {
            with_bytes(&bytes, incomplete_tail) as u32
        })?,
    )?;
    // bytesFind(haystack, needle, from) -> index of needle at or after `from`, or -1 (for the
    // multipart parser).
    natives.set(
        "bytesFind",
        Function::new(
            ctx.clone(),
            |hay: TypedArray<'js, u8>, needle: TypedArray<'js, u8>, from: u32| {
                let needle = with_bytes(&needle, <[u8]>::to_vec);
                with_bytes(&hay, |h| find(h, &needle, from as usize))
            },
        )?,
    )?;
    // btoa(string) -> base64, or undefined if a code unit is above U+00FF.
    natives.set(
        "btoa",
        Function::new(ctx.clone(), |s: String| {
            let bytes: Option<Vec<u8>> = s.chars().map(|c| u8::try_from(c).ok()).collect();
            bytes.map(|b| STANDARD.encode(b))
        })?,
    )?;
    // atob(string) -> binary string (one char per byte), or undefined when not base64.
    natives.set(
        "atob",
        Function::new(ctx.clone(), |s: String| {
            forgiving_decode(&s).map(|b| b.into_iter().map(char::from).collect::<String>())
        })?,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incomplete_tail_keeps_only_valid_prefixes() {
        assert_eq!(incomplete_tail(b"abc"), 0);
        assert_eq!(incomplete_tail(&[b'a', 0xE2, 0x82]), 2); // € cut short
        assert_eq!(incomplete_tail(&[0xF0, 0x9F, 0x98]), 3);
        assert_eq!(incomplete_tail(&[0xE2, 0x82, 0xAC]), 0); // complete
        assert_eq!(incomplete_tail(&[0xE0, 0x80]), 0); // never valid: decode it now
        assert_eq!(incomplete_tail(&[0x80, 0x80]), 0);
    }

    #[test]
    fn forgiving_base64() {
        assert_eq!(forgiving_decode("YQ").as_deref(), Some(&b"a"[..]));
        assert_eq!(forgiving_decode("YQ==").as_deref(), Some(&b"a"[..]));
        assert_eq!(forgiving_decode(" Y Q = = ").as_deref(), Some(&b"a"[..]));
        assert_eq!(forgiving_decode("YR").as_deref(), Some(&b"a"[..])); // trailing bits
        assert_eq!(forgiving_decode("YQ="), None);
        assert_eq!(forgiving_decode("Y"), None);
        assert_eq!(forgiving_decode("Y==="), None);
        assert_eq!(forgiving_decode("Y-Q="), None);
    }
}
