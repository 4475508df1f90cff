//! The endpoints, by path. Every handler returns a [`Response`] in the envelope or an [`ApiError`].

use std::collections::HashMap;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use tenantry_core::{BindingKind, Request, Response};
use tenantry_loader::{
    ArchivedScriptEntry, ArtifactId, BindingEntry, PLATFORM_NAMESPACE, ScriptEntry, ScriptLimits,
};

use super::envelope::{ApiError, success, success_serialized, success_with_info};
use super::time::rfc3339;
use super::upload::{self, Upload, validate_tags};
use crate::control::{Control, ControlError, NamespaceSummary};
use tenantry_loader::js::{BundleFormat, PartKind, SourceBundle};

/// Entries (scripts, namespaces) per page when a list does not say (and the most it may ask for).
const DEFAULT_PAGE: usize = 1000;

/// Percent-decodes one path segment (RFC 3986 §2.1); it must decode to UTF-8.
fn decode_segment(s: &str) -> Result<String, ApiError> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|k| k.into_owned())
        .map_err(|_| ApiError::bad_request("a path segment does not decode to UTF-8"))
}

/// Dispatches `req` to its endpoint.
pub async fn route(
    control: &Control,
    account: Option<&str>,
    req: Request,
) -> Result<Response, ApiError> {
    let target = std::str::from_utf8(&req.target)
        .map_err(|_| ApiError::bad_request("the request target is not UTF-8"))?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query: HashMap<String, String> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    // Split first, then percent-decode each segment exactly once: a `%2F` in a KV key stays
    // inside its segment, and every handler sees decoded names (`plan%20pro` is `plan pro`).
    let decoded = path
        .trim_end_matches('/')
        .split('/')
        .skip(1)
        .map(decode_segment)
        .collect::<Result<Vec<String>, ApiError>>()?;
    let segments: Vec<&str> = decoded.iter().map(String::as_str).collect();
    let no_route = || ApiError::new(404, 7003, format!("No route for that URI: {path}"));
    let check_account = |acct: &str| match account {
        Some(a) if a != acct => Err(ApiError::not_found(format!("account `{acct}` not found"))),
        _ => Ok(()),
    };
    // Account-level scripts are the platform Workers (dispatchers, outbound Workers): served by
    // the same handlers on the reserved platform namespace, which the namespace paths never reach.
    let platform_path: Vec<&str>;
    let rest: &[&str] = match segments.as_slice() {
        [
            "client",
            "v4",
            "accounts",
            acct,
            "workers",
            "dispatch",
            "namespaces",
            rest @ ..,
        ] => {
            check_account(acct)?;
            if let Some(ns) = rest.first().filter(|ns| ns.starts_with('_')) {
                return Err(ApiError::from(ControlError::NamespaceNotFound(
                    ns.to_string(),
                )));
            }
            rest
        }
        [
            "client",
            "v4",
            "accounts",
            acct,
            "storage",
            "kv",
            "namespaces",
            rest @ ..,
        ] => {
            check_account(acct)?;
            return super::kv::route(control.kv(), &req.method, rest, &query, &req, path).await;
        }
        ["client", "v4", "accounts", acct, "tls", rest @ ..] => {
            check_account(acct)?;
            return super::certificates::route(control.certificates(), &req, rest, path);
        }
        [
            "client",
            "v4",
            "accounts",
            acct,
            "workers",
            "scripts",
            rest @ ..,
        ] => {
            check_account(acct)?;
            if rest.is_empty() && req.method.as_ref() != b"GET" {
                return Err(ApiError::new(
                    405,
                    10405,
                    format!(
                        "method {} is not allowed on {path}",
                        String::from_utf8_lossy(&req.method)
                    ),
                ));
            }
            platform_path = [PLATFORM_NAMESPACE, "scripts"]
                .into_iter()
                .chain(rest.iter().copied())
                .collect();
            &platform_path
        }
        _ => return Err(no_route()),
    };
    let method = req.method.as_ref();
    let c = control;
    match (method, rest) {
        (b"GET", []) => list_namespaces(c, &query),
        (b"POST", []) => create_namespace(c, &req.body),
        (b"GET", [ns]) => Ok(success(namespace_json(&c.namespace(ns)?))),
        (b"DELETE", [ns]) => {
            c.delete_namespace(ns)?;
            Ok(success(Value::Null))
        }
        (b"GET", [ns, "scripts"]) => list_scripts(c, ns, &query),
        (b"DELETE", [ns, "scripts"]) => delete_by_tags(c, ns, &query),
        (b"PUT", [ns, "scripts", name]) => put_script(c, ns, name, &req, false).await,
        (b"GET", [ns, "scripts", name]) => get_script(c, ns, name),
        (b"DELETE", [ns, "scripts", name]) => {
            c.edit(ns, |scripts, _| {
                scripts
                    .remove(name)
                    .then_some(())
                    .ok_or_else(|| ControlError::ScriptNotFound(name.to_string()))
            })?;
            Ok(success(Value::Null))
        }
        (b"GET", [ns, "scripts", name, "content"]) => get_content(c, ns, name),
        (b"PUT", [ns, "scripts", name, "content"]) => put_script(c, ns, name, &req, true).await,
        (b"GET", [ns, "scripts", name, "bindings"]) => {
            let entry = script(c, ns, name)?;
            Ok(success(Value::Array(
                entry.bindings.iter().map(binding_json).collect(),
            )))
        }
        (b"GET", [ns, "scripts", name, "settings"]) => {
            Ok(success(settings_json(&script(c, ns, name)?)))
        }
        (b"PATCH", [ns, "scripts", name, "settings"]) => patch_settings(c, ns, name, &req).await,
        (b"GET", [ns, "scripts", name, "secrets"]) => {
            let entry = script(c, ns, name)?;
            let secrets = entry
                .bindings
                .iter()
                .filter(|b| b.kind == BindingKind::SecretText as u8)
                .map(|b| json!({"name": b.name, "type": "secret_text"}))
                .collect();
            Ok(success(Value::Array(secrets)))
        }
        (b"PUT", [ns, "scripts", name, "secrets"]) => put_secret(c, ns, name, &req.body),
        (b"GET", [ns, "scripts", name, "secrets", secret]) => {
            let entry = script(c, ns, name)?;
            entry
                .bindings
                .iter()
                .find(|b| b.name == *secret && b.kind == BindingKind::SecretText as u8)
                .map(|b| success(json!({"name": b.name, "type": "secret_text"})))
                .ok_or_else(|| ApiError::not_found(format!("secret `{secret}` not found")))
        }
        (b"DELETE", [ns, "scripts", name, "secrets", secret]) => {
            c.edit_script(ns, name, |e, _| {
                let before = e.bindings.len();
                e.bindings
                    .retain(|b| !(b.name == *secret && b.kind == BindingKind::SecretText as u8));
                if e.bindings.len() == before {
                    return Err(ControlError::Invalid(format!(
                        "secret `{secret}` not found"
                    )));
                }
                Ok(())
            })
            .map_err(secret_not_found)?;
            Ok(success(Value::Null))
        }
        (b"GET", [ns, "scripts", name, "tags"]) => Ok(success(json!(script(c, ns, name)?.tags))),
        (b"PUT", [ns, "scripts", name, "tags"]) => {
            let tags: Vec<String> = serde_json::from_slice(&req.body).map_err(|e| {
                ApiError::bad_request(format!("expected a JSON array of tags: {e}"))
            })?;
            validate_tags(&tags)?;
            let tags = c.edit_script(ns, name, |e, _| {
                e.tags = dedup(tags);
                Ok(e.tags.clone())
            })?;
            Ok(success(json!(tags)))
        }
        (b"PUT", [ns, "scripts", name, "tags", tag]) => {
            let tag = tag.to_string();
            c.edit_script(ns, name, |e, _| {
                if !e.tags.contains(&tag) {
                    let mut tags = e.tags.clone();
                    tags.push(tag);
                    validate_tags(&tags).map_err(|e| ControlError::Invalid(e.message))?;
                    e.tags = tags;
                }
                Ok(())
            })?;
            Ok(success(Value::Null))
        }
        (b"DELETE", [ns, "scripts", name, "tags", tag]) => {
            c.edit_script(ns, name, |e, _| {
                e.tags.retain(|t| t != tag);
                Ok(())
            })?;
            Ok(success(Value::Null))
        }
        (_, [] | [_] | [_, "scripts"] | [_, "scripts", _])
        | (
            _,
            [
                _,
                "scripts",
                _,
                "content" | "bindings" | "settings" | "secrets" | "tags",
            ],
        )
        | (_, [_, "scripts", _, "secrets" | "tags", _]) => Err(ApiError::new(
            405,
            10405,
            format!(
                "method {} is not allowed on {path}",
                String::from_utf8_lossy(method)
            ),
        )),
        _ => Err(no_route()),
    }
}

