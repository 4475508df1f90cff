//! A namespace's index: every script of the namespace, archived with rkyv, mapped and read in place.
//!
//! # File format (`namespaces/<ns>/index`, the *base*)
//! ```text
//!  offset  size  field
//!  ──────  ────  ─────────────────────────────────────────────────────────────────────
//!       0     8  magic            b"TNTRYIDX"
//!       8     4  format version   u32 LE, currently 3; 1 (no name table) and 2 (no summary)
//!                                 are read too, others are refused
//!      12     4  flags            u32 LE, 0 (reserved)
//!      16     8  generation       u64 LE, the namespace's generation this base holds
//!      24    16  engine hash      ASCII hex: Engine::compat_hash of the engine whose artifacts
//!                                 the entries name; another engine recompiles first
//!      40     8  payload length   u64 LE; the file is exactly 64 + length bytes
//!      48     4  payload CRC-32C  u32 LE (crc32fast, ~10 GB/s: cheap enough to check on open)
//!      52     4  reserved         zero
//!      56     8  data length      u64 LE (version 2): the payload's first `data length` bytes
//!                                 are the IndexData archive, and the name table follows; 0: the
//!                                 whole payload is the IndexData archive, no name table
//!      64     …  payload          rkyv archive of IndexData, root at the end (rkyv 0.8 layout);
//!                                 starts 64-aligned in the mapping, as rkyv requires
//!       …     …  (zero padding to a multiple of 16 of the payload)
//!       …     …  name table       rkyv archive of Vec<String>: every script name, sorted, so a
//!                                 list page starts with a binary search instead of a pass
//!                                 over every script
//!       …     …  summary          (version 3) the scripts' count, latest modification and
//!                                 artifacts, read from the payload's end: drawn in
//!                                 [`crate::summary`]; the name table ends where it starts
//! ```
//! Opening checks the header and checksum and validates both archives once (bytecheck:
//! ~3 ms for 100k scripts); lookups then read the mapping without checks. The file is never
//! modified after it is written: a publish renames a new file over the path, so an open mapping
//! keeps the old generation intact until its last user drops it. Once validated, the mapping's
//! pages are dropped from the process (`MADV_DONTNEED`, [`crate::mmap::release`]): they stay in
//! the page cache and fault back in as lookups touch them, so an idle Worker costs no resident
//! memory (validating 1M scripts had left ~230 MB of the file resident in every node).
//!
//! Changes since the base was written are records in the namespace's delta
//! ([`crate::delta`]); an [`Index`] reads both as one, newest first.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use rkyv::rancor;
use rkyv::string::ArchivedString;
use rkyv::util::AlignedVec;
use rkyv::vec::ArchivedVec;
use sha2::{Digest, Sha256};

use crate::delta::{self, Record, delta_path};
use crate::fsutil::write_durably;
use crate::mmap;
use crate::summary::{self, ArtifactBytes, Summary, Tail};

pub const MAGIC: [u8; 8] = *b"TNTRYIDX";
pub const FORMAT_VERSION: u32 = 3;
/// The oldest format this build reads: version 1 is version 2 without the name table, version 2
/// is version 3 without the summary.
pub const MIN_FORMAT_VERSION: u32 = 1;
pub const HEADER_LEN: usize = 64;

/// Everything a namespace holds, in owned form (for building and editing; serving reads the
/// archived form in place).
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct IndexData {
    pub namespace: String,
    /// A stable random-looking id, as Cloudflare's API reports (`namespace_id`).
    pub namespace_id: String,
    /// Unix milliseconds.
    pub created_on: i64,
    pub scripts: HashMap<String, ScriptEntry>,
}

impl IndexData {
    /// An empty namespace created at `now_ms`.
    pub fn new(namespace: &str, now_ms: i64) -> IndexData {
        let mut h = Sha256::new();
        h.update(namespace.as_bytes());
        h.update(now_ms.to_le_bytes());
        h.update(std::process::id().to_le_bytes());
        h.update(format!("{:?}", std::time::Instant::now()).as_bytes());
        IndexData {
            namespace: namespace.to_string(),
            namespace_id: hex::encode(&h.finalize()[..16]),
            created_on: now_ms,
            scripts: HashMap::new(),
        }
    }
}

