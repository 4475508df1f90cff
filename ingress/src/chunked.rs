//! An incremental decoder for `Transfer-Encoding: chunked` request bodies (RFC 9112 §7.1).
//!
//! It is fed whatever bytes have arrived, copies chunk data out, and says how much input it used, so
//! bytes after the body (a pipelined request) stay in the read buffer. Lines must end in CRLF: a
//! bare LF, a missing CRLF after chunk data or an over-long size are errors, because lenient chunk
//! parsing that disagrees with a proxy in front is a classic request-smuggling vector. Chunk
//! extensions and trailer fields are read and discarded (§7.1.1, §7.1.2 allow that).

use bytes::BytesMut;

use tenantry_core::is_tchar;

use crate::limits::MAX_CHUNK_LINE_BYTES;
use crate::parse::ParseError;

/// Decoding progress after one call to [`ChunkedDecoder::decode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Input bytes used; the rest belongs to whatever follows the body.
    pub consumed: usize,
    /// The last chunk and the trailer section have been read.
    pub done: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a chunk size.
    Size {
        digits: u8,
    },
    /// After the size: whitespace and extensions up to CR.
    Extension,
    SizeLf,
    Data {
        left: u64,
    },
    DataCr,
    DataLf,
    /// At the start of a trailer line (or of the final empty line).
    TrailerStart,
    TrailerLine,
    TrailerLf,
    EndLf,
    Done,
}

/// Decodes one chunked body; create one per request.
#[derive(Debug)]
pub struct ChunkedDecoder {
    state: State,
    size: u64,
    /// Bytes of the current size line, bounded by [`MAX_CHUNK_LINE_BYTES`].
    line: usize,
    /// The extensions of the current size line, checked against the grammar at its end.
    ext: Vec<u8>,
    /// Bytes of trailer fields so far, bounded by `max_trailer`.
    trailer: usize,
    body: usize,
    max_body: usize,
    max_trailer: usize,
}

fn bad(what: &'static str) -> ParseError {
    ParseError::BadChunk(what)
}

impl ChunkedDecoder {
    /// A decoder for a body of at most `max_body` bytes, with at most `max_trailer` bytes of trailer
    /// fields (the server passes its header limit).
    pub fn new(max_body: usize, max_trailer: usize) -> Self {
        ChunkedDecoder {
            state: State::Size { digits: 0 },
            size: 0,
            line: 0,
            ext: Vec::new(),
            trailer: 0,
            body: 0,
            max_body,
            max_trailer,
        }
    }

    /// Bytes of body decoded so far.
    pub fn body_len(&self) -> usize {
        self.body
    }

