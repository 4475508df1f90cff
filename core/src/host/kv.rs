//! `kv_get`, `kv_get_many`, `kv_put`, `kv_delete`, `kv_list` on a `kv_namespace` binding
//! (docs/worker-abi.md, "KV"). Each is an async host call: the operation runs on the KV store's
//! threads while the guest's core serves others. Reads come back as response handles (the value
//! as the body, metadata and expiration as headers; a list or a bulk read as JSON), so the guest
//! reads them with the `response_*` calls.

use bytes::Bytes;
use serde_json::{Value, json};
use wasmtime::{Caller, Linker};

use super::fetch::binding_value;
use super::{DeadlineExceeded, HostState, charge_alloc, parts};
use crate::abi::{WORKER_V1, code};
use crate::guest_mem::slice;
use crate::kv::{KvFailure, KvOp, KvReply, MAX_BULK_GET_BYTES, MAX_BULK_GET_KEYS};
use crate::{BindingKind, Response};

type Ctx<'a> = Caller<'a, HostState>;
type R = wasmtime::Result<i32>;

/// The most keys one `kv_list` returns.
const MAX_LIST_LIMIT: u64 = 1000;

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap_async(
        WORKER_V1,
        "kv_get",
        |caller: Ctx<'_>, (b_ptr, b_len, k_ptr, k_len): (i32, i32, i32, i32)| {
            Box::new(kv_get(caller, (b_ptr, b_len), (k_ptr, k_len)))
        },
    )?;
    linker.func_wrap_async(
        WORKER_V1,
        "kv_get_many",
        |caller: Ctx<'_>, (b_ptr, b_len, k_ptr, k_len): (i32, i32, i32, i32)| {
            Box::new(kv_get_many(caller, (b_ptr, b_len), (k_ptr, k_len)))
        },
    )?;
    linker.func_wrap_async(
        WORKER_V1,
        "kv_put",
        |caller: Ctx<'_>,
         (b_ptr, b_len, k_ptr, k_len, v_ptr, v_len, o_ptr, o_len): (
            i32,
            i32,
            i32,
            i32,
            i32,
            i32,
            i32,
            i32,
        )| {
            Box::new(kv_put(
                caller,
                (b_ptr, b_len),
                (k_ptr, k_len),
                (v_ptr, v_len),
                (o_ptr, o_len),
            ))
        },
    )?;
    linker.func_wrap_async(
        WORKER_V1,
        "kv_delete",
        |caller: Ctx<'_>, (b_ptr, b_len, k_ptr, k_len): (i32, i32, i32, i32)| {
            Box::new(kv_delete(caller, (b_ptr, b_len), (k_ptr, k_len)))
        },
    )?;
    linker.func_wrap_async(
        WORKER_V1,
        "kv_list",
        |caller: Ctx<'_>, (b_ptr, b_len, o_ptr, o_len): (i32, i32, i32, i32)| {
            Box::new(kv_list(caller, (b_ptr, b_len), (o_ptr, o_len)))
        },
    )?;
    Ok(())
}

/// The namespace id of the `kv_namespace` binding at `binding`, and the key at `key` (UTF-8),
/// with the per-invocation operation budget counted; `Err(code)` for the guest.
fn target(
    caller: &mut Ctx<'_>,
    binding: (i32, i32),
    key: Option<(i32, i32)>,
    call: &'static str,
) -> wasmtime::Result<Result<(String, String), i32>> {
    let namespace = match binding_value(caller, binding, BindingKind::KvNamespace, call)? {
        Ok(ns) => ns,
        Err(code) => return Ok(Err(code)),
    };
    let key = match key {
        None => String::new(),
        Some((ptr, len)) => {
            charge_alloc(caller, len as u32 as usize)?;
            let (mem, state) = parts(caller)?;
            match std::str::from_utf8(slice(mem, ptr, len, call)?) {
                Ok(k) => k.to_string(),
                Err(_) => {
                    return Ok(Err(state
                        .calls
                        .fail(code::INVALID, "a KV key must be UTF-8")));
                }
            }
        }
    };
    let state = caller.data_mut();
    if !state.calls.count_kv() {
        let why = format!(
            "the limit of {} KV operations per invocation is reached",
            crate::limits::MAX_KV_OPS
        );
        return Ok(Err(state.calls.fail(code::LIMIT, why)));
    }
    Ok(Ok((namespace, key)))
}

