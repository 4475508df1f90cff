//! Cloudflare's Workers KV API, `/client/v4/accounts/{account_id}/storage/kv/namespaces`, on the
//! node's KV store (docs/admin-api.md, "KV"). The store blocks on disk I/O: these handlers run on
//! the admin threads, never on a serving core.

use std::collections::HashMap;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use tenantry_core::{Request, Response};
use tenantry_loader::kv::{
    KvError, KvNamespace, KvStore, MAX_BULK_GET_BYTES, MAX_BULK_GET_KEYS, MAX_LIST_LIMIT,
    MAX_METADATA_BYTES, PutOptions, unix_now,
};

use super::envelope::{ApiError, code, success, success_with_info};
use super::time::rfc3339;

/// Most pairs one bulk write or delete may carry (Cloudflare's limit).
const MAX_BULK: usize = 10_000;

impl From<KvError> for ApiError {
    fn from(e: KvError) -> ApiError {
        let message = e.to_string();
        match e {
            KvError::NamespaceNotFound(_) => ApiError::new(404, code::NOT_FOUND, message),
            KvError::TitleExists(_) => ApiError::new(409, code::CONFLICT, message),
            KvError::ValueTooLarge(_) | KvError::MetadataTooLarge(_) => {
                ApiError::new(413, code::TOO_LARGE, message)
            }
            KvError::Storage(_) => {
                tracing::error!("KV store: {message}");
                ApiError::new(500, code::INTERNAL, message)
            }
            _ => ApiError::bad_request(message),
        }
    }
}

fn namespace_json(ns: &KvNamespace) -> Value {
    json!({
        "id": ns.id,
        "title": ns.title,
        "supports_url_encoding": true,
        "created_on": rfc3339(ns.created_on),
    })
}

fn json_body<T: for<'a> Deserialize<'a>>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

fn number(query: &HashMap<String, String>, name: &str) -> Result<Option<u64>, ApiError> {
    query
        .get(name)
        .map(|v| {
            v.parse()
                .map_err(|_| ApiError::bad_request(format!("`{name}` must be a whole number")))
        })
        .transpose()
}

/// Serves `rest`, the path after `/storage/kv/namespaces`.
pub async fn route(
    kv: &KvStore,
    method: &[u8],
    rest: &[&str],
    query: &HashMap<String, String>,
    req: &Request,
    path: &str,
) -> Result<Response, ApiError> {
    match (method, rest) {
        (b"GET", []) => list_namespaces(kv, query),
        (b"POST", []) => {
            #[derive(Deserialize)]
            struct Create {
                title: String,
            }
            let c: Create = json_body(&req.body)?;
            let ns = kv.create_namespace(&c.title, crate::control::now_ms())?;
            Ok(success(namespace_json(&ns)))
        }
        (b"GET", [id]) => Ok(success(namespace_json(&kv.namespace(id)?))),
        (b"PUT", [id]) => {
            #[derive(Deserialize)]
            struct Rename {
                title: String,
            }
            let r: Rename = json_body(&req.body)?;
            Ok(success(namespace_json(&kv.rename_namespace(id, &r.title)?)))
        }
        (b"DELETE", [id]) => {
            kv.delete_namespace(id)?;
            Ok(success(Value::Null))
        }
        (b"GET", [id, "keys"]) => list_keys(kv, id, query),
        (b"GET", [id, "values", key]) => {
            let key: &str = key;
            let entry = kv
                .get(id, key, unix_now())?
                .ok_or_else(|| ApiError::new(404, 10009, format!("key `{key}` not found")))?;
            let mut headers = vec![(
                Bytes::from_static(b"content-type"),
                Bytes::from_static(b"application/octet-stream"),
            )];
            if let Some(e) = entry.expiration {
                headers.push((
                    Bytes::from_static(b"expiration"),
                    Bytes::from(e.to_string()),
                ));
            }
            Ok(Response {
                status: 200,
                headers,
                body: Bytes::from(entry.value),
            })
        }
        (b"GET", [id, "metadata", key]) => {
            let key: &str = key;
            let entry = kv
                .get(id, key, unix_now())?
                .ok_or_else(|| ApiError::new(404, 10009, format!("key `{key}` not found")))?;
            let metadata = entry
                .metadata
                .and_then(|m| serde_json::from_str::<Value>(&m).ok())
                .unwrap_or(Value::Null);
            Ok(success(metadata))
        }
        (b"PUT", [id, "values", key]) => {
            let key: &str = key;
            let (value, metadata) = value_and_metadata(req).await?;
            let options = PutOptions {
                expiration: number(query, "expiration")?,
                expiration_ttl: number(query, "expiration_ttl")?,
                metadata,
            };
            kv.put(id, key, &value, &options, unix_now())?;
            Ok(success(Value::Null))
        }
        (b"DELETE", [id, "values", key]) => {
            let key: &str = key;
            kv.delete(id, key)?;
            Ok(success(Value::Null))
        }
        (b"PUT", [id, "bulk"]) => bulk_write(kv, id, &req.body),
        (b"POST", [id, "bulk", "get"]) => bulk_get(kv, id, &req.body),
        (b"POST", [id, "bulk", "delete"]) | (b"DELETE", [id, "bulk"]) => {
            let keys: Vec<String> = json_body(&req.body)?;
            if keys.len() > MAX_BULK {
                return Err(ApiError::new(
                    413,
                    code::TOO_LARGE,
                    format!("at most {MAX_BULK} keys per bulk delete"),
                ));
            }
            let keys_ref: Vec<&str> = keys.iter().map(String::as_str).collect();
            kv.delete_many(id, &keys_ref)?;
            Ok(success(json!({
                "successful_key_count": keys.len(),
                "unsuccessful_keys": [],
            })))
        }
        (
            _,
            []
            | [_]
            | [_, "keys"]
            | [_, "values" | "metadata", _]
            | [_, "bulk"]
            | [_, "bulk", "delete" | "get"],
        ) => Err(ApiError::new(
            405,
            10405,
            format!(
                "method {} is not allowed on {path}",
                String::from_utf8_lossy(method)
            ),
        )),
        _ => Err(ApiError::new(
            404,
            7003,
            format!("No route for that URI: {path}"),
        )),
    }
}

