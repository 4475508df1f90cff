//! Tenantry's HTTP/1.1 ingress on monoio: the request parser, the thread-per-core server, routes,
//! admission, and the subrequest client (`client`, with TLS from `client_tls`). It speaks HTTP
//! and knows no storage: the handler that finds a request's Worker (the root package's `plane`)
//! implements [`Handler`], which this crate defines.
//!
//! ```text
//!  accept (SO_REUSEPORT, one listener per core) ─► parse (httparse, offsets into one buffer)
//!   ─► body (Content-Length or chunked, bounded) ─► Handler::call ─► response (keep-alive)
//! ```
//!
//! ```no_run
//! use tenantry_core::{Request, Response};
//! use tenantry_ingress::{Handler, ServerConfig};
//!
//! struct Hello;
//! impl Handler for Hello {
//!     async fn call(&self, _req: Request) -> Response {
//!         Response::text(200, "hello\n")
//!     }
//! }
//!
//! let config = ServerConfig { addr: "127.0.0.1:0".parse().unwrap(), ..ServerConfig::default() };
//! let server = tenantry_ingress::start(config, |_core| Hello).unwrap();
//! println!("listening on {}", server.local_addr());
//! server.join();
//! ```

pub mod admission;
pub mod chunked;
pub mod client;
pub mod client_tls;
#[doc(hidden)]
pub mod fuzzing;
pub mod limits;
pub mod parse;
pub mod resolve;
pub mod route;
mod runtime;
mod server;
mod sys;
pub mod tls;

pub use limits::{ServerLimits, Timeouts};
pub use parse::{BodyFraming, Head, ParseError, Parsed, parse_head};
pub use runtime::{Driver, Runtime};
pub use server::{Handler, ServerConfig, ServerHandle, start};
pub use tls::{CertificateSet, Certificates, TlsListener};