/// Runs `op` on the node's KV store. `Err` ends the invocation: its wall-clock limit passed
/// while it waited.
async fn run(caller: &mut Ctx<'_>, op: KvOp) -> wasmtime::Result<Result<KvReply, i32>> {
    let Some(backend) = crate::nested::kv_backend() else {
        return Ok(Err(caller
            .data_mut()
            .calls
            .fail(code::UNSUPPORTED, "this node has no KV store")));
    };
    // Every wait ends at the invocation's wall-clock deadline: a stalled store must not hold
    // the guest (and its pool slot) past its limit.
    let deadline = caller.data().deadline;
    let reply = crate::nested::spawn_until(backend.call(op), deadline).await;
    let calls = &mut caller.data_mut().calls;
    Ok(match reply {
        Ok(Some(Ok(reply))) => Ok(reply),
        Ok(Some(Err(failure))) => Err(match failure {
            KvFailure::Invalid(why) => calls.fail(code::INVALID, why),
            KvFailure::Limit(why) => calls.fail(code::LIMIT, why),
            KvFailure::Store(why) | KvFailure::Busy(why) => calls.fail(code::STORE, why),
        }),
        Ok(None) => return Err(DeadlineExceeded.into()),
        Err(_) => Err(calls.fail(code::STORE, "the KV operation was cancelled")),
    })
}

/// The options JSON of `kv_put` / `kv_list`: empty, or an object.
fn options(
    caller: &mut Ctx<'_>,
    opts: (i32, i32),
    call: &'static str,
) -> wasmtime::Result<Result<Value, i32>> {
    charge_alloc(caller, opts.1 as u32 as usize)?;
    let (mem, state) = parts(caller)?;
    let raw = slice(mem, opts.0, opts.1, call)?;
    if raw.is_empty() {
        return Ok(Ok(json!({})));
    }
    Ok(match serde_json::from_slice::<Value>(raw) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(state.calls.fail(
            code::INVALID,
            format!("{call}: the options are not a JSON object"),
        )),
    })
}

async fn kv_get(mut caller: Ctx<'_>, binding: (i32, i32), key: (i32, i32)) -> R {
    let (namespace, key) = match target(&mut caller, binding, Some(key), "kv_get")? {
        Ok(t) => t,
        Err(code) => return Ok(code),
    };
    let reply = match run(&mut caller, KvOp::Get { namespace, key }).await? {
        Ok(reply) => reply,
        Err(code) => return Ok(code),
    };
    let state = caller.data_mut();
    let calls = &mut state.calls;
    let Some((value, metadata, expiration)) = (match reply {
        KvReply::Value(v) => v,
        _ => None,
    }) else {
        return Ok(calls.fail(code::NOT_FOUND, "no such key"));
    };
    let mut headers = Vec::new();
    if let Some(m) = metadata {
        headers.push((Bytes::from_static(b"kv-metadata"), Bytes::from(m)));
    }
    if let Some(e) = expiration {
        headers.push((
            Bytes::from_static(b"kv-expiration"),
            Bytes::from(e.to_string()),
        ));
    }
    Ok(calls.push_response(
        &mut state.budget,
        Response {
            status: 200,
            headers,
            body: value,
        },
    ))
}

/// Cloudflare's bulk read, one KV operation: `keys` is a JSON array of 1 to
/// [`MAX_BULK_GET_KEYS`] keys; the answer a response handle whose body is a JSON array in the
/// keys' order, each `null` (absent) or `{"value": <text>, "metadata"?, "expiration"?}` (the
/// value decoded as UTF-8, invalid sequences replaced: a bulk read serves text and JSON only).
async fn kv_get_many(mut caller: Ctx<'_>, binding: (i32, i32), keys: (i32, i32)) -> R {
    const CALL: &str = "kv_get_many";
    let (namespace, _) = match target(&mut caller, binding, None, CALL)? {
        Ok(t) => t,
        Err(code) => return Ok(code),
    };
    charge_alloc(&mut caller, keys.1 as u32 as usize)?;
    let keys: Vec<String> = {
        let (mem, state) = parts(&mut caller)?;
        match serde_json::from_slice(slice(mem, keys.0, keys.1, CALL)?) {
            Ok(keys) => keys,
            Err(_) => {
                return Ok(state.calls.fail(
                    code::INVALID,
                    format!("{CALL}: the keys are not a JSON array of strings"),
                ));
            }
        }
    };
    if keys.is_empty() || keys.len() > MAX_BULK_GET_KEYS {
        let why = if keys.is_empty() {
            "You must request a minimum of 1 key".to_string()
        } else {
            format!("You can request a maximum of {MAX_BULK_GET_KEYS} keys")
        };
        return Ok(caller.data_mut().calls.fail(code::INVALID, why));
    }
    let values = match run(&mut caller, KvOp::GetMany { namespace, keys }).await? {
        Ok(KvReply::Values(values)) => values,
        Ok(_) => Vec::new(),
        Err(code) => return Ok(code),
    };
    let total: usize = values.iter().flatten().map(|(v, _, _)| v.len()).sum();
    if total > MAX_BULK_GET_BYTES {
        return Ok(caller.data_mut().calls.fail(
            code::LIMIT,
            format!(
                "Total size of request exceeds the limit of {}MB",
                MAX_BULK_GET_BYTES >> 20
            ),
        ));
    }
    let entries: Vec<Value> = values
        .into_iter()
        .map(|entry| {
            let Some((value, metadata, expiration)) = entry else {
                return Value::Null;
            };
            let mut e = json!({ "value": String::from_utf8_lossy(&value) });
            if let Some(m) = metadata.and_then(|m| serde_json::from_str::<Value>(&m).ok()) {
                e["metadata"] = m;
            }
            if let Some(x) = expiration {
                e["expiration"] = json!(x);
            }
            e
        })
        .collect();
    let response = Response {
        status: 200,
        headers: vec![(
            Bytes::from_static(b"content-type"),
            Bytes::from_static(b"application/json"),
        )],
        body: Bytes::from(Value::Array(entries).to_string()),
    };
    // Building the answer: the values are copied into it.
    charge_alloc(&mut caller, response.body.len())?;
    let state = caller.data_mut();
    Ok(state.calls.push_response(&mut state.budget, response))
}

