//! A key-value HTTP API over the Worker's `CACHE` (`kv_namespace`) binding:
//!
//! - `PUT /k/<key>` stores the body (`?ttl=<seconds>`, `?metadata=<json>`) → `204`;
//! - `GET /k/<key>` → the value, with `x-kv-metadata` and `x-kv-expiration` when set, or `404`;
//! - `DELETE /k/<key>` → `204`;
//! - `GET /list?prefix=&limit=&cursor=` → Cloudflare's JSON list result.
//!
//! A refused operation answers `400` (`413` for a limit) with the host's explanation.

use tenantry_sdk::kv::{self, KvError, ListOptions, PutOptions};
use tenantry_sdk::{Error, Request, Response};

fn refused(e: KvError) -> Response {
    let status = match e.error {
        Error::Limit => 413,
        Error::Store => 503,
        _ => 400,
    };
    Response::with_status(status).body(format!("{e}\n"))
}

fn handle(req: Request) -> Result<Response, Error> {
    let cache = kv::namespace("CACHE");
    let url = req.url();
    let path = url
        .trim_start_matches("http://")
        .split_once('/')
        .map_or("", |(_, p)| p);
    let path = path.split('?').next().unwrap_or("");
    let method = req.method();
    if let Some(key) = path.strip_prefix("k/") {
        let key = tenantry_sdk::query_param(&format!("?k={key}"), "k").unwrap_or_default();
        return Ok(match method.as_str() {
            "PUT" => {
                let body = req.body()?;
                let ttl = req.query("ttl").and_then(|t| t.parse().ok());
                let metadata = req.query("metadata");
                let options = PutOptions {
                    expiration_ttl: ttl,
                    metadata_json: metadata.as_deref(),
                    ..PutOptions::default()
                };
                match cache.put_with(&key, &body, &options) {
                    Ok(()) => Response::with_status(204),
                    Err(e) => refused(e),
                }
            }
            "GET" => match cache.get_with_metadata(&key) {
                Ok(Some(entry)) => {
                    let mut resp = Response::ok().body(entry.value);
                    if let Some(m) = entry.metadata_json {
                        resp = resp.header("x-kv-metadata", m);
                    }
                    if let Some(e) = entry.expiration {
                        resp = resp.header("x-kv-expiration", e.to_string());
                    }
                    resp
                }
                Ok(None) => Response::with_status(404).body("no such key\n"),
                Err(e) => refused(e),
            },
            "DELETE" => match cache.delete(&key) {
                Ok(()) => Response::with_status(204),
                Err(e) => refused(e),
            },
            _ => Response::with_status(405),
        });
    }
    if path == "list" {
        let prefix = req.query("prefix");
        let cursor = req.query("cursor");
        let options = ListOptions {
            prefix: prefix.as_deref(),
            limit: req.query("limit").and_then(|l| l.parse().ok()),
            cursor: cursor.as_deref(),
        };
        return Ok(match cache.list(&options) {
            Ok(json) => Response::ok()
                .header("content-type", "application/json")
                .body(json),
            Err(e) => refused(e),
        });
    }
    Ok(Response::with_status(404).body("try /k/<key> or /list\n"))
}

tenantry_sdk::main!(handle);
