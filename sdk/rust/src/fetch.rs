//! Subrequests: [`fetch`] sends an HTTP request to the network (through the outbound Worker, if
//! the platform set one); calls to other Workers go through a `service` binding (a Worker of the
//! same namespace) or, from a platform Worker, a `dispatch_namespace` binding (any customer
//! Worker of that namespace, by name, under per-call limits), on the same node without a
//! network hop. The caller waits while its core keeps serving.
//!
//! ```no_run
//! use tenantry_sdk::fetch::{self, CallLimits, FetchError};
//! use tenantry_sdk::{Request, Response};
//!
//! // A dispatcher: the first label of the host names the customer's Worker.
//! fn handle(req: Request) -> Result<Response, tenantry_sdk::Error> {
//!     let url = req.url();
//!     let host = url.trim_start_matches("http://").split(['/', ':']).next().unwrap_or("");
//!     let name = host.split('.').next().unwrap_or("");
//!     let worker = fetch::dispatch_namespace("DISPATCHER")
//!         .get(name)
//!         .limits(CallLimits { cpu_ms: 10, ..CallLimits::default() });
//!     match worker.fetch(&fetch::OutgoingRequest::from_incoming(&req)?) {
//!         Ok(resp) => {
//!             resp.forward()?; // the customer's response, as is…
//!             Ok(Response::new().header("x-dispatched-by", "platform")) // …plus a header
//!         }
//!         Err(FetchError::NotFound(_)) => Ok(Response::with_status(404).body("no such customer\n")),
//!         Err(FetchError::Exceeded(why)) => Ok(Response::with_status(503).body(why)),
//!         Err(e) => Ok(Response::with_status(502).body(e.to_string())),
//!     }
//! }
//! tenantry_sdk::main!(handle);
//! # fn main() {}
//! ```

use std::fmt;

use crate::buf::{read_chunk, read_value};
use crate::error::{Error, check};
use crate::request::{Request, parse_header_list};
use crate::sys;

/// A request to send to another Worker. Each one is a host object of this invocation.
#[derive(Debug)]
pub struct OutgoingRequest {
    handle: i32,
}

impl OutgoingRequest {
    /// A new request with `method` and `url` (`http://host/path?query`; the host is what the
    /// called Worker sees).
    pub fn new(method: &str, url: &str) -> Result<OutgoingRequest, Error> {
        // SAFETY: no pointers.
        let handle = check(unsafe { sys::request_new() })? as i32;
        OutgoingRequest { handle }.method(method)?.url(url)
    }

    /// A copy of a request (usually the incoming one) to forward, changed or as is.
    pub fn from_incoming(req: &Request) -> Result<OutgoingRequest, Error> {
        // SAFETY: no pointers.
        let handle = check(unsafe { sys::request_clone(req.handle()) })? as i32;
        Ok(OutgoingRequest { handle })
    }

    /// Sets the method.
    pub fn method(self, method: &str) -> Result<Self, Error> {
        // SAFETY: `method` is a live `&str` the host only reads.
        check(unsafe { sys::request_set_method(self.handle, method.as_ptr(), method.len()) })?;
        Ok(self)
    }

    /// Sets the URL; a `/path?query` keeps the host.
    pub fn url(self, url: &str) -> Result<Self, Error> {
        // SAFETY: as in `method`.
        check(unsafe { sys::request_set_url(self.handle, url.as_ptr(), url.len()) })?;
        Ok(self)
    }

    /// Sets a header, replacing every field of that name.
    pub fn header(self, name: &str, value: &str) -> Result<Self, Error> {
        let (n, v) = (name.as_bytes(), value.as_bytes());
        // SAFETY: as in `method`.
        check(unsafe {
            sys::request_header_set(self.handle, n.as_ptr(), n.len(), v.as_ptr(), v.len())
        })?;
        Ok(self)
    }

    /// Removes every field of that name (absent is fine).
    pub fn remove_header(self, name: &str) -> Result<Self, Error> {
        // SAFETY: as in `method`.
        match check(unsafe { sys::request_header_remove(self.handle, name.as_ptr(), name.len()) }) {
            Ok(_) | Err(Error::NotFound) => Ok(self),
            Err(e) => Err(e),
        }
    }

    /// Appends to the body.
    pub fn body(self, body: &[u8]) -> Result<Self, Error> {
        // SAFETY: as in `method`.
        check(unsafe { sys::request_body_write(self.handle, body.as_ptr(), body.len()) })?;
        Ok(self)
    }
}