fn secret_not_found(e: ControlError) -> ApiError {
    match e {
        ControlError::Invalid(m) => ApiError::not_found(m),
        other => other.into(),
    }
}

fn dedup(tags: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for t in tags {
        if !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

// ---- namespaces ----

fn namespace_json(ns: &NamespaceSummary) -> Value {
    json!({
        "namespace_id": ns.id,
        "namespace_name": ns.name,
        "created_on": rfc3339(ns.created_on),
        "created_by": "",
        "modified_on": rfc3339(ns.modified_on),
        "modified_by": "",
        "script_count": ns.script_count,
        "trusted_workers": false,
    })
}

/// Namespaces in name order: all of them, as Cloudflare answers (its SDKs read this list as one
/// page and would silently miss the rest); a page of them with `limit` and/or `cursor`, as for
/// scripts.
fn list_namespaces(c: &Control, query: &HashMap<String, String>) -> Result<Response, ApiError> {
    let paged = query.contains_key("limit") || query.contains_key("cursor");
    let limit = if paged {
        page_limit(query)?
    } else {
        usize::MAX
    };
    let cursor = query.get("cursor").map(String::as_str).unwrap_or("");
    let (page, total, more) = c.namespaces(cursor, limit);
    let next = match page.last() {
        Some(last) if more => last.name.as_str(),
        _ => "",
    };
    let per_page = if paged { limit } else { page.len() };
    let info =
        json!({"count": page.len(), "per_page": per_page, "total_count": total, "cursor": next});
    let list = page.iter().map(namespace_json).collect();
    Ok(success_with_info(Value::Array(list), Some(info)))
}

fn create_namespace(c: &Control, body: &Bytes) -> Result<Response, ApiError> {
    #[derive(Deserialize)]
    struct Create {
        name: Option<String>,
    }
    let body: Create = if body.is_empty() {
        Create { name: None }
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?
    };
    let name = body
        .name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request("`name` is required"))?;
    Ok(success(namespace_json(&c.create_namespace(&name)?)))
}

// ---- scripts ----

fn script(c: &Control, ns: &str, name: &str) -> Result<ScriptEntry, ApiError> {
    let index = c.index(ns)?;
    let entry = index
        .get(name)
        .ok_or_else(|| ApiError::from(ControlError::ScriptNotFound(name.to_string())))?;
    Ok(rkyv::deserialize::<ScriptEntry, rkyv::rancor::Error>(entry)
        .expect("deserializing a validated archive cannot fail"))
}

/// Cloudflare's `Script` object.
fn script_json(e: &ScriptEntry) -> Value {
    json!({
        "id": e.name,
        "etag": e.etag,
        "created_on": rfc3339(e.created_on),
        "modified_on": rfc3339(e.modified_on),
        "tags": e.tags,
        "handlers": ["fetch"],
        "has_modules": true,
        "has_assets": false,
        "usage_model": "standard",
        "compatibility_date": e.compatibility_date,
        "main_module": e.main_module,
        "limits": limits_json(&e.limits),
    })
}

fn limits_json(l: &ScriptLimits) -> Value {
    let mut v = json!({});
    if let Some(cpu) = l.cpu_ms {
        v["cpu_ms"] = json!(cpu);
    }
    if let Some(wall) = l.wall_ms {
        v["wall_ms"] = json!(wall);
    }
    if let Some(mem) = l.memory_bytes {
        v["memory_mb"] = json!(mem >> 20);
    }
    if let Some(n) = l.subrequests {
        v["subrequests"] = json!(n);
    }
    v
}

/// A binding as the read APIs show it: secrets by name and type only.
fn binding_json(b: &BindingEntry) -> Value {
    match BindingKind::from_u8(b.kind) {
        Some(BindingKind::PlainText) => {
            json!({"name": b.name, "type": "plain_text", "text": b.value})
        }
        Some(BindingKind::Json) => json!({
            "name": b.name,
            "type": "json",
            "json": serde_json::from_str::<Value>(&b.value).unwrap_or(Value::Null),
        }),
        Some(BindingKind::SecretText) => json!({"name": b.name, "type": "secret_text"}),
        Some(BindingKind::Service) => {
            json!({"name": b.name, "type": "service", "service": b.value, "environment": "production"})
        }
        Some(BindingKind::DispatchNamespace) => {
            let spec = tenantry_core::DispatchSpec::parse(&b.value);
            json!({
                "name": b.name,
                "type": "dispatch_namespace",
                "namespace": spec.as_ref().map(|s| s.namespace.clone()),
                "outbound": spec.and_then(|s| s.outbound).map(|o| json!({
                    "worker": {"service": o.service},
                    "params": o.parameters.iter().map(|p| json!({"name": p})).collect::<Vec<_>>(),
                })),
            })
        }
        Some(BindingKind::KvNamespace) => {
            json!({"name": b.name, "type": "kv_namespace", "namespace_id": b.value})
        }
        None => json!({"name": b.name, "type": "unknown"}),
    }
}

fn settings_json(e: &ScriptEntry) -> Value {
    json!({
        "bindings": e.bindings.iter().map(binding_json).collect::<Vec<_>>(),
        "compatibility_date": e.compatibility_date,
        "compatibility_flags": [],
        "limits": limits_json(&e.limits),
        "logpush": false,
        "placement": {},
        "tags": e.tags,
        "tail_consumers": [],
        "usage_model": "standard",
    })
}

fn get_script(c: &Control, ns: &str, name: &str) -> Result<Response, ApiError> {
    let e = script(c, ns, name)?;
    Ok(success(json!({
        "created_on": rfc3339(e.created_on),
        "modified_on": rfc3339(e.modified_on),
        "dispatch_namespace": ns,
        "script": script_json(&e),
        "compiled_tier": compiled_tier(ns, &e),
    })))
}

fn get_content(c: &Control, ns: &str, name: &str) -> Result<Response, ApiError> {
    let e = script(c, ns, name)?;
    let id = ArtifactId::from_bytes(e.artifact);
    let original = c.store().artifacts().original(&id).map_err(|err| {
        ApiError::new(
            500,
            super::code::INTERNAL,
            format!("cannot read the module of `{name}`: {err}"),
        )
    })?;
    let (content_type, body) = if tenantry_loader::js::is_bundle(&original) {
        let bundle = SourceBundle::decode(&original).map_err(|err| {
            ApiError::new(
                500,
                super::code::INTERNAL,
                format!("the stored sources of `{name}` are damaged: {err}"),
            )
        })?;
        js_content(bundle)
    } else {
        (
            Bytes::from_static(b"application/wasm"),
            Bytes::from(original),
        )
    };
    Ok(Response {
        status: 200,
        headers: vec![
            (Bytes::from_static(b"content-type"), content_type),
            (
                Bytes::from_static(b"cf-entrypoint"),
                Bytes::from(e.main_module.clone()),
            ),
        ],
        body,
    })
}

/// A JavaScript Worker's content as uploaded: a service worker's script as is, ES modules as
/// `multipart/form-data` with one part per module (as Cloudflare's content API answers).
fn js_content(bundle: SourceBundle) -> (Bytes, Bytes) {
    if bundle.format == BundleFormat::ServiceWorker {
        let script = bundle.parts.into_iter().next().map(|p| p.data);
        return (
            Bytes::from_static(b"application/javascript"),
            Bytes::from(script.unwrap_or_default()),
        );
    }
    let mut random = [0u8; 12];
    // A boundary only needs to be absent from the parts; 96 random bits make that certain.
    let _ = getrandom::fill(&mut random);
    let boundary = format!("tenantry-{}", hex::encode(random));
    let mut body = Vec::new();
    for p in &bundle.parts {
        let ct = match p.kind {
            PartKind::EsModule => "application/javascript+module",
            PartKind::Script => "application/javascript",
            PartKind::Text => "text/plain",
            PartKind::Data => "application/octet-stream",
        };
        let name = p.name.replace(['"', '\r', '\n'], "_");
        body.extend_from_slice(
            format!(
                "--{boundary}\r\ncontent-disposition: form-data; name=\"{name}\"; \
                 filename=\"{name}\"\r\ncontent-type: {ct}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(&p.data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (
        Bytes::from(format!("multipart/form-data; boundary={boundary}")),
        Bytes::from(body),
    )
}

/// The most idle instances per core an upload may ask a Worker to keep.
const MAX_REUSE_INSTANCES: u32 = 1024;

/// `PUT …/scripts/{name}` (a full upload) or `PUT …/content` (the module only).
async fn put_script(
    c: &Control,
    ns: &str,
    name: &str,
    req: &Request,
    content_only: bool,
) -> Result<Response, ApiError> {
    tenantry_loader::valid_name(name).map_err(|reason| {
        ApiError::bad_request(format!("invalid script name `{name}`: {reason}"))
    })?;
    c.index(ns)?; // 404 before compiling anything
    let Upload {
        module,
        main_module,
        metadata,
    } = upload::parse(
        req.header(b"content-type").as_deref(),
        req.body.clone(),
        "metadata",
    )
    .await?;
    let module = module.ok_or_else(|| ApiError::bad_request("the upload has no module part"))?;
    check_dispatch_targets(c, &metadata)?;
    if !content_only && let Some(tags) = &metadata.tags {
        validate_tags(tags)?;
    }
    if metadata
        .reuse_instances
        .is_some_and(|n| n > MAX_REUSE_INSTANCES)
    {
        return Err(ApiError::bad_request(format!(
            "reuse_instances may be at most {MAX_REUSE_INSTANCES}"
        )));
    }
    let default_reuse = if tenantry_loader::js::is_bundle(&module) {
        tenantry_loader::js::DEFAULT_REUSE_INSTANCES
    } else {
        0
    };
    let (artifact, tier) = c.compile_upload(module)?;
    let entry = c.edit(ns, |scripts, now| {
        let old = scripts.get(name);
        let reuse = metadata
            .reuse_instances
            .or(old.map(|o| o.reuse_instances))
            .unwrap_or(default_reuse);
        let mut e = old.cloned().unwrap_or_else(|| ScriptEntry {
            name: name.to_string(),
            artifact: *artifact.as_bytes(),
            bindings: vec![],
            tags: vec![],
            limits: ScriptLimits::default(),
            created_on: now,
            modified_on: now,
            etag: String::new(),
            reuse_instances: 0,
            compatibility_date: String::new(),
            main_module: String::new(),
        });
        e.artifact = *artifact.as_bytes();
        e.modified_on = now;
        e.reuse_instances = reuse;
        if let Some(m) = &main_module {
            e.main_module = m.clone();
        }
        if !content_only {
            apply_metadata(&mut e, &metadata, ns == PLATFORM_NAMESPACE)
                .map_err(|err| ControlError::Invalid(err.message))?;
        }
        scripts.insert(e);
        Ok(())
    });
    entry?;
    // Read before the optimiser is told: the answer describes what this PUT published.
    let e = script(c, ns, name)?;
    if tier == tenantry_core::Tier::Baseline {
        c.optimise_later(ns, name, artifact);
    }
    let mut json = script_json(&e);
    json["compiled_tier"] = compiled_tier(ns, &e);
    Ok(success(json))
}

/// Tenantry's `compiled_tier`: `"baseline"` while the data plane runs the script's Winch code
/// (just uploaded), `"optimised"` once its Cranelift code was published (docs/admin-api.md).
fn compiled_tier(ns: &str, e: &ScriptEntry) -> Value {
    json!(crate::control::tier_of(ns, e).as_str())
}

/// The namespaces `dispatch_namespace` and `kv_namespace` bindings name must exist (checked
/// before compiling).
fn check_dispatch_targets(c: &Control, m: &upload::Metadata) -> Result<(), ApiError> {
    for b in m.bindings.iter().flatten() {
        if b.kind == "kv_namespace"
            && let Some(id) = &b.namespace_id
            && c.kv().namespace(id).is_err()
        {
            return Err(ApiError::bad_request(format!(
                "binding `{}`: KV namespace `{id}` does not exist",
                b.name
            )));
        }
        if b.kind == "dispatch_namespace"
            && let Some(ns) = &b.namespace
            && c.index(ns).is_err()
        {
            return Err(ApiError::bad_request(format!(
                "binding `{}`: dispatch namespace `{ns}` does not exist",
                b.name
            )));
        }
    }
    Ok(())
}

/// Applies upload or settings metadata to an entry.
fn apply_metadata(
    e: &mut ScriptEntry,
    m: &upload::Metadata,
    platform: bool,
) -> Result<(), ApiError> {
    if let Some(bindings) = &m.bindings {
        e.bindings = upload::resolve_bindings(bindings, &m.keep_bindings, &e.bindings, platform)?;
    }
    if let Some(tags) = &m.tags {
        validate_tags(tags)?;
        e.tags = dedup(tags.clone());
    }
    if let Some(date) = &m.compatibility_date {
        e.compatibility_date = date.clone();
    }
    if let Some(l) = m.limits {
        if l.cpu_ms == Some(0) || l.wall_ms == Some(0) || l.memory_mb == Some(0) {
            return Err(ApiError::bad_request("limits must be positive"));
        }
        e.limits.cpu_ms = l.cpu_ms.or(e.limits.cpu_ms);
        e.limits.wall_ms = l.wall_ms.or(e.limits.wall_ms);
        e.limits.memory_bytes = l
            .memory_mb
            .map(|mb| u64::from(mb) << 20)
            .or(e.limits.memory_bytes);
        e.limits.subrequests = l.subrequests.or(e.limits.subrequests);
    }
    Ok(())
}

async fn patch_settings(
    c: &Control,
    ns: &str,
    name: &str,
    req: &Request,
) -> Result<Response, ApiError> {
    let Upload { metadata, .. } = upload::parse(
        req.header(b"content-type").as_deref(),
        req.body.clone(),
        "settings",
    )
    .await?;
    check_dispatch_targets(c, &metadata)?;
    c.edit_script(ns, name, |e, _| {
        apply_metadata(e, &metadata, ns == PLATFORM_NAMESPACE)
            .map_err(|err| ControlError::Invalid(err.message))
    })?;
    Ok(success(settings_json(&script(c, ns, name)?)))
}

fn put_secret(c: &Control, ns: &str, name: &str, body: &Bytes) -> Result<Response, ApiError> {
    #[derive(Deserialize)]
    struct Secret {
        name: String,
        text: String,
        #[serde(rename = "type", default)]
        kind: Option<String>,
    }
    let s: Secret = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!("expected {{\"name\", \"text\", \"type\"}}: {e}"))
    })?;
    if s.kind.as_deref().is_some_and(|k| k != "secret_text") {
        return Err(ApiError::bad_request("secrets have type `secret_text`"));
    }
    tenantry_loader::names::valid_binding_name(&s.name)
        .map_err(|m| ApiError::bad_request(format!("secret `{}`: {m}", s.name)))?;
    let secret_name = s.name.clone();
    c.edit_script(ns, name, move |e, _| {
        e.bindings.retain(|b| b.name != s.name);
        e.bindings.push(BindingEntry {
            name: s.name,
            kind: BindingKind::SecretText as u8,
            value: s.text,
        });
        Ok(())
    })?;
    Ok(success(json!({"name": secret_name, "type": "secret_text"})))
}

