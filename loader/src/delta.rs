//! A namespace's delta: the changes published since its index (the *base*) was last written,
//! appended as checksummed records, so that a publish costs one small append instead of
//! rewriting an archive of every script.
//!
//! # File format (`namespaces/<ns>/delta`)
//! ```text
//!  offset  size  field
//!  ──────  ────  ─────────────────────────────────────────────────────────────────────
//!       0     8  magic            b"TNTRYDLT"
//!       8     4  format version   u32 LE, currently 1; other versions are refused
//!      12     4  reserved         zero
//!      16     …  records, back to back:
//!
//!  record  size  field
//!  ──────  ────  ─────────────────────────────────────────────────────────────────────
//!       0     4  payload length   u32 LE
//!       4     4  CRC-32           u32 LE (crc32fast) of the generation bytes and the payload
//!       8     8  generation       u64 LE: the namespace's generation this record publishes
//!      16     …  payload          rkyv archive of DeltaRecord (upserted entries, deleted names)
//! ```
//! Records are applied in order on top of the base: a record whose generation is at most the
//! base's was merged into it already and is skipped (see [`crate::Store`] for the merge and the
//! states a crash can leave); the first one after must publish the base's generation + 1 and each
//! next one its predecessor's + 1, or the delta is refused (a gap means a lost record).
//!
//! A publish appends its record and fsyncs the file before it answers, so every acknowledged
//! change is on disk. A crash during the append leaves a *torn* last record (short, or failing its
//! checksum up to the end of the file): it was never acknowledged, so reading ignores it and the
//! next append first truncates it away. A bad record that more bytes follow is not a torn append
//! (appends only ever extend a file whose tail was truncated clean): acknowledged changes after it
//! would be lost silently, so the delta is refused as corrupt instead.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rkyv::rancor;
use rkyv::util::AlignedVec;

use crate::fsutil::{sync_dir, write_durably};
use crate::index::{ArchivedScriptEntry, IndexError, ScriptEntry};
use crate::mmap;

pub const DELTA_MAGIC: [u8; 8] = *b"TNTRYDLT";
pub const DELTA_FORMAT_VERSION: u32 = 1;
pub const DELTA_HEADER_LEN: usize = 16;
/// Length, checksum and generation before each record's payload.
pub const RECORD_HEADER_LEN: usize = 16;

/// The file name of a namespace's delta, beside its `index`.
pub const DELTA_FILE: &str = "delta";

/// The delta of the index at `index_path`.
pub fn delta_path(index_path: &Path) -> PathBuf {
    index_path.with_file_name(DELTA_FILE)
}

/// One publish's change, as archived in a record. Names are unique across both lists.
#[derive(Debug, Clone, Default, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct DeltaRecord {
    /// New or replaced scripts, whole.
    pub upserts: Vec<ScriptEntry>,
    /// Names of removed scripts.
    pub deletes: Vec<String>,
}

/// A record read back: its generation and its validated archive.
pub(crate) struct Record {
    pub generation: u64,
    /// 16-aligned as rkyv requires; validated once when read.
    bytes: AlignedVec,
}

impl Record {
    /// Archives `record` as generation `generation`.
    pub(crate) fn new(generation: u64, record: &DeltaRecord) -> Result<Record, rancor::Error> {
        Ok(Record {
            generation,
            bytes: rkyv::to_bytes::<rancor::Error>(record)?,
        })
    }

    pub(crate) fn upserts(&self) -> &rkyv::vec::ArchivedVec<ArchivedScriptEntry> {
        // SAFETY: `bytes` was produced by rkyv for a DeltaRecord (`Record::new`) or passed
        // `mmap::validate_record` (`read`), and is never changed afterwards.
        &unsafe { mmap::access_record(&self.bytes) }.upserts
    }

    pub(crate) fn deletes(&self) -> impl Iterator<Item = &str> {
        // SAFETY: as in `upserts`.
        unsafe { mmap::access_record(&self.bytes) }
            .deletes
            .iter()
            .map(|d| d.as_str())
    }

