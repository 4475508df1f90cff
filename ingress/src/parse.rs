//! The HTTP/1.1 request-head parser: `&[u8]` in, [`Parsed::Complete`] / [`Parsed::Partial`] /
//! [`ParseError`] out, with no I/O, so tests can split a request at every byte and fuzzers can
//! drive it directly.
//!
//! `httparse` does the tokenising; this module records where each piece lies in the buffer (so the
//! server can freeze the buffer into `Bytes` and hand out slices without copying) and applies the
//! message-framing rules of RFC 9112 §6 that decide where the body ends. Getting framing wrong is
//! how request smuggling happens, so every ambiguous case is an error that closes the connection.

use std::ops::Range;

use bytes::Bytes;
use tenantry_core::Request;

use crate::limits::{MAX_HEADERS, ServerLimits};

/// The outcome of parsing the bytes received so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A whole request head, ending `head.len` bytes into the buffer.
    Complete(Head),
    /// More bytes are needed.
    Partial,
}

/// How the body of a request is framed (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// `Content-Length: n` (no header at all means 0).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed request head: offsets into the buffer it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub method: Range<usize>,
    pub target: Range<usize>,
    /// The minor version: `HTTP/1.0` → 0, `HTTP/1.1` → 1.
    pub minor_version: u8,
    /// Name and value of every header field, in order.
    pub headers: Vec<(Range<usize>, Range<usize>)>,
    /// The `Host` value (empty range when an HTTP/1.0 request has none).
    pub host: Range<usize>,
    /// Bytes of the head, including the blank line that ends it.
    pub len: usize,
    pub framing: BodyFraming,
    /// Whether the connection stays open after the response (RFC 9112 §9.3).
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent: the client waits for an interim response before the body.
    pub expect_continue: bool,
    /// The method is `HEAD`: the response carries no body.
    pub is_head: bool,
}

impl Head {
    /// Builds the [`Request`] the Worker sees. `head` is the frozen buffer the head was parsed from
    /// (at least `self.len` bytes); every field is a slice of it, not a copy.
    pub fn to_request(&self, head: &Bytes, body: Bytes) -> Request {
        Request {
            method: head.slice(self.method.clone()),
            host: head.slice(self.host.clone()),
            target: head.slice(self.target.clone()),
            headers: self
                .headers
                .iter()
                .map(|(n, v)| (head.slice(n.clone()), head.slice(v.clone())))
                .collect(),
            body,
            secure: false,
        }
    }
}

/// Why a request was refused. Each maps to a status; the connection is closed after any of them,
/// since the server can no longer tell where the next request starts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The request line or a header field is not valid HTTP/1.1 syntax.
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    /// Not HTTP/1.0 or HTTP/1.1.
    #[error("HTTP version not supported")]
    Version,
    /// The head is larger than the configured limit.
    #[error("request header fields are larger than {limit} bytes")]
    HeadersTooLarge { limit: usize },
    /// More header fields than [`MAX_HEADERS`].
    #[error("more than {MAX_HEADERS} request header fields")]
    TooManyHeaders,
    /// RFC 9112 §6.3 ¶3: both headers present is a smuggling attempt or a broken client.
    #[error("Content-Length and Transfer-Encoding must not be sent together")]
    LengthAndEncoding,
    /// RFC 9112 §6.3 ¶5: more than one Content-Length field (or a list in one field).
    #[error("more than one Content-Length")]
    DuplicateLength,
    /// RFC 9112 §6.3 ¶5: not a decimal number that fits in 64 bits.
    #[error("invalid Content-Length")]
    InvalidLength,
    /// Only `chunked` is supported (RFC 9112 §6.1: anything else cannot be framed here).
    #[error("unsupported Transfer-Encoding")]
    UnsupportedEncoding,
    /// RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing.
    #[error("Transfer-Encoding is not allowed in HTTP/1.0")]
    EncodingInHttp10,
    /// RFC 9112 §3.2: an HTTP/1.1 request must carry exactly one Host field.
    #[error("missing Host header")]
    MissingHost,
    #[error("more than one Host header")]
    DuplicateHost,
    /// The body (declared or de-chunked) is larger than the configured limit.
    #[error("request body is larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
    /// A chunked body does not follow RFC 9112 §7.1.
    #[error("malformed chunked body: {0}")]
    BadChunk(&'static str),
}

impl ParseError {
    /// The response status for this error.
    pub fn status(&self) -> u16 {
        match self {
            ParseError::HeadersTooLarge { .. } | ParseError::TooManyHeaders => 431,
            ParseError::BodyTooLarge { .. } => 413,
            ParseError::Version => 505,
            _ => 400,
        }
    }
}

