//! KV namespaces on the embedded default store: one [redb] database, `<data_dir>/kv.redb`.
//!
//! ```text
//!  kv_namespaces: namespace id ─► {"title", "created_on"}                 (JSON)
//!  kv_entries:    (namespace id, key) ─► expiration u64 LE (0 = never)
//!                                        ‖ metadata length u32 LE ‖ metadata (JSON text)
//!                                        ‖ value
//! ```
//!
//! redb is ACID (copy-on-write B-trees, a commit is durable when it returns) and single-file,
//! with many concurrent readers and one writer. Its calls block on disk I/O: callers run them
//! off the serving cores. Cloudflare's limits apply: keys of 1 to 512 bytes (not `.` or `..`),
//! values up to 25 MiB, metadata up to 1024 bytes of JSON, an expiration at least 60 s ahead.
//! Expired entries are never returned; [`KvStore::sweep`] removes them.
//!
//! [redb]: https://docs.rs/redb

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableTable, TableDefinition};

/// The longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 512;
/// The largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 25 << 20;
/// The largest metadata, in bytes of JSON.
pub const MAX_METADATA_BYTES: usize = 1024;
/// The most keys one list returns.
pub const MAX_LIST_LIMIT: usize = 1000;
pub use tenantry_core::kv::{MAX_BULK_GET_BYTES, MAX_BULK_GET_KEYS};
/// The nearest an expiration may be, in seconds from now.
pub const MIN_EXPIRATION_TTL_S: u64 = 60;

const NAMESPACES: TableDefinition<&str, &[u8]> = TableDefinition::new("kv_namespaces");
const ENTRIES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("kv_entries");
/// The first layout of `secret_text` values: (namespace, script, binding name) ─► token length
/// u8 ‖ token ‖ value, one version per binding. Migrated into [`SECRET_VERSIONS`] on open.
const SECRETS: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("secrets");
/// `secret_text` values, apart from the namespace indexes: (namespace, script, binding name,
/// token) ─► value. The index holds only the token (see [`SECRET_TOKEN_PREFIX`]). Several
/// versions of one binding coexist while an index that names the new one is being published, so
/// that every crash point leaves the live index's tokens resolvable (see
/// [`KvStore::seal_secrets`] and [`KvStore::prune_secrets`]).
const SECRET_VERSIONS: TableDefinition<(&str, &str, &str, &str), &[u8]> =
    TableDefinition::new("secret_versions");

/// What an index holds in place of a `secret_text` value: this prefix and a random version, new
/// for every value, so the index changes (and Workers reload) when a secret does, yet reveals
/// nothing of it.
pub const SECRET_TOKEN_PREFIX: &str = "tenantry-secret:";

/// The secrets of one namespace: script ─► its secrets. Persistent (`imbl`): a publish that
/// changes one script replaces that script's entry in O(log n) and shares the rest with the
/// snapshot before it, rather than reading every secret of the namespace again.
pub type NamespaceSecrets = imbl::HashMap<String, Arc<ScriptSecrets>>;

/// The secrets of one script: (binding name, token) ─► value.
pub type ScriptSecrets = HashMap<(String, String), String>;

/// Why a KV operation failed. Every variant but [`KvError::Storage`] is the caller's mistake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    #[error("KV namespace `{0}` not found")]
    NamespaceNotFound(String),
    #[error("a KV namespace titled `{0}` already exists")]
    TitleExists(String),
    #[error("{0}")]
    BadTitle(&'static str),
    #[error("keys are 1 to {MAX_KEY_BYTES} bytes and not `.` or `..` (got {0} bytes)")]
    BadKey(usize),
    #[error("the value is {0} bytes, more than the limit of {MAX_VALUE_BYTES} bytes")]
    ValueTooLarge(usize),
    #[error("the metadata is {0} bytes, more than the limit of {MAX_METADATA_BYTES} bytes")]
    MetadataTooLarge(usize),
    #[error("the metadata is not JSON: {0}")]
    MetadataNotJson(String),
    #[error(
        "expiration {at} is less than {min} seconds in the future (it is a Unix time in seconds)"
    )]
    ExpirationTooSoon { at: u64, min: u64 },
    #[error("expiration_ttl must be at least {min} seconds (got {ttl})")]
    TtlTooShort { ttl: u64, min: u64 },
    #[error("list limit must be 1 to {MAX_LIST_LIMIT} (got {0})")]
    BadLimit(usize),
    #[error("the KV store failed: {0}")]
    Storage(String),
}

fn storage(e: impl std::fmt::Display) -> KvError {
    KvError::Storage(e.to_string())
}

/// A KV namespace.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KvNamespace {
    pub id: String,
    pub title: String,
    /// Unix milliseconds.
    pub created_on: i64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct NamespaceRecord {
    title: String,
    created_on: i64,
}

/// A stored value with what was stored beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvEntry {
    pub value: Vec<u8>,
    /// JSON text.
    pub metadata: Option<String>,
    /// Unix seconds.
    pub expiration: Option<u64>,
}

/// A key as a list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvKey {
    pub name: String,
    pub expiration: Option<u64>,
    pub metadata: Option<String>,
}

/// One page of a list: `cursor` is `None` when the list is complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvPage {
    pub keys: Vec<KvKey>,
    pub cursor: Option<String>,
}

/// One write of a [`KvStore::write_batch`].
#[derive(Debug, Clone)]
pub enum Write {
    Put {
        namespace: String,
        key: String,
        value: bytes::Bytes,
        options: PutOptions,
    },
    Delete {
        namespace: String,
        key: String,
    },
}

impl Write {
    fn namespace(&self) -> &str {
        match self {
            Write::Put { namespace, .. } | Write::Delete { namespace, .. } => namespace,
        }
    }

    fn key(&self) -> &str {
        match self {
            Write::Put { key, .. } | Write::Delete { key, .. } => key,
        }
    }
}

/// How long a value lives, and what metadata rides along with it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutOptions {
    /// Unix seconds.
    pub expiration: Option<u64>,
    /// Seconds from now; wins over `expiration` when both are given (as Cloudflare does).
    pub expiration_ttl: Option<u64>,
    /// JSON text.
    pub metadata: Option<String>,
}

/// The KV store of a data directory. Cheap to clone; every call blocks on disk I/O.
#[derive(Clone)]
pub struct KvStore {
    db: Arc<Database>,
    /// The nearest an expiration may be, in seconds ([`MIN_EXPIRATION_TTL_S`] unless set).
    min_ttl: u64,
}

fn check_key(key: &str) -> Result<(), KvError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES || key == "." || key == ".." {
        return Err(KvError::BadKey(key.len()));
    }
    Ok(())
}