/// Why a fetch failed, with the host's explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// The named Worker does not exist (a dispatcher usually answers `404`).
    NotFound(String),
    /// The called Worker exceeded its CPU, wall-clock or memory limit (per call or its own; a
    /// dispatcher usually answers `429` or `503`).
    Exceeded(String),
    /// A subrequest was refused by the node's egress policy or failed on the network.
    Network(String),
    /// Anything else: no such binding, the subrequest budget is spent, calls nested too deep, …
    Failed(Error, String),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::NotFound(why) | FetchError::Exceeded(why) | FetchError::Network(why) => {
                f.write_str(why)
            }
            FetchError::Failed(e, why) => write!(f, "{why} ({e})"),
        }
    }
}

impl std::error::Error for FetchError {}

/// The host's explanation of the last failed fetch or body read.
pub fn last_error() -> String {
    // SAFETY: `read_value` passes `cap` writable bytes it owns.
    read_value(256, |ptr, cap| unsafe { sys::fetch_error(ptr, cap) })
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn fetch_result(ret: i32) -> Result<FetchedResponse, FetchError> {
    match check(ret) {
        Ok(handle) => Ok(FetchedResponse {
            handle: handle as i32,
        }),
        Err(e) => {
            // SAFETY: `read_value` passes `cap` writable bytes it owns.
            let why = read_value(256, |ptr, cap| unsafe { sys::fetch_error(ptr, cap) })
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            Err(match e {
                Error::WorkerNotFound => FetchError::NotFound(why),
                Error::Exceeded => FetchError::Exceeded(why),
                Error::Network => FetchError::Network(why),
                e => FetchError::Failed(e, why),
            })
        }
    }
}

/// Sends `req` over HTTP/1.1 (`http://` only) and waits for the response. If the platform
/// dispatched this Worker with an outbound Worker, the request goes to it instead, and it decides.
pub fn fetch(req: &OutgoingRequest) -> Result<FetchedResponse, FetchError> {
    // SAFETY: no pointers.
    fetch_result(unsafe { sys::fetch(req.handle) })
}

/// A `service` binding: another Worker of this namespace.
#[derive(Debug, Clone)]
pub struct Service {
    binding: String,
}

/// The Worker behind the `service` binding `binding`.
pub fn service(binding: &str) -> Service {
    Service {
        binding: binding.to_string(),
    }
}

impl Service {
    /// Sends `req` to the bound Worker and waits for its response.
    pub fn fetch(&self, req: &OutgoingRequest) -> Result<FetchedResponse, FetchError> {
        let b = self.binding.as_bytes();
        // SAFETY: `b` is a live slice the host only reads.
        fetch_result(unsafe { sys::service_fetch(b.as_ptr(), b.len(), req.handle) })
    }
}

/// A `dispatch_namespace` binding: a namespace of customer Workers (platform Workers only).
#[derive(Debug, Clone)]
pub struct DispatchNamespace {
    binding: String,
}

/// The namespace behind the `dispatch_namespace` binding `binding`.
pub fn dispatch_namespace(binding: &str) -> DispatchNamespace {
    DispatchNamespace {
        binding: binding.to_string(),
    }
}

impl DispatchNamespace {
    /// The customer Worker `name` (whether it exists is known when it is fetched).
    pub fn get(&self, name: &str) -> UserWorker {
        UserWorker {
            binding: self.binding.clone(),
            name: name.to_string(),
            limits: CallLimits::default(),
            outbound: Vec::new(),
        }
    }
}

/// Limits for one call; `0` leaves a limit to the Worker's own. The lower of the two applies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallLimits {
    pub cpu_ms: u32,
    pub memory_mb: u32,
    pub wall_ms: u32,
    pub subrequests: u32,
}

