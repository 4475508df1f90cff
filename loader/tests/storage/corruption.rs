//! A damaged index file is refused with an error that says what is wrong, never read.

use std::path::{Path, PathBuf};

use tenantry_loader::index::{FORMAT_VERSION, publish};
use tenantry_loader::{Index, IndexData, IndexError};

fn valid(dir: &Path) -> (PathBuf, Vec<u8>) {
    let path = dir.join("index");
    let mut d = IndexData::new("prod", 1);
    d.namespace_id = "x".repeat(32);
    publish(&path, &d, 3, "0123456789abcdef").unwrap();
    let bytes = std::fs::read(&path).unwrap();
    (path, bytes)
}

fn open_damaged(edit: impl FnOnce(&mut Vec<u8>)) -> IndexError {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut bytes) = valid(dir.path());
    edit(&mut bytes);
    std::fs::write(&path, &bytes).unwrap();
    let e = Index::open(&path, None).unwrap_err();
    assert!(
        e.to_string().contains(&path.display().to_string()),
        "{e} names the file"
    );
    e
}

#[test]
fn truncated_files() {
    for keep in [0, 10, 63, 64, 100] {
        let e = open_damaged(|b| b.truncate(keep));
        assert!(matches!(e, IndexError::Truncated { .. }), "{keep}: {e}");
    }
    let e = open_damaged(|b| b.push(0));
    assert!(matches!(e, IndexError::Truncated { .. }), "{e}");
}

#[test]
fn a_flipped_payload_byte_fails_the_checksum() {
    let e = open_damaged(|b| {
        let at = b.len() - 5;
        b[at] ^= 0x40;
    });
    assert!(matches!(e, IndexError::Checksum { .. }), "{e}");
}

#[test]
fn bad_magic_and_future_versions() {
    let e = open_damaged(|b| b[0] = b'X');
    assert!(matches!(e, IndexError::BadMagic { .. }), "{e}");
    let e = open_damaged(|b| b[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes()));
    assert!(
        matches!(e, IndexError::UnsupportedVersion { version, .. } if version == FORMAT_VERSION + 1),
        "{e}"
    );
}

#[test]
fn a_payload_with_a_matching_checksum_but_invalid_structure_is_refused() {
    let e = open_damaged(|b| {
        // Garbage payload whose CRC is recomputed, as a buggy writer would produce.
        let len = b.len();
        for x in &mut b[64..len] {
            *x = 0xff;
        }
        let crc = crc32fast::hash(&b[64..]);
        b[48..52].copy_from_slice(&crc.to_le_bytes());
    });
    assert!(matches!(e, IndexError::Invalid { .. }), "{e}");
}

/// A summary that disagrees with the archive (its count changed, the checksum recomputed, as a
/// buggy writer would leave it) is refused: a start trusts the summary instead of the scripts.
#[test]
fn a_summary_that_disagrees_with_the_archive_is_refused() {
    let e = open_damaged(|b| {
        // The summary's trailer is the file's last 24 bytes: scripts, modified, artifacts.
        let at = b.len() - 24;
        b[at..at + 8].copy_from_slice(&1u64.to_le_bytes());
        let crc = crc32fast::hash(&b[64..]);
        b[48..52].copy_from_slice(&crc.to_le_bytes());
    });
    assert!(matches!(e, IndexError::Invalid { .. }), "{e}");
    assert!(e.to_string().contains("summary"), "{e}");
    let e = open_damaged(|b| {
        let at = b.len() - 8;
        b[at..].copy_from_slice(&u64::MAX.to_le_bytes());
        let crc = crc32fast::hash(&b[64..]);
        b[48..52].copy_from_slice(&crc.to_le_bytes());
    });
    assert!(e.to_string().contains("does not fit"), "{e}");
}