/// One deployed script.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ScriptEntry {
    pub name: String,
    /// The [`crate::ArtifactId`] of its module.
    pub artifact: [u8; 32],
    pub bindings: Vec<BindingEntry>,
    /// At most 8 (Cloudflare's limit), checked by whoever builds the entry.
    pub tags: Vec<String>,
    pub limits: ScriptLimits,
    /// Unix milliseconds.
    pub created_on: i64,
    pub modified_on: i64,
    /// Changes whenever anything the data plane uses changes; per-core pools key Workers by it.
    pub etag: String,
    /// Instances kept for reuse (0: a fresh instance per request).
    pub reuse_instances: u32,
    /// As given at upload (Cloudflare's `compatibility_date`); informational for wasm Workers.
    pub compatibility_date: String,
    /// The name of the uploaded main module part, returned by the content API.
    pub main_module: String,
}

/// An environment binding; `kind` is `tenantry_core::BindingKind as u8`.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct BindingEntry {
    pub name: String,
    pub kind: u8,
    pub value: String,
}

/// A script's own limits; unset fields take the platform defaults.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct ScriptLimits {
    pub cpu_ms: Option<u32>,
    pub wall_ms: Option<u32>,
    pub memory_bytes: Option<u64>,
    pub subrequests: Option<u32>,
}

/// Why an index file could not be opened or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    #[error("{path}: not a Tenantry index (bad magic)")]
    BadMagic { path: PathBuf },
    #[error(
        "{path}: index format version {version} is not supported (this build reads {MIN_FORMAT_VERSION} to {FORMAT_VERSION})"
    )]
    UnsupportedVersion { path: PathBuf, version: u32 },
    #[error("{path}: index is truncated ({len} bytes, header says {expected})")]
    Truncated {
        path: PathBuf,
        len: u64,
        expected: u64,
    },
    #[error("{path}: index checksum mismatch (the file is corrupt)")]
    Checksum { path: PathBuf },
    #[error(
        "{path}: index archive is invalid (corrupt, or written by an incompatible build): {message}"
    )]
    Invalid { path: PathBuf, message: String },
    #[error("{path}: index was built for engine {found}, expected {expected}")]
    WrongEngine {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// An open, validated index: the base archive (mapped) with the delta's records applied on top
/// (see [`crate::delta`]). Cheap to clone; the mapping lives until the last clone is dropped.
#[derive(Clone)]
pub struct Index {
    base: Arc<Base>,
    overlay: Arc<Overlay>,
}

/// The base archive: one mapping of `namespaces/<ns>/index`.
struct Base {
    map: Mmap,
    generation: u64,
    compat_hash: String,
    /// Where the IndexData archive ends and the name table starts and ends, in the mapping.
    data_end: usize,
    names: Option<(usize, usize)>,
    /// Where the stored summary lies in the mapping (version 3; its artifacts are read from
    /// there when asked); `None` for older versions, whose scripts are walked instead until
    /// [`crate::Store::ensure_compiled`] rewrites them.
    summary: Option<(usize, usize)>,
    /// The latest of the namespace's creation and every script write the base has seen.
    modified_on: i64,
}

/// The delta's records applied to the base, for reads: which names they touched and what each
/// became. Bounded by the merge threshold (`EngineSettings::index_merge_records`); a persistent map, so the
/// next generation shares all but what its record changed.
#[derive(Clone, Default)]
struct Overlay {
    records: Vec<Arc<Record>>,
    slots: imbl::HashMap<String, Slot>,
    /// The generation of the last record (the base's if none).
    generation: u64,
    /// Scripts visible through the overlay and the base together.
    len: usize,
    /// The latest `modified_on` among the records' upserts (`i64::MIN`: none).
    modified_on: i64,
    /// How many more (or fewer) scripts name each artifact than in the base's summary.
    artifacts: imbl::HashMap<ArtifactBytes, i64>,
}

/// What the latest record that names a script made of it.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Upsert { record: u32, at: u32 },
    Deleted,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("namespace", &self.namespace())
            .field("generation", &self.generation())
            .field("base_generation", &self.base_generation())
            .field("scripts", &self.len())
            .finish()
    }
}

/// An index file's header fields past the magic and the version, which it checks.
struct Header {
    version: u32,
    generation: u64,
    compat_hash: String,
    payload_len: u64,
    crc: u32,
    /// 0: no name table.
    data_len: u64,
}

