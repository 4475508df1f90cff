//! What a start needs of a namespace without reading its scripts: how many there are, when the
//! namespace last changed, and which artifacts they name (with how many scripts name each).
//!
//! A start used to walk every script twice, once for the catalog's summary and once for the
//! artifacts to check, touching every page of the base (1M Workers: ~230 MB resident after start,
//! and most of its time). A base of format version 3 ends with the summary of its scripts, and an
//! [`crate::Index`] keeps it current as delta records apply, so a start reads it in
//! O(distinct artifacts).
//!
//! # Layout (the payload's last bytes, right after the name table; little endian)
//! ```text
//!  size    field
//!  ──────  ─────────────────────────────────────────────────────────────────────────────
//!  40 × k  artifacts   k × { id [u8; 32], scripts u64 }: every artifact the scripts name, by
//!                      id ascending, with how many scripts name it (≥ 1)
//!       8  scripts     u64: the scripts in the base
//!       8  modified    i64: unix ms, the latest of the namespace's creation and every script
//!                      write it has seen (a delete does not move it back)
//!       8  k           u64: the number of artifacts above
//! ```
//! Read from the end: the last 24 bytes say how long the rest is. The payload's CRC covers it.
//! Hand-drawn rather than an rkyv archive because it has no alignment to keep: it starts wherever
//! the name table ends, which the header then need not record.

use std::collections::BTreeMap;

use crate::index::{ArchivedScriptEntry, IndexData};

/// An artifact id's bytes ([`crate::ArtifactId`]).
pub type ArtifactBytes = [u8; 32];

const TRAILER_LEN: usize = 24;
const ARTIFACT_LEN: usize = 40;

/// A namespace's scripts in summary: see the module doc.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Summary {
    /// How many scripts.
    pub scripts: u64,
    /// Unix ms: the latest of the namespace's creation and every script write it has seen.
    pub modified_on: i64,
    /// Every artifact the scripts name, with how many scripts name it (never 0).
    pub artifacts: BTreeMap<ArtifactBytes, u64>,
}

impl Summary {
    /// The summary of `data`, from every script (a full publish or a merge writes it).
    pub fn of(data: &IndexData) -> Summary {
        let mut summary = Summary {
            modified_on: data.created_on,
            ..Summary::default()
        };
        for entry in data.scripts.values() {
            summary.add(entry.artifact, entry.modified_on);
        }
        summary
    }

    /// The summary of `scripts` (a full walk: base files without a summary, and tests).
    pub fn walk<'a>(
        created_on: i64,
        scripts: impl Iterator<Item = &'a ArchivedScriptEntry>,
    ) -> Summary {
        let mut summary = Summary {
            modified_on: created_on,
            ..Summary::default()
        };
        for entry in scripts {
            summary.add(entry.artifact, entry.modified_on.to_native());
        }
        summary
    }

    fn add(&mut self, artifact: ArtifactBytes, modified_on: i64) {
        self.scripts += 1;
        self.modified_on = self.modified_on.max(modified_on);
        *self.artifacts.entry(artifact).or_default() += 1;
    }

    /// The bytes drawn in the module doc.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.artifacts.len() * ARTIFACT_LEN + TRAILER_LEN);
        for (id, scripts) in &self.artifacts {
            out.extend_from_slice(id);
            out.extend_from_slice(&scripts.to_le_bytes());
        }
        out.extend_from_slice(&self.scripts.to_le_bytes());
        out.extend_from_slice(&self.modified_on.to_le_bytes());
        out.extend_from_slice(&(self.artifacts.len() as u64).to_le_bytes());
        out
    }

    /// The summary at the end of `bytes` and how many bytes it takes (tests: an index keeps the
    /// [`Tail`] and reads the artifacts from its mapping when asked).
    #[cfg(test)]
    fn decode(bytes: &[u8]) -> Result<(Summary, usize), String> {
        let tail = Tail::read(bytes)?;
        let table = &bytes[bytes.len() - tail.len..];
        let summary = Summary {
            scripts: tail.scripts,
            modified_on: tail.modified_on,
            artifacts: artifacts(table).collect(),
        };
        Ok((summary, tail.len))
    }
}

/// A stored summary's fixed fields, checked: its artifacts are read from the file on demand
/// ([`artifacts`]), so a namespace of 1M distinct artifacts keeps none of them in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tail {
    pub scripts: u64,
    pub modified_on: i64,
    /// The summary's length, trailer included: it starts `len` bytes before the payload's end.
    pub len: usize,
}

