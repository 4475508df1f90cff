//! Script uploads as Cloudflare's API takes them: `multipart/form-data` with a `metadata` JSON part
//! and one part per module, or a raw `application/wasm` body.

use std::collections::HashSet;

use bytes::Bytes;
use serde::Deserialize;
use tenantry_core::BindingKind;
use tenantry_loader::js::{BundleFormat, MAX_PARTS, Part as JsPart, PartKind, SourceBundle};
use tenantry_loader::{BindingEntry, MAX_MODULE_BYTES};

use super::envelope::{ApiError, code};

/// The `metadata` part. Fields Tenantry does not use (`compatibility_flags`, `logpush`,
/// `observability`, `usage_model`, …) are accepted and ignored, as clients send them routinely.
#[derive(Debug, Default, Deserialize)]
pub struct Metadata {
    pub main_module: Option<String>,
    pub body_part: Option<String>,
    pub bindings: Option<Vec<BindingMeta>>,
    pub tags: Option<Vec<String>>,
    pub compatibility_date: Option<String>,
    pub limits: Option<LimitsMeta>,
    /// Tenantry's extension: idle instances kept per core for reuse (`0`: a fresh instance per
    /// request). Absent: a new script gets its kind's default, an existing one keeps its own.
    pub reuse_instances: Option<u32>,
    /// Binding types whose existing bindings survive this upload (e.g. `["secret_text"]`).
    #[serde(default)]
    pub keep_bindings: Vec<String>,
}

/// `limits` in metadata and settings: Cloudflare's `cpu_ms`, plus Tenantry's extras.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsMeta {
    pub cpu_ms: Option<u32>,
    pub wall_ms: Option<u32>,
    pub memory_mb: Option<u32>,
    pub subrequests: Option<u32>,
}