impl Header {
    fn parse(header: &[u8], path: &Path) -> Result<Header, IndexError> {
        if header[..8] != MAGIC {
            return Err(IndexError::BadMagic { path: path.into() });
        }
        let u32_at = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().unwrap());
        let u64_at = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().unwrap());
        let version = u32_at(8);
        if !(MIN_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(IndexError::UnsupportedVersion {
                path: path.into(),
                version,
            });
        }
        Ok(Header {
            version,
            generation: u64_at(16),
            compat_hash: String::from_utf8_lossy(&header[24..40]).into_owned(),
            payload_len: u64_at(40),
            crc: u32_at(48),
            data_len: if version >= 2 { u64_at(56) } else { 0 },
        })
    }
}

/// The generation of the index at `path`, from its header alone (a publish needs only that:
/// opening maps and validates the whole archive, O(n) in its scripts).
pub fn read_generation(path: &Path) -> Result<u64, IndexError> {
    use std::io::Read;
    let io = |source| IndexError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut header = [0u8; HEADER_LEN];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut header))
        .map_err(io)?;
    Ok(Header::parse(&header, path)?.generation)
}

impl Index {
    /// Maps and validates the index at `path` and reads the delta beside it
    /// ([`crate::delta::delta_path`]). With `expected_compat`, an index built for another engine
    /// is an error ([`IndexError::WrongEngine`]).
    pub fn open(path: &Path, expected_compat: Option<&str>) -> Result<Index, IndexError> {
        let base = Arc::new(Base::open(path, expected_compat)?);
        let delta = delta::read(&delta_path(path), base.generation)?;
        let mut overlay = Overlay::over(&base);
        for record in delta.records {
            overlay.apply(&base, record);
        }
        Ok(Index {
            base,
            overlay: Arc::new(overlay),
        })
    }

    /// Maps and validates the base at `path` alone, without a delta (a merge's new base before
    /// it is renamed into place).
    pub(crate) fn open_base(path: &Path) -> Result<Index, IndexError> {
        let base = Arc::new(Base::open(path, None)?);
        let overlay = Overlay::over(&base);
        Ok(Index {
            base,
            overlay: Arc::new(overlay),
        })
    }

    /// This index read through `base`, a merge of its own base and its first records: the same
    /// scripts and generation, with only the records after `base`'s generation left on top.
    /// `None` if `base` is not such a merge (another namespace or creation, or a generation
    /// outside this index's delta).
    pub(crate) fn rebase(&self, base: &Index) -> Option<Index> {
        let merged = base.base_generation();
        if base.delta_records() != 0
            || base.namespace_id() != self.namespace_id()
            || merged < self.base_generation()
            || merged > self.generation()
        {
            return None;
        }
        let mut overlay = Overlay::clone(&base.overlay);
        for record in self
            .overlay
            .records
            .iter()
            .filter(|r| r.generation > merged)
        {
            overlay.apply(&base.base, record.clone());
        }
        Some(Index {
            base: base.base.clone(),
            overlay: Arc::new(overlay),
        })
    }

    /// This index with `record` (the next generation's change) applied on top.
    pub(crate) fn with_record(&self, record: Arc<Record>) -> Index {
        let mut overlay = Overlay::clone(&self.overlay);
        overlay.apply(&self.base, record);
        Index {
            base: self.base.clone(),
            overlay: Arc::new(overlay),
        }
    }

    /// The base archive's namespace-wide fields (its scripts may be shadowed by the delta: read
    /// them through [`Index::get`] and [`Index::scripts`]).
    fn base_data(&self) -> &ArchivedIndexData {
        self.base.data()
    }

    /// The script called `name`, if deployed: the delta's latest word on it, else the base's.
    pub fn get(&self, name: &str) -> Option<&ArchivedScriptEntry> {
        self.overlay.get(&self.base, name)
    }

    /// Every deployed script, in no particular order.
    pub fn scripts(&self) -> impl Iterator<Item = &ArchivedScriptEntry> {
        let overlay = &self.overlay;
        let base = self
            .base_data()
            .scripts
            .iter()
            .filter(move |(name, _)| !overlay.slots.contains_key(name.as_str()))
            .map(|(_, entry)| entry);
        let upserts = overlay.slots.values().filter_map(move |slot| match *slot {
            Slot::Upsert { record, at } => {
                Some(&overlay.records[record as usize].upserts()[at as usize])
            }
            Slot::Deleted => None,
        });
        base.chain(upserts)
    }