// ---- lists and tag filters ----

/// `tags=a:yes,b:no` (a bare `a` means `a:yes`).
fn tag_filter(query: &HashMap<String, String>) -> Result<Option<Vec<(String, bool)>>, ApiError> {
    let Some(raw) = query.get("tags") else {
        return Ok(None);
    };
    raw.split(',')
        .filter(|t| !t.is_empty())
        .map(|t| match t.rsplit_once(':') {
            Some((tag, "yes")) => Ok((tag.to_string(), true)),
            Some((tag, "no")) => Ok((tag.to_string(), false)),
            Some((_, other)) => Err(ApiError::bad_request(format!(
                "tag filter `{t}`: expected `tag:yes` or `tag:no`, not `{other}`"
            ))),
            None => Ok((t.to_string(), true)),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn matches<T: AsRef<str>>(filter: &[(String, bool)], tags: &[T]) -> bool {
    filter
        .iter()
        .all(|(tag, want)| tags.iter().any(|t| t.as_ref() == tag) == *want)
}

/// A list's `limit` query parameter: 1 to [`DEFAULT_PAGE`], that when absent.
fn page_limit(query: &HashMap<String, String>) -> Result<usize, ApiError> {
    match query.get("limit") {
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=DEFAULT_PAGE).contains(n))
            .ok_or_else(|| ApiError::bad_request(format!("limit must be 1 to {DEFAULT_PAGE}"))),
        None => Ok(DEFAULT_PAGE),
    }
}

fn list_scripts(
    c: &Control,
    ns: &str,
    query: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let filter = tag_filter(query)?.unwrap_or_default();
    let limit = page_limit(query)?;
    let cursor = query.get("cursor").map(String::as_str).unwrap_or("");
    let index = c.index(ns)?;
    let keep = |e: &&ArchivedScriptEntry| {
        filter.is_empty()
            || matches(
                &filter,
                &e.tags.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
            )
    };
    // The page walks the names after the cursor in order (a binary search in the index's name
    // table, then the next `limit`): O(log n + limit) unfiltered. A tag filter reads on until
    // the page is full, and its total counts every match (O(n)).
    let mut after = index.scripts_after(cursor).filter(keep);
    let page: Vec<&ArchivedScriptEntry> = after.by_ref().take(limit).collect();
    let more = after.next().is_some();
    let total = if filter.is_empty() {
        index.len()
    } else {
        index.scripts().filter(keep).count()
    };
    let next = match page.last() {
        Some(last) if more => last.name.as_str(),
        _ => "",
    };
    let list: Vec<ScriptListed> = page.iter().map(|e| ScriptListed::of(e)).collect();
    Ok(success_serialized(
        &list,
        json!({"count": page.len(), "per_page": limit, "total_count": total, "cursor": next}),
    ))
}

/// [`script_json`]'s object, serialised straight from the archived entry (see
/// [`success_serialized`]); fields by name, as the `Value` map orders them.
#[derive(serde::Serialize)]
struct ScriptListed<'a> {
    compatibility_date: &'a str,
    created_on: String,
    etag: &'a str,
    handlers: [&'static str; 1],
    has_assets: bool,
    has_modules: bool,
    id: &'a str,
    limits: Value,
    main_module: &'a str,
    modified_on: String,
    tags: Vec<&'a str>,
    usage_model: &'static str,
}

impl<'a> ScriptListed<'a> {
    fn of(e: &'a ArchivedScriptEntry) -> ScriptListed<'a> {
        let limits = rkyv::deserialize::<ScriptLimits, rkyv::rancor::Error>(&e.limits)
            .expect("deserializing a validated archive cannot fail");
        ScriptListed {
            compatibility_date: e.compatibility_date.as_str(),
            created_on: rfc3339(e.created_on.to_native()),
            etag: e.etag.as_str(),
            handlers: ["fetch"],
            has_assets: false,
            has_modules: true,
            id: e.name.as_str(),
            limits: limits_json(&limits),
            main_module: e.main_module.as_str(),
            modified_on: rfc3339(e.modified_on.to_native()),
            tags: e.tags.iter().map(|t| t.as_str()).collect(),
            usage_model: "standard",
        }
    }
}

fn delete_by_tags(
    c: &Control,
    ns: &str,
    query: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let filter = tag_filter(query)?
        .filter(|f| !f.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request("bulk delete needs a `tags` filter, e.g. ?tags=customer-1:yes")
        })?;
    let deleted = c.edit(ns, |scripts, _| {
        Ok(scripts.retain(|tags| !matches(&filter, tags)))
    })?;
    Ok(success_with_info(
        Value::Null,
        Some(json!({"deleted_count": deleted})),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listed script is the same JSON as `script_json` gives, byte for byte.
    #[test]
    fn listed_scripts_serialise_as_script_objects() {
        let entry = ScriptEntry {
            name: "alice".into(),
            artifact: [1; 32],
            bindings: vec![],
            tags: vec!["a".into(), "plan:free".into()],
            limits: ScriptLimits {
                cpu_ms: Some(25),
                memory_bytes: Some(64 << 20),
                ..Default::default()
            },
            created_on: 1_700_000_000_000,
            modified_on: 1_700_000_123_456,
            etag: "e1".into(),
            reuse_instances: 0,
            compatibility_date: "2025-01-01".into(),
            main_module: "worker.js".into(),
        };
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&entry).unwrap();
        let archived = rkyv::access::<ArchivedScriptEntry, rkyv::rancor::Error>(&bytes).unwrap();
        let listed = serde_json::to_vec(&ScriptListed::of(archived)).unwrap();
        assert_eq!(listed, serde_json::to_vec(&script_json(&entry)).unwrap());
    }

    #[test]
    fn path_segments_are_percent_decoded_once() {
        assert_eq!(decode_segment("a%2Fb%20c").unwrap(), "a/b c");
        assert_eq!(decode_segment("plan%2520pro").unwrap(), "plan%20pro");
        assert!(decode_segment("bad%ff").is_err());
    }
}