    /// Decodes from `input`, appending chunk data to `out`.
    pub fn decode(&mut self, input: &[u8], out: &mut BytesMut) -> Result<Progress, ParseError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Data { left } => {
                    let n = (input.len() - i).min(left as usize);
                    out.extend_from_slice(&input[i..i + n]);
                    i += n;
                    self.state = if left == n as u64 {
                        State::DataCr
                    } else {
                        State::Data {
                            left: left - n as u64,
                        }
                    };
                    continue;
                }
                State::Size { digits } => {
                    self.line += 1;
                    if let Some(d) = (b as char).to_digit(16) {
                        // 15 hex digits are ~1 PB: more can only be an overflow attempt.
                        if digits == 15 {
                            return Err(bad("chunk size too long"));
                        }
                        self.size = self.size * 16 + u64::from(d);
                        self.state = State::Size { digits: digits + 1 };
                    } else if digits == 0 {
                        return Err(bad("expected a hexadecimal chunk size"));
                    } else if b == b'\r' {
                        self.state = State::SizeLf;
                    } else if matches!(b, b';' | b' ' | b'\t') {
                        self.ext.clear();
                        self.ext.push(b);
                        self.state = State::Extension;
                    } else {
                        return Err(bad("invalid character after the chunk size"));
                    }
                }
                State::Extension => {
                    self.line += 1;
                    if self.line > MAX_CHUNK_LINE_BYTES {
                        return Err(bad("chunk extensions too long"));
                    }
                    match b {
                        b'\r' => {
                            if !valid_extensions(&self.ext) {
                                return Err(bad("invalid chunk extension"));
                            }
                            self.state = State::SizeLf;
                        }
                        b'\n' => return Err(bad("bare LF in a chunk-size line")),
                        _ => self.ext.push(b),
                    }
                }
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(bad("expected LF after CR"));
                    }
                    self.line = 0;
                    if self.size == 0 {
                        self.state = State::TrailerStart;
                    } else {
                        let total = (self.body as u64).saturating_add(self.size);
                        if total > self.max_body as u64 {
                            return Err(ParseError::BodyTooLarge {
                                limit: self.max_body,
                            });
                        }
                        self.body = total as usize;
                        self.state = State::Data { left: self.size };
                        self.size = 0;
                    }
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(bad("chunk data longer than its size"));
                    }
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(bad("expected LF after CR"));
                    }
                    self.state = State::Size { digits: 0 };
                }
                State::TrailerStart => {
                    self.state = match b {
                        b'\r' => State::EndLf,
                        b'\n' => return Err(bad("bare LF in the trailer section")),
                        _ => State::TrailerLine,
                    };
                    self.count_trailer()?;
                }
                State::TrailerLine => {
                    self.count_trailer()?;
                    match b {
                        b'\r' => self.state = State::TrailerLf,
                        b'\n' => return Err(bad("bare LF in the trailer section")),
                        _ => {}
                    }
                }
                State::TrailerLf => {
                    if b != b'\n' {
                        return Err(bad("expected LF after CR"));
                    }
                    self.state = State::TrailerStart;
                }
                State::EndLf => {
                    if b != b'\n' {
                        return Err(bad("expected LF after CR"));
                    }
                    self.state = State::Done;
                    return Ok(Progress {
                        consumed: i + 1,
                        done: true,
                    });
                }
                State::Done => break,
            }
            i += 1;
        }
        Ok(Progress {
            consumed: i,
            done: self.state == State::Done,
        })
    }

    fn count_trailer(&mut self) -> Result<(), ParseError> {
        self.trailer += 1;
        if self.trailer > self.max_trailer {
            return Err(ParseError::HeadersTooLarge {
                limit: self.max_trailer,
            });
        }
        Ok(())
    }
}

/// RFC 9112 §7.1.1: `chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )`,
/// names tokens and values tokens or quoted strings. Whatever else follows a chunk size (`5 junk`,
/// a NUL) is refused: a proxy in front may read such a line differently.
fn valid_extensions(mut s: &[u8]) -> bool {
    let token = |s: &[u8]| s.iter().take_while(|&&c| is_tchar(c)).count();
    if s.is_empty() {
        return true;
    }
    loop {
        let Some(rest) = ws(s).strip_prefix(b";") else {
            return false;
        };
        let rest = ws(rest);
        let name = token(rest);
        if name == 0 {
            return false;
        }
        s = ws(&rest[name..]);
        if let Some(value) = s.strip_prefix(b"=") {
            let value = ws(value);
            let len = match value.strip_prefix(b"\"") {
                Some(quoted) => match quoted_len(quoted) {
                    Some(n) => n + 1,
                    None => return false,
                },
                None => token(value),
            };
            if len == 0 {
                return false;
            }
            s = ws(&value[len..]);
        }
        if s.is_empty() {
            return true;
        }
    }
}

/// `s` without its leading spaces and tabs (RFC 9110 §5.6.3 `BWS`).
fn ws(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&c| c == b' ' || c == b'\t').count();
    &s[n..]
}