    /// The scripts named after `cursor`, in name order: a binary search in the base's name
    /// table, merged with the delta's scripts (sorted here: the delta is small). O(log n) to
    /// the first, then O(1) each. A version 1 base has no table: its names are sorted here, once
    /// per call, O(n log n).
    pub fn scripts_after<'a>(
        &'a self,
        cursor: &str,
    ) -> impl Iterator<Item = &'a ArchivedScriptEntry> + 'a {
        let overlay = &self.overlay;
        let scripts = &self.base.data().scripts;
        let base: Box<dyn Iterator<Item = &'a str> + 'a> = match self.base.names() {
            Some(table) => {
                let from = table.partition_point(|n| n.as_str() <= cursor);
                Box::new(table[from..].iter().map(|n| n.as_str()))
            }
            None => {
                let mut names: Vec<&str> = scripts
                    .keys()
                    .map(|n| n.as_str())
                    .filter(|n| *n > cursor)
                    .collect();
                names.sort_unstable();
                Box::new(names.into_iter())
            }
        };
        let base = base
            .filter(move |n| !overlay.slots.contains_key(*n))
            .filter_map(move |n| scripts.get(n));
        let mut delta: Vec<&ArchivedScriptEntry> = overlay
            .slots
            .values()
            .filter_map(|slot| match *slot {
                Slot::Upsert { record, at } => {
                    Some(&overlay.records[record as usize].upserts()[at as usize])
                }
                Slot::Deleted => None,
            })
            .filter(|e| e.name.as_str() > cursor)
            .collect();
        delta.sort_unstable_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
        MergeByName {
            a: base.peekable(),
            b: delta.into_iter().peekable(),
        }
    }

    pub fn len(&self) -> usize {
        self.overlay.len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The namespace's generation: the last delta record's, else the base's.
    pub fn generation(&self) -> u64 {
        self.overlay.generation
    }

    /// The generation of the base archive (what the last merge or full publish wrote).
    pub fn base_generation(&self) -> u64 {
        self.base.generation
    }

    /// Whether the base has the sorted name table (format version 2) that list pages start from.
    pub fn has_name_table(&self) -> bool {
        self.base.names().is_some()
    }

    /// Whether the base is in this build's format (a name table and a stored summary): an older
    /// one costs a walk of every script at each open until it is rewritten.
    pub fn is_current_format(&self) -> bool {
        self.has_name_table() && self.base.summary.is_some()
    }

    /// The scripts in summary, base and delta together, without reading a script: O(distinct
    /// artifacts + delta). The count and the artifacts are exactly what a walk of
    /// [`Index::scripts`] finds; `modified_on` is the latest script write the namespace has
    /// seen since its last full publish, deleted scripts' included (a delete does not move a
    /// namespace's modification time back).
    pub fn summary(&self) -> Summary {
        let mut artifacts = self.base.artifacts();
        for (id, change) in &self.overlay.artifacts {
            let scripts = artifacts.get(id).map_or(0, |n| *n as i64) + change;
            if scripts > 0 {
                artifacts.insert(*id, scripts as u64);
            } else {
                artifacts.remove(id);
            }
        }
        Summary {
            scripts: self.len() as u64,
            modified_on: self.modified_on(),
            artifacts,
        }
    }

    /// Every artifact the scripts name, once each: O(distinct artifacts + delta).
    pub fn artifacts(&self) -> Vec<crate::ArtifactId> {
        self.summary()
            .artifacts
            .into_keys()
            .map(crate::ArtifactId::from_bytes)
            .collect()
    }

    /// Unix ms: the latest of the namespace's creation and every script write since its last
    /// full publish (deleted scripts' included), O(1). See [`Index::summary`].
    pub fn modified_on(&self) -> i64 {
        self.base.modified_on.max(self.overlay.modified_on)
    }

    /// Delta records on top of the base.
    pub fn delta_records(&self) -> usize {
        self.overlay.records.len()
    }

    /// The engine hash the entries' artifacts were compiled for.
    pub fn compat_hash(&self) -> &str {
        &self.base.compat_hash
    }

    pub fn namespace(&self) -> &str {
        self.base_data().namespace.as_str()
    }

    /// The namespace's id (random per creation).
    pub fn namespace_id(&self) -> &str {
        self.base_data().namespace_id.as_str()
    }

    /// Unix milliseconds.
    pub fn created_on(&self) -> i64 {
        self.base_data().created_on.to_native()
    }

    /// An owned copy of everything, base and delta merged: O(scripts), for a full publish.
    pub fn to_data(&self) -> IndexData {
        let data = self.base_data();
        IndexData {
            namespace: data.namespace.to_string(),
            namespace_id: data.namespace_id.to_string(),
            created_on: data.created_on.to_native(),
            scripts: {
                let mut scripts = HashMap::with_capacity(self.len());
                scripts.extend(self.scripts().map(|entry| {
                    let entry = rkyv::deserialize::<ScriptEntry, rancor::Error>(entry)
                        .expect("deserializing a validated archive cannot fail");
                    (entry.name.clone(), entry)
                }));
                scripts
            },
        }
    }
}

