//! The loader's unsafe code: mapping index files and reading their archives in place.

use std::fs::File;
use std::io;

use memmap2::Mmap;
use rkyv::rancor;
use rkyv::string::ArchivedString;
use rkyv::vec::ArchivedVec;

use crate::delta::ArchivedDeltaRecord;
use crate::index::ArchivedIndexData;

/// Maps `file` read-only.
pub(crate) fn map(file: &File) -> io::Result<Mmap> {
    // SAFETY: index files are never modified after they are written: a publish writes a new file
    // and renames it over the old path, which leaves existing mappings of the old inode intact.
    // Another process editing the data directory by hand is outside the contract (docs/design.md).
    unsafe { Mmap::map(file) }
}

/// Drops `map`'s pages from this process (`MADV_DONTNEED`): they leave its RSS but stay in the
/// page cache, and the next read of each faults it back in, with the same bytes.
pub(crate) fn release(map: &Mmap) -> io::Result<()> {
    // SAFETY: `map` is a read-only shared mapping of a file (`map` above, `MAP_SHARED`), so it
    // holds no private or dirty page that dropping could lose: a page read after this is the
    // file's, and the file is never modified. References into the mapping stay valid (the
    // range stays mapped; only its page table entries go).
    unsafe { map.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) }
}

/// Fully validates an archive (bytecheck); call once per mapping before [`access`].
pub(crate) fn validate(payload: &[u8]) -> Result<(), String> {
    rkyv::access::<ArchivedIndexData, rancor::Error>(payload)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The archive in `payload`, without checks.
///
/// # Safety
/// `payload` must have passed [`validate`] and must not have changed since.
pub(crate) unsafe fn access(payload: &[u8]) -> &ArchivedIndexData {
    // SAFETY: forwarded from this function's contract.
    unsafe { rkyv::access_unchecked::<ArchivedIndexData>(payload) }
}

/// Fully validates a delta record's archive (bytecheck); call once before [`access_record`].
pub(crate) fn validate_record(payload: &[u8]) -> Result<(), String> {
    rkyv::access::<ArchivedDeltaRecord, rancor::Error>(payload)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// A delta record's archive in `payload`, without checks.
///
/// # Safety
/// `payload` must have passed [`validate_record`] (or have been serialised from a `DeltaRecord`
/// by rkyv) and must not have changed since.
pub(crate) unsafe fn access_record(payload: &[u8]) -> &ArchivedDeltaRecord {
    // SAFETY: forwarded from this function's contract.
    unsafe { rkyv::access_unchecked::<ArchivedDeltaRecord>(payload) }
}

/// Fully validates a base's name table (bytecheck); call once per mapping before
/// [`access_names`].
pub(crate) fn validate_names(table: &[u8]) -> Result<(), String> {
    rkyv::access::<ArchivedVec<ArchivedString>, rancor::Error>(table)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// A base's name table in `table`, without checks.
///
/// # Safety
/// `table` must have passed [`validate_names`] and must not have changed since.
pub(crate) unsafe fn access_names(table: &[u8]) -> &ArchivedVec<ArchivedString> {
    // SAFETY: forwarded from this function's contract.
    unsafe { rkyv::access_unchecked::<ArchivedVec<ArchivedString>>(table) }
}