fn encode(value: &[u8], metadata: Option<&str>, expiration: Option<u64>) -> Vec<u8> {
    let meta = metadata.unwrap_or("").as_bytes();
    let mut out = Vec::with_capacity(12 + meta.len() + value.len());
    out.extend_from_slice(&expiration.unwrap_or(0).to_le_bytes());
    out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    out.extend_from_slice(meta);
    out.extend_from_slice(value);
    out
}

/// Splits a stored record into expiration, metadata and value.
fn decode(raw: &[u8]) -> Option<(Option<u64>, Option<&str>, &[u8])> {
    let expiration = u64::from_le_bytes(raw.get(..8)?.try_into().ok()?);
    let meta_len = u32::from_le_bytes(raw.get(8..12)?.try_into().ok()?) as usize;
    let meta = raw.get(12..12 + meta_len)?;
    let value = raw.get(12 + meta_len..)?;
    let meta = if meta.is_empty() {
        None
    } else {
        Some(std::str::from_utf8(meta).ok()?)
    };
    Some(((expiration != 0).then_some(expiration), meta, value))
}

/// Checks one put against the limits and encodes its record. `min_ttl`: the nearest an
/// expiration may be, in seconds.
fn record(
    key: &str,
    value: &[u8],
    options: &PutOptions,
    now: u64,
    min_ttl: u64,
) -> Result<Vec<u8>, KvError> {
    check_key(key)?;
    if value.len() > MAX_VALUE_BYTES {
        return Err(KvError::ValueTooLarge(value.len()));
    }
    if let Some(meta) = &options.metadata {
        if meta.len() > MAX_METADATA_BYTES {
            return Err(KvError::MetadataTooLarge(meta.len()));
        }
        serde_json::from_str::<serde_json::Value>(meta)
            .map_err(|e| KvError::MetadataNotJson(e.to_string()))?;
    }
    let expiration = match (options.expiration_ttl, options.expiration) {
        (Some(ttl), _) if ttl < min_ttl => {
            return Err(KvError::TtlTooShort { ttl, min: min_ttl });
        }
        (Some(ttl), _) => Some(now.saturating_add(ttl)),
        (None, Some(at)) if at < now.saturating_add(min_ttl) => {
            return Err(KvError::ExpirationTooSoon { at, min: min_ttl });
        }
        (None, at) => at,
    };
    Ok(encode(value, options.metadata.as_deref(), expiration))
}

/// Moves secrets of the first layout ([`SECRETS`]) into [`SECRET_VERSIONS`], in the opening
/// transaction (all or nothing), and drops the old table.
fn migrate_secrets(txn: &redb::WriteTransaction) -> Result<(), KvError> {
    use redb::ReadableTableMetadata;
    let old: Vec<((String, String, String), Vec<u8>)> = match txn.open_table(SECRETS) {
        Ok(table) => {
            if table.len().map_err(storage)? == 0 {
                Vec::new()
            } else {
                table
                    .iter()
                    .map_err(storage)?
                    .map(|item| {
                        let (k, v) = item.map_err(storage)?;
                        let (ns, script, name) = k.value();
                        Ok((
                            (ns.to_string(), script.to_string(), name.to_string()),
                            v.value().to_vec(),
                        ))
                    })
                    .collect::<Result<_, KvError>>()?
            }
        }
        Err(e) => return Err(storage(e)),
    };
    {
        let mut table = txn.open_table(SECRET_VERSIONS).map_err(storage)?;
        for ((ns, script, name), raw) in &old {
            let len = *raw
                .first()
                .ok_or_else(|| storage("a corrupt secret record"))? as usize;
            let token = raw
                .get(1..1 + len)
                .and_then(|t| std::str::from_utf8(t).ok())
                .ok_or_else(|| storage("a corrupt secret record"))?;
            table
                .insert(
                    (ns.as_str(), script.as_str(), name.as_str(), token),
                    &raw[1 + len..],
                )
                .map_err(storage)?;
        }
    }
    txn.delete_table(SECRETS).map_err(storage)?;
    Ok(())
}

fn expired(expiration: Option<u64>, now: u64) -> bool {
    expiration.is_some_and(|e| e <= now)
}

