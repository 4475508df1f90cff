//! `/client/v4/accounts/{account_id}/tls/...`: the data plane's TLS certificates for customer
//! hostnames. Upload, list, get and delete a certificate for a hostname pattern under
//! `certificates`, and reload every certificate file with `POST reload`. A private key goes in
//! and is never read back.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use tenantry_core::{Request, Response};

use super::envelope::{ApiError, code, success};
use super::time::rfc3339;
use crate::certificates::{CertificateInfo, CertificateStore, MAX_PEM_BYTES, StoreError};

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        let message = e.to_string();
        match e {
            StoreError::Rejected(_) => ApiError::new(400, code::INVALID_CERTIFICATE, message),
            StoreError::NotFound(_) => ApiError::not_found(message),
            // The node's own files (a config file's certificate, the data directory) are wrong
            // or unreadable: nothing the caller sent, and the old certificates are still served.
            StoreError::Read { .. } | StoreError::Invalid { .. } | StoreError::Write { .. } => {
                tracing::error!("TLS certificates: {message}");
                ApiError::new(500, code::INTERNAL, message)
            }
        }
    }
}

/// Dispatches a request under `.../tls/`; `rest` is the path after it.
pub fn route(
    store: Option<&CertificateStore>,
    req: &Request,
    rest: &[&str],
    path: &str,
) -> Result<Response, ApiError> {
    let known = matches!(rest, ["certificates"] | ["certificates", _] | ["reload"]);
    if !known {
        return Err(ApiError::new(
            404,
            code::NO_ROUTE,
            format!("No route for that URI: {path}"),
        ));
    }
    let store = store.ok_or_else(|| {
        ApiError::not_found("the data plane has no TLS listener: configure [server.tls]")
    })?;
    match (req.method.as_ref(), rest) {
        (b"GET", ["certificates"]) => {
            let list = store.list()?;
            Ok(success(Value::Array(list.iter().map(info_json).collect())))
        }
        (b"PUT", ["certificates", host]) => put(store, host, &req.body),
        (b"GET", ["certificates", host]) => Ok(success(info_json(&store.get(host)?))),
        (b"DELETE", ["certificates", host]) => {
            store.delete(host)?;
            Ok(success(json!({ "hostname": host.to_ascii_lowercase() })))
        }
        (b"POST", ["reload"]) => {
            let hosts = store.reload()?;
            Ok(success(json!({ "hosts": hosts })))
        }
        (method, _) => Err(ApiError::new(
            405,
            code::METHOD_NOT_ALLOWED,
            format!(
                "method {} is not allowed on {path}",
                String::from_utf8_lossy(method)
            ),
        )),
    }
}

fn put(store: &CertificateStore, host: &str, body: &Bytes) -> Result<Response, ApiError> {
    /// Cloudflare's custom-certificate fields.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Upload {
        certificate: String,
        private_key: String,
    }
    if body.len() > MAX_PEM_BYTES {
        return Err(ApiError::new(
            413,
            code::TOO_LARGE,
            format!("a certificate upload is at most {MAX_PEM_BYTES} bytes"),
        ));
    }
    let upload: Upload = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "expected JSON {{\"certificate\": PEM, \"private_key\": PEM}}: {e}"
        ))
    })?;
    let info = store.put(host, &upload.certificate, &upload.private_key)?;
    Ok(success(info_json(&info)))
}

fn info_json(info: &CertificateInfo) -> Value {
    json!({
        "hostname": info.host,
        "certificate": info.certificate_pem,
        "fingerprint_sha256": info.fingerprint_sha256,
        "chain_length": info.chain_length,
        "modified_on": rfc3339(info.modified_on),
    })
}
