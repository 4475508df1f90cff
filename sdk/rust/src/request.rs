//! The incoming request: read on demand through host calls.

use std::io;

use crate::buf::{read_chunk, read_value};
use crate::error::Error;
use crate::sys;

/// First-attempt buffer sizes, chosen so the common value needs a single host call.
const METHOD_FIRST: usize = 16;
const URL_FIRST: usize = 256;
const HEADER_FIRST: usize = 128;
const HEADERS_FIRST: usize = 1024;
/// Growth step of [`Request::body`] when the length is not known up front.
const BODY_CHUNK: usize = 16 * 1024;
/// [`Request::body`] trusts `content-length` to pre-size its buffer only up to this.
const BODY_PREALLOC_MAX: usize = 4 * 1024 * 1024;

/// The request this invocation answers.
///
/// Nothing is copied into guest memory until a method asks for it, and each call asks the host
/// again: keep what you need in a local rather than calling twice.
///
/// Text accessors convert with [`String::from_utf8_lossy`]; use [`Request::header_bytes`] for a
/// header value that may not be UTF-8.
#[derive(Debug)]
pub struct Request {
    handle: i32,
}

impl Request {
    /// The incoming request of this invocation. [`main!`](crate::main) passes it to the handler;
    /// calling this directly is useful in a hand-written `tenantry_fetch`.
    pub fn incoming() -> Request {
        Request {
            handle: sys::REQUEST,
        }
    }

    pub(crate) fn handle(&self) -> i32 {
        self.handle
    }

    /// The method, e.g. `GET`. Empty if the host refused the call (only off wasm32).
    pub fn method(&self) -> String {
        self.try_method().unwrap_or_default()
    }

    /// The method, or the host's error.
    pub fn try_method(&self) -> Result<String, Error> {
        let h = self.handle;
        // SAFETY: `read_value` passes a pointer to `cap` writable bytes it owns.
        read_value(METHOD_FIRST, |ptr, cap| unsafe {
            sys::request_method(h, ptr, cap)
        })
        .map(lossy)
    }

    /// The absolute URL: `http://` + `Host` + the request target, e.g.
    /// `http://alice.example.test/hello?x=1`. Empty if the host refused the call (only off wasm32).
    pub fn url(&self) -> String {
        self.try_url().unwrap_or_default()
    }

    /// The URL, or the host's error.
    pub fn try_url(&self) -> Result<String, Error> {
        let h = self.handle;
        // SAFETY: as in `try_method`.
        read_value(URL_FIRST, |ptr, cap| unsafe {
            sys::request_url(h, ptr, cap)
        })
        .map(lossy)
    }

    /// The first value of the query parameter `name` in the URL, percent-decoded (`+` is a space);
    /// `Some("")` for `?name` or `?name=`.
    pub fn query(&self, name: &str) -> Option<String> {
        query_param(&self.url(), name)
    }

    /// The value of the header `name` (case-insensitive); several fields of that name come joined
    /// with `", "`. `None` if absent.
    pub fn header(&self, name: &str) -> Option<String> {
        self.header_bytes(name).map(lossy)
    }

    /// Like [`header`](Request::header), as raw bytes.
    pub fn header_bytes(&self, name: &str) -> Option<Vec<u8>> {
        let h = self.handle;
        // SAFETY: `name` is a live `&str`; `read_value` passes `cap` writable bytes it owns.
        read_value(HEADER_FIRST, |ptr, cap| unsafe {
            sys::request_header(h, name.as_ptr(), name.len(), ptr, cap)
        })
        .ok()
    }

    /// Every header field as `(name, value)`, in the order received, names as sent.
    pub fn headers(&self) -> Vec<(String, String)> {
        let h = self.handle;
        // SAFETY: as in `try_method`.
        let text = read_value(HEADERS_FIRST, |ptr, cap| unsafe {
            sys::request_headers(h, ptr, cap)
        })
        .unwrap_or_default();
        parse_header_list(&text)
    }