fn list_namespaces(kv: &KvStore, query: &HashMap<String, String>) -> Result<Response, ApiError> {
    let page = number(query, "page")?.unwrap_or(1).max(1) as usize;
    let per_page = number(query, "per_page")?.unwrap_or(20).clamp(1, 100) as usize;
    let all = kv.namespaces()?;
    let items: Vec<Value> = all
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(namespace_json)
        .collect();
    let info = json!({
        "page": page,
        "per_page": per_page,
        "count": items.len(),
        "total_count": all.len(),
    });
    Ok(success_with_info(Value::Array(items), Some(info)))
}

fn list_keys(
    kv: &KvStore,
    id: &str,
    query: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let limit = number(query, "limit")?.unwrap_or(MAX_LIST_LIMIT as u64) as usize;
    let prefix = query.get("prefix").map(String::as_str).unwrap_or("");
    let cursor = query.get("cursor").map(String::as_str);
    let page = kv.list(id, prefix, limit, cursor, unix_now())?;
    let keys: Vec<Value> = page
        .keys
        .iter()
        .map(|k| {
            let mut v = json!({ "name": k.name });
            if let Some(e) = k.expiration {
                v["expiration"] = json!(e);
            }
            if let Some(m) = k
                .metadata
                .as_deref()
                .and_then(|m| serde_json::from_str::<Value>(m).ok())
            {
                v["metadata"] = m;
            }
            v
        })
        .collect();
    let info = json!({
        "count": keys.len(),
        "cursor": page.cursor.unwrap_or_default(),
    });
    Ok(success_with_info(Value::Array(keys), Some(info)))
}

/// A value PUT: the raw body, or `multipart/form-data` with a `value` part and an optional
/// `metadata` part (JSON), as Cloudflare accepts.
async fn value_and_metadata(req: &Request) -> Result<(Bytes, Option<String>), ApiError> {
    let ct = req
        .header(b"content-type")
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_default();
    if !ct.to_ascii_lowercase().starts_with("multipart/form-data") {
        return Ok((req.body.clone(), None));
    }
    let boundary = multer::parse_boundary(&ct)
        .map_err(|e| ApiError::bad_request(format!("malformed multipart Content-Type: {e}")))?;
    let body = req.body.clone();
    let stream = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(body) });
    let mut form = multer::Multipart::new(stream, boundary);
    let bad = |e: multer::Error| ApiError::bad_request(format!("malformed multipart body: {e}"));
    let (mut value, mut metadata) = (None, None);
    while let Some(field) = form.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or("").to_string();
        let bytes = field.bytes().await.map_err(bad)?;
        match name.as_str() {
            "value" => value = Some(bytes),
            "metadata" => {
                if bytes.len() > MAX_METADATA_BYTES {
                    return Err(KvError::MetadataTooLarge(bytes.len()).into());
                }
                metadata = Some(String::from_utf8_lossy(&bytes).into_owned());
            }
            _ => {}
        }
    }
    let value =
        value.ok_or_else(|| ApiError::bad_request("the multipart body has no `value` part"))?;
    Ok((value, metadata))
}