/// Two iterators of scripts in name order, merged (their names are disjoint).
struct MergeByName<
    'a,
    A: Iterator<Item = &'a ArchivedScriptEntry>,
    B: Iterator<Item = &'a ArchivedScriptEntry>,
> {
    a: std::iter::Peekable<A>,
    b: std::iter::Peekable<B>,
}

impl<'a, A, B> Iterator for MergeByName<'a, A, B>
where
    A: Iterator<Item = &'a ArchivedScriptEntry>,
    B: Iterator<Item = &'a ArchivedScriptEntry>,
{
    type Item = &'a ArchivedScriptEntry;

    fn next(&mut self) -> Option<Self::Item> {
        match (self.a.peek(), self.b.peek()) {
            (Some(a), Some(b)) if b.name.as_str() < a.name.as_str() => self.b.next(),
            (Some(_), _) => self.a.next(),
            (None, _) => self.b.next(),
        }
    }
}

impl Overlay {
    /// No records on `base` yet.
    fn over(base: &Base) -> Overlay {
        Overlay {
            generation: base.generation,
            len: base.data().scripts.len(),
            modified_on: i64::MIN,
            ..Overlay::default()
        }
    }

    /// One script more (`by` = 1) or fewer (-1) names `artifact`.
    fn count(&mut self, artifact: ArtifactBytes, by: i64) {
        let n = self.artifacts.entry(artifact).or_insert(0);
        *n += by;
        if *n == 0 {
            self.artifacts.remove(&artifact);
        }
    }

    fn get<'a>(&'a self, base: &'a Base, name: &str) -> Option<&'a ArchivedScriptEntry> {
        match self.slots.get(name) {
            Some(Slot::Upsert { record, at }) => {
                Some(&self.records[*record as usize].upserts()[*at as usize])
            }
            Some(Slot::Deleted) => None,
            None => base.data().scripts.get(name),
        }
    }

    /// Applies the next generation's record.
    fn apply(&mut self, base: &Base, record: Arc<Record>) {
        let n = self.records.len() as u32;
        for name in record.deletes() {
            if let Some(old) = self.get(base, name).map(|e| e.artifact) {
                self.len -= 1;
                self.count(old, -1);
            }
            self.slots.insert(name.to_string(), Slot::Deleted);
        }
        for (at, entry) in record.upserts().iter().enumerate() {
            match self.get(base, entry.name.as_str()).map(|e| e.artifact) {
                Some(old) => self.count(old, -1),
                None => self.len += 1,
            }
            self.count(entry.artifact, 1);
            self.modified_on = self.modified_on.max(entry.modified_on.to_native());
            let slot = Slot::Upsert {
                record: n,
                at: at as u32,
            };
            self.slots.insert(entry.name.to_string(), slot);
        }
        self.generation = record.generation;
        self.records.push(record);
    }
}