/// The length of the rest of a quoted string (after its opening quote) up to and including the
/// closing quote; `None` if it is not closed or holds a control character (RFC 9110 §5.6.4).
fn quoted_len(s: &[u8]) -> Option<usize> {
    let text = |c: u8| c == b'\t' || (c >= 0x20 && c != 0x7f);
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'"' => return Some(i + 1),
            b'\\' if s.get(i + 1).is_some_and(|&c| text(c)) => i += 2,
            c if text(c) && c != b'\\' => i += 1,
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in pieces of `step` bytes; returns the body and bytes consumed.
    fn decode_in_steps(
        input: &[u8],
        step: usize,
        max: usize,
    ) -> Result<(Vec<u8>, usize), ParseError> {
        let mut d = ChunkedDecoder::new(max, 1024);
        let mut out = BytesMut::new();
        let mut pos = 0;
        // The server keeps unconsumed bytes and appends new ones; emulate that.
        let mut end = 0;
        loop {
            end = (end + step).min(input.len());
            let p = d.decode(&input[pos..end], &mut out)?;
            pos += p.consumed;
            if p.done {
                return Ok((out.to_vec(), pos));
            }
            if end == input.len() {
                return Err(bad("incomplete"));
            }
        }
    }

    #[test]
    fn decodes_at_every_split() {
        let body = b"5\r\nhello\r\n1;ext=1;x\r\n \r\nA\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\nGET / HTTP/1.1\r\n";
        let expected = b"hello 0123456789".to_vec();
        let used = body.len() - b"GET / HTTP/1.1\r\n".len();
        for step in 1..=body.len() {
            let (out, consumed) = decode_in_steps(body, step, 1 << 20).unwrap();
            assert_eq!(out, expected, "step {step}");
            assert_eq!(consumed, used, "step {step}");
        }
    }

    #[test]
    fn extensions_follow_the_grammar() {
        for ok in [
            &b""[..],
            b";a",
            b" ; a = b ;c",
            b";name=\"quoted; \\\"value\"",
            b"\t;a=1",
        ] {
            assert!(valid_extensions(ok), "{:?}", String::from_utf8_lossy(ok));
        }
        for bad_ext in [
            &b" junk"[..],
            b";",
            b";a=",
            b";a b",
            b";a=\"x",
            b" ",
            b";a\x00",
        ] {
            assert!(
                !valid_extensions(bad_ext),
                "{:?}",
                String::from_utf8_lossy(bad_ext)
            );
        }
    }

    #[test]
    fn empty_body() {
        let (out, consumed) = decode_in_steps(b"0\r\n\r\n", 1, 10).unwrap();
        assert!(out.is_empty());
        assert_eq!(consumed, 5);
    }

    #[test]
    fn rejects_malformed_framing() {
        for bad_input in [
            &b"\r\n"[..],
            b"x\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloX\r\n0\r\n\r\n",
            b"5\r\nhello\r\r0\r\n\r\n",
            b"5;ext\nhello\r\n0\r\n\r\n",
            b"-5\r\nhello\r\n0\r\n\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"1000000000000000\r\n",
            b"0\r\nTrailer: x\n\r\n",
            b"0\r\n\rX",
            b"5 junk\r\nhello\r\n0\r\n\r\n",
            b"5;a\x00b\r\nhello\r\n0\r\n\r\n",
            b"5;\r\nhello\r\n0\r\n\r\n",
            b"5;a=\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"open\r\nhello\r\n0\r\n\r\n",
            b"5;a=b c\r\nhello\r\n0\r\n\r\n",
            b"5 \r\nhello\r\n0\r\n\r\n",
        ] {
            let e = decode_in_steps(bad_input, bad_input.len(), 1 << 20).unwrap_err();
            assert!(
                matches!(e, ParseError::BadChunk(m) if m != "incomplete"),
                "{:?}: {e:?}",
                String::from_utf8_lossy(bad_input)
            );
            assert_eq!(e.status(), 400);
        }
    }

    #[test]
    fn enforces_body_and_line_limits() {
        let e = decode_in_steps(b"6\r\nhello!\r\n0\r\n\r\n", 100, 5).unwrap_err();
        assert_eq!(
            (e.status(), e),
            (413, ParseError::BodyTooLarge { limit: 5 })
        );
        let e = decode_in_steps(b"3\r\nabc\r\n3\r\nabc\r\n0\r\n\r\n", 100, 5).unwrap_err();
        assert_eq!(e.status(), 413);

        let long_ext = format!("1;{}\r\na\r\n0\r\n\r\n", "e".repeat(MAX_CHUNK_LINE_BYTES));
        let e = decode_in_steps(long_ext.as_bytes(), 7, 100).unwrap_err();
        assert_eq!(e, bad("chunk extensions too long"));

        let long_trailer = format!("0\r\nX: {}\r\n\r\n", "t".repeat(2000));
        let e = decode_in_steps(long_trailer.as_bytes(), 64, 100).unwrap_err();
        assert_eq!(e.status(), 431);
    }
}
