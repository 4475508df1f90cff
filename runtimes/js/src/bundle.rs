//! The bundle: a Worker's modules in one byte string, as the host hands them in.
//!
//! ```text
//! offset  size  field
//! 0       4     magic "TJSB"
//! 4       1     version = 1
//! 5       1     format: 0 = ES modules, 1 = service worker
//! 6       4     count (u32, little-endian)
//! 10      …     count × entry:
//!                 kind      u8
//!                 name_len  u32 LE,  name bytes (UTF-8)
//!                 data_len  u32 LE,  data bytes
//! ```
//!
//! The first entry is the main module. A *source* bundle (compile mode) holds kinds 0–3, a
//! *compiled* bundle (run mode) kinds 16, 17, 2 and 3: see [`Kind`]. Parsing borrows from the
//! input, so the run mode reads module bytecode where the host wrote it.

use std::fmt;

/// The first four bytes of every bundle.
pub const MAGIC: &[u8; 4] = b"TJSB";
/// The only version this engine reads and writes.
pub const VERSION: u8 = 1;

/// How the Worker is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `export default { fetch }`.
    Modules,
    /// `addEventListener("fetch", ...)`.
    ServiceWorker,
}

/// What an entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// ES module source (JS text).
    ModuleSource,
    /// Service-worker script source.
    ScriptSource,
    /// A text module: imports as a string (`export default "…"`).
    Text,
    /// A data module: imports as an `ArrayBuffer`.
    Data,
    /// ES module bytecode (compiled bundles).
    ModuleBytecode,
    /// Script bytecode (compiled bundles).
    ScriptBytecode,
}

impl Kind {
    fn code(self) -> u8 {
        match self {
            Kind::ModuleSource => 0,
            Kind::ScriptSource => 1,
            Kind::Text => 2,
            Kind::Data => 3,
            Kind::ModuleBytecode => 16,
            Kind::ScriptBytecode => 17,
        }
    }

    fn from_code(code: u8) -> Option<Kind> {
        Some(match code {
            0 => Kind::ModuleSource,
            1 => Kind::ScriptSource,
            2 => Kind::Text,
            3 => Kind::Data,
            16 => Kind::ModuleBytecode,
            17 => Kind::ScriptBytecode,
            _ => return None,
        })
    }
}

/// One module of a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    pub kind: Kind,
    pub name: &'a str,
    pub data: &'a [u8],
}

/// A parsed bundle, borrowing its input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle<'a> {
    pub format: Format,
    /// The main module first; never empty.
    pub entries: Vec<Entry<'a>>,
}

/// Why a bundle could not be read. The host builds bundles, so any of these is a host bug or a
/// bundle made by another engine version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BundleError {
    BadMagic,
    BadVersion(u8),
    BadFormat(u8),
    BadKind(u8),
    Truncated,
    BadName,
    Empty,
}

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BundleError::BadMagic => write!(f, "bundle: not a bundle (magic is not \"TJSB\")"),
            BundleError::BadVersion(v) => write!(f, "bundle: version {v} (this engine reads 1)"),
            BundleError::BadFormat(v) => write!(f, "bundle: unknown format {v}"),
            BundleError::BadKind(v) => write!(f, "bundle: unknown entry kind {v}"),
            BundleError::Truncated => write!(f, "bundle: truncated"),
            BundleError::BadName => write!(f, "bundle: a module name is not UTF-8"),
            BundleError::Empty => write!(f, "bundle: no modules"),
        }
    }
}

impl std::error::Error for BundleError {}

/// Bytes per entry before its name and data (kind + two lengths); bounds the pre-allocation.
const ENTRY_HEADER: usize = 1 + 4 + 4;

impl<'a> Bundle<'a> {
    /// Parses `bytes`. Every length is checked against what is left, so no input panics.
    pub fn parse(bytes: &'a [u8]) -> Result<Bundle<'a>, BundleError> {
        let mut r = Reader { bytes };
        if r.take(4)? != MAGIC {
            return Err(BundleError::BadMagic);
        }
        let version = r.u8()?;
        if version != VERSION {
            return Err(BundleError::BadVersion(version));
        }
        let format = match r.u8()? {
            0 => Format::Modules,
            1 => Format::ServiceWorker,
            other => return Err(BundleError::BadFormat(other)),
        };
        let count = r.u32()? as usize;
        if count == 0 {
            return Err(BundleError::Empty);
        }
        let mut entries = Vec::with_capacity(count.min(r.bytes.len() / ENTRY_HEADER));
        for _ in 0..count {
            let code = r.u8()?;
            let kind = Kind::from_code(code).ok_or(BundleError::BadKind(code))?;
            let name_len = r.u32()? as usize;
            let name = std::str::from_utf8(r.take(name_len)?).map_err(|_| BundleError::BadName)?;
            let data_len = r.u32()? as usize;
            let data = r.take(data_len)?;
            entries.push(Entry { kind, name, data });
        }
        Ok(Bundle { format, entries })
    }

    /// The main module.
    pub fn main(&self) -> &Entry<'a> {
        &self.entries[0]
    }

