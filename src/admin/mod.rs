//! The admin API: Cloudflare's Workers for Platforms dispatch-namespace endpoints
//! (`/client/v4/accounts/{account_id}/workers/dispatch/namespaces/...`) on their own listener,
//! loopback-only by default, every response in Cloudflare's envelope. See `docs/admin-api.md`.
//!
//! The admin listener runs its own threads (not the serving cores). An upload blocks its admin
//! thread while the compile pool compiles it; serving never waits for it.

mod certificates;
mod envelope;
mod handlers;
mod kv;
pub mod time;
mod upload;

use std::net::SocketAddr;
use std::sync::Arc;

use tenantry_core::{Request, Response};
use tenantry_ingress::{Handler, Head};

pub use envelope::{ApiError, code};

use crate::control::Control;

/// Default admin address: loopback only.
pub const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:8787";
/// Admin threads: uploads block one while compiling, so two keep the API responsive.
pub const DEFAULT_ADMIN_THREADS: usize = 2;
/// Admin request bodies: the largest module plus room for metadata and multipart framing.
pub const MAX_ADMIN_BODY_BYTES: usize = tenantry_loader::MAX_MODULE_BYTES + (1 << 20);
/// The environment variable holding extra bearer tokens (comma-separated).
pub const TOKEN_ENV: &str = "TENANTRY_ADMIN_TOKEN";

/// Who may call the admin API.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    /// Accepted `Authorization: Bearer` tokens.
    pub tokens: Vec<String>,
    /// Accepted legacy `X-Auth-Email` + `X-Auth-Key` pairs.
    pub keys: Vec<(String, String)>,
}

impl Auth {
    /// Checks the credentials among a request's header fields (`header(name)` gives a field's
    /// value), so it can run on the head alone, before the body is read.
    fn check<'h>(&self, header: impl Fn(&[u8]) -> Option<&'h [u8]>) -> Result<(), ApiError> {
        if let Some(value) = header(b"authorization") {
            let token = value.strip_prefix(b"Bearer ").ok_or_else(|| {
                ApiError::new(
                    401,
                    code::AUTHENTICATION,
                    "Authorization must be `Bearer <token>`",
                )
            })?;
            if self
                .tokens
                .iter()
                .any(|t| constant_time_eq(t.as_bytes(), token))
            {
                return Ok(());
            }
            return Err(ApiError::new(
                403,
                code::AUTHENTICATION,
                "Authentication error: invalid token",
            ));
        }
        match (header(b"x-auth-email"), header(b"x-auth-key")) {
            (Some(email), Some(key)) => {
                let ok = self.keys.iter().any(|(e, k)| {
                    // Evaluate both comparisons so timing does not reveal which one failed.
                    constant_time_eq(e.as_bytes(), email) & constant_time_eq(k.as_bytes(), key)
                });
                if ok {
                    Ok(())
                } else {
                    Err(ApiError::new(
                        403,
                        code::AUTHENTICATION,
                        "Authentication error: invalid X-Auth-Email / X-Auth-Key",
                    ))
                }
            }
            _ => Err(ApiError::new(
                401,
                code::MISSING_AUTH,
                "Missing X-Auth-Key, X-Auth-Email or Authorization headers",
            )),
        }
    }
}

/// Compares secrets in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The admin listener's settings.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub addr: SocketAddr,
    pub threads: usize,
    pub auth: Auth,
    /// When set, only this account id is served (others get 404).
    pub account_id: Option<String>,
    /// How long an upload may wait for its compile; longer fails with 400.
    pub compile_timeout: std::time::Duration,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            addr: DEFAULT_ADMIN_ADDR.parse().expect("a valid address"),
            threads: DEFAULT_ADMIN_THREADS,
            auth: Auth::default(),
            account_id: None,
            compile_timeout: tenantry_loader::DEFAULT_COMPILE_TIMEOUT,
        }
    }
}

/// One admin thread's handler.
pub struct AdminHandler {
    control: Arc<Control>,
    auth: Arc<Auth>,
    account_id: Option<String>,
}

impl AdminHandler {
    pub fn new(control: Arc<Control>, config: &AdminConfig) -> AdminHandler {
        AdminHandler {
            control,
            auth: Arc::new(config.auth.clone()),
            account_id: config.account_id.clone(),
        }
    }
}

impl Handler for AdminHandler {
    /// Credentials are checked from the head, so an unauthenticated client is refused before
    /// the server reads (and buffers) a body of up to [`MAX_ADMIN_BODY_BYTES`].
    fn check_head(&self, head: &Head, buf: &[u8]) -> Option<Response> {
        self.auth
            .check(|name| head.header(buf, name))
            .err()
            .map(|e| e.to_response())
    }

    async fn call(&self, req: Request) -> Response {
        // `check_head` admitted the request already; checked again so that this handler is
        // safe whoever calls it.
        let header = |name: &[u8]| {
            req.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| &v[..])
        };
        if let Err(e) = self.auth.check(header) {
            return e.to_response();
        }
        handlers::route(&self.control, self.account_id.as_deref(), req)
            .await
            .unwrap_or_else(|e| e.to_response())
    }

    fn error_response(&self, status: u16, message: &str) -> Response {
        let code = match status {
            413 => code::TOO_LARGE,
            _ => code::BAD_REQUEST,
        };
        ApiError::new(status, code, message.trim_end()).to_response()
    }
}

/// Upload parsing, for the fuzz oracles (`crate::fuzzing`).
#[doc(hidden)]
pub async fn fuzz_parse_upload(content_type: &[u8], body: bytes::Bytes) -> Result<(), ApiError> {
    upload::parse(Some(content_type), body, "metadata")
        .await
        .map(|_| ())
}

/// Sends `body` to the KV endpoints that take JSON, on a store of their own, for the fuzz
/// oracles; returns the errors they answered.
#[doc(hidden)]
pub fn fuzz_json_bodies(body: &[u8]) -> Vec<ApiError> {
    use std::sync::OnceLock;
    static STORE: OnceLock<(tempfile::TempDir, tenantry_loader::kv::KvStore, String)> =
        OnceLock::new();
    let (_, kv, id) = STORE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let kv =
            tenantry_loader::kv::KvStore::open(&dir.path().join("kv.redb")).expect("a KV store");
        let id = kv.create_namespace("fuzz", 0).expect("a namespace").id;
        (dir, kv, id)
    });
    let body = bytes::Bytes::copy_from_slice(body);
    let req = Request {
        method: bytes::Bytes::from_static(b"PUT"),
        headers: vec![(
            bytes::Bytes::from_static(b"content-type"),
            bytes::Bytes::from_static(b"application/json"),
        )],
        body,
        ..Request::default()
    };
    let query = std::collections::HashMap::new();
    let id = id.as_str();
    let routes: [(&[u8], Vec<&str>); 4] = [
        (b"POST", vec![]),
        (b"PUT", vec![id, "bulk"]),
        (b"POST", vec![id, "bulk", "delete"]),
        (b"PUT", vec![id]),
    ];
    let mut errors = Vec::new();
    let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .build()
        .expect("a monoio runtime");
    for (method, rest) in routes {
        let answer = rt.block_on(kv::route(kv, method, &rest, &query, &req, "/fuzz"));
        if let Err(e) = answer {
            errors.push(e);
        }
    }
    errors
}