fn bulk_write(kv: &KvStore, id: &str, body: &Bytes) -> Result<Response, ApiError> {
    #[derive(Deserialize)]
    struct Pair {
        key: String,
        value: String,
        expiration: Option<u64>,
        expiration_ttl: Option<u64>,
        metadata: Option<Value>,
        #[serde(default)]
        base64: bool,
    }
    let pairs: Vec<Pair> = json_body(body)?;
    if pairs.len() > MAX_BULK {
        return Err(ApiError::new(
            413,
            code::TOO_LARGE,
            format!("at most {MAX_BULK} pairs per bulk write"),
        ));
    }
    kv.namespace(id)?;
    // Validate everything first, so that a bad pair changes nothing.
    let now = unix_now();
    let mut decoded = Vec::with_capacity(pairs.len());
    for p in &pairs {
        let value = if p.base64 {
            base64_decode(&p.value)
                .ok_or_else(|| ApiError::bad_request(format!("key `{}`: invalid base64", p.key)))?
        } else {
            p.value.clone().into_bytes()
        };
        let options = PutOptions {
            expiration: p.expiration,
            expiration_ttl: p.expiration_ttl,
            metadata: p.metadata.as_ref().map(Value::to_string),
        };
        decoded.push((p.key.as_str(), value, options));
    }
    let batch: Vec<(&str, &[u8], &PutOptions)> = decoded
        .iter()
        .map(|(k, v, o)| (*k, v.as_slice(), o))
        .collect();
    kv.put_many(id, &batch, now)?;
    Ok(success(json!({
        "successful_key_count": decoded.len(),
        "unsuccessful_keys": [],
    })))
}

/// Cloudflare's bulk read: up to [`MAX_BULK_GET_KEYS`] keys, their values as text or parsed
/// JSON, with metadata (and expiration) when `withMetadata` is set; `null` for an absent key.
/// `{"values": {key: value | {value, metadata, expiration?} | null}}`.
fn bulk_get(kv: &KvStore, id: &str, body: &Bytes) -> Result<Response, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct BulkGet {
        keys: Vec<String>,
        #[serde(rename = "type")]
        kind: Option<String>,
        #[serde(default)]
        with_metadata: bool,
    }
    let q: BulkGet = json_body(body)?;
    let json_values = match q.kind.as_deref() {
        None | Some("text") => false,
        Some("json") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "\"{other}\" is not a valid type. Use \"json\" or \"text\""
            )));
        }
    };
    if q.keys.is_empty() {
        return Err(ApiError::bad_request("You must request a minimum of 1 key"));
    }
    if q.keys.len() > MAX_BULK_GET_KEYS {
        return Err(ApiError::bad_request(format!(
            "You can request a maximum of {MAX_BULK_GET_KEYS} keys"
        )));
    }
    let keys: Vec<&str> = q.keys.iter().map(String::as_str).collect();
    let entries = kv.get_many(id, &keys, unix_now())?;
    let total: usize = entries.iter().flatten().map(|e| e.value.len()).sum();
    if total > MAX_BULK_GET_BYTES {
        return Err(ApiError::new(
            413,
            code::TOO_LARGE,
            format!(
                "Total size of request exceeds the limit of {}MB",
                MAX_BULK_GET_BYTES >> 20
            ),
        ));
    }
    let mut values = serde_json::Map::with_capacity(keys.len());
    for (key, entry) in keys.iter().zip(entries) {
        let Some(entry) = entry else {
            values.insert(key.to_string(), Value::Null);
            continue;
        };
        let text = String::from_utf8_lossy(&entry.value);
        let value = if json_values {
            serde_json::from_str(&text).map_err(|_| {
                ApiError::bad_request(
                    "At least one of the requested keys corresponds to a non-json value",
                )
            })?
        } else {
            Value::String(text.into_owned())
        };
        let value = if q.with_metadata {
            let metadata = entry
                .metadata
                .as_deref()
                .and_then(|m| serde_json::from_str::<Value>(m).ok())
                .unwrap_or(Value::Null);
            let mut v = json!({ "value": value, "metadata": metadata });
            if let Some(e) = entry.expiration {
                v["expiration"] = json!(e);
            }
            v
        } else {
            value
        };
        values.insert(key.to_string(), value);
    }
    Ok(success(json!({ "values": values })))
}

/// Standard base64, padded or not.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    engine.decode(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVsbG8").unwrap(), b"hello");
        assert!(base64_decode("a$b").is_none());
    }
}