impl KvStore {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<KvStore, KvError> {
        let db = Database::create(path).map_err(storage)?;
        // It holds secret values: the owner only, whatever the umask.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(storage)?;
        }
        let txn = db.begin_write().map_err(storage)?;
        txn.open_table(NAMESPACES).map_err(storage)?;
        txn.open_table(ENTRIES).map_err(storage)?;
        txn.open_table(SECRET_VERSIONS).map_err(storage)?;
        migrate_secrets(&txn)?;
        txn.commit().map_err(storage)?;
        Ok(KvStore {
            db: Arc::new(db),
            min_ttl: MIN_EXPIRATION_TTL_S,
        })
    }

    /// The same store with another minimum expiration (Cloudflare's 60 s by default; tests and
    /// operators with other needs may lower it, to 1 s at least).
    pub fn with_min_ttl(mut self, seconds: u64) -> KvStore {
        self.min_ttl = seconds.max(1);
        self
    }

    pub fn create_namespace(&self, title: &str, now_ms: i64) -> Result<KvNamespace, KvError> {
        crate::names::valid_kv_title(title).map_err(KvError::BadTitle)?;
        let txn = self.db.begin_write().map_err(storage)?;
        let id = {
            let mut table = txn.open_table(NAMESPACES).map_err(storage)?;
            for item in table.iter().map_err(storage)? {
                let (_, v) = item.map_err(storage)?;
                let record: NamespaceRecord = serde_json::from_slice(v.value()).map_err(storage)?;
                if record.title == title {
                    return Err(KvError::TitleExists(title.to_string()));
                }
            }
            let mut raw = [0u8; 16];
            getrandom::fill(&mut raw).map_err(storage)?;
            let id = hex::encode(raw);
            let record = NamespaceRecord {
                title: title.to_string(),
                created_on: now_ms,
            };
            let json = serde_json::to_vec(&record).map_err(storage)?;
            table
                .insert(id.as_str(), json.as_slice())
                .map_err(storage)?;
            id
        };
        txn.commit().map_err(storage)?;
        Ok(KvNamespace {
            id,
            title: title.to_string(),
            created_on: now_ms,
        })
    }

    pub fn namespaces(&self) -> Result<Vec<KvNamespace>, KvError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(NAMESPACES).map_err(storage)?;
        let mut out = Vec::new();
        for item in table.iter().map_err(storage)? {
            let (k, v) = item.map_err(storage)?;
            let record: NamespaceRecord = serde_json::from_slice(v.value()).map_err(storage)?;
            out.push(KvNamespace {
                id: k.value().to_string(),
                title: record.title,
                created_on: record.created_on,
            });
        }
        out.sort_by(|a, b| a.title.cmp(&b.title));
        Ok(out)
    }

    pub fn namespace(&self, id: &str) -> Result<KvNamespace, KvError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(NAMESPACES).map_err(storage)?;
        let v = table
            .get(id)
            .map_err(storage)?
            .ok_or_else(|| KvError::NamespaceNotFound(id.to_string()))?;
        let record: NamespaceRecord = serde_json::from_slice(v.value()).map_err(storage)?;
        Ok(KvNamespace {
            id: id.to_string(),
            title: record.title,
            created_on: record.created_on,
        })
    }

    pub fn rename_namespace(&self, id: &str, title: &str) -> Result<KvNamespace, KvError> {
        crate::names::valid_kv_title(title).map_err(KvError::BadTitle)?;
        let current = self.namespace(id)?;
        if self
            .namespaces()?
            .iter()
            .any(|n| n.title == title && n.id != id)
        {
            return Err(KvError::TitleExists(title.to_string()));
        }
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut table = txn.open_table(NAMESPACES).map_err(storage)?;
            let record = NamespaceRecord {
                title: title.to_string(),
                created_on: current.created_on,
            };
            let json = serde_json::to_vec(&record).map_err(storage)?;
            table.insert(id, json.as_slice()).map_err(storage)?;
        }
        txn.commit().map_err(storage)?;
        Ok(KvNamespace {
            title: title.to_string(),
            ..current
        })
    }

    /// Deletes a namespace and every entry in it.
    pub fn delete_namespace(&self, id: &str) -> Result<(), KvError> {
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut namespaces = txn.open_table(NAMESPACES).map_err(storage)?;
            if namespaces.remove(id).map_err(storage)?.is_none() {
                return Err(KvError::NamespaceNotFound(id.to_string()));
            }
            let mut entries = txn.open_table(ENTRIES).map_err(storage)?;
            let keys: Vec<String> = entries
                .range((id, "")..)
                .map_err(storage)?
                .map_while(|item| {
                    let (k, _) = item.ok()?;
                    let (ns, key) = k.value();
                    (ns == id).then(|| key.to_string())
                })
                .collect();
            for key in keys {
                entries.remove((id, key.as_str())).map_err(storage)?;
            }
        }
        txn.commit().map_err(storage)
    }

    fn require_namespace(&self, id: &str) -> Result<(), KvError> {
        self.namespace(id).map(|_| ())
    }

    /// The entry under `key`, unless absent or expired at `now` (Unix seconds).
    pub fn get(&self, ns: &str, key: &str, now: u64) -> Result<Option<KvEntry>, KvError> {
        Ok(self.get_many(ns, &[key], now)?.pop().flatten())
    }

    /// The entries under `keys`, in their order, read in one transaction (a bulk read sees one
    /// state of the namespace); `None` for an absent or expired key.
    pub fn get_many(
        &self,
        ns: &str,
        keys: &[&str],
        now: u64,
    ) -> Result<Vec<Option<KvEntry>>, KvError> {
        for key in keys {
            check_key(key)?;
        }
        let txn = self.db.begin_read().map_err(storage)?;
        if txn
            .open_table(NAMESPACES)
            .map_err(storage)?
            .get(ns)
            .map_err(storage)?
            .is_none()
        {
            return Err(KvError::NamespaceNotFound(ns.to_string()));
        }
        let table = txn.open_table(ENTRIES).map_err(storage)?;
        let mut entries = Vec::with_capacity(keys.len());
        for key in keys {
            let Some(raw) = table.get((ns, *key)).map_err(storage)? else {
                entries.push(None);
                continue;
            };
            let (expiration, metadata, value) =
                decode(raw.value()).ok_or_else(|| storage("a corrupt KV record"))?;
            entries.push((!expired(expiration, now)).then(|| KvEntry {
                value: value.to_vec(),
                metadata: metadata.map(str::to_string),
                expiration,
            }));
        }
        Ok(entries)
    }

    /// Stores `value` under `key`, replacing what was there.
    pub fn put(
        &self,
        ns: &str,
        key: &str,
        value: &[u8],
        options: &PutOptions,
        now: u64,
    ) -> Result<(), KvError> {
        self.put_many(ns, &[(key, value, options)], now)
    }

    /// Stores several values in one transaction: all of them, or (on any error) none.
    pub fn put_many(
        &self,
        ns: &str,
        pairs: &[(&str, &[u8], &PutOptions)],
        now: u64,
    ) -> Result<(), KvError> {
        let records = pairs
            .iter()
            .map(|(key, value, options)| {
                Ok((*key, record(key, value, options, now, self.min_ttl)?))
            })
            .collect::<Result<Vec<_>, KvError>>()?;
        self.require_namespace(ns)?;
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut table = txn.open_table(ENTRIES).map_err(storage)?;
            for (key, record) in &records {
                table
                    .insert((ns, *key), record.as_slice())
                    .map_err(storage)?;
            }
        }
        txn.commit().map_err(storage)
    }

    /// Applies independent writes in one transaction (group commit): each gets its own result,
    /// and an invalid write (bad key, oversized value, unknown namespace) fails alone. One
    /// durable commit serves them all; if it fails, they all fail.
    pub fn write_batch(&self, writes: &[Write], now: u64) -> Vec<Result<(), KvError>> {
        // Validate and encode outside the transaction.
        let mut prepared: Vec<Result<Option<Vec<u8>>, KvError>> = writes
            .iter()
            .map(|w| match w {
                Write::Put {
                    key,
                    value,
                    options,
                    ..
                } => record(key, value, options, now, self.min_ttl).map(Some),
                Write::Delete { key, .. } => check_key(key).map(|()| None),
            })
            .collect();
        let outcome = (|| -> Result<(), KvError> {
            let txn = self.db.begin_write().map_err(storage)?;
            {
                let namespaces = txn.open_table(NAMESPACES).map_err(storage)?;
                let mut entries = txn.open_table(ENTRIES).map_err(storage)?;
                for (w, prep) in writes.iter().zip(prepared.iter_mut()) {
                    let Ok(record) = prep else { continue };
                    let ns = w.namespace();
                    if namespaces.get(ns).map_err(storage)?.is_none() {
                        *prep = Err(KvError::NamespaceNotFound(ns.to_string()));
                        continue;
                    }
                    match (w, record) {
                        (Write::Put { key, .. }, Some(record)) => {
                            entries
                                .insert((ns, key.as_str()), record.as_slice())
                                .map_err(storage)?;
                        }
                        (w, _) => {
                            entries.remove((ns, w.key())).map_err(storage)?;
                        }
                    }
                }
            }
            txn.commit().map_err(storage)
        })();
        prepared
            .into_iter()
            .map(|p| match (&outcome, p) {
                (_, Err(e)) => Err(e),
                (Err(e), Ok(_)) => Err(e.clone()),
                (Ok(()), Ok(_)) => Ok(()),
            })
            .collect()
    }

    /// Removes several keys in one transaction.
    pub fn delete_many(&self, ns: &str, keys: &[&str]) -> Result<(), KvError> {
        for key in keys {
            check_key(key)?;
        }
        self.require_namespace(ns)?;
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut table = txn.open_table(ENTRIES).map_err(storage)?;
            for key in keys {
                table.remove((ns, *key)).map_err(storage)?;
            }
        }
        txn.commit().map_err(storage)
    }

    /// Removes `key` (absent is fine, as in Cloudflare's API).
    pub fn delete(&self, ns: &str, key: &str) -> Result<(), KvError> {
        check_key(key)?;
        self.require_namespace(ns)?;
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut table = txn.open_table(ENTRIES).map_err(storage)?;
            table.remove((ns, key)).map_err(storage)?;
        }
        txn.commit().map_err(storage)
    }

    /// Up to `limit` keys starting with `prefix`, in byte order, after `cursor` (from the
    /// previous page).
    pub fn list(
        &self,
        ns: &str,
        prefix: &str,
        limit: usize,
        cursor: Option<&str>,
        now: u64,
    ) -> Result<KvPage, KvError> {
        if limit == 0 || limit > MAX_LIST_LIMIT {
            return Err(KvError::BadLimit(limit));
        }
        self.require_namespace(ns)?;
        // The cursor is the hex of the last key of the previous page: opaque, and any key.
        let after = match cursor.filter(|c| !c.is_empty()) {
            Some(c) => Some(
                hex::decode(c)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| storage(format!("invalid cursor `{c}`")))?,
            ),
            None => None,
        };
        let start = match &after {
            Some(a) if a.as_str() >= prefix => a.as_str(),
            _ => prefix,
        };
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(ENTRIES).map_err(storage)?;
        let mut keys = Vec::new();
        let mut more = false;
        for item in table.range((ns, start)..).map_err(storage)? {
            let (k, v) = item.map_err(storage)?;
            let (item_ns, key) = k.value();
            if item_ns != ns || !key.starts_with(prefix) {
                break;
            }
            if after.as_deref() == Some(key) {
                continue;
            }
            let Some((expiration, metadata, _)) = decode(v.value()) else {
                continue;
            };
            if expired(expiration, now) {
                continue;
            }
            if keys.len() == limit {
                more = true;
                break;
            }
            keys.push(KvKey {
                name: key.to_string(),
                expiration,
                metadata: metadata.map(str::to_string),
            });
        }
        let cursor = more
            .then(|| keys.last().map(|k: &KvKey| hex::encode(k.name.as_bytes())))
            .flatten();
        Ok(KvPage { keys, cursor })
    }

    /// Moves the `secret_text` values of `data` (the next index of namespace `ns`) here: each
    /// binding whose value is not a token this store issued is stored under a new token (or the
    /// token of a stored version with the same value), and replaced in `data` by it. Nothing is
    /// removed or overwritten: the index now live keeps resolving, whatever happens before `data`
    /// is published. Call it before publishing `data`, and [`KvStore::prune_secrets`] after.
    pub fn seal_secrets(&self, ns: &str, data: &mut crate::IndexData) -> Result<(), KvError> {
        self.seal_scripts(ns, data.scripts.values_mut())
    }

    /// [`KvStore::seal_secrets`] for the scripts a publish changes: reads only their own
    /// secret versions, so its cost does not grow with the namespace.
    pub fn seal_scripts<'a>(
        &self,
        ns: &str,
        entries: impl IntoIterator<Item = &'a mut crate::ScriptEntry>,
    ) -> Result<(), KvError> {
        let secret = tenantry_core::BindingKind::SecretText as u8;
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut table = txn.open_table(SECRET_VERSIONS).map_err(storage)?;
            for entry in entries {
                if !entry.bindings.iter().any(|b| b.kind == secret) {
                    continue;
                }
                let script = entry.name.as_str();
                // (binding name, token) → value, of this script only.
                let current = script_secrets(&table, ns, script)?;
                for b in entry.bindings.iter_mut().filter(|b| b.kind == secret) {
                    if current.contains_key(&(b.name.clone(), b.value.clone())) {
                        continue;
                    }
                    // The same value again (e.g. a config deployed anew): keep its token.
                    let same = current
                        .iter()
                        .find(|((n, _), v)| *n == b.name && **v == b.value);
                    if let Some(((_, token), _)) = same {
                        b.value = token.clone();
                        continue;
                    }
                    let mut raw = [0u8; 8];
                    getrandom::fill(&mut raw).map_err(storage)?;
                    let token = format!("{SECRET_TOKEN_PREFIX}{}", hex::encode(raw));
                    table
                        .insert(
                            (ns, script, b.name.as_str(), token.as_str()),
                            b.value.as_bytes(),
                        )
                        .map_err(storage)?;
                    b.value = token;
                }
            }
        }
        txn.commit().map_err(storage)
    }

    /// [`KvStore::prune_secrets`] for the scripts a publish changed: each `(script, entry)` is
    /// a script as now published (`None`: deleted), and its secret versions that entry does not
    /// name are removed. Versions a crash kept from a prune stay until that script's next change.
    pub fn prune_scripts<'a>(
        &self,
        ns: &str,
        touched: impl IntoIterator<Item = (&'a str, Option<&'a crate::ScriptEntry>)>,
    ) -> Result<usize, KvError> {
        let secret = tenantry_core::BindingKind::SecretText as u8;
        let mut dead = Vec::new();
        {
            let txn = self.db.begin_read().map_err(storage)?;
            let table = txn.open_table(SECRET_VERSIONS).map_err(storage)?;
            for (script, live) in touched {
                for (name, token) in script_secrets(&table, ns, script)?.into_keys() {
                    let named = live.is_some_and(|e| {
                        e.bindings
                            .iter()
                            .any(|b| b.kind == secret && b.name == name && b.value == token)
                    });
                    if !named {
                        dead.push((script.to_string(), name, token));
                    }
                }
            }
        }
        self.remove_secrets(ns, &dead)?;
        Ok(dead.len())
    }

    /// Removes the secret versions of namespace `ns` that `live` (its index as published) does
    /// not name: rotated values, removed bindings and scripts. Call it after publishing; if it
    /// never runs (a crash), the next publish of `ns` removes them.
    pub fn prune_secrets(&self, ns: &str, live: &crate::IndexData) -> Result<usize, KvError> {
        let secret = tenantry_core::BindingKind::SecretText as u8;
        let named: std::collections::HashSet<(&str, &str, &str)> = live
            .scripts
            .iter()
            .flat_map(|(script, entry)| {
                entry
                    .bindings
                    .iter()
                    .filter(move |b| b.kind == secret)
                    .map(move |b| (script.as_str(), b.name.as_str(), b.value.as_str()))
            })
            .collect();
        let dead: Vec<(String, String, String)> = flat_keys(&self.secrets(ns)?)
            .filter(|(s, n, t)| !named.contains(&(s.as_str(), n.as_str(), t.as_str())))
            .collect();
        self.remove_secrets(ns, &dead)?;
        Ok(dead.len())
    }

    /// The secrets of namespace `ns`.
    pub fn secrets(&self, ns: &str) -> Result<NamespaceSecrets, KvError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(SECRET_VERSIONS).map_err(storage)?;
        let mut out: HashMap<String, ScriptSecrets> = HashMap::new();
        for item in table.range((ns, "", "", "")..).map_err(storage)? {
            let (k, v) = item.map_err(storage)?;
            let (item_ns, script, name, token) = k.value();
            if item_ns != ns {
                break;
            }
            out.entry(script.to_string()).or_default().insert(
                (name.to_string(), token.to_string()),
                String::from_utf8_lossy(v.value()).into_owned(),
            );
        }
        Ok(persistent(out))
    }

    /// The secrets of script `script` of namespace `ns` (every version the store holds): what
    /// a publish that changed only that script reads, O(its secrets).
    pub fn script_secrets(&self, ns: &str, script: &str) -> Result<ScriptSecrets, KvError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(SECRET_VERSIONS).map_err(storage)?;
        script_secrets(&table, ns, script)
    }

    /// Every namespace's `secret_text` values, read in one transaction (a start with many
    /// namespaces read them one transaction per namespace). Namespaces without secrets are
    /// absent.
    pub fn all_secrets(&self) -> Result<HashMap<String, NamespaceSecrets>, KvError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(SECRET_VERSIONS).map_err(storage)?;
        let mut out: HashMap<String, HashMap<String, ScriptSecrets>> = HashMap::new();
        for item in table.iter().map_err(storage)? {
            let (k, v) = item.map_err(storage)?;
            let (ns, script, name, token) = k.value();
            out.entry(ns.to_string())
                .or_default()
                .entry(script.to_string())
                .or_default()
                .insert(
                    (name.to_string(), token.to_string()),
                    String::from_utf8_lossy(v.value()).into_owned(),
                );
        }
        Ok(out
            .into_iter()
            .map(|(ns, scripts)| (ns, persistent(scripts)))
            .collect())
    }

    /// Removes every secret of namespace `ns` (the namespace is being deleted).
    pub fn delete_secrets(&self, ns: &str) -> Result<(), KvError> {
        let keys: Vec<(String, String, String)> = flat_keys(&self.secrets(ns)?).collect();
        self.remove_secrets(ns, &keys)
    }

    fn remove_secrets(&self, ns: &str, keys: &[(String, String, String)]) -> Result<(), KvError> {
        if keys.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut table = txn.open_table(SECRET_VERSIONS).map_err(storage)?;
            for (script, name, token) in keys {
                table
                    .remove((ns, script.as_str(), name.as_str(), token.as_str()))
                    .map_err(storage)?;
            }
        }
        txn.commit().map_err(storage)
    }

    /// Removes every entry expired at `now`; returns how many.
    pub fn sweep(&self, now: u64) -> Result<usize, KvError> {
        let txn = self.db.begin_write().map_err(storage)?;
        let removed = {
            let mut table = txn.open_table(ENTRIES).map_err(storage)?;
            let dead: Vec<(String, String)> = table
                .iter()
                .map_err(storage)?
                .filter_map(|item| {
                    let (k, v) = item.ok()?;
                    let (expiration, _, _) = decode(v.value())?;
                    let (ns, key) = k.value();
                    expired(expiration, now).then(|| (ns.to_string(), key.to_string()))
                })
                .collect();
            for (ns, key) in &dead {
                table.remove((ns.as_str(), key.as_str())).map_err(storage)?;
            }
            dead.len()
        };
        txn.commit().map_err(storage)?;
        Ok(removed)
    }
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