async fn kv_put(
    mut caller: Ctx<'_>,
    binding: (i32, i32),
    key: (i32, i32),
    value: (i32, i32),
    opts: (i32, i32),
) -> R {
    const CALL: &str = "kv_put";
    let (namespace, key) = match target(&mut caller, binding, Some(key), CALL)? {
        Ok(t) => t,
        Err(code) => return Ok(code),
    };
    let opts = match options(&mut caller, opts, CALL)? {
        Ok(o) => o,
        Err(code) => return Ok(code),
    };
    charge_alloc(&mut caller, value.1 as u32 as usize)?;
    let value = {
        let (mem, _) = parts(&mut caller)?;
        Bytes::copy_from_slice(slice(mem, value.0, value.1, CALL)?)
    };
    let number = |name: &str| opts.get(name).and_then(Value::as_u64);
    let op = KvOp::Put {
        namespace,
        key,
        value,
        expiration: number("expiration"),
        expiration_ttl: number("expiration_ttl"),
        metadata: opts
            .get("metadata")
            .filter(|m| !m.is_null())
            .map(Value::to_string),
    };
    Ok(match run(&mut caller, op).await? {
        Ok(_) => 0,
        Err(code) => code,
    })
}

async fn kv_delete(mut caller: Ctx<'_>, binding: (i32, i32), key: (i32, i32)) -> R {
    let (namespace, key) = match target(&mut caller, binding, Some(key), "kv_delete")? {
        Ok(t) => t,
        Err(code) => return Ok(code),
    };
    Ok(
        match run(&mut caller, KvOp::Delete { namespace, key }).await? {
            Ok(_) => 0,
            Err(code) => code,
        },
    )
}

async fn kv_list(mut caller: Ctx<'_>, binding: (i32, i32), opts: (i32, i32)) -> R {
    const CALL: &str = "kv_list";
    let (namespace, _) = match target(&mut caller, binding, None, CALL)? {
        Ok(t) => t,
        Err(code) => return Ok(code),
    };
    let opts = match options(&mut caller, opts, CALL)? {
        Ok(o) => o,
        Err(code) => return Ok(code),
    };
    let limit = opts
        .get("limit")
        .and_then(Value::as_u64)
        .unwrap_or(MAX_LIST_LIMIT);
    if limit == 0 || limit > MAX_LIST_LIMIT {
        return Ok(caller.data_mut().calls.fail(
            code::INVALID,
            format!("kv_list: limit must be 1 to {MAX_LIST_LIMIT}"),
        ));
    }
    let text = |name: &str| opts.get(name).and_then(Value::as_str).map(str::to_string);
    let op = KvOp::List {
        namespace,
        prefix: text("prefix").unwrap_or_default(),
        limit: limit as usize,
        cursor: text("cursor"),
    };
    let (keys, cursor) = match run(&mut caller, op).await? {
        Ok(KvReply::Page { keys, cursor }) => (keys, cursor),
        Ok(_) => (Vec::new(), None),
        Err(code) => return Ok(code),
    };
    // Cloudflare's list result: {keys: [{name, expiration?, metadata?}], list_complete, cursor?}.
    let keys: Vec<Value> = keys
        .into_iter()
        .map(|(name, expiration, metadata)| {
            let mut k = json!({ "name": name });
            if let Some(e) = expiration {
                k["expiration"] = json!(e);
            }
            if let Some(m) = metadata.and_then(|m| serde_json::from_str::<Value>(&m).ok()) {
                k["metadata"] = m;
            }
            k
        })
        .collect();
    let mut body = json!({ "keys": keys, "list_complete": cursor.is_none() });
    if let Some(c) = cursor {
        body["cursor"] = json!(c);
    }
    let response = Response {
        status: 200,
        headers: vec![(
            Bytes::from_static(b"content-type"),
            Bytes::from_static(b"application/json"),
        )],
        body: Bytes::from(body.to_string()),
    };
    // Building the list result.
    charge_alloc(&mut caller, response.body.len())?;
    let state = caller.data_mut();
    Ok(state.calls.push_response(&mut state.budget, response))
}