impl Base {
    fn open(path: &Path, expected_compat: Option<&str>) -> Result<Base, IndexError> {
        let io = |source| IndexError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let map = mmap::map(&file).map_err(io)?;
        let len = map.len() as u64;
        if map.len() < HEADER_LEN {
            return Err(IndexError::Truncated {
                path: path.into(),
                len,
                expected: HEADER_LEN as u64,
            });
        }
        let Header {
            version,
            generation,
            compat_hash,
            payload_len,
            crc,
            data_len,
        } = Header::parse(&map[..HEADER_LEN], path)?;
        let expected = (HEADER_LEN as u64).saturating_add(payload_len);
        if len != expected {
            return Err(IndexError::Truncated {
                path: path.into(),
                len,
                expected,
            });
        }
        let payload = &map[HEADER_LEN..];
        if crc32fast::hash(payload) != crc {
            return Err(IndexError::Checksum { path: path.into() });
        }
        let invalid = |message: String| IndexError::Invalid {
            path: path.into(),
            message,
        };
        let (data_end, names_at) = if data_len == 0 {
            (map.len(), None)
        } else {
            let names_at = data_len.next_multiple_of(NAMES_ALIGN as u64);
            if names_at > payload_len {
                return Err(invalid(format!(
                    "data length {data_len} runs past the payload ({payload_len} bytes)"
                )));
            }
            (
                HEADER_LEN + data_len as usize,
                Some(HEADER_LEN + names_at as usize),
            )
        };
        let stored = match (version >= 3, names_at) {
            (false, _) => None,
            (true, Some(at)) => Some(Tail::read(&map[at..]).map_err(invalid)?),
            (true, None) => return Err(invalid("a version 3 base without a name table".into())),
        };
        let names_end = map.len() - stored.map_or(0, |tail| tail.len);
        let names = names_at.map(|at| (at, names_end));
        mmap::validate(&map[HEADER_LEN..data_end]).map_err(invalid)?;
        if let Some((at, end)) = names {
            mmap::validate_names(&map[at..end]).map_err(invalid)?;
        }
        if let Some(expected) = expected_compat
            && expected != compat_hash
        {
            return Err(IndexError::WrongEngine {
                path: path.into(),
                found: compat_hash,
                expected: expected.to_string(),
            });
        }
        // SAFETY: validated just above; the mapping is of a file never modified.
        let data = unsafe { mmap::access(&map[HEADER_LEN..data_end]) };
        let modified_on = match stored {
            Some(tail) if tail.scripts != data.scripts.len() as u64 => {
                return Err(invalid(format!(
                    "the summary counts {} scripts, the archive holds {}",
                    tail.scripts,
                    data.scripts.len()
                )));
            }
            Some(tail) => tail.modified_on,
            None => Summary::walk(data.created_on.to_native(), data.scripts.values()).modified_on,
        };
        // Validating touched every page; lookups fault back in the few they read.
        if let Err(e) = mmap::release(&map) {
            tracing::warn!(path = %path.display(), "releasing a validated index's pages: {e}");
        }
        Ok(Base {
            map,
            generation,
            compat_hash,
            data_end,
            names,
            summary: stored.map(|tail| (names_end, tail.len)),
            modified_on,
        })
    }

    /// The base's artifacts and how many of its scripts name each: from the stored summary,
    /// O(distinct artifacts), else from every script.
    fn artifacts(&self) -> std::collections::BTreeMap<ArtifactBytes, u64> {
        match self.summary {
            Some((at, len)) => summary::artifacts(&self.map[at..at + len]).collect(),
            None => {
                let data = self.data();
                Summary::walk(data.created_on.to_native(), data.scripts.values()).artifacts
            }
        }
    }

    /// The archived data, read in place.
    fn data(&self) -> &ArchivedIndexData {
        // SAFETY: the payload was validated by `mmap::validate` in `open`, and the mapping is of a
        // file that is never modified (publishing renames a new file over the path).
        unsafe { mmap::access(&self.map[HEADER_LEN..self.data_end]) }
    }

    /// Every script name of the base, sorted (none in a version 1 file).
    fn names(&self) -> Option<&ArchivedVec<ArchivedString>> {
        // SAFETY: as in `data`, validated by `mmap::validate_names` in `open`.
        self.names
            .map(|(at, end)| unsafe { mmap::access_names(&self.map[at..end]) })
    }
}

/// Writes `data` as generation `generation` of the index at `path`, durably, replacing what was
/// there (see [`crate::fsutil`] for why a crash leaves the old or the new file, never a mix).
pub fn publish(
    path: &Path,
    data: &IndexData,
    generation: u64,
    compat_hash: &str,
) -> Result<(), IndexError> {
    publish_since(path, data, generation, compat_hash, i64::MIN)
}

/// [`publish`], with the summary's modification time at least `modified_on` (see [`encode`]).
pub(crate) fn publish_since(
    path: &Path,
    data: &IndexData,
    generation: u64,
    compat_hash: &str,
    modified_on: i64,
) -> Result<(), IndexError> {
    let (header, payload) =
        encode(data, generation, compat_hash, modified_on).map_err(|e| IndexError::Invalid {
            path: path.into(),
            message: e.to_string(),
        })?;
    write_durably(path, &[&header, &payload]).map_err(|source| IndexError::Io {
        path: path.into(),
        source,
    })
}

