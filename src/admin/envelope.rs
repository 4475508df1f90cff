//! Cloudflare's v4 API envelope: `{success, errors: [{code, message}], messages, result}`, and the
//! error type every admin handler returns.

use bytes::Bytes;
use serde_json::{Value, json};
use tenantry_core::Response;

use crate::control::ControlError;

/// An API error: the HTTP status, Cloudflare-style numeric code and a message for humans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: u32,
    pub message: String,
}

/// The error codes this API uses (Cloudflare's where one exists for the case).
pub mod code {
    /// Bad credentials.
    pub const AUTHENTICATION: u32 = 10000;
    /// A malformed request: JSON, multipart, parameters.
    pub const BAD_REQUEST: u32 = 10001;
    /// The namespace or script does not exist (Cloudflare: `workers.api.error.script_not_found`).
    pub const NOT_FOUND: u32 = 10007;
    /// The upload is larger than allowed.
    pub const TOO_LARGE: u32 = 10013;
    /// The namespace already exists.
    pub const CONFLICT: u32 = 10014;
    /// The module is not a valid Worker (the validator's message follows).
    pub const INVALID_SCRIPT: u32 = 10021;
    /// No credentials at all.
    pub const MISSING_AUTH: u32 = 9106;
    /// A failure on our side (disk, compiler).
    pub const INTERNAL: u32 = 10002;
    /// No endpoint at that path.
    pub const NO_ROUTE: u32 = 7003;
    /// The endpoint exists but not with that method.
    pub const METHOD_NOT_ALLOWED: u32 = 10405;
    /// An uploaded certificate or key that cannot be served: bad PEM, unsupported key type, a
    /// key that is not the certificate's, or a malformed hostname (Tenantry's own code).
    pub const INVALID_CERTIFICATE: u32 = 10030;
}

impl ApiError {
    pub fn new(status: u16, code: u32, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, code::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(404, code::NOT_FOUND, message)
    }

    pub fn to_response(&self) -> Response {
        envelope(
            self.status,
            json!({
                "success": false,
                "errors": [{"code": self.code, "message": self.message}],
                "messages": [],
                "result": null,
            }),
        )
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> ApiError {
        use tenantry_loader::ArtifactError as A;
        let message = e.to_string();
        match e {
            ControlError::NamespaceNotFound(_) | ControlError::ScriptNotFound(_) => {
                ApiError::not_found(message)
            }
            ControlError::NamespaceExists(_) => ApiError::new(409, code::CONFLICT, message),
            ControlError::Invalid(_) => ApiError::bad_request(message),
            ControlError::Artifact(A::TooLarge { .. }) => {
                ApiError::new(413, code::TOO_LARGE, message)
            }
            ControlError::Artifact(A::Compile(tenantry_core::CompileError::TooComplex(_))) => {
                ApiError::new(413, code::TOO_LARGE, message)
            }
            ControlError::Artifact(A::Compile(_) | A::Timeout(_) | A::JsCompile(_)) => {
                ApiError::new(400, code::INVALID_SCRIPT, message)
            }
            ControlError::Artifact(_) | ControlError::Store(_) | ControlError::Secrets(_) => {
                tracing::error!("admin operation failed: {message}");
                ApiError::new(500, code::INTERNAL, message)
            }
        }
    }
}

/// A successful envelope around `result`.
pub fn success(result: Value) -> Response {
    success_with_info(result, None)
}

/// A successful envelope with `result_info` (paging).
pub fn success_with_info(result: Value, info: Option<Value>) -> Response {
    let mut body = json!({"success": true, "errors": [], "messages": [], "result": result});
    if let Some(info) = info {
        body["result_info"] = info;
    }
    envelope(200, body)
}

/// [`success_with_info`] with a result serialised straight from its type: a list page of 1000
/// scripts built as `Value` trees first (a map allocated per object and key) spent most of its
/// time allocating. Fields in the order a `Value` map has them (by name), so the bytes are the
/// same either way.
pub fn success_serialized<T: serde::Serialize>(result: &T, info: Value) -> Response {
    #[derive(serde::Serialize)]
    struct Envelope<'a, T> {
        errors: [(); 0],
        messages: [(); 0],
        result: &'a T,
        result_info: Value,
        success: bool,
    }
    let body = Envelope {
        errors: [],
        messages: [],
        result,
        result_info: info,
        success: true,
    };
    Response {
        status: 200,
        headers: vec![(
            Bytes::from_static(b"content-type"),
            Bytes::from_static(b"application/json"),
        )],
        body: Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
    }
}

fn envelope(status: u16, body: Value) -> Response {
    Response {
        status,
        headers: vec![(
            Bytes::from_static(b"content-type"),
            Bytes::from_static(b"application/json"),
        )],
        body: Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
    }
}