type Job = (
    tenantry_core::kv::KvOp,
    futures_channel::oneshot::Sender<
        Result<tenantry_core::kv::KvReply, tenantry_core::kv::KvFailure>,
    >,
);

/// The KV store as the serving cores reach it: operations queue to a few threads of their own
/// (redb blocks on disk I/O), and a sweeper removes expired entries every [`SWEEP_INTERVAL`].
pub struct KvService {
    store: KvStore,
    /// Reads, for the reader threads.
    jobs: Option<crossbeam_channel::Sender<Job>>,
    /// Puts and deletes, for the writer thread.
    writes: Option<crossbeam_channel::Sender<Job>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    stop: Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
}

/// The most writes one group commit takes.
const MAX_WRITE_BATCH: usize = 256;

/// KV operations that may wait in each queue (reads, writes). A full queue answers the guest at
/// once with `STORE` ("busy") rather than letting the queue, and host memory, grow without
/// bound behind a slow disk: 16 group commits' worth of writes, the same depth for reads.
pub const KV_QUEUE_DEPTH: usize = 16 * MAX_WRITE_BATCH;

/// Queues `job`, or answers it at once when the queue is full or stopped.
fn enqueue(queue: Option<&crossbeam_channel::Sender<Job>>, job: Job) {
    use crossbeam_channel::TrySendError;
    use tenantry_core::kv::KvFailure;
    let Some(queue) = queue else {
        let _ = job
            .1
            .send(Err(KvFailure::Store("the KV store stopped".into())));
        return;
    };
    match queue.try_send(job) {
        Ok(()) => {}
        Err(TrySendError::Full((_, reply))) => {
            let _ = reply.send(Err(KvFailure::Busy(format!(
                "the KV store is busy ({KV_QUEUE_DEPTH} operations queued); try again"
            ))));
        }
        Err(TrySendError::Disconnected((_, reply))) => {
            let _ = reply.send(Err(KvFailure::Store("the KV store stopped".into())));
        }
    }
}