    /// The whole body. Reads what [`body_reader`](Request::body_reader) has not consumed yet.
    pub fn body(&self) -> Result<Vec<u8>, Error> {
        let hint = self
            .header("content-length")
            .and_then(|v| v.trim().parse::<usize>().ok())
            .map_or(0, |n| n.min(BODY_PREALLOC_MAX));
        // One byte past the expected length, so the call that reports the end needs no growth.
        let mut body = Vec::with_capacity(hint + 1);
        let h = self.handle;
        // SAFETY: `read_chunk` passes `cap` writable bytes of `body`'s spare capacity.
        while read_chunk(&mut body, BODY_CHUNK, |ptr, cap| unsafe {
            sys::request_body_read(h, ptr, cap)
        })? > 0
        {}
        Ok(body)
    }

    /// The body as a [`std::io::Read`], for streaming it in chunks.
    pub fn body_reader(&self) -> BodyReader {
        BodyReader {
            handle: self.handle,
        }
    }
}

/// Reads the request body in chunks ([`Request::body_reader`]).
#[derive(Debug)]
pub struct BodyReader {
    handle: i32,
}

impl io::Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // SAFETY: `buf` is a live, writable slice of `buf.len()` bytes.
        let ret = unsafe { sys::request_body_read(self.handle, buf.as_mut_ptr(), buf.len()) };
        let n = crate::error::check(ret)?;
        Ok(n.min(buf.len()))
    }
}

fn lossy(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// Parses the `request_headers` format: one `name: value\n` per field. A line without `:` (which a
/// conforming host never sends) is skipped; values are trimmed of surrounding spaces and tabs.
pub fn parse_header_list(text: &[u8]) -> Vec<(String, String)> {
    text.split(|&b| b == b'\n')
        .filter_map(|line| {
            let colon = line.iter().position(|&b| b == b':')?;
            let (name, value) = (&line[..colon], &line[colon + 1..]);
            let value = value.trim_ascii_start();
            let value = value.strip_suffix(b"\r").unwrap_or(value).trim_ascii_end();
            Some((lossy(name.to_vec()), lossy(value.to_vec())))
        })
        .collect()
}

/// The first value of `name` in the query string of `url` (the part after `?`, before `#`),
/// percent-decoded with `+` as a space.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(key) == name).then(|| percent_decode(value))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let digit = |j: usize| bytes.get(j).copied().and_then(hex);
                match (digit(i + 1), digit(i + 2)) {
                    (Some(hi), Some(lo)) => {
                        out.push(hi << 4 | lo);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    lossy(out)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_list_parses_in_order_with_names_as_sent() {
        let text = b"Host: a.example.test\nX-Custom: yes\nempty:\nx-dup: 1, 2\n";
        assert_eq!(
            parse_header_list(text),
            [
                ("Host", "a.example.test"),
                ("X-Custom", "yes"),
                ("empty", ""),
                ("x-dup", "1, 2"),
            ]
            .map(|(n, v)| (n.to_string(), v.to_string()))
        );
        assert!(parse_header_list(b"").is_empty());
        // Values may contain colons; a stray line without one is skipped.
        assert_eq!(
            parse_header_list(b"garbage\nreferer: http://x:8080/\r\n"),
            vec![("referer".to_string(), "http://x:8080/".to_string())]
        );
    }

    #[test]
    fn query_params_decode() {
        let url = "http://h.test/p?name=GREETING&x=a%20b+c&flag&name=second#frag";
        assert_eq!(query_param(url, "name").as_deref(), Some("GREETING"));
        assert_eq!(query_param(url, "x").as_deref(), Some("a b c"));
        assert_eq!(query_param(url, "flag").as_deref(), Some(""));
        assert_eq!(query_param(url, "missing"), None);
        assert_eq!(query_param("http://h.test/", "name"), None);
        assert_eq!(
            query_param("http://h.test/?a=%zz%4", "a").as_deref(),
            Some("%zz%4")
        );
        assert_eq!(query_param("http://h.test/?a=x#?b=1", "b"), None);
    }

    #[test]
    fn off_wasm_calls_fail_cleanly() {
        if cfg!(target_arch = "wasm32") {
            return;
        }
        let req = Request::incoming();
        assert_eq!(req.method(), "");
        assert_eq!(req.try_url(), Err(Error::Unsupported));
        assert_eq!(req.header("host"), None);
        assert!(req.headers().is_empty());
        assert_eq!(req.body(), Err(Error::Unsupported));
    }
}