/// The name table's alignment within the payload (rkyv's archives need at most 16).
const NAMES_ALIGN: usize = 16;

/// The header and payload of `data` as generation `generation`: the IndexData archive, then the
/// sorted name table, then the summary, whose modification time is at least `modified_on` (a
/// merge keeps the time of writes its delta saw, deleted scripts' included).
/// What [`encode`] reserves per script for the archive: above a typical entry (~220 bytes
/// with a binding and a tag), so most archives are written without growing the buffer.
const ARCHIVE_BYTES_PER_SCRIPT: usize = 320;

pub(crate) fn encode(
    data: &IndexData,
    generation: u64,
    compat_hash: &str,
    modified_on: i64,
) -> Result<([u8; HEADER_LEN], Vec<u8>), rancor::Error> {
    // Sized for the archive up front: grown by doubling, a 1M-Worker archive would be copied
    // ~20 times over (hundreds of MB moved and faulted in) on the way to its ~230 MB. Pages
    // reserved and not written cost nothing.
    let reserve = ARCHIVE_BYTES_PER_SCRIPT * (data.scripts.len() + 1);
    let mut payload = rkyv::api::high::to_bytes_in::<AlignedVec, rancor::Error>(
        data,
        AlignedVec::with_capacity(reserve),
    )?
    .into_vec();
    let data_len = payload.len();
    let mut names: Vec<&String> = data.scripts.keys().collect();
    names.sort_unstable();
    let names: Vec<String> = names.into_iter().cloned().collect();
    let table = rkyv::to_bytes::<rancor::Error>(&names)?;
    payload.resize(data_len.next_multiple_of(NAMES_ALIGN), 0);
    payload.extend_from_slice(&table);
    let mut summary = Summary::of(data);
    summary.modified_on = summary.modified_on.max(modified_on);
    payload.extend_from_slice(&summary.encode());
    let mut h = header(generation, compat_hash, &payload);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[56..64].copy_from_slice(&(data_len as u64).to_le_bytes());
    Ok((h, payload))
}