/// A binding in Cloudflare's shape.
#[derive(Debug, Clone, Deserialize)]
pub struct BindingMeta {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub text: Option<String>,
    pub json: Option<serde_json::Value>,
    /// A `service` binding's target script (in the same namespace).
    pub service: Option<String>,
    /// Cloudflare's service environment; Tenantry has one environment per script, so only
    /// `production` (or none) is accepted.
    pub environment: Option<String>,
    /// A `dispatch_namespace` binding's namespace (platform Workers only).
    pub namespace: Option<String>,
    /// A `kv_namespace` binding's KV namespace id.
    pub namespace_id: Option<String>,
    /// A `dispatch_namespace` binding's outbound Worker, in Cloudflare's shape:
    /// `{"worker": {"service": "…"}, "params": [{"name": "…"}]}`.
    pub outbound: Option<OutboundMeta>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OutboundMeta {
    pub worker: OutboundWorkerMeta,
    #[serde(default)]
    pub params: Vec<OutboundParamMeta>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OutboundWorkerMeta {
    pub service: String,
    pub environment: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OutboundParamMeta {
    pub name: String,
}

/// A parsed upload.
#[derive(Debug, Default)]
pub struct Upload {
    /// The main module's bytes (absent in a settings-only PATCH).
    pub module: Option<Vec<u8>>,
    pub main_module: Option<String>,
    pub metadata: Metadata,
}

/// Parses an upload body by its `Content-Type`. `metadata_part` names the JSON part (`metadata`
/// for uploads, `settings` for settings PATCH).
pub async fn parse(
    content_type: Option<&[u8]>,
    body: Bytes,
    metadata_part: &str,
) -> Result<Upload, ApiError> {
    let ct = content_type
        .and_then(|c| std::str::from_utf8(c).ok())
        .unwrap_or("")
        .trim();
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "multipart/form-data" => multipart(ct, body, metadata_part).await,
        "application/wasm" | "application/octet-stream" => Ok(Upload {
            module: Some(checked_size(body.to_vec())?),
            ..Upload::default()
        }),
        // Cloudflare's raw form: one service-worker script.
        "application/javascript" | "text/javascript" => {
            let bundle = SourceBundle::service_worker(SCRIPT_PART_NAME, body.to_vec());
            Ok(Upload {
                module: Some(checked_size(bundle.encode())?),
                main_module: Some(SCRIPT_PART_NAME.to_string()),
                ..Upload::default()
            })
        }
        "application/json" => {
            let metadata = serde_json::from_slice(&body)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?;
            Ok(Upload {
                metadata,
                ..Upload::default()
            })
        }
        "" => Err(ApiError::bad_request(
            "missing Content-Type: send multipart/form-data, application/javascript or application/wasm",
        )),
        other => Err(ApiError::new(
            415,
            code::BAD_REQUEST,
            format!(
                "unsupported Content-Type `{other}`: send multipart/form-data, \
                 application/javascript or application/wasm"
            ),
        )),
    }
}

struct Part {
    name: String,
    file_name: Option<String>,
    content_type: Option<String>,
    bytes: Bytes,
}

async fn multipart(ct: &str, body: Bytes, metadata_part: &str) -> Result<Upload, ApiError> {
    let boundary = multer::parse_boundary(ct)
        .map_err(|e| ApiError::bad_request(format!("malformed multipart Content-Type: {e}")))?;
    let stream = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(body) });
    let mut form = multer::Multipart::new(stream, boundary);
    let bad = |e: multer::Error| ApiError::bad_request(format!("malformed multipart body: {e}"));
    let mut metadata = None;
    let mut parts = Vec::new();
    while let Some(field) = form.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or("").to_string();
        let file_name = field.file_name().map(str::to_string);
        let content_type = field.content_type().map(|m| m.essence_str().to_string());
        let bytes = field.bytes().await.map_err(bad)?;
        if name == metadata_part {
            let parsed: Metadata = serde_json::from_slice(&bytes).map_err(|e| {
                ApiError::bad_request(format!("invalid JSON in the `{metadata_part}` part: {e}"))
            })?;
            metadata = Some(parsed);
        } else {
            parts.push(Part {
                name,
                file_name,
                content_type,
                bytes,
            });
        }
    }
    let metadata = metadata.unwrap_or_default();
    let wanted = metadata.main_module.clone().or(metadata.body_part.clone());
    let main = match &wanted {
        Some(w) => Some(
            parts
                .iter()
                .find(|p| &p.name == w || p.file_name.as_ref() == Some(w))
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "main module `{w}` is not among the uploaded parts"
                    ))
                })?,
        ),
        None if parts.len() == 1 => parts.first(),
        None if parts.is_empty() => None,
        None => {
            return Err(ApiError::bad_request(
                "several module parts but no `main_module` in the metadata",
            ));
        }
    };
    let module = match main {
        None => None,
        Some(part) => match part_kind(part, metadata.body_part.as_deref())? {
            None => Some(checked_size(part.bytes.to_vec())?),
            Some(kind) => Some(checked_size(js_bundle(part, kind, &parts)?.encode())?),
        },
    };
    Ok(Upload {
        module,
        main_module: main.map(|p| p.file_name.clone().unwrap_or_else(|| p.name.clone())),
        metadata,
    })
}

/// The name a raw `application/javascript` upload's script gets (the content API names it).
pub const SCRIPT_PART_NAME: &str = "worker.js";

/// What a main part is: `None` for WebAssembly, else the kind of JavaScript. By its content type
/// as Cloudflare's API defines them; without one, by its bytes (wasm magic) and name.
fn part_kind(part: &Part, body_part: Option<&str>) -> Result<Option<PartKind>, ApiError> {
    let name = part.file_name.as_deref().unwrap_or(&part.name);
    let named_script =
        body_part.is_some_and(|b| b == part.name || Some(b) == part.file_name.as_deref());
    // `body_part` names a service-worker script; any other JavaScript main part is an ES module.
    let js = if named_script {
        PartKind::Script
    } else {
        PartKind::EsModule
    };
    let kind = match part.content_type.as_deref() {
        Some("application/wasm") => None,
        Some("application/javascript+module" | "text/javascript+module") => {
            Some(PartKind::EsModule)
        }
        Some("application/javascript" | "text/javascript") => Some(js),
        Some(ct) if ct.contains("python") => {
            return Err(ApiError::bad_request(format!(
                "module `{name}` is {ct}: Tenantry runs JavaScript and WebAssembly Workers"
            )));
        }
        _ if part.bytes.starts_with(b"\0asm") => None,
        _ if name.ends_with(".js") || name.ends_with(".mjs") => Some(js),
        _ => None,
    };
    Ok(kind)
}

