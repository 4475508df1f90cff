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

use crate::limits::{MAX_HEADERS, MAX_REQUEST_TARGET_BYTES, ServerLimits};

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
    /// The target in origin form (`/path?query`), or `*` (asterisk form, `OPTIONS` only). For an
    /// absolute-form target (`http://authority/path?query`) the path and query part; the
    /// authority became [`Head::host`].
    pub target: Range<usize>,
    /// The absolute-form target had an empty path (`http://a.test?q`): the Worker's target gets
    /// the `/` RFC 9110 §4.2.3 says it stands for.
    pub target_slash: bool,
    /// The minor version: `HTTP/1.0` → 0, `HTTP/1.1` → 1.
    pub minor_version: u8,
    /// Name and value of every header field, in order.
    pub headers: Vec<(Range<usize>, Range<usize>)>,
    /// The request's authority (host and optional port, syntax checked): the `Host` value, or the
    /// authority of an absolute-form target, which wins (RFC 9112 §3.2.2). Empty only when an
    /// HTTP/1.0 request has neither.
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
    /// The value of the first header field named `name` (case-insensitive), from the buffer the
    /// head was parsed from.
    pub fn header<'b>(&self, buf: &'b [u8], name: &[u8]) -> Option<&'b [u8]> {
        self.headers
            .iter()
            .find(|(n, _)| buf[n.clone()].eq_ignore_ascii_case(name))
            .map(|(_, v)| &buf[v.clone()])
    }

    /// Builds the [`Request`] the Worker sees. `head` is the frozen buffer the head was parsed from
    /// (at least `self.len` bytes); every field is a slice of it, not a copy.
    pub fn to_request(&self, head: &Bytes, body: Bytes) -> Request {
        Request {
            method: head.slice(self.method.clone()),
            host: head.slice(self.host.clone()),
            target: if self.target_slash {
                let mut target = Vec::with_capacity(self.target.len() + 1);
                target.push(b'/');
                target.extend_from_slice(&head[self.target.clone()]);
                target.into()
            } else {
                head.slice(self.target.clone())
            },
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
    /// RFC 9112 §3.2: a Host value (or the authority of an absolute-form target) that is not
    /// `host [":" port]` (RFC 3986 §3.2.2), e.g. empty, or with `@`, `/`, `?` or spaces.
    #[error("invalid Host: {0}")]
    InvalidHost(&'static str),
    /// RFC 9112 §3.2: not an origin-form, absolute-form or (for `OPTIONS`) asterisk-form target.
    #[error("invalid request target: {0}")]
    InvalidTarget(&'static str),
    /// RFC 9112 §3: the request target is longer than the server parses.
    #[error("request target is longer than {limit} bytes")]
    TargetTooLong { limit: usize },
    /// RFC 9110 §10.1.1: an `Expect` other than `100-continue`.
    #[error("unsupported expectation (only 100-continue is supported)")]
    Expectation,
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
            ParseError::TargetTooLong { .. } => 414,
            ParseError::Expectation => 417,
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
            if request_line_too_long(buf) {
                return Err(ParseError::TargetTooLong {
                    limit: MAX_REQUEST_TARGET_BYTES,
                });
            }
            return if buf.len() > limits.max_header_bytes {
                Err(ParseError::HeadersTooLarge {
                    limit: limits.max_header_bytes,
                })
            } else {
                Ok(Parsed::Partial)
            };
        }
        Err(httparse::Error::Version) if target_has_whitespace(buf) => {
            return Err(ParseError::InvalidTarget(
                "whitespace in the request target",
            ));
        }
        Err(e) => return Err(from_httparse(e)),
    };
    if len > limits.max_header_bytes {
        return Err(ParseError::HeadersTooLarge {
            limit: limits.max_header_bytes,
        });
    }
    // RFC 9112 §2.2: httparse, like many parsers, also ends a line at a bare LF; a proxy in front
    // that does not would see different header fields (`X: a\nTransfer-Encoding: chunked`).
    if has_bare_lf(&buf[..len]) {
        return Err(ParseError::Malformed("a line ends in LF without CR"));
    }

    let base = buf.as_ptr() as usize;
    let range = |s: &[u8]| {
        let start = s.as_ptr() as usize - base;
        start..start + s.len()
    };
    let method = req.method.map(|m| range(m.as_bytes())).unwrap_or_default();
    let path = req.path.unwrap_or_default().as_bytes();
    let minor_version = req.version.unwrap_or(1);
    let is_head = req.method == Some("HEAD");
    if path.len() > MAX_REQUEST_TARGET_BYTES {
        return Err(ParseError::TargetTooLong {
            limit: MAX_REQUEST_TARGET_BYTES,
        });
    }
    let target = parse_target(path, req.method == Some("OPTIONS"))?;
    let (target, target_slash, target_authority) = match target {
        Target::Origin => (range(path), false, None),
        Target::Absolute { authority, path } => {
            (range(path), !path.starts_with(b"/"), Some(range(authority)))
        }
    };

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
            check_authority(value)?;
            host = Some(headers.len() - 1);
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
            for expectation in tokens(value) {
                if !expectation.eq_ignore_ascii_case(b"100-continue") {
                    return Err(ParseError::Expectation);
                }
                expect_continue = true;
            }
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
    let host = match (host, target_authority) {
        (None, _) if minor_version == 1 => return Err(ParseError::MissingHost),
        // RFC 9112 §3.2.2: the target's authority wins, and the Worker sees one host: the Host
        // field says the same.
        (Some(field), Some(authority)) => {
            headers[field].1 = authority.clone();
            authority
        }
        (None, Some(authority)) => authority,
        (Some(field), None) => headers[field].1.clone(),
        (None, None) => len..len,
    };
    // RFC 9112 §9.3: HTTP/1.1 persists unless `close`; HTTP/1.0 only with `keep-alive`.
    let keep_alive = !close && (minor_version == 1 || keep_alive_token);

    Ok(Parsed::Complete(Head {
        method,
        target,
        target_slash,
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

/// The form of a request target (RFC 9112 §3.2).
enum Target<'a> {
    /// `/path?query`, or `*` for `OPTIONS`.
    Origin,
    /// `http://authority/path?query` (scheme `http` or `https`): the authority, and the path and
    /// query (possibly empty).
    Absolute { authority: &'a [u8], path: &'a [u8] },
}

fn parse_target(target: &[u8], options: bool) -> Result<Target<'_>, ParseError> {
    let bad = |why| Err(ParseError::InvalidTarget(why));
    // A fragment is never sent (RFC 9112 §3.2); `#` in a target is an attack or a broken client.
    if target.contains(&b'#') {
        return bad("a fragment (#) in the request target");
    }
    match target.first() {
        Some(b'/') => return Ok(Target::Origin),
        Some(b'*') if target.len() == 1 => {
            return if options {
                Ok(Target::Origin)
            } else {
                bad("the asterisk form is only for OPTIONS")
            };
        }
        _ => {}
    }
    let rest = strip_prefix_ignore_case(target, b"http://")
        .or_else(|| strip_prefix_ignore_case(target, b"https://"));
    let Some(rest) = rest else {
        return bad("expected /path, an absolute http(s) URL, or * for OPTIONS");
    };
    let end = rest
        .iter()
        .position(|&c| c == b'/' || c == b'?')
        .unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    check_authority(authority)?;
    Ok(Target::Absolute { authority, path })
}

fn strip_prefix_ignore_case<'a>(s: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &s[prefix.len()..])
}

/// RFC 3986 §3.2.2-3 as RFC 9110 §4.2.1 narrows it for `http`: `host [":" port]`, the host a
/// non-empty reg-name (unreserved, sub-delims, percent-encodings) or a bracketed IP literal, no
/// userinfo. Anything else could make the authority the Worker sees differ from the one the
/// request was routed by.
pub fn check_authority(authority: &[u8]) -> Result<(), ParseError> {
    let bad = |why| Err(ParseError::InvalidHost(why));
    let (host, port) = if authority.first() == Some(&b'[') {
        let Some(close) = authority.iter().position(|&c| c == b']') else {
            return bad("unclosed IP literal");
        };
        let literal = &authority[1..close];
        if literal.is_empty()
            || !literal
                .iter()
                .all(|&c| c.is_ascii_hexdigit() || c == b':' || c == b'.')
        {
            return bad("invalid IP literal");
        }
        (&authority[..=close], &authority[close + 1..])
    } else {
        match authority.iter().position(|&c| c == b':') {
            Some(colon) => (&authority[..colon], &authority[colon..]),
            None => (authority, &b""[..]),
        }
    };
    if host.is_empty() {
        return bad("empty host");
    }
    if host[0] != b'[' {
        let mut i = 0;
        while i < host.len() {
            let c = host[i];
            if c == b'%' {
                if !(host.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                    && host.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
                {
                    return bad("invalid percent-encoding");
                }
                i += 3;
                continue;
            }
            let unreserved = c.is_ascii_alphanumeric() || b"-._~".contains(&c);
            let sub_delim = b"!$&'()*+,;=".contains(&c);
            if !(unreserved || sub_delim) {
                return bad("a character that cannot be in a host name");
            }
            i += 1;
        }
    }
    if let Some(digits) = port.strip_prefix(b":") {
        if digits.is_empty() || digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) {
            return bad("invalid port");
        }
    } else if !port.is_empty() {
        return bad("junk after the IP literal");
    }
    Ok(())
}

/// Whether a line of `head` ends in a bare LF (RFC 9112 §2.2 allows servers to accept it; we
/// do not, since a proxy in front may not).
fn has_bare_lf(head: &[u8]) -> bool {
    head.iter()
        .enumerate()
        .any(|(i, &c)| c == b'\n' && (i == 0 || head[i - 1] != b'\r'))
}

/// Bytes of method, spaces and version around a target on a request line (`OPTIONS ` and
/// ` HTTP/1.1\r\n`, with room to spare).
const REQUEST_LINE_SLACK: usize = 64;

/// The request line at the start of `buf` (after the empty lines RFC 9112 §2.2 lets a server
/// skip), without its line ending, and whether its LF has arrived.
fn request_line(buf: &[u8]) -> (&[u8], bool) {
    let start = buf
        .iter()
        .position(|&c| c != b'\r' && c != b'\n')
        .unwrap_or(buf.len());
    let line = &buf[start..];
    match line.iter().position(|&c| c == b'\r' || c == b'\n') {
        Some(end) => (&line[..end], line[end..].contains(&b'\n')),
        None => (line, false),
    }
}

/// Whether the request line still arriving (no LF yet) is already too long for any target we
/// accept: `414` at once rather than `431` once the whole head limit is spent.
fn request_line_too_long(buf: &[u8]) -> bool {
    let (line, ended) = request_line(buf);
    !ended && line.len() > MAX_REQUEST_TARGET_BYTES + REQUEST_LINE_SLACK
}

/// Whether the request line has more than the two spaces that separate method, target and
/// version: a space inside the target is a malformed request (400), not an unknown version.
fn target_has_whitespace(buf: &[u8]) -> bool {
    let (line, _) = request_line(buf);
    line.iter().filter(|&&c| c == b' ' || c == b'\t').count() > 2
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
            ..ServerLimits::default()
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
    fn hosts_and_targets_of_rfc_9112_section_3() {
        use ParseError::*;
        let cases: &[(&[u8], ParseError)] = &[
            (
                b"GET / HTTP/1.1\r\nHost: \r\n\r\n",
                InvalidHost("empty host"),
            ),
            (
                b"GET / HTTP/1.1\r\nHost: echo.evil.test?.example.test\r\n\r\n",
                InvalidHost("a character that cannot be in a host name"),
            ),
            (
                b"GET / HTTP/1.1\r\nHost: user@a.test\r\n\r\n",
                InvalidHost("a character that cannot be in a host name"),
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a.test/x\r\n\r\n",
                InvalidHost("a character that cannot be in a host name"),
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a.test:\r\n\r\n",
                InvalidHost("invalid port"),
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a.test:8x\r\n\r\n",
                InvalidHost("invalid port"),
            ),
            (
                b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n",
                InvalidHost("unclosed IP literal"),
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a%zz\r\n\r\n",
                InvalidHost("invalid percent-encoding"),
            ),
            (
                b"GET @evil.test/x HTTP/1.1\r\nHost: a.test\r\n\r\n",
                InvalidTarget("expected /path, an absolute http(s) URL, or * for OPTIONS"),
            ),
            (
                b"GET http://user@evil.test/x HTTP/1.1\r\nHost: a.test\r\n\r\n",
                InvalidHost("a character that cannot be in a host name"),
            ),
            (
                b"GET http:///x HTTP/1.1\r\nHost: a.test\r\n\r\n",
                InvalidHost("empty host"),
            ),
            (
                b"GET ftp://a.test/x HTTP/1.1\r\nHost: a.test\r\n\r\n",
                InvalidTarget("expected /path, an absolute http(s) URL, or * for OPTIONS"),
            ),
            (
                b"GET * HTTP/1.1\r\nHost: a.test\r\n\r\n",
                InvalidTarget("the asterisk form is only for OPTIONS"),
            ),
            (
                b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test\r\n\r\n",
                InvalidTarget("expected /path, an absolute http(s) URL, or * for OPTIONS"),
            ),
            (
                b"GET /a#frag HTTP/1.1\r\nHost: a.test\r\n\r\n",
                InvalidTarget("a fragment (#) in the request target"),
            ),
            (
                b"GET /a b HTTP/1.1\r\nHost: a.test\r\n\r\n",
                InvalidTarget("whitespace in the request target"),
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a.test\r\nX: a\nTransfer-Encoding: chunked\r\n\r\n",
                Malformed("a line ends in LF without CR"),
            ),
            (
                b"GET / HTTP/1.1\nHost: a.test\r\n\r\n",
                Malformed("a line ends in LF without CR"),
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a.test\r\nExpect: foo\r\n\r\n",
                Expectation,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a.test\r\nExpect: 100-continue, foo\r\n\r\n",
                Expectation,
            ),
        ];
        for (raw, expected) in cases {
            let got = error(raw);
            assert_eq!(&got, expected, "{:?}", String::from_utf8_lossy(raw));
        }
        assert_eq!(
            error(b"GET / HTTP/1.1\r\nHost: a\r\nExpect: foo\r\n\r\n").status(),
            417
        );
        assert_eq!(error(b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n").status(), 400);

        for ok in [
            &b"a.test"[..],
            b"A.Test:8080",
            b"127.0.0.1:1",
            b"[::1]:8080",
            b"[2001:db8::1]",
            b"xn--bcher-kva.test",
            b"a%2Db.test",
        ] {
            assert_eq!(
                check_authority(ok),
                Ok(()),
                "{:?}",
                String::from_utf8_lossy(ok)
            );
        }
    }

    #[test]
    fn an_absolute_target_s_authority_wins_and_the_worker_sees_one_host() {
        let raw = b"GET http://Echo.Example.Test:8080/x?y=1 HTTP/1.1\r\nHost: other.test\r\n\r\n";
        let head = check_every_split(raw);
        let bytes = Bytes::from_static(raw);
        let req = head.to_request(&bytes, Bytes::new());
        assert_eq!(&req.host[..], b"Echo.Example.Test:8080");
        assert_eq!(&req.target[..], b"/x?y=1");
        assert_eq!(req.url(), b"http://Echo.Example.Test:8080/x?y=1");
        assert_eq!(
            req.header(b"host").as_deref(),
            Some(&b"Echo.Example.Test:8080"[..])
        );

        let raw = b"GET HTTPS://a.test?q HTTP/1.1\r\nHost: a.test\r\n\r\n";
        let head = check_every_split(raw);
        let bytes = Bytes::from_static(raw);
        let req = head.to_request(&bytes, Bytes::new());
        assert_eq!(&req.target[..], b"/?q");
        assert_eq!(req.url(), b"http://a.test/?q");

        let raw = b"OPTIONS * HTTP/1.1\r\nHost: a.test\r\n\r\n";
        let head = check_every_split(raw);
        let bytes = Bytes::from_static(raw);
        let req = head.to_request(&bytes, Bytes::new());
        assert_eq!(req.url(), b"http://a.test");
    }

    #[test]
    fn a_long_target_is_414_even_before_the_line_ends() {
        let target = "/".to_string() + &"a".repeat(MAX_REQUEST_TARGET_BYTES + REQUEST_LINE_SLACK);
        let raw = format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n");
        let e = error(raw.as_bytes());
        assert_eq!(
            (e.status(), e),
            (
                414,
                ParseError::TargetTooLong {
                    limit: MAX_REQUEST_TARGET_BYTES
                }
            )
        );
        let e = error(&raw.as_bytes()[..MAX_REQUEST_TARGET_BYTES + REQUEST_LINE_SLACK + 8]);
        assert_eq!(e.status(), 414);
        // Just under the limit is fine.
        let target = "/".to_string() + &"a".repeat(MAX_REQUEST_TARGET_BYTES - 1);
        complete(format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes());
    }

    #[test]
    fn http10_without_host_is_allowed() {
        let h = complete(b"GET /x HTTP/1.0\r\n\r\n");
        assert_eq!(h.minor_version, 0);
        assert!(h.host.is_empty());
    }
}