    /// The record's bytes in the file: header and payload.
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(RECORD_HEADER_LEN + self.bytes.len());
        out.extend_from_slice(&(self.bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(&checksum(self.generation, &self.bytes).to_le_bytes());
        out.extend_from_slice(&self.generation.to_le_bytes());
        out.extend_from_slice(&self.bytes);
        out
    }
}

fn checksum(generation: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&generation.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// What [`read`] found in a delta file.
pub(crate) struct Delta {
    /// The records after the base's generation, in order.
    pub records: Vec<Arc<Record>>,
    /// The generation of the last record in the file, merged or not (the base's if none).
    pub generation: u64,
    /// Bytes up to the end of the last whole record (0: no file); a longer file has a torn tail.
    pub valid_len: u64,
    /// Records in the file at or below the base's generation (merged already).
    pub merged: usize,
}

/// Reads the delta at `path` on top of a base of generation `base_generation`. A missing file
/// is an empty delta; a torn last record is ignored (see the module doc).
pub(crate) fn read(path: &Path, base_generation: u64) -> Result<Delta, IndexError> {
    let io = |source| IndexError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => f.read_to_end(&mut bytes).map_err(io)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Delta {
                records: Vec::new(),
                generation: base_generation,
                valid_len: 0,
                merged: 0,
            });
        }
        Err(e) => return Err(io(e)),
    };
    if bytes.len() < DELTA_HEADER_LEN || bytes[..8] != DELTA_MAGIC {
        // The header is written whole (temp file + rename) before any record: never torn.
        return Err(IndexError::BadMagic { path: path.into() });
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
    if version != DELTA_FORMAT_VERSION {
        return Err(IndexError::UnsupportedVersion {
            path: path.into(),
            version,
        });
    }
    let corrupt = |message: String| IndexError::Invalid {
        path: path.into(),
        message,
    };
    let mut at = DELTA_HEADER_LEN;
    let mut generation = base_generation;
    let mut records = Vec::new();
    let mut merged = 0;
    while at < bytes.len() {
        let rest = &bytes[at..];
        if rest.len() < RECORD_HEADER_LEN {
            break; // torn
        }
        let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(rest[4..8].try_into().unwrap());
        let record_generation = u64::from_le_bytes(rest[8..16].try_into().unwrap());
        let end = RECORD_HEADER_LEN.saturating_add(len);
        if end > rest.len() {
            break; // torn: the append never finished
        }
        let payload = &rest[RECORD_HEADER_LEN..end];
        if checksum(record_generation, payload) != crc {
            if end == rest.len() {
                break; // torn: the last record, not all of it reached the disk
            }
            return Err(corrupt(format!(
                "delta record at byte {at} fails its checksum and {} bytes follow it",
                rest.len() - end
            )));
        }
        at += end;
        if record_generation <= base_generation {
            if !records.is_empty() {
                return Err(corrupt(format!(
                    "delta record at byte {} publishes generation {record_generation} after {generation}",
                    at - end
                )));
            }
            merged += 1;
            continue;
        }
        if record_generation != generation + 1 {
            return Err(corrupt(format!(
                "delta record at byte {} publishes generation {record_generation} after {generation}",
                at - end
            )));
        }
        generation = record_generation;
        let mut aligned = AlignedVec::with_capacity(payload.len());
        aligned.extend_from_slice(payload);
        mmap::validate_record(&aligned).map_err(|e| corrupt(format!("delta record: {e}")))?;
        records.push(Arc::new(Record {
            generation,
            bytes: aligned,
        }));
    }
    Ok(Delta {
        records,
        generation,
        valid_len: at as u64,
        merged,
    })
}

/// Appends `record` to the delta at `path` durably: creates the file (header only, written
/// whole) if there is none, cuts a torn tail back to `valid_len` (from [`read`]), writes the
/// record and fsyncs the file. When this returns, the record survives a crash.
pub(crate) fn append(path: &Path, valid_len: u64, record: &Record) -> Result<(), IndexError> {
    let io = |source| IndexError::Io {
        path: path.to_path_buf(),
        source,
    };
    let valid_len = if valid_len == 0 {
        write_durably(path, &[&header()]).map_err(io)?;
        DELTA_HEADER_LEN as u64
    } else {
        valid_len
    };
    let mut file = OpenOptions::new().write(true).open(path).map_err(io)?;
    if file.metadata().map_err(io)?.len() != valid_len {
        file.set_len(valid_len).map_err(io)?;
    }
    use std::io::Seek;
    file.seek(std::io::SeekFrom::Start(valid_len)).map_err(io)?;
    file.write_all(&record.encode()).map_err(io)?;
    // The length changed, so `sync_data` writes it with the data.
    file.sync_data().map_err(io)
}

/// Rewrites the delta at `path` durably with only the records after `generation` (a merge wrote
/// a base of that generation); removes the file when none are left. Returns the generation of
/// the last record the file held (`generation` if none was after it).
pub(crate) fn drop_merged(path: &Path, generation: u64) -> Result<u64, IndexError> {
    let io = |source| IndexError::Io {
        path: path.to_path_buf(),
        source,
    };
    let delta = read(path, generation)?;
    if delta.records.is_empty() {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(delta.generation),
            Err(e) => return Err(io(e)),
        }
        let dir = path.parent().expect("delta paths have a parent");
        return sync_dir(dir).map_err(io).map(|()| delta.generation);
    }
    let mut bytes = header().to_vec();
    for record in &delta.records {
        bytes.extend_from_slice(&record.encode());
    }
    write_durably(path, &[&bytes]).map_err(io)?;
    Ok(delta.generation)
}

