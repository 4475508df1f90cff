//! Write Tenantry user Workers in Rust.
//!
//! A Worker is a `cdylib` built for `wasm32-wasip1` that exports
//! `tenantry_fetch`. This crate is the guest side of the `tenantry:worker/v1` ABI
//! (`docs/worker-abi.md` in the Tenantry repository): a safe API over the raw imports in [`sys`].
//!
//! ```
//! use tenantry_sdk::{Request, Response};
//!
//! fn handle(req: Request) -> Response {
//!     Response::ok()
//!         .header("content-type", "text/plain")
//!         .body(format!("you asked for {}\n", req.url()))
//! }
//! tenantry_sdk::main!(handle);
//! # fn main() {}
//! ```
//!
//! ```toml
//! # Cargo.toml
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! tenantry-sdk = { path = "../sdk/rust" }
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip1`; the module is
//! `target/wasm32-wasip1/release/<crate_name>.wasm`.
//!
//! - [`Request`]: method, URL, headers, query parameters and body, each fetched from the host only
//!   when asked for.
//! - [`Response`]: a builder handed to the host when the handler returns, or streamed
//!   ([`Response::stream`]).
//! - [`env`](mod@env): the Worker's bindings; [`log`]: log lines at a chosen level.
//! - [`kv`]: read and write the KV namespaces the Worker is bound to.
//! - [`fetch`]: call another Worker through a `service` binding, or (platform Workers) a
//!   customer's Worker through a `dispatch_namespace` binding.
//! - [`main!`]: exports the entry point. A handler may return `Response`, `Result<Response, E>`
//!   (an `Err` is logged and the client gets `500`), or `()` / `Result<(), E>` after streaming.
//!
//! Off wasm32 every host call returns [`Error::Unsupported`], so the crate type-checks, tests and
//! documents on the build machine.

mod buf;
mod entry;
pub mod env;
mod error;
pub mod fetch;
pub mod kv;
pub mod log;
mod request;
mod response;
pub mod sys;

pub use buf::read_value;
pub use entry::{EXIT_HANDLER_ERROR, EXIT_SEND_ERROR, Outcome};
pub use error::Error;
pub use request::{BodyReader, Request, parse_header_list, query_param};
pub use response::{BodyWriter, Response};

#[doc(hidden)]
pub use entry::run as __run;