/// Parses the request head at the start of `buf`.
pub fn parse_head(buf: &[u8], limits: &ServerLimits) -> Result<Parsed, ParseError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut fields);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            return if buf.len() > limits.max_header_bytes {
                Err(ParseError::HeadersTooLarge {
                    limit: limits.max_header_bytes,
                })
            } else {
                Ok(Parsed::Partial)
            };
        }
        Err(e) => return Err(from_httparse(e)),
    };
    if len > limits.max_header_bytes {
        return Err(ParseError::HeadersTooLarge {
            limit: limits.max_header_bytes,
        });
    }

    let base = buf.as_ptr() as usize;
    let range = |s: &[u8]| {
        let start = s.as_ptr() as usize - base;
        start..start + s.len()
    };
    let method = req.method.map(|m| range(m.as_bytes())).unwrap_or_default();
    let target = req.path.map(|p| range(p.as_bytes())).unwrap_or_default();
    let minor_version = req.version.unwrap_or(1);
    let is_head = req.method == Some("HEAD");

    let mut headers = Vec::with_capacity(req.headers.len());
    let mut host = None;
    let mut length = None;
    let mut chunked = false;
    let mut encoding_seen = false;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut expect_continue = false;
    for field in req.headers.iter() {
        let name = field.name.as_bytes();
        let value = field.value;
        headers.push((range(name), range(value)));
        if name.eq_ignore_ascii_case(b"host") {
            if host.is_some() {
                return Err(ParseError::DuplicateHost);
            }
            host = Some(range(value));
        } else if name.eq_ignore_ascii_case(b"content-length") {
            if length.is_some() {
                return Err(ParseError::DuplicateLength);
            }
            length = Some(parse_length(value)?);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // RFC 9112 §6.1: the codings are a list, possibly over several fields; chunked must be
            // the last one. We decode no other coding, so `chunked` must be the only one.
            for coding in tokens(value) {
                if !coding.eq_ignore_ascii_case(b"chunked") || chunked {
                    return Err(ParseError::UnsupportedEncoding);
                }
                chunked = true;
            }
            encoding_seen = true;
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in tokens(value) {
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case(b"expect") {
            expect_continue = value.eq_ignore_ascii_case(b"100-continue");
        }
    }

    if encoding_seen {
        if length.is_some() {
            return Err(ParseError::LengthAndEncoding);
        }
        if minor_version == 0 {
            return Err(ParseError::EncodingInHttp10);
        }
        if !chunked {
            return Err(ParseError::UnsupportedEncoding);
        }
    }
    let framing = if chunked {
        BodyFraming::Chunked
    } else {
        let n = length.unwrap_or(0);
        if n > limits.max_body_bytes as u64 {
            return Err(ParseError::BodyTooLarge {
                limit: limits.max_body_bytes,
            });
        }
        BodyFraming::Length(n)
    };
    let host = match host {
        Some(h) => h,
        None if minor_version == 0 => len..len,
        None => return Err(ParseError::MissingHost),
    };
    // RFC 9112 §9.3: HTTP/1.1 persists unless `close`; HTTP/1.0 only with `keep-alive`.
    let keep_alive = !close && (minor_version == 1 || keep_alive_token);

    Ok(Parsed::Complete(Head {
        method,
        target,
        minor_version,
        headers,
        host,
        len,
        framing,
        keep_alive,
        expect_continue,
        is_head,
    }))
}

/// RFC 9110 §8.6: `Content-Length = 1*DIGIT`. A list (`5, 5`) is refused rather than collapsed.
fn parse_length(value: &[u8]) -> Result<u64, ParseError> {
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return Err(if value.contains(&b',') {
            ParseError::DuplicateLength
        } else {
            ParseError::InvalidLength
        });
    }
    Ok(value.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

/// The comma-separated tokens of a list-valued field, trimmed, empty elements skipped
/// (RFC 9110 §5.6.1).
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

fn from_httparse(e: httparse::Error) -> ParseError {
    use httparse::Error as E;
    match e {
        E::Version => ParseError::Version,
        E::TooManyHeaders => ParseError::TooManyHeaders,
        E::HeaderName => ParseError::Malformed("invalid header name"),
        E::HeaderValue => ParseError::Malformed("invalid header value"),
        E::NewLine => ParseError::Malformed("invalid line ending"),
        E::Status => ParseError::Malformed("invalid status"),
        E::Token => ParseError::Malformed("invalid method or request target"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ServerLimits {
        ServerLimits::default()
    }

    fn complete(raw: &[u8]) -> Head {
        match parse_head(raw, &limits()) {
            Ok(Parsed::Complete(head)) => head,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(raw)),
        }
    }

    fn error(raw: &[u8]) -> ParseError {
        match parse_head(raw, &limits()) {
            Err(e) => e,
            other => panic!(
                "{:?}: expected an error, got {other:?}",
                String::from_utf8_lossy(raw)
            ),
        }
    }

    /// Every prefix of a valid head is `Partial`, the whole is `Complete` with the same result.
    fn check_every_split(raw: &[u8]) -> Head {
        let whole = complete(raw);
        for cut in 0..whole.len {
            assert_eq!(
                parse_head(&raw[..cut], &limits()),
                Ok(Parsed::Partial),
                "prefix of {cut} bytes of {:?}",
                String::from_utf8_lossy(raw)
            );
        }
        whole
    }

    #[test]
    fn records_offsets_of_every_part() {
        let raw = b"POST /a?b=c HTTP/1.1\r\nHost: example.test\r\nX-Two: 2\r\nContent-Length: 3\r\n\r\nabc";
        let head = check_every_split(raw);
        let bytes = Bytes::from_static(raw);
        let req = head.to_request(&bytes, bytes.slice(head.len..));
        assert_eq!(&req.method[..], b"POST");
        assert_eq!(&req.target[..], b"/a?b=c");
        assert_eq!(&req.host[..], b"example.test");
        assert_eq!(req.headers.len(), 3);
        assert_eq!(&req.headers[1].0[..], b"X-Two");
        assert_eq!(&req.headers[1].1[..], b"2");
        assert_eq!(&req.body[..], b"abc");
        assert_eq!(head.framing, BodyFraming::Length(3));
        assert_eq!(head.len, raw.len() - 3);
        assert!(head.keep_alive);
    }

    #[test]
    fn every_split_of_many_requests() {
        for raw in [
            &b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            b"GET / HTTP/1.0\r\n\r\n",
            b"HEAD /x HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
            b"PUT /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"\r\nGET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n",
        ] {
            check_every_split(raw);
        }
    }

    #[test]
    fn connection_persistence_follows_version_and_tokens() {
        assert!(complete(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").keep_alive);
        assert!(!complete(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n").keep_alive);
        assert!(
            !complete(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: te, close\r\n\r\n").keep_alive
        );
        assert!(!complete(b"GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(complete(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive);
    }

    #[test]
    fn head_and_expect_are_noticed() {
        let h = complete(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(h.is_head);
        let h = complete(
            b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n",
        );
        assert!(h.expect_continue && !h.is_head);
    }

    #[test]
    fn framing_rules_of_rfc_9112_section_6_3() {
        use ParseError::*;
        let cases: &[(&[u8], ParseError)] = &[
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", LengthAndEncoding),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", LengthAndEncoding),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", DuplicateLength),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\n", DuplicateLength),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", InvalidLength),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n", InvalidLength),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", InvalidLength),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", InvalidLength),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", InvalidLength),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", UnsupportedEncoding),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", UnsupportedEncoding),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", UnsupportedEncoding),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", UnsupportedEncoding),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", UnsupportedEncoding),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n", UnsupportedEncoding),
            (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", EncodingInHttp10),
            (b"GET / HTTP/1.1\r\n\r\n", MissingHost),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", DuplicateHost),
            (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", Version),
            (b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", Malformed("invalid header name")),
            (b"GET / HTTP/1.1\r\nBad Name: a\r\n\r\n", Malformed("invalid header name")),
            (b"G\x00T / HTTP/1.1\r\nHost: a\r\n\r\n", Malformed("invalid method or request target")),
        ];
        for (raw, expected) in cases {
            let got = error(raw);
            assert_eq!(&got, expected, "{:?}", String::from_utf8_lossy(raw));
            assert!(matches!(got.status(), 400 | 505));
        }
    }

    #[test]
    fn limits_give_431_and_413() {
        let small = ServerLimits {
            max_header_bytes: 64,
            max_body_bytes: 10,
        };
        let long = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
            "v".repeat(100)
        );
        let e = parse_head(long.as_bytes(), &small).unwrap_err();
        assert_eq!(
            (e.status(), e),
            (431, ParseError::HeadersTooLarge { limit: 64 })
        );
        // Still incomplete but already too long: refused without waiting for the rest.
        let e = parse_head(&long.as_bytes()[..80], &small).unwrap_err();
        assert_eq!(e.status(), 431);

        let e = parse_head(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n",
            &small,
        )
        .unwrap_err();
        assert_eq!(
            (e.status(), e),
            (413, ParseError::BodyTooLarge { limit: 10 })
        );
        assert!(
            parse_head(
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n",
                &small
            )
            .is_ok()
        );

        let mut many = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
        for i in 0..MAX_HEADERS {
            many.push_str(&format!("x-{i}: v\r\n"));
        }
        many.push_str("\r\n");
        let e = error(many.as_bytes());
        assert_eq!((e.status(), e), (431, ParseError::TooManyHeaders));
    }

    #[test]
    fn http10_without_host_is_allowed() {
        let h = complete(b"GET /x HTTP/1.0\r\n\r\n");
        assert_eq!(h.minor_version, 0);
        assert!(h.host.is_empty());
    }
}
