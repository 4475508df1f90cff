//! KV namespaces as Workers see them: the backend trait a node provides, and the operations.
//!
//! The store itself (and its blocking disk I/O) lives behind [`KvBackend`], implemented by the
//! loader on its own threads; a guest's `kv_*` call awaits the reply without blocking its core.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;

/// One KV operation, on the namespace a `kv_namespace` binding names.
#[derive(Debug, Clone)]
pub enum KvOp {
    Get {
        namespace: String,
        key: String,
    },
    Put {
        namespace: String,
        key: String,
        value: Bytes,
        /// Unix seconds.
        expiration: Option<u64>,
        expiration_ttl: Option<u64>,
        /// JSON text.
        metadata: Option<String>,
    },
    /// Several keys read in one transaction (Cloudflare's bulk read), at most
    /// [`MAX_BULK_GET_KEYS`].
    GetMany {
        namespace: String,
        keys: Vec<String>,
    },
    Delete {
        namespace: String,
        key: String,
    },
    List {
        namespace: String,
        prefix: String,
        limit: usize,
        cursor: Option<String>,
    },
}

/// Most keys one bulk read names (Cloudflare's limit, for a binding's multi-key `get` and the
/// API's `bulk/get`).
pub const MAX_BULK_GET_KEYS: usize = 100;

/// Most value bytes one bulk read returns (Cloudflare's 25 MiB).
pub const MAX_BULK_GET_BYTES: usize = 25 << 20;

/// A value read: the bytes, metadata (JSON text), expiration (Unix seconds).
pub type KvValue = (Bytes, Option<String>, Option<u64>);

/// A listed key: name, expiration (Unix seconds), metadata (JSON text).
pub type KvListedKey = (String, Option<u64>, Option<String>);

/// The reply to a [`KvOp`].
#[derive(Debug, Clone)]
pub enum KvReply {
    /// `Get`: the value, its metadata (JSON text) and expiration, or `None`.
    Value(Option<KvValue>),
    /// `GetMany`: each key's value, metadata and expiration, or `None`, in the keys' order.
    Values(Vec<Option<KvValue>>),
    /// `Put` and `Delete`.
    Done,
    /// `List`: keys, and the cursor of the next page (`None` when complete).
    Page {
        keys: Vec<KvListedKey>,
        cursor: Option<String>,
    },
}

/// Why a KV operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvFailure {
    /// The guest's mistake (a bad key, an oversized value, …): the message says which.
    Invalid(String),
    /// A size limit.
    Limit(String),
    /// The store failed.
    Store(String),
    /// The store's queue is full: the operation was not started; it may be retried.
    Busy(String),
}

/// The future of a KV operation; `Send`, since it completes on the store's threads.
pub type KvFuture = Pin<Box<dyn Future<Output = Result<KvReply, KvFailure>> + Send>>;

/// A node's KV store, as the serving cores reach it.
pub trait KvBackend: Send + Sync {
    fn call(&self, op: KvOp) -> KvFuture;
}