/// A queued put or delete as a [`Write`]; `None` for reads.
fn as_write(op: tenantry_core::kv::KvOp) -> Option<Write> {
    use tenantry_core::kv::KvOp;
    match op {
        KvOp::Put {
            namespace,
            key,
            value,
            expiration,
            expiration_ttl,
            metadata,
        } => Some(Write::Put {
            namespace,
            key,
            value,
            options: PutOptions {
                expiration,
                expiration_ttl,
                metadata,
            },
        }),
        KvOp::Delete { namespace, key } => Some(Write::Delete { namespace, key }),
        _ => None,
    }
}

/// How often expired entries are removed from disk by default (they are never returned meanwhile).
pub const SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

fn failure(e: KvError) -> tenantry_core::kv::KvFailure {
    use tenantry_core::kv::KvFailure;
    match e {
        KvError::ValueTooLarge(_) | KvError::MetadataTooLarge(_) => KvFailure::Limit(e.to_string()),
        KvError::Storage(_) => {
            tracing::error!("KV store: {e}");
            KvFailure::Store(e.to_string())
        }
        _ => KvFailure::Invalid(e.to_string()),
    }
}

/// A read on a reader thread (writes go to the writer thread, `as_write`).
fn execute(
    store: &KvStore,
    op: tenantry_core::kv::KvOp,
) -> Result<tenantry_core::kv::KvReply, KvError> {
    use tenantry_core::kv::{KvOp, KvReply};
    let now = unix_now();
    Ok(match op {
        KvOp::Get { namespace, key } => KvReply::Value(
            store
                .get(&namespace, &key, now)?
                .map(|e| (bytes::Bytes::from(e.value), e.metadata, e.expiration)),
        ),
        KvOp::GetMany { namespace, keys } => {
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            KvReply::Values(
                store
                    .get_many(&namespace, &keys, now)?
                    .into_iter()
                    .map(|e| e.map(|e| (bytes::Bytes::from(e.value), e.metadata, e.expiration)))
                    .collect(),
            )
        }
        op @ (KvOp::Put { .. } | KvOp::Delete { .. }) => {
            let write = as_write(op).expect("a put or delete");
            store
                .write_batch(std::slice::from_ref(&write), now)
                .pop()
                .expect("one result per write")?;
            KvReply::Done
        }
        KvOp::List {
            namespace,
            prefix,
            limit,
            cursor,
        } => {
            let page = store.list(&namespace, &prefix, limit, cursor.as_deref(), now)?;
            KvReply::Page {
                keys: page
                    .keys
                    .into_iter()
                    .map(|k| (k.name, k.expiration, k.metadata))
                    .collect(),
                cursor: page.cursor,
            }
        }
    })
}

