//! The request a Worker reads and the response it builds.
//!
//! Fields are [`Bytes`] slices of the ingress read buffer, so building a [`Request`] copies no
//! header bytes; the guest copies what it asks for, once, into its own memory.

use bytes::Bytes;

/// An incoming HTTP request as the guest sees it.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// The method token, e.g. `GET`.
    pub method: Bytes,
    /// The authority (host and optional port): the `Host` header's value, or an absolute-form
    /// target's authority (empty only for an HTTP/1.0 request without either).
    pub host: Bytes,
    /// The request target in origin form, e.g. `/hello?x=1` (`*` for `OPTIONS *`).
    pub target: Bytes,
    /// Header fields in the order received, names as sent.
    pub headers: Vec<(Bytes, Bytes)>,
    /// The complete, de-chunked body.
    pub body: Bytes,
    /// The URL's scheme is `https` (only for requests a Worker built; the ingress speaks plain
    /// HTTP).
    pub secure: bool,
}

impl Request {
    /// The absolute URL the guest sees: `http://` (or `https://`) + host + target, built from
    /// parts the ingress checked (a valid authority; an origin-form target). For `OPTIONS *`
    /// the URL is the authority alone (RFC 9112 §3.3).
    pub fn url(&self) -> Vec<u8> {
        let mut url = Vec::with_capacity(8 + self.host.len() + self.target.len());
        url.extend_from_slice(if self.secure { b"https://" } else { b"http://" });
        url.extend_from_slice(&self.host);
        if &self.target[..] != b"*" {
            url.extend_from_slice(&self.target);
        }
        url
    }

    /// The value of a header (case-insensitive name); several fields are joined with `", "`.
    pub fn header(&self, name: &[u8]) -> Option<Bytes> {
        header_value(&self.headers, name)
    }
}

/// The lowest status a Worker may answer with. RFC 9110 §15: 1xx responses are interim; they
/// belong to the connection (the server sends `100 Continue` itself), and a 1xx sent as *the*
/// answer would make the client take the next response on the connection for this request's.
pub const FINAL_STATUS_MIN: u16 = 200;
/// The highest status a Worker may answer with: three digits, and RFC 9110 defines no class
/// above 5xx.
pub const FINAL_STATUS_MAX: u16 = 599;

/// RFC 9110 §5.6.2 `tchar`: the characters of a token (methods, field names, chunk extensions).
pub fn is_tchar(c: u8) -> bool {
    // A `match`, not a search of the list: it runs for every byte of every header name a guest
    // writes.
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// Whether `status` may be the final answer to a request (`200..=599`).
pub fn is_final_status(status: u16) -> bool {
    (FINAL_STATUS_MIN..=FINAL_STATUS_MAX).contains(&status)
}

/// The value of field `name` in `headers` (case-insensitive); several fields are joined with
/// `", "`.
pub(crate) fn header_value(headers: &[(Bytes, Bytes)], name: &[u8]) -> Option<Bytes> {
    let mut found = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v);
    let first = found.next()?;
    let Some(second) = found.next() else {
        return Some(first.clone());
    };
    let mut joined = Vec::from(&first[..]);
    for v in std::iter::once(second).chain(found) {
        joined.extend_from_slice(b", ");
        joined.extend_from_slice(v);
    }
    Some(joined.into())
}

/// The length of what [`header_value`] returns for `name`, without building it (0 if absent).
pub(crate) fn header_value_len(headers: &[(Bytes, Bytes)], name: &[u8]) -> usize {
    let (count, bytes) = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .fold((0usize, 0usize), |(c, b), (_, v)| (c + 1, b + v.len()));
    bytes + 2 * count.saturating_sub(1)
}

/// Bytes of header names and values together.
pub(crate) fn headers_bytes(headers: &[(Bytes, Bytes)]) -> usize {
    headers.iter().map(|(n, v)| n.len() + v.len()).sum()
}

/// A response built by a guest (or by the host, for faults).
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header fields; never `content-length`, `transfer-encoding` or `connection`, which the
    /// ingress writes itself.
    pub headers: Vec<(Bytes, Bytes)>,
    pub body: Bytes,
}

impl Default for Response {
    fn default() -> Self {
        Response {
            status: 200,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }
}

impl Response {
    /// A plain-text response, as the host sends for faults and routing errors.
    pub fn text(status: u16, body: impl Into<Bytes>) -> Self {
        Response {
            status,
            headers: vec![(
                Bytes::from_static(b"content-type"),
                Bytes::from_static(b"text/plain; charset=utf-8"),
            )],
            body: body.into(),
        }
    }
}