/// The 64-byte header drawn in the module doc, for a payload that is the IndexData archive alone:
/// format version 1 (no name table, no summary), as older builds wrote and tests still do.
pub fn header(generation: u64, compat_hash: &str, payload: &[u8]) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&MIN_FORMAT_VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&generation.to_le_bytes());
    let hash = compat_hash.as_bytes();
    let n = hash.len().min(16);
    h[24..24 + n].copy_from_slice(&hash[..n]);
    h[40..48].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    h[48..52].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
    h
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn entry(name: &str, n: u8) -> ScriptEntry {
        ScriptEntry {
            name: name.into(),
            artifact: [n; 32],
            bindings: vec![BindingEntry {
                name: "GREETING".into(),
                kind: 1,
                value: format!("hi {n}"),
            }],
            tags: vec!["customer-1".into()],
            limits: ScriptLimits {
                cpu_ms: Some(10),
                ..Default::default()
            },
            created_on: 1,
            modified_on: 2,
            etag: format!("etag-{n}"),
            reuse_instances: u32::from(n),
            compatibility_date: "2025-01-01".into(),
            main_module: "worker.wasm".into(),
        }
    }

    #[test]
    fn publish_open_and_read_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        let mut data = IndexData::new("production", 1000);
        for (i, name) in ["alice", "bob", "carol"].iter().enumerate() {
            data.scripts.insert(name.to_string(), entry(name, i as u8));
        }
        publish(&path, &data, 7, "0123456789abcdef").unwrap();
        let index = Index::open(&path, Some("0123456789abcdef")).unwrap();
        assert_eq!((index.generation(), index.len()), (7, 3));
        assert_eq!(index.namespace(), "production");
        assert_eq!(index.compat_hash(), "0123456789abcdef");
        let bob = index.get("bob").unwrap();
        assert_eq!(bob.artifact, [1; 32]);
        assert_eq!(bob.etag.as_str(), "etag-1");
        assert_eq!(bob.limits.cpu_ms.as_ref().map(|v| v.to_native()), Some(10));
        assert_eq!(bob.bindings[0].value.as_str(), "hi 1");
        assert!(index.get("dave").is_none());
        assert_eq!(index.to_data(), data);
        assert_eq!(data.namespace_id.len(), 32);
    }

    #[test]
    fn another_engine_is_refused_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        publish(&path, &IndexData::new("ns", 0), 1, "aaaaaaaaaaaaaaaa").unwrap();
        assert!(Index::open(&path, None).is_ok());
        let e = Index::open(&path, Some("bbbbbbbbbbbbbbbb")).unwrap_err();
        assert!(matches!(e, IndexError::WrongEngine { .. }), "{e}");
    }

    /// A publish reads the old generation from the header alone: the same number as opening
    /// the file, even when the payload after it is damaged; a file that is not an index is
    /// refused as opening refuses it.
    #[test]
    fn the_generation_is_read_from_the_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        publish(&path, &IndexData::new("ns", 0), 41, "aaaaaaaaaaaaaaaa").unwrap();
        assert_eq!(read_generation(&path).unwrap(), 41);
        assert_eq!(Index::open(&path, None).unwrap().generation(), 41);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        assert!(Index::open(&path, None).is_err());
        assert_eq!(read_generation(&path).unwrap(), 41);
        std::fs::write(&path, [0u8; HEADER_LEN]).unwrap();
        let e = read_generation(&path).unwrap_err();
        assert!(matches!(e, IndexError::BadMagic { .. }), "{e}");
        std::fs::write(&path, b"short").unwrap();
        assert!(matches!(read_generation(&path), Err(IndexError::Io { .. })));
    }

    fn names_after(index: &Index, cursor: &str) -> Vec<String> {
        index
            .scripts_after(cursor)
            .map(|e| e.name.to_string())
            .collect()
    }

    /// A list page starts from the name table: every name after the cursor, in order, with
    /// the delta's changes merged in (upserts in place, deletes left out).
    #[test]
    fn scripts_after_a_cursor_come_in_name_order_across_base_and_delta() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        let mut data = IndexData::new("production", 1000);
        for (i, name) in ["d", "b", "f", "a", "c"].iter().enumerate() {
            data.scripts.insert(name.to_string(), entry(name, i as u8));
        }
        publish(&path, &data, 1, "0123456789abcdef").unwrap();
        let base = Index::open(&path, None).unwrap();
        assert!(base.base.names().is_some());
        assert_eq!(names_after(&base, ""), ["a", "b", "c", "d", "f"]);
        assert_eq!(names_after(&base, "b"), ["c", "d", "f"]);
        assert_eq!(names_after(&base, "bb"), ["c", "d", "f"]);
        assert!(names_after(&base, "f").is_empty());
        let change = crate::delta::DeltaRecord {
            upserts: vec![entry("e", 9), entry("c", 8), entry("0", 7)],
            deletes: vec!["d".into()],
        };
        let next = base.with_record(Arc::new(Record::new(2, &change).unwrap()));
        assert_eq!(names_after(&next, ""), ["0", "a", "b", "c", "e", "f"]);
        assert_eq!(names_after(&next, "a"), ["b", "c", "e", "f"]);
        assert_eq!(next.scripts_after("b").next().unwrap().artifact, [8; 32]);
        assert_eq!(next.len(), 6);
    }

    /// A version 1 file (no name table) is still read, and still lists in order.
    #[test]
    fn a_base_without_a_name_table_is_read_and_listed_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        let mut data = IndexData::new("production", 1000);
        for (i, name) in ["carol", "alice", "bob"].iter().enumerate() {
            data.scripts.insert(name.to_string(), entry(name, i as u8));
        }
        let payload = rkyv::to_bytes::<rancor::Error>(&data).unwrap();
        let h = header(4, "0123456789abcdef", &payload);
        write_durably(&path, &[&h, &payload]).unwrap();
        let index = Index::open(&path, None).unwrap();
        assert!(index.base.names().is_none());
        assert_eq!(index.generation(), 4);
        assert_eq!(names_after(&index, "alice"), ["bob", "carol"]);
        assert_eq!(index.to_data(), data);
    }

    /// A data length past the payload is refused with the reason, not read out of bounds.
    #[test]
    fn a_data_length_past_the_payload_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        publish(&path, &IndexData::new("ns", 0), 1, "aaaaaaaaaaaaaaaa").unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[56..64].copy_from_slice(&(1u64 << 40).to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let e = Index::open(&path, None).unwrap_err();
        assert!(e.to_string().contains("runs past the payload"), "{e}");
    }
}
