//! Durable file replacement: write a temporary file, fsync it, rename it over the target, fsync
//! the directory. After a crash the target is either the old file or the new one, never a mix,
//! because `rename` within one directory is atomic and both the data and the directory entry were
//! on disk before the call returned.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Writes `parts` (concatenated) to `path` durably, replacing any file there.
pub(crate) fn write_durably(path: &Path, parts: &[&[u8]]) -> io::Result<()> {
    let tmp = write_temporary(path, parts)?;
    install(&tmp, path)
}

/// Writes `parts` to a new temporary file beside `path` and fsyncs it; returns its path, for
/// [`install`] (the temporary is removed at start if a crash leaves it).
pub(crate) fn write_temporary(path: &Path, parts: &[&[u8]]) -> io::Result<PathBuf> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("a file path without a directory"))?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other("a file path without a name"))?;
    let tmp = dir.join(temporary_name(&name.to_string_lossy()));
    let result = (|| {
        // Indexes and artifacts are the node's alone (indexes name secret tokens, artifacts are
        // customers' code).
        let mut file = {
            let mut options = OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            options.open(&tmp)?
        };
        for part in parts {
            file.write_all(part)?;
        }
        file.sync_all()
    })();
    match result {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Renames the durable temporary `tmp` over `path` and fsyncs the directory; removes `tmp` if
/// that fails.
pub(crate) fn install(tmp: &Path, path: &Path) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("a file path without a directory"))?;
    let result = std::fs::rename(tmp, path).and_then(|()| sync_dir(dir));
    if result.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    result
}

/// A fresh name for a temporary file or directory that will become `name`, unique within this
/// process; [`is_temporary`] recognises it, so a crash's leftovers can be removed at start.
pub(crate) fn temporary_name(name: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Makes a directory's entries (a rename, a new file) durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Whether `name` is a temporary file left by an interrupted [`write_durably`].
pub(crate) fn is_temporary(name: &str) -> bool {
    name.starts_with('.') && name.contains(".tmp-")
}