impl Tail {
    /// The summary at the end of `bytes`, checked whole (lengths against `bytes`, artifacts in
    /// strictly ascending order, each named by a script, their scripts adding up to the count):
    /// an error says what is wrong, and nothing here reads past `bytes`.
    pub(crate) fn read(bytes: &[u8]) -> Result<Tail, String> {
        let too_short = || format!("the summary does not fit in {} bytes", bytes.len());
        let trailer = bytes
            .len()
            .checked_sub(TRAILER_LEN)
            .map(|at| &bytes[at..])
            .ok_or_else(too_short)?;
        let u64_at = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
        let k = u64_at(trailer, 16);
        let len = usize::try_from(k)
            .ok()
            .and_then(|k| k.checked_mul(ARTIFACT_LEN))
            .and_then(|n| n.checked_add(TRAILER_LEN))
            .filter(|&n| n <= bytes.len())
            .ok_or_else(too_short)?;
        let tail = Tail {
            scripts: u64_at(trailer, 0),
            modified_on: u64_at(trailer, 8) as i64,
            len,
        };
        let mut named = 0u64;
        let mut last: Option<ArtifactBytes> = None;
        for (id, scripts) in artifacts(&bytes[bytes.len() - len..]) {
            if scripts == 0 || last.is_some_and(|last| last >= id) {
                return Err(format!(
                    "the summary lists artifact {} out of order or with no script",
                    hex::encode(id)
                ));
            }
            last = Some(id);
            named = named.saturating_add(scripts);
        }
        if named != tail.scripts {
            return Err(format!(
                "the summary's artifacts are named by {named} scripts, its count says {}",
                tail.scripts
            ));
        }
        Ok(tail)
    }
}

/// The artifacts of the summary `summary` (exactly its bytes, as [`Tail::len`] delimits them)
/// and how many scripts name each, in id order.
pub(crate) fn artifacts(summary: &[u8]) -> impl Iterator<Item = (ArtifactBytes, u64)> + '_ {
    summary[..summary.len().saturating_sub(TRAILER_LEN)]
        .chunks_exact(ARTIFACT_LEN)
        .map(|a| {
            let id: ArtifactBytes = a[..32].try_into().unwrap();
            (id, u64::from_le_bytes(a[32..40].try_into().unwrap()))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::tests::entry;

    #[test]
    fn a_summary_reads_back_from_the_end_of_any_bytes() {
        let mut data = IndexData::new("ns", 5);
        for (i, name) in ["a", "b", "c"].iter().enumerate() {
            let mut e = entry(name, (i % 2) as u8);
            e.modified_on = 10 + i as i64;
            data.scripts.insert(name.to_string(), e);
        }
        let summary = Summary::of(&data);
        assert_eq!(summary.scripts, 3);
        assert_eq!(summary.modified_on, 12);
        assert_eq!(
            summary.artifacts,
            BTreeMap::from([([0; 32], 2), ([1; 32], 1)])
        );
        let mut bytes = b"whatever comes first".to_vec();
        let encoded = summary.encode();
        bytes.extend_from_slice(&encoded);
        assert_eq!(Summary::decode(&bytes).unwrap(), (summary, encoded.len()));
        let empty = Summary::of(&IndexData::new("ns", 7));
        assert_eq!((empty.scripts, empty.modified_on), (0, 7));
        assert_eq!(Summary::decode(&empty.encode()).unwrap().0, empty.clone());
    }

    /// A damaged summary is an error that says why, never a read out of bounds.
    #[test]
    fn a_damaged_summary_is_refused() {
        let mut data = IndexData::new("ns", 5);
        data.scripts.insert("a".into(), entry("a", 1));
        let good = Summary::of(&data).encode();
        assert!(Summary::decode(&good[1..]).is_err());
        assert!(Summary::decode(&good[..10]).is_err());
        let mut huge = good.clone();
        let n = huge.len();
        huge[n - 8..].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(Summary::decode(&huge).unwrap_err().contains("does not fit"));
        let mut miscounted = good.clone();
        miscounted[32..40].copy_from_slice(&2u64.to_le_bytes());
        assert!(
            Summary::decode(&miscounted)
                .unwrap_err()
                .contains("named by 2 scripts")
        );
        let mut two = IndexData::new("ns", 5);
        two.scripts.insert("a".into(), entry("a", 1));
        two.scripts.insert("b".into(), entry("b", 2));
        let mut swapped = Summary::of(&two).encode();
        swapped.copy_within(40..80, 0);
        swapped[40..80].copy_from_slice(&Summary::of(&two).encode()[..40]);
        assert!(
            Summary::decode(&swapped)
                .unwrap_err()
                .contains("out of order")
        );
    }
}
