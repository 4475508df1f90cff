//! The response: built in guest memory, then written through host calls in one go.

use std::io;

use crate::error::{Error, check};
use crate::sys;

/// The response a Worker returns.
///
/// A builder: status, header operations and body are kept in guest memory and handed to the host
/// by [`send`](Response::send), which [`main!`](crate::main) calls when the handler returns.
/// Header operations are replayed in order, so [`header`](Response::header) replaces every earlier
/// field of that name and [`append_header`](Response::append_header) keeps them, as the host does.
/// Invalid names or values and limits are reported by `send` (and make the invocation fail).
///
/// For a body too large to build in memory first, [`stream`](Response::stream) sends the head and
/// returns a writer.
///
/// The host computes `Content-Length` and framing itself: `content-length`, `transfer-encoding`
/// and `connection` fields set here are ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    status: u16,
    headers: Vec<HeaderOp>,
    body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct HeaderOp {
    name: String,
    value: String,
    append: bool,
}

/// The host's default status.
const DEFAULT_STATUS: u16 = 200;

impl Default for Response {
    fn default() -> Response {
        Response::new()
    }
}

impl Response {
    /// `200`, no headers, empty body.
    pub fn new() -> Response {
        Response {
            status: DEFAULT_STATUS,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// `200 OK`; the same as [`Response::new`], read as intent.
    pub fn ok() -> Response {
        Response::new()
    }

    /// A response with `status` (`200..=599`).
    pub fn with_status(status: u16) -> Response {
        Response::new().status(status)
    }

    /// Sets the status (`200..=599`; checked by the host when sent).
    pub fn status(mut self, status: u16) -> Response {
        self.status = status;
        self
    }

    /// Sets the field `name` to `value`, replacing every earlier field of that name.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Response {
        self.headers.push(HeaderOp {
            name: name.into(),
            value: value.into(),
            append: false,
        });
        self
    }

    /// Adds a field, keeping earlier ones of the same name (e.g. several `set-cookie`).
    pub fn append_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Response {
        self.headers.push(HeaderOp {
            name: name.into(),
            value: value.into(),
            append: true,
        });
        self
    }

    /// Sets the body, replacing any earlier one. Takes `&str`, `String`, `&[u8]`, `Vec<u8>`, …;
    /// an owned `String` or `Vec` is moved, not copied. To append, use `std::io::Write` on the
    /// response (`write!(resp, ...)`).
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Response {
        self.body = body.into();
        self
    }

    /// The status set so far.
    pub fn status_code(&self) -> u16 {
        self.status
    }

    /// The body set so far.
    pub fn body_bytes(&self) -> &[u8] {
        &self.body
    }

    /// Hands the response to the host: status, header operations in order, then the body.
    pub fn send(self) -> Result<(), Error> {
        let mut writer = self.send_head()?;
        writer.write_bytes(&self.body)
    }

    /// Sends status and headers (and any body set so far) and returns a writer for the rest of
    /// the body. The handler then returns `()` or `Ok(())` instead of a `Response`.
    pub fn stream(self) -> Result<BodyWriter, Error> {
        let mut writer = self.send_head()?;
        writer.write_bytes(&self.body)?;
        Ok(writer)
    }

    fn send_head(&self) -> Result<BodyWriter, Error> {
        let resp = sys::RESPONSE;
        if self.status != DEFAULT_STATUS {
            // SAFETY: no pointers.
            check(unsafe { sys::response_set_status(resp, i32::from(self.status)) })?;
        }
        for op in &self.headers {
            let (n, v) = (op.name.as_bytes(), op.value.as_bytes());
            // SAFETY: `n` and `v` are live byte slices the host only reads.
            let ret = unsafe {
                if op.append {
                    sys::response_header_append(resp, n.as_ptr(), n.len(), v.as_ptr(), v.len())
                } else {
                    sys::response_header_set(resp, n.as_ptr(), n.len(), v.as_ptr(), v.len())
                }
            };
            check(ret)?;
        }
        Ok(BodyWriter { handle: resp })
    }
}

/// Appends to the body in guest memory (nothing reaches the host before [`Response::send`]).
impl io::Write for Response {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.body.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes the response body straight to the host ([`Response::stream`]).
#[derive(Debug)]
pub struct BodyWriter {
    handle: i32,
}

impl BodyWriter {
    /// Writes all of `bytes`; [`Error::Limit`] past the response body limit.
    pub fn write_bytes(&mut self, bytes: &[u8]) -> Result<(), Error> {
        if bytes.is_empty() {
            return Ok(());
        }
        // SAFETY: `bytes` is a live slice the host only reads.
        check(unsafe { sys::response_body_write(self.handle, bytes.as_ptr(), bytes.len()) })?;
        Ok(())
    }
}

impl io::Write for BodyWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_bytes(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn builder_keeps_status_ops_and_body() {
        let mut resp = Response::ok()
            .status(404)
            .header("content-type", "text/plain")
            .append_header("set-cookie", "a=1")
            .append_header("set-cookie", String::from("b=2"))
            .body("no ");
        let name = "X";
        write!(resp, "binding {name}").unwrap();
        assert_eq!(resp.status_code(), 404);
        assert_eq!(resp.body_bytes(), b"no binding X");
        assert_eq!(resp.headers.len(), 3);
        assert!(resp.headers[1].append && !resp.headers[0].append);
        assert_eq!(Response::default(), Response::with_status(200));
    }

    #[test]
    fn sending_off_wasm_is_unsupported() {
        if cfg!(target_arch = "wasm32") {
            return;
        }
        assert_eq!(Response::ok().body("x").send(), Err(Error::Unsupported));
        // A plain 200 with no headers and no body makes no host call at all.
        assert_eq!(Response::ok().send(), Ok(()));
    }
}