fn header() -> [u8; DELTA_HEADER_LEN] {
    let mut h = [0u8; DELTA_HEADER_LEN];
    h[..8].copy_from_slice(&DELTA_MAGIC);
    h[8..12].copy_from_slice(&DELTA_FORMAT_VERSION.to_le_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::tests::entry;
    use crate::index::{Index, IndexData, publish};

    /// A base of generation 3 holding `alice` and `bob`, and its path.
    fn base(dir: &Path) -> PathBuf {
        let path = dir.join("index");
        let mut data = IndexData::new("production", 1000);
        for (i, name) in ["alice", "bob"].iter().enumerate() {
            data.scripts.insert(name.to_string(), entry(name, i as u8));
        }
        publish(&path, &data, 3, "0123456789abcdef").unwrap();
        path
    }

    /// Appends `record` as the next generation of the index at `path`, as a publish does.
    fn append_next(path: &Path, record: &DeltaRecord) -> u64 {
        let base = crate::index::read_generation(path).unwrap();
        let delta = read(&delta_path(path), base).unwrap();
        let generation = delta.generation + 1;
        let record = Record::new(generation, record).unwrap();
        append(&delta_path(path), delta.valid_len, &record).unwrap();
        generation
    }

    fn upsert(name: &str, n: u8) -> DeltaRecord {
        DeltaRecord {
            upserts: vec![entry(name, n)],
            deletes: vec![],
        }
    }

    fn delete(name: &str) -> DeltaRecord {
        DeltaRecord {
            upserts: vec![],
            deletes: vec![name.into()],
        }
    }

    fn names(index: &Index) -> Vec<String> {
        let mut names: Vec<String> = index.scripts().map(|e| e.name.to_string()).collect();
        names.sort();
        names
    }

    #[test]
    fn records_apply_on_top_of_the_base_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = base(dir.path());
        assert_eq!(append_next(&path, &upsert("carol", 7)), 4);
        assert_eq!(append_next(&path, &upsert("alice", 9)), 5);
        assert_eq!(append_next(&path, &delete("bob")), 6);
        let index = Index::open(&path, None).unwrap();
        assert_eq!(
            (index.generation(), index.base_generation(), index.len()),
            (6, 3, 2)
        );
        assert_eq!(index.delta_records(), 3);
        assert_eq!(index.get("alice").unwrap().artifact, [9; 32]);
        assert_eq!(index.get("carol").unwrap().etag.as_str(), "etag-7");
        assert!(index.get("bob").is_none());
        assert_eq!(names(&index), ["alice", "carol"]);
        // Deleting what is gone and re-adding it keep the count right.
        append_next(&path, &delete("bob"));
        append_next(&path, &upsert("bob", 2));
        let index = Index::open(&path, None).unwrap();
        assert_eq!((index.generation(), index.len()), (8, 3));
        assert_eq!(names(&index), ["alice", "bob", "carol"]);
        let data = index.to_data();
        assert_eq!(data.scripts.len(), 3);
        assert_eq!(data.scripts["alice"], entry("alice", 9));
    }

    /// A crash during an append leaves part of a record: it was never acknowledged, so it is
    /// ignored, and the next append cuts it off before writing (else it would hide the records
    /// after it).
    #[test]
    fn a_torn_last_record_is_ignored_and_cut_at_the_next_append() {
        let dir = tempfile::tempdir().unwrap();
        let path = base(dir.path());
        let dpath = delta_path(&path);
        append_next(&path, &upsert("carol", 7));
        let whole = std::fs::read(&dpath).unwrap();
        let torn = Record::new(5, &upsert("dave", 8)).unwrap().encode();
        for cut in [
            1,
            RECORD_HEADER_LEN - 1,
            RECORD_HEADER_LEN + 3,
            torn.len() - 1,
        ] {
            let mut bytes = whole.clone();
            bytes.extend_from_slice(&torn[..cut]);
            std::fs::write(&dpath, &bytes).unwrap();
            let index = Index::open(&path, None).unwrap();
            assert_eq!((index.generation(), index.len()), (4, 3), "cut at {cut}");
            assert!(index.get("dave").is_none());
        }
        // Whole length, but the bytes did not all reach the disk (zeros instead).
        let mut bytes = whole.clone();
        let mut zeroed = torn.clone();
        zeroed[RECORD_HEADER_LEN..].fill(0);
        bytes.extend_from_slice(&zeroed);
        std::fs::write(&dpath, &bytes).unwrap();
        assert_eq!(Index::open(&path, None).unwrap().generation(), 4);

        assert_eq!(append_next(&path, &upsert("erin", 9)), 5);
        assert_eq!(std::fs::metadata(&dpath).unwrap().len() as usize, {
            let erin = Record::new(5, &upsert("erin", 9)).unwrap().encode();
            whole.len() + erin.len()
        });
        let index = Index::open(&path, None).unwrap();
        assert_eq!(names(&index), ["alice", "bob", "carol", "erin"]);
    }

    /// A bad record with records after it is not a torn append: the delta is refused rather
    /// than acknowledged changes dropped without a word.
    #[test]
    fn a_corrupt_record_before_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = base(dir.path());
        let dpath = delta_path(&path);
        append_next(&path, &upsert("carol", 7));
        append_next(&path, &upsert("dave", 8));
        let mut bytes = std::fs::read(&dpath).unwrap();
        bytes[DELTA_HEADER_LEN + RECORD_HEADER_LEN + 5] ^= 0xff;
        std::fs::write(&dpath, &bytes).unwrap();
        let e = Index::open(&path, None).unwrap_err();
        assert!(matches!(e, IndexError::Invalid { .. }), "{e}");
        assert!(e.to_string().contains("checksum"), "{e}");
    }

    #[test]
    fn a_gap_in_generations_or_a_foreign_header_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = base(dir.path());
        let dpath = delta_path(&path);
        let mut bytes = header().to_vec();
        bytes.extend(Record::new(4, &upsert("carol", 7)).unwrap().encode());
        bytes.extend(Record::new(6, &upsert("dave", 8)).unwrap().encode());
        std::fs::write(&dpath, &bytes).unwrap();
        let e = Index::open(&path, None).unwrap_err();
        assert!(e.to_string().contains("generation 6 after 4"), "{e}");

        std::fs::write(&dpath, b"TNTRYIDX\x01\0\0\0\0\0\0\0").unwrap();
        let e = Index::open(&path, None).unwrap_err();
        assert!(matches!(e, IndexError::BadMagic { .. }), "{e}");
        let mut bytes = header().to_vec();
        bytes[8] = 2;
        std::fs::write(&dpath, &bytes).unwrap();
        let e = Index::open(&path, None).unwrap_err();
        assert!(
            matches!(e, IndexError::UnsupportedVersion { version: 2, .. }),
            "{e}"
        );
    }

    /// What a merge leaves if it crashes after renaming the new base into place but before
    /// dropping the merged records: reading skips them, so the state is the same generation
    /// with the same scripts; the next append follows on, and dropping them changes nothing.
    #[test]
    fn records_a_new_base_already_holds_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = base(dir.path());
        let dpath = delta_path(&path);
        append_next(&path, &upsert("carol", 7));
        append_next(&path, &delete("alice"));
        append_next(&path, &upsert("dave", 8));
        let before = Index::open(&path, None).unwrap();
        // The merge of generations 4 and 5 only.
        let merged = {
            let mut data = IndexData::new("production", 1000);
            for n in ["bob", "carol"] {
                let e = before.get(n).unwrap();
                let e = rkyv::deserialize::<ScriptEntry, rancor::Error>(e).unwrap();
                data.scripts.insert(n.into(), e);
            }
            data
        };
        publish(&path, &merged, 5, "0123456789abcdef").unwrap();
        let delta = read(&dpath, 5).unwrap();
        assert_eq!(
            (delta.merged, delta.records.len(), delta.generation),
            (2, 1, 6)
        );
        let after = Index::open(&path, None).unwrap();
        assert_eq!((after.generation(), after.base_generation()), (6, 5));
        assert_eq!(names(&after), names(&before));
        assert_eq!(append_next(&path, &upsert("erin", 9)), 7);
        assert_eq!(
            drop_merged(&dpath, 5).unwrap(),
            7,
            "the latest record's generation"
        );
        let delta = read(&dpath, 5).unwrap();
        assert_eq!(
            (delta.merged, delta.records.len(), delta.generation),
            (0, 2, 7)
        );
        let last = Index::open(&path, None).unwrap();
        assert_eq!(names(&last), ["bob", "carol", "dave", "erin"]);
        // Once a base holds every record, the delta file goes.
        assert_eq!(drop_merged(&dpath, 7).unwrap(), 7);
        assert!(!dpath.exists());
    }
}