impl KvService {
    /// Starts `threads` KV threads, and the sweeper over `store` every `sweep_interval`.
    pub fn start(store: KvStore, threads: usize, sweep_interval: std::time::Duration) -> KvService {
        let (tx, rx) = crossbeam_channel::bounded::<Job>(KV_QUEUE_DEPTH);
        // Writes go to one writer thread, which commits whatever has queued meanwhile as one
        // transaction: one fsync for many puts (redb admits one writer at a time anyway).
        let (write_tx, write_rx) = crossbeam_channel::bounded::<Job>(KV_QUEUE_DEPTH);
        let writer = {
            let store = store.clone();
            std::thread::Builder::new()
                .name("tenantry-kv-write".into())
                .spawn(move || {
                    while let Ok(first) = write_rx.recv() {
                        let mut batch = vec![first];
                        batch.extend(write_rx.try_iter().take(MAX_WRITE_BATCH - 1));
                        let (writes, replies): (Vec<Write>, Vec<_>) = batch
                            .into_iter()
                            .filter_map(|(op, reply)| Some((as_write(op)?, reply)))
                            .unzip();
                        let results = store.write_batch(&writes, unix_now());
                        for (result, reply) in results.into_iter().zip(replies) {
                            let _ = reply.send(
                                result
                                    .map(|()| tenantry_core::kv::KvReply::Done)
                                    .map_err(failure),
                            );
                        }
                    }
                })
                .expect("spawning the KV writer")
        };
        let mut handles: Vec<_> = (0..threads.max(1))
            .map(|i| {
                let rx = rx.clone();
                let store = store.clone();
                std::thread::Builder::new()
                    .name(format!("tenantry-kv-{i}"))
                    .spawn(move || {
                        for (op, reply) in rx {
                            let _ = reply.send(execute(&store, op).map_err(failure));
                        }
                    })
                    .expect("spawning a KV thread")
            })
            .collect();
        let stop = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let sweeper = {
            let store = store.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("tenantry-kv-sweep".into())
                .spawn(move || {
                    let (lock, cvar) = &*stop;
                    let mut stopped = lock.lock().unwrap_or_else(|e| e.into_inner());
                    while !*stopped {
                        let (guard, _) = cvar
                            .wait_timeout(stopped, sweep_interval)
                            .unwrap_or_else(|e| e.into_inner());
                        stopped = guard;
                        if *stopped {
                            break;
                        }
                        match store.sweep(unix_now()) {
                            Ok(0) => {}
                            Ok(n) => tracing::debug!("KV: removed {n} expired entries"),
                            Err(e) => tracing::warn!("KV sweep failed: {e}"),
                        }
                    }
                })
                .expect("spawning the KV sweeper")
        };
        handles.push(sweeper);
        handles.push(writer);
        KvService {
            store,
            jobs: Some(tx),
            writes: Some(write_tx),
            threads: handles,
            stop,
        }
    }

    /// The store, for the admin API (which runs on its own threads and may block).
    pub fn store(&self) -> &KvStore {
        &self.store
    }
}

impl tenantry_core::kv::KvBackend for KvService {
    fn call(&self, op: tenantry_core::kv::KvOp) -> tenantry_core::kv::KvFuture {
        let (tx, rx) = futures_channel::oneshot::channel();
        let queue = match op {
            tenantry_core::kv::KvOp::Put { .. } | tenantry_core::kv::KvOp::Delete { .. } => {
                &self.writes
            }
            _ => &self.jobs,
        };
        enqueue(queue.as_ref(), (op, tx));
        Box::pin(async move {
            rx.await.unwrap_or_else(|_| {
                Err(tenantry_core::kv::KvFailure::Store(
                    "the KV store stopped".into(),
                ))
            })
        })
    }
}