    /// The entry named `name`.
    pub fn get(&self, name: &str) -> Option<&Entry<'a>> {
        self.entries.iter().find(|e| e.name == name)
    }
}

/// Builds a bundle: [`Writer::push`] each entry (main module first), then [`Writer::finish`].
#[derive(Debug)]
pub struct Writer {
    out: Vec<u8>,
    count: u32,
}

impl Writer {
    pub fn new(format: Format) -> Writer {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.push(match format {
            Format::Modules => 0,
            Format::ServiceWorker => 1,
        });
        out.extend_from_slice(&0u32.to_le_bytes());
        Writer { out, count: 0 }
    }

    /// Appends an entry. Names and data over 4 GiB cannot occur: the host's upload limit is far
    /// below, and the lengths are checked rather than truncated.
    pub fn push(&mut self, kind: Kind, name: &str, data: &[u8]) -> Result<(), BundleError> {
        let name_len = u32::try_from(name.len()).map_err(|_| BundleError::Truncated)?;
        let data_len = u32::try_from(data.len()).map_err(|_| BundleError::Truncated)?;
        self.out.reserve(ENTRY_HEADER + name.len() + data.len());
        self.out.push(kind.code());
        self.out.extend_from_slice(&name_len.to_le_bytes());
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(&data_len.to_le_bytes());
        self.out.extend_from_slice(data);
        self.count += 1;
        Ok(())
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.out[6..10].copy_from_slice(&self.count.to_le_bytes());
        self.out
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], BundleError> {
        if n > self.bytes.len() {
            return Err(BundleError::Truncated);
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, BundleError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, BundleError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut w = Writer::new(Format::Modules);
        w.push(Kind::ModuleSource, "worker.js", b"export default {}")
            .unwrap();
        w.push(Kind::Text, "a.txt", "héllo".as_bytes()).unwrap();
        w.push(Kind::Data, "b.bin", &[0, 1, 2]).unwrap();
        w.finish()
    }

    #[test]
    fn round_trips_and_matches_the_drawing() {
        let bytes = sample();
        assert_eq!(&bytes[..10], b"TJSB\x01\x00\x03\x00\x00\x00");
        assert_eq!(bytes[10], 0);
        assert_eq!(&bytes[11..15], &9u32.to_le_bytes());
        assert_eq!(&bytes[15..24], b"worker.js");
        let b = Bundle::parse(&bytes).unwrap();
        assert_eq!(b.format, Format::Modules);
        assert_eq!(b.main().name, "worker.js");
        assert_eq!(b.get("a.txt").unwrap().data, "héllo".as_bytes());
        assert_eq!(b.get("b.bin").unwrap().kind, Kind::Data);
        assert!(b.get("c").is_none());
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = sample();
        for cut in 0..bytes.len() {
            assert!(Bundle::parse(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn bad_headers_are_named() {
        assert_eq!(Bundle::parse(b"XJSB\x01\x00"), Err(BundleError::BadMagic));
        assert_eq!(
            Bundle::parse(b"TJSB\x02\x00\0\0\0\0"),
            Err(BundleError::BadVersion(2))
        );
        assert_eq!(
            Bundle::parse(b"TJSB\x01\x07\0\0\0\0"),
            Err(BundleError::BadFormat(7))
        );
        assert_eq!(
            Bundle::parse(b"TJSB\x01\x00\0\0\0\0"),
            Err(BundleError::Empty)
        );
        assert_eq!(
            Bundle::parse(b"TJSB\x01\x00\x01\0\0\0\x09\0\0\0\0\0\0\0\0"),
            Err(BundleError::BadKind(9))
        );
        // A huge count with no entries must not pre-allocate for the count.
        assert_eq!(
            Bundle::parse(b"TJSB\x01\x00\xff\xff\xff\xff"),
            Err(BundleError::Truncated)
        );
    }
}