/// A JavaScript upload's bundle: the main part first, then (for ES modules) every other part,
/// typed by its content type as Cloudflare's module types are.
fn js_bundle(main: &Part, kind: PartKind, parts: &[Part]) -> Result<SourceBundle, ApiError> {
    let part_name = |p: &Part| p.file_name.clone().unwrap_or_else(|| p.name.clone());
    if kind == PartKind::Script {
        if parts.len() > 1 {
            return Err(ApiError::bad_request(
                "a service-worker script is uploaded alone; to import other parts, upload ES \
                 modules (`main_module` with application/javascript+module)",
            ));
        }
        return Ok(SourceBundle::service_worker(
            &part_name(main),
            main.bytes.to_vec(),
        ));
    }
    let mut out = vec![JsPart {
        kind,
        name: part_name(main),
        data: main.bytes.to_vec(),
    }];
    for p in parts.iter().filter(|p| !std::ptr::eq(*p, main)) {
        let name = part_name(p);
        let kind = match p.content_type.as_deref() {
            Some("application/javascript+module" | "text/javascript+module")
            | Some("application/javascript" | "text/javascript") => PartKind::EsModule,
            Some("text/plain") => PartKind::Text,
            Some("application/octet-stream") => PartKind::Data,
            Some("application/wasm") => {
                return Err(ApiError::bad_request(format!(
                    "module `{name}` is application/wasm: importing WebAssembly from a \
                     JavaScript Worker is not supported (upload it as a Worker of its own and \
                     call it through a service binding)"
                )));
            }
            Some(ct) => {
                return Err(ApiError::bad_request(format!(
                    "module `{name}` has type {ct}: a JavaScript Worker's parts are \
                     application/javascript+module, text/plain or application/octet-stream"
                )));
            }
            None => {
                return Err(ApiError::bad_request(format!(
                    "module `{name}` has no Content-Type: give application/javascript+module, \
                     text/plain or application/octet-stream"
                )));
            }
        };
        out.push(JsPart {
            kind,
            name,
            data: p.bytes.to_vec(),
        });
    }
    if out.len() > MAX_PARTS {
        return Err(ApiError::bad_request(format!(
            "a Worker has at most {MAX_PARTS} modules, this upload {}",
            out.len()
        )));
    }
    Ok(SourceBundle {
        format: BundleFormat::Modules,
        parts: out,
    })
}

fn checked_size(module: Vec<u8>) -> Result<Vec<u8>, ApiError> {
    if module.is_empty() {
        return Err(ApiError::new(
            400,
            code::INVALID_SCRIPT,
            "the module is empty",
        ));
    }
    if module.len() > MAX_MODULE_BYTES {
        return Err(ApiError::new(
            413,
            code::TOO_LARGE,
            format!(
                "module is {} bytes, more than the limit of {MAX_MODULE_BYTES} bytes",
                module.len()
            ),
        ));
    }
    Ok(module)
}

/// Checks a script's tags (`tenantry_loader::names`).
pub fn validate_tags(tags: &[String]) -> Result<(), ApiError> {
    tenantry_loader::names::valid_tags(tags).map_err(ApiError::bad_request)
}