impl CallLimits {
    fn encode(&self) -> [u8; 16] {
        let mut out = [0; 16];
        for (i, v) in [self.cpu_ms, self.memory_mb, self.wall_ms, self.subrequests]
            .into_iter()
            .enumerate()
        {
            out[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
        }
        out
    }
}

/// A customer Worker in a dispatch namespace, with the limits its calls get.
#[derive(Debug, Clone)]
pub struct UserWorker {
    binding: String,
    name: String,
    limits: CallLimits,
    outbound: Vec<(String, String)>,
}

/// `s` as a JSON string literal.
pub(crate) fn json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

impl UserWorker {
    /// Sets the per-call limits.
    pub fn limits(mut self, limits: CallLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Passes a parameter to the binding's outbound Worker (which sees it as a `plain_text`
    /// binding). Only parameters the binding declares are accepted.
    pub fn outbound_param(mut self, name: &str, value: &str) -> Self {
        self.outbound.push((name.to_string(), value.to_string()));
        self
    }

    fn options(&self) -> Vec<u8> {
        if self.limits == CallLimits::default() && self.outbound.is_empty() {
            return Vec::new();
        }
        let mut opts = self.limits.encode().to_vec();
        if !self.outbound.is_empty() {
            let mut json = String::from("{");
            for (i, (name, value)) in self.outbound.iter().enumerate() {
                if i > 0 {
                    json.push(',');
                }
                json_string(name, &mut json);
                json.push(':');
                json_string(value, &mut json);
            }
            json.push('}');
            opts.extend_from_slice(json.as_bytes());
        }
        opts
    }

    /// Sends `req` to the Worker and waits for its response.
    pub fn fetch(&self, req: &OutgoingRequest) -> Result<FetchedResponse, FetchError> {
        let (b, n) = (self.binding.as_bytes(), self.name.as_bytes());
        let opts = self.options();
        // SAFETY: every slice is live and only read by the host.
        fetch_result(unsafe {
            sys::dispatch_fetch(
                b.as_ptr(),
                b.len(),
                n.as_ptr(),
                n.len(),
                opts.as_ptr(),
                opts.len(),
                req.handle,
            )
        })
    }
}

/// The response of a fetch.
#[derive(Debug)]
pub struct FetchedResponse {
    handle: i32,
}

impl FetchedResponse {
    /// A response handle the host returned (also used by [`crate::kv`]).
    pub(crate) fn from_handle(handle: i32) -> FetchedResponse {
        FetchedResponse { handle }
    }
}

impl FetchedResponse {
    /// The status code.
    pub fn status(&self) -> u16 {
        // SAFETY: no pointers.
        let s = unsafe { sys::response_status(self.handle) };
        u16::try_from(s).unwrap_or(0)
    }

    /// A header's value (several fields joined by `", "`), or `None`.
    pub fn header(&self, name: &str) -> Option<String> {
        // SAFETY: `name` is live; `read_value` passes `cap` writable bytes it owns.
        read_value(128, |ptr, cap| unsafe {
            sys::response_header(self.handle, name.as_ptr(), name.len(), ptr, cap)
        })
        .ok()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    /// Every header field as `(name, value)`.
    pub fn headers(&self) -> Vec<(String, String)> {
        // SAFETY: as in `header`.
        let text = read_value(1024, |ptr, cap| unsafe {
            sys::response_headers(self.handle, ptr, cap)
        })
        .unwrap_or_default();
        parse_header_list(&text)
    }

    /// Reads the next part of the body into `buf`; `0` at the end. A subrequest's body streams
    /// from the network as it is read, so this reads bodies of any size in constant memory.
    pub fn read(&self, buf: &mut [u8]) -> Result<usize, Error> {
        if buf.is_empty() {
            return Ok(0);
        }
        // SAFETY: `buf` is a live, writable slice of `buf.len()` bytes.
        check(unsafe { sys::response_body_read(self.handle, buf.as_mut_ptr(), buf.len()) })
    }

    /// The body (what has not been read yet).
    pub fn body(&self) -> Result<Vec<u8>, Error> {
        let mut body = Vec::new();
        // SAFETY: `read_chunk` passes `cap` writable bytes of `body`'s spare capacity.
        while read_chunk(&mut body, 16 << 10, |ptr, cap| unsafe {
            sys::response_body_read(self.handle, ptr, cap)
        })? > 0
        {}
        Ok(body)
    }

    /// Makes this response (status, headers, unread body) the invocation's response, without
    /// copying it through guest memory. Return `()` from the handler afterwards, or a
    /// [`Response`](crate::Response) whose headers (and body, appended) then apply on top; its
    /// status applies only if it is not the default `200`.
    pub fn forward(self) -> Result<(), Error> {
        // SAFETY: no pointers.
        check(unsafe { sys::response_forward(self.handle) })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_encode_limits_then_outbound_parameters() {
        let w = dispatch_namespace("D").get("x");
        assert!(w.options().is_empty());
        let w = w
            .limits(CallLimits {
                cpu_ms: 5,
                ..CallLimits::default()
            })
            .outbound_param("customer", "a\"b\\c\n");
        let opts = w.options();
        assert_eq!(&opts[..4], &5u32.to_le_bytes());
        assert_eq!(&opts[4..16], &[0; 12]);
        assert_eq!(
            std::str::from_utf8(&opts[16..]).unwrap(),
            r#"{"customer":"a\"b\\c\u000a"}"#
        );
    }
}
