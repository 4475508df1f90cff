//! KV namespaces: the `kv_namespace` bindings of a Worker, read and written on the node's store.
//!
//! ```no_run
//! use tenantry_sdk::kv;
//! # fn f() -> Result<(), tenantry_sdk::kv::KvError> {
//! let cache = kv::namespace("CACHE");
//! cache.put_with("greeting", b"hello", &kv::PutOptions { expiration_ttl: Some(3600), ..Default::default() })?;
//! let value = cache.get("greeting")?; // Some(b"hello".to_vec())
//! let page = cache.list(&kv::ListOptions { prefix: Some("user:"), ..Default::default() })?;
//! # Ok(()) }
//! ```
//!
//! Cloudflare's limits apply: keys of 1 to 512 bytes, values up to 25 MiB, metadata up to
//! 1024 bytes of JSON, expirations at least 60 s ahead; at most 1000 operations per invocation.

use std::fmt;

use crate::error::{Error, check};
use crate::fetch::{FetchedResponse, json_string, last_error};
use crate::sys;

/// A failed KV operation, with the host's explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvError {
    pub error: Error,
    pub message: String,
}

impl fmt::Display for KvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.error)
    }
}

impl std::error::Error for KvError {}

fn kv_result(ret: i32) -> Result<usize, KvError> {
    check(ret).map_err(|error| KvError {
        error,
        message: last_error(),
    })
}

/// How long a value lives, and the metadata stored with it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutOptions<'a> {
    /// Unix seconds, at least 60 s ahead.
    pub expiration: Option<u64>,
    /// Seconds from now, at least 60.
    pub expiration_ttl: Option<u64>,
    /// JSON text, at most 1024 bytes.
    pub metadata_json: Option<&'a str>,
}

/// Which keys to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions<'a> {
    pub prefix: Option<&'a str>,
    /// 1 to 1000 (the default).
    pub limit: Option<u32>,
    /// `cursor` of the previous page.
    pub cursor: Option<&'a str>,
}

/// A value with what was stored beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub value: Vec<u8>,
    /// JSON text.
    pub metadata_json: Option<String>,
    /// Unix seconds.
    pub expiration: Option<u64>,
}

/// The KV namespace behind a `kv_namespace` binding.
#[derive(Debug, Clone)]
pub struct Namespace {
    binding: String,
}

/// The KV namespace behind the binding `binding`.
pub fn namespace(binding: &str) -> Namespace {
    Namespace {
        binding: binding.to_string(),
    }
}

impl Namespace {
    /// The value under `key`, or `None`.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        Ok(self.get_with_metadata(key)?.map(|e| e.value))
    }

    /// The value under `key` with its metadata and expiration, or `None`.
    pub fn get_with_metadata(&self, key: &str) -> Result<Option<Entry>, KvError> {
        let b = self.binding.as_bytes();
        // SAFETY: every slice is live and only read by the host.
        let ret = unsafe { sys::kv_get(b.as_ptr(), b.len(), key.as_ptr(), key.len()) };
        if ret == sys::NOT_FOUND {
            return Ok(None);
        }
        let handle = kv_result(ret)? as i32;
        let resp = FetchedResponse::from_handle(handle);
        let value = resp.body().map_err(|error| KvError {
            error,
            message: "reading the value".into(),
        })?;
        Ok(Some(Entry {
            value,
            metadata_json: resp.header("kv-metadata"),
            expiration: resp.header("kv-expiration").and_then(|e| e.parse().ok()),
        }))
    }

    /// Stores `value` under `key`.
    pub fn put(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.put_with(key, value, &PutOptions::default())
    }

    /// Stores `value` under `key` with an expiration and metadata.
    pub fn put_with(&self, key: &str, value: &[u8], options: &PutOptions) -> Result<(), KvError> {
        let mut opts = String::new();
        if *options != PutOptions::default() {
            let mut fields = Vec::new();
            if let Some(e) = options.expiration {
                fields.push(format!("\"expiration\":{e}"));
            }
            if let Some(t) = options.expiration_ttl {
                fields.push(format!("\"expiration_ttl\":{t}"));
            }
            if let Some(m) = options.metadata_json {
                fields.push(format!("\"metadata\":{m}"));
            }
            opts = format!("{{{}}}", fields.join(","));
        }
        let b = self.binding.as_bytes();
        // SAFETY: every slice is live and only read by the host.
        kv_result(unsafe {
            sys::kv_put(
                b.as_ptr(),
                b.len(),
                key.as_ptr(),
                key.len(),
                value.as_ptr(),
                value.len(),
                opts.as_ptr(),
                opts.len(),
            )
        })?;
        Ok(())
    }

    /// Deletes `key` (absent is fine).
    pub fn delete(&self, key: &str) -> Result<(), KvError> {
        let b = self.binding.as_bytes();
        // SAFETY: every slice is live and only read by the host.
        kv_result(unsafe { sys::kv_delete(b.as_ptr(), b.len(), key.as_ptr(), key.len()) })?;
        Ok(())
    }

    /// One page of keys, as Cloudflare's JSON list result:
    /// `{"keys": [{"name", "expiration"?, "metadata"?}], "list_complete": bool, "cursor"?}`.
    pub fn list(&self, options: &ListOptions) -> Result<String, KvError> {
        let mut fields = Vec::new();
        if let Some(p) = options.prefix {
            let mut s = String::from("\"prefix\":");
            json_string(p, &mut s);
            fields.push(s);
        }
        if let Some(l) = options.limit {
            fields.push(format!("\"limit\":{l}"));
        }
        if let Some(c) = options.cursor {
            let mut s = String::from("\"cursor\":");
            json_string(c, &mut s);
            fields.push(s);
        }
        let opts = format!("{{{}}}", fields.join(","));
        let b = self.binding.as_bytes();
        // SAFETY: every slice is live and only read by the host.
        let handle =
            kv_result(unsafe { sys::kv_list(b.as_ptr(), b.len(), opts.as_ptr(), opts.len()) })?;
        let body = FetchedResponse::from_handle(handle as i32)
            .body()
            .map_err(|error| KvError {
                error,
                message: "reading the list".into(),
            })?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }
}