/// Resolves metadata bindings into index entries. `existing` are the script's current bindings:
/// `inherit` bindings and `keep_bindings` types take their values from there.
pub fn resolve_bindings(
    given: &[BindingMeta],
    keep_types: &[String],
    existing: &[BindingEntry],
    platform: bool,
) -> Result<Vec<BindingEntry>, ApiError> {
    let mut out = Vec::new();
    let mut names = HashSet::new();
    for b in given {
        tenantry_loader::names::valid_binding_name(&b.name)
            .map_err(|m| ApiError::bad_request(format!("binding `{}`: {m}", b.name)))?;
        if !names.insert(b.name.clone()) {
            return Err(ApiError::bad_request(format!(
                "binding `{}` is given twice",
                b.name
            )));
        }
        if b.kind == "inherit" {
            let old = existing.iter().find(|e| e.name == b.name).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "binding `{}` has type inherit but no current value",
                    b.name
                ))
            })?;
            out.push(old.clone());
            continue;
        }
        let kind = BindingKind::parse(&b.kind).ok_or_else(|| {
            ApiError::bad_request(format!(
                "binding `{}`: type `{}` is not supported (plain_text, json, secret_text, service, kv_namespace, dispatch_namespace, inherit)",
                b.name, b.kind
            ))
        })?;
        let value = match kind {
            BindingKind::Json => {
                let v = b.json.as_ref().ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "binding `{}`: a json binding needs `json`",
                        b.name
                    ))
                })?;
                v.to_string()
            }
            BindingKind::PlainText | BindingKind::SecretText => match &b.text {
                Some(t) => t.clone(),
                // Cloudflare lets a settings PATCH name a secret without its text to keep it.
                None if kind == BindingKind::SecretText => existing
                    .iter()
                    .find(|e| e.name == b.name && e.kind == kind as u8)
                    .map(|e| e.value.clone())
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "binding `{}`: secret_text needs `text`",
                            b.name
                        ))
                    })?,
                None => {
                    return Err(ApiError::bad_request(format!(
                        "binding `{}`: {} needs `text`",
                        b.name, b.kind
                    )));
                }
            },
            BindingKind::Service => {
                if b.environment.as_deref().is_some_and(|e| e != "production") {
                    return Err(ApiError::bad_request(format!(
                        "binding `{}`: service environments other than `production` do not exist here",
                        b.name
                    )));
                }
                let target = b.service.as_deref().unwrap_or_default();
                tenantry_loader::valid_name(target).map_err(|why| {
                    ApiError::bad_request(format!(
                        "binding `{}`: service `{target}`: {why}",
                        b.name
                    ))
                })?;
                target.to_string()
            }
            BindingKind::KvNamespace => b.namespace_id.clone().ok_or_else(|| {
                ApiError::bad_request(format!(
                    "binding `{}`: a kv_namespace binding needs `namespace_id`",
                    b.name
                ))
            })?,
            BindingKind::DispatchNamespace if !platform => {
                return Err(ApiError::bad_request(format!(
                    "binding `{}`: dispatch_namespace bindings belong to platform Workers; a Worker \
                     in a dispatch namespace cannot call into other namespaces",
                    b.name
                )));
            }
            BindingKind::DispatchNamespace => {
                let namespace = b.namespace.clone().ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "binding `{}`: a dispatch_namespace binding needs `namespace`",
                        b.name
                    ))
                })?;
                let outbound = match &b.outbound {
                    None => None,
                    Some(o) => {
                        if o.worker
                            .environment
                            .as_deref()
                            .is_some_and(|e| e != "production")
                        {
                            return Err(ApiError::bad_request(format!(
                                "binding `{}`: service environments other than `production` do not exist here",
                                b.name
                            )));
                        }
                        tenantry_loader::valid_name(&o.worker.service).map_err(|why| {
                            ApiError::bad_request(format!(
                                "binding `{}`: outbound service `{}`: {why}",
                                b.name, o.worker.service
                            ))
                        })?;
                        Some(tenantry_core::OutboundSpec {
                            service: o.worker.service.clone(),
                            parameters: o.params.iter().map(|p| p.name.clone()).collect(),
                        })
                    }
                };
                tenantry_core::DispatchSpec {
                    namespace,
                    outbound,
                }
                .to_value()
            }
        };
        out.push(BindingEntry {
            name: b.name.clone(),
            kind: kind as u8,
            value,
        });
    }
    for old in existing {
        let kind = BindingKind::from_u8(old.kind).map(BindingKind::as_str);
        if !names.contains(&old.name) && kind.is_some_and(|k| keep_types.iter().any(|t| t == k)) {
            out.push(old.clone());
        }
    }
    Ok(out)
}