impl Drop for KvService {
    fn drop(&mut self) {
        self.jobs.take();
        self.writes.take();
        let (lock, cvar) = &*self.stop;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cvar.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The secret versions of one script, (binding name, token) → value.
fn script_secrets(
    table: &impl ReadableTable<(&'static str, &'static str, &'static str, &'static str), &'static [u8]>,
    ns: &str,
    script: &str,
) -> Result<ScriptSecrets, KvError> {
    let mut out = HashMap::new();
    for item in table.range((ns, script, "", "")..).map_err(storage)? {
        let (k, v) = item.map_err(storage)?;
        let (item_ns, item_script, name, token) = k.value();
        if item_ns != ns || item_script != script {
            break;
        }
        out.insert(
            (name.to_string(), token.to_string()),
            String::from_utf8_lossy(v.value()).into_owned(),
        );
    }
    Ok(out)
}

/// `scripts` as a [`NamespaceSecrets`].
fn persistent(scripts: HashMap<String, ScriptSecrets>) -> NamespaceSecrets {
    scripts
        .into_iter()
        .map(|(script, secrets)| (script, Arc::new(secrets)))
        .collect()
}

/// Every (script, binding name, token) of `secrets`.
fn flat_keys(secrets: &NamespaceSecrets) -> impl Iterator<Item = (String, String, String)> + '_ {
    secrets.iter().flat_map(|(script, own)| {
        own.keys()
            .map(move |(name, token)| (script.clone(), name.clone(), token.clone()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn a_full_queue_answers_busy_at_once_and_a_stopped_one_says_so() {
        use tenantry_core::kv::{KvFailure, KvOp};
        let op = || KvOp::Get {
            namespace: "ns".into(),
            key: "k".into(),
        };
        let (tx, rx) = crossbeam_channel::bounded::<Job>(1);
        let (first, mut first_reply) = futures_channel::oneshot::channel();
        enqueue(Some(&tx), (op(), first));
        assert!(
            first_reply.try_recv().unwrap().is_none(),
            "queued, not answered"
        );
        let (second, mut second_reply) = futures_channel::oneshot::channel();
        enqueue(Some(&tx), (op(), second));
        let answer = second_reply.try_recv().unwrap().expect("answered at once");
        assert!(
            matches!(&answer, Err(KvFailure::Busy(why)) if why.contains("busy")),
            "{answer:?}"
        );
        drop(rx);
        let (third, mut third_reply) = futures_channel::oneshot::channel();
        enqueue(Some(&tx), (op(), third));
        let answer = third_reply.try_recv().unwrap().expect("answered at once");
        assert!(matches!(answer, Err(KvFailure::Store(_))), "{answer:?}");
    }

    fn store() -> (tempfile::TempDir, KvStore, String) {
        let dir = tempfile::tempdir().unwrap();
        let kv = KvStore::open(&dir.path().join("kv.redb")).unwrap();
        let ns = kv.create_namespace("cache", 1).unwrap().id;
        (dir, kv, ns)
    }

    #[test]
    fn values_round_trip_with_metadata_and_survive_reopening() {
        let (dir, kv, ns) = store();
        let opts = PutOptions {
            metadata: Some(r#"{"v":1}"#.into()),
            ..PutOptions::default()
        };
        kv.put(&ns, "a", b"hello", &opts, NOW).unwrap();
        let e = kv.get(&ns, "a", NOW).unwrap().unwrap();
        assert_eq!(e.value, b"hello");
        assert_eq!(e.metadata.as_deref(), Some(r#"{"v":1}"#));
        assert_eq!(kv.get(&ns, "missing", NOW).unwrap(), None);
        drop(kv);
        let kv = KvStore::open(&dir.path().join("kv.redb")).unwrap();
        assert_eq!(kv.get(&ns, "a", NOW).unwrap().unwrap().value, b"hello");
        kv.delete(&ns, "a").unwrap();
        assert_eq!(kv.get(&ns, "a", NOW).unwrap(), None);
        kv.delete(&ns, "a").unwrap();
    }

    #[test]
    fn limits_are_cloudflares() {
        let (_dir, kv, ns) = store();
        let none = PutOptions::default();
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        assert_eq!(
            kv.put(&ns, &long, b"", &none, NOW),
            Err(KvError::BadKey(513))
        );
        assert_eq!(kv.put(&ns, "..", b"", &none, NOW), Err(KvError::BadKey(2)));
        let big = vec![0; MAX_VALUE_BYTES + 1];
        assert!(matches!(
            kv.put(&ns, "k", &big, &none, NOW),
            Err(KvError::ValueTooLarge(_))
        ));
        let meta = PutOptions {
            metadata: Some(format!("\"{}\"", "m".repeat(MAX_METADATA_BYTES))),
            ..none.clone()
        };
        assert!(matches!(
            kv.put(&ns, "k", b"", &meta, NOW),
            Err(KvError::MetadataTooLarge(_))
        ));
        let not_json = PutOptions {
            metadata: Some("{oops".into()),
            ..none.clone()
        };
        assert!(matches!(
            kv.put(&ns, "k", b"", &not_json, NOW),
            Err(KvError::MetadataNotJson(_))
        ));
        let ttl = PutOptions {
            expiration_ttl: Some(10),
            ..none.clone()
        };
        assert_eq!(
            kv.put(&ns, "k", b"", &ttl, NOW),
            Err(KvError::TtlTooShort { ttl: 10, min: 60 })
        );
        let soon = PutOptions {
            expiration: Some(NOW + 5),
            ..none.clone()
        };
        assert_eq!(
            kv.put(&ns, "k", b"", &soon, NOW),
            Err(KvError::ExpirationTooSoon {
                at: NOW + 5,
                min: 60
            })
        );
        assert_eq!(
            kv.put("nope", "k", b"", &none, NOW),
            Err(KvError::NamespaceNotFound("nope".into()))
        );
    }

    #[test]
    fn expired_entries_are_never_returned_and_are_swept() {
        let (_dir, kv, ns) = store();
        let ttl = PutOptions {
            expiration_ttl: Some(60),
            ..PutOptions::default()
        };
        kv.put(&ns, "short", b"x", &ttl, NOW).unwrap();
        kv.put(&ns, "long", b"y", &PutOptions::default(), NOW)
            .unwrap();
        assert!(kv.get(&ns, "short", NOW + 59).unwrap().is_some());
        assert_eq!(kv.get(&ns, "short", NOW + 60).unwrap(), None);
        let page = kv.list(&ns, "", 10, None, NOW + 60).unwrap();
        assert_eq!(page.keys.len(), 1);
        assert_eq!(kv.sweep(NOW + 60).unwrap(), 1);
        assert_eq!(kv.sweep(NOW + 60).unwrap(), 0);
        assert!(kv.get(&ns, "long", NOW + 1_000_000).unwrap().is_some());
    }

    #[test]
    fn lists_page_by_prefix_and_namespaces_stay_apart() {
        let (_dir, kv, ns) = store();
        let other = kv.create_namespace("other", 2).unwrap().id;
        for i in 0..25 {
            kv.put(
                &ns,
                &format!("user:{i:02}"),
                b"",
                &PutOptions::default(),
                NOW,
            )
            .unwrap();
        }
        kv.put(&ns, "zzz", b"", &PutOptions::default(), NOW)
            .unwrap();
        kv.put(&other, "user:99", b"", &PutOptions::default(), NOW)
            .unwrap();
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = kv.list(&ns, "user:", 10, cursor.as_deref(), NOW).unwrap();
            seen.extend(page.keys.into_iter().map(|k| k.name));
            match page.cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(seen.len(), 25);
        assert_eq!(seen[0], "user:00");
        assert_eq!(seen[24], "user:24");
        assert!(kv.get(&other, "user:00", NOW).unwrap().is_none());
        assert_eq!(
            kv.list(&ns, "", 1001, None, NOW),
            Err(KvError::BadLimit(1001))
        );

        assert_eq!(
            kv.create_namespace("other", 3),
            Err(KvError::TitleExists("other".into()))
        );
        kv.rename_namespace(&other, "renamed").unwrap();
        assert_eq!(kv.namespace(&other).unwrap().title, "renamed");
        kv.delete_namespace(&other).unwrap();
        assert!(kv.namespace(&other).is_err());
        assert_eq!(kv.list(&ns, "", 1000, None, NOW).unwrap().keys.len(), 26);
    }

    #[test]
    fn secrets_live_apart_from_the_index() {
        let (_dir, kv, _) = store();
        let secret = tenantry_core::BindingKind::SecretText as u8;
        let mut data = crate::IndexData::new("customers", 1);
        let entry = |value: &str| crate::ScriptEntry {
            name: "alice".into(),
            artifact: [0; 32],
            bindings: vec![crate::BindingEntry {
                name: "API_KEY".into(),
                kind: secret,
                value: value.into(),
            }],
            tags: vec![],
            limits: crate::ScriptLimits::default(),
            created_on: 0,
            modified_on: 0,
            etag: String::new(),
            reuse_instances: 0,
            compatibility_date: String::new(),
            main_module: String::new(),
        };
        data.scripts.insert("alice".into(), entry("s3cret"));
        kv.seal_secrets("customers", &mut data).unwrap();
        let token = data.scripts["alice"].bindings[0].value.clone();
        assert!(token.starts_with(SECRET_TOKEN_PREFIX) && !token.contains("s3cret"));
        let value = |kv: &KvStore, token: &str| {
            kv.secrets("customers")
                .unwrap()
                .get("alice")
                .and_then(|own| own.get(&("API_KEY".into(), token.to_string())).cloned())
        };
        assert_eq!(value(&kv, &token).as_deref(), Some("s3cret"));

        // Sealing again (a token, or the same value) keeps the token; a new value gets a new one.
        kv.seal_secrets("customers", &mut data).unwrap();
        assert_eq!(data.scripts["alice"].bindings[0].value, token);
        data.scripts.insert("alice".into(), entry("s3cret"));
        kv.seal_secrets("customers", &mut data).unwrap();
        assert_eq!(data.scripts["alice"].bindings[0].value, token);
        data.scripts.insert("alice".into(), entry("rotated"));
        kv.seal_secrets("customers", &mut data).unwrap();
        let rotated = data.scripts["alice"].bindings[0].value.clone();
        assert_ne!(rotated, token);

        // Until the new index is published and pruned, the old token still resolves: a crash
        // here leaves the live (old) index whole.
        assert_eq!(value(&kv, &token).as_deref(), Some("s3cret"));
        assert_eq!(value(&kv, &rotated).as_deref(), Some("rotated"));
        // All namespaces' secrets in one read (a node's start) are each namespace's.
        let mut other = crate::IndexData::new("staff", 1);
        other.scripts.insert("alice".into(), entry("staff-key"));
        kv.seal_secrets("staff", &mut other).unwrap();
        let all = kv.all_secrets().unwrap();
        assert_eq!(all.len(), 2);
        for ns in ["customers", "staff"] {
            assert_eq!(all[ns], kv.secrets(ns).unwrap(), "{ns}");
        }
        assert_eq!(flat_keys(&all["customers"]).count(), 2);
        assert!(
            all["staff"]
                .values()
                .any(|own| own.values().any(|v| v == "staff-key"))
        );
        // One script's secrets alone are what the namespace's hold of it.
        assert_eq!(
            kv.script_secrets("customers", "alice").unwrap(),
            *kv.secrets("customers").unwrap()["alice"]
        );
        assert!(kv.script_secrets("customers", "nobody").unwrap().is_empty());
        assert_eq!(kv.prune_secrets("customers", &data).unwrap(), 1);
        assert_eq!(value(&kv, &token), None);
        assert_eq!(value(&kv, &rotated).as_deref(), Some("rotated"));

        // A removed script's secrets go with it, at the prune after the publish.
        data.scripts.clear();
        kv.seal_secrets("customers", &mut data).unwrap();
        assert_eq!(flat_keys(&kv.secrets("customers").unwrap()).count(), 1);
        kv.prune_secrets("customers", &data).unwrap();
        assert!(kv.secrets("customers").unwrap().is_empty());
    }

    #[test]
    fn secrets_of_the_first_layout_are_migrated_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.redb");
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut table = txn.open_table(SECRETS).unwrap();
                let token = format!("{SECRET_TOKEN_PREFIX}0011223344556677");
                let mut record = vec![token.len() as u8];
                record.extend_from_slice(token.as_bytes());
                record.extend_from_slice(b"old-value");
                table
                    .insert(("customers", "alice", "API_KEY"), record.as_slice())
                    .unwrap();
            }
            txn.commit().unwrap();
        }
        let kv = KvStore::open(&path).unwrap();
        let secrets = kv.secrets("customers").unwrap();
        let key = (
            "API_KEY".to_string(),
            format!("{SECRET_TOKEN_PREFIX}0011223344556677"),
        );
        assert_eq!(
            secrets["alice"].get(&key).map(String::as_str),
            Some("old-value")
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_write_batch_commits_the_valid_writes_and_fails_the_others_alone() {
        let (_dir, kv, ns) = store();
        let put = |ns: &str, key: &str| Write::Put {
            namespace: ns.into(),
            key: key.into(),
            value: bytes::Bytes::from_static(b"v"),
            options: PutOptions::default(),
        };
        kv.put(&ns, "old", b"x", &PutOptions::default(), NOW)
            .unwrap();
        let results = kv.write_batch(
            &[
                put(&ns, "a"),
                put(&ns, ".."),
                put("missing", "b"),
                Write::Delete {
                    namespace: ns.clone(),
                    key: "old".into(),
                },
                put(&ns, "c"),
            ],
            NOW,
        );
        assert_eq!(results[0], Ok(()));
        assert_eq!(results[1], Err(KvError::BadKey(2)));
        assert_eq!(
            results[2],
            Err(KvError::NamespaceNotFound("missing".into()))
        );
        assert_eq!(results[3], Ok(()));
        assert_eq!(results[4], Ok(()));
        let names: Vec<String> = kv
            .list(&ns, "", 10, None, NOW)
            .unwrap()
            .keys
            .into_iter()
            .map(|k| k.name)
            .collect();
        assert_eq!(names, ["a", "c"]);
    }
}
