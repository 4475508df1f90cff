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
    /// The `Host` header's value (empty if absent).
    pub host: Bytes,
    /// The request target as received: origin form, e.g. `/hello?x=1`.
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
    /// The absolute URL the guest sees: `http://` (or `https://`) + host + target.
    pub fn url(&self) -> Vec<u8> {
        let mut url = Vec::with_capacity(8 + self.host.len() + self.target.len());
        url.extend_from_slice(if self.secure { b"https://" } else { b"http://" });
        url.extend_from_slice(&self.host);
        url.extend_from_slice(&self.target);
        url
    }

    /// The value of a header (case-insensitive name); several fields are joined with `", "`.
    pub fn header(&self, name: &[u8]) -> Option<Bytes> {
        header_value(&self.headers, name)
    }
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
