//! The data plane's TLS certificates: PEM files named in `[server.tls]`, plus certificates the
//! admin API stores in the data directory, loaded together into the [`CertificateSet`] that
//! handshakes choose from. A reload (SIGHUP, or the admin API) reads every file again and swaps
//! the new set in whole; if any file is unreadable or wrong the old set stays and the error is
//! returned.
//!
//! Certificates uploaded through the admin API live in `<data_dir>/certificates/`, one file per
//! hostname pattern holding the chain and then the key, written to a temporary file, synced and
//! renamed, so a crash leaves the old file or the new one and never half of each:
//!
//! ```text
//!  <data_dir>/certificates/shop.example.com.pem    (mode 0600)
//!  <data_dir>/certificates/_.example.com.pem       (`*.example.com`: `_` is no hostname character)
//!      -----BEGIN CERTIFICATE-----   leaf, then intermediates
//!      -----BEGIN PRIVATE KEY-----   the leaf's key
//! ```

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tenantry_ingress::tls::{
    CertificateError, DEFAULT_HANDSHAKE_TIMEOUT, certificate_chain, certified_key,
};
use tenantry_ingress::{CertificateSet, Certificates, TlsListener};

/// The folder under the data directory that holds admin-managed certificates.
pub const CERTIFICATES_DIR: &str = "certificates";

/// Largest PEM (chain plus key) the admin API accepts for one hostname: a long chain of
/// 4096-bit RSA certificates is ~10 KiB; this leaves room and bounds what a client can store.
pub const MAX_PEM_BYTES: usize = 64 << 10;

/// A certificate chain and its key, as files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PemFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `[[server.tls.certificate]]`: one certificate served for several hostname patterns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCertificate {
    pub hosts: Vec<String>,
    pub files: PemFiles,
}

/// `[server.tls]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// Where the data plane accepts TLS, beside the plain listener.
    pub addr: std::net::SocketAddr,
    /// From accept to the end of the handshake ([`DEFAULT_HANDSHAKE_TIMEOUT`]).
    pub handshake_timeout: Duration,
    /// Served when no hostname matches (and to clients without SNI); none: such handshakes fail.
    pub default: Option<PemFiles>,
    pub certificates: Vec<HostCertificate>,
}

impl TlsConfig {
    pub fn new(addr: std::net::SocketAddr) -> TlsConfig {
        TlsConfig {
            addr,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            default: None,
            certificates: Vec::new(),
        }
    }
}

/// Why certificates could not be loaded or stored; the admin API maps each to a status.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Invalid {
        path: PathBuf,
        source: CertificateError,
    },
    /// An upload that is not a usable certificate and key.
    #[error(transparent)]
    Rejected(#[from] CertificateError),
    #[error("writing {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no certificate stored for `{0}`")]
    NotFound(String),
}

/// What the admin API shows of a certificate: never its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    /// The hostname pattern, lower-case (`shop.example.com`, `*.example.com`).
    pub host: String,
    /// Hex SHA-256 of the leaf certificate's DER, as browsers show it.
    pub fingerprint_sha256: String,
    /// Certificates in the chain, leaf included.
    pub chain_length: usize,
    /// The leaf first, PEM.
    pub certificate_pem: String,
    /// Milliseconds since the Unix epoch.
    pub modified_on: i64,
}

/// The node's certificates: their sources, and the live set the TLS listeners read.
pub struct CertificateStore {
    config: TlsConfig,
    dir: PathBuf,
    live: Arc<Certificates>,
    /// Serialises reloads and changes, so two reloads never swap in each other's stale reads.
    lock: Mutex<()>,
}

impl CertificateStore {
    /// Loads every certificate `config` names and the data directory holds; fails on the first
    /// unreadable or invalid one.
    pub fn open(config: &TlsConfig, data_dir: &Path) -> Result<CertificateStore, StoreError> {
        let dir = data_dir.join(CERTIFICATES_DIR);
        let set = load(config, &dir)?;
        Ok(CertificateStore {
            config: config.clone(),
            dir,
            live: Certificates::new(set),
            lock: Mutex::new(()),
        })
    }

    /// The listener settings for the data plane's server, sharing this store's live set.
    pub fn listener(&self) -> TlsListener {
        TlsListener {
            addr: self.config.addr,
            certificates: self.live.clone(),
            handshake_timeout: self.config.handshake_timeout,
        }
    }

    /// Reads every file again and swaps the result in; on an error the current set stays.
    /// Returns how many hostname patterns now have a certificate.
    pub fn reload(&self) -> Result<usize, StoreError> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.reload_locked()
    }

    fn reload_locked(&self) -> Result<usize, StoreError> {
        let set = load(&self.config, &self.dir)?;
        let hosts = set.len();
        self.live.replace(set);
        Ok(hosts)
    }

    /// Validates `cert_pem` and `key_pem` for `host`, stores them durably and serves them to
    /// new handshakes. Replaces what was stored for the same pattern.
    pub fn put(
        &self,
        host: &str,
        cert_pem: &str,
        key_pem: &str,
    ) -> Result<CertificateInfo, StoreError> {
        let (name, wildcard) = tenantry_ingress::tls::parse_host_pattern(host)?;
        certified_key(cert_pem.as_bytes(), key_pem.as_bytes())?;
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let write_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StoreError::Write { path, source }
        };
        std::fs::create_dir_all(&self.dir).map_err(write_err(&self.dir))?;
        let path = self.dir.join(file_name(&name, wildcard));
        let tmp = path.with_extension("pem.tmp");
        let mut text = cert_pem.trim_end().to_string();
        text.push('\n');
        text.push_str(key_pem.trim_end());
        text.push('\n');
        let written = (|| {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(&self.dir)?.sync_all()
        })();
        if let Err(source) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(StoreError::Write { path, source });
        }
        self.reload_locked()?;
        info(&pattern(&name, wildcard), &path)
    }

    /// Removes the stored certificate for `host`; new handshakes for it get the next match
    /// (a wildcard, the config's, or the default).
    pub fn delete(&self, host: &str) -> Result<(), StoreError> {
        let (name, wildcard) = tenantry_ingress::tls::parse_host_pattern(host)?;
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let path = self.dir.join(file_name(&name, wildcard));
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound(pattern(&name, wildcard)));
            }
            Err(source) => return Err(StoreError::Write { path, source }),
        }
        self.reload_locked()?;
        Ok(())
    }

    /// The certificate stored for `host`.
    pub fn get(&self, host: &str) -> Result<CertificateInfo, StoreError> {
        let (name, wildcard) = tenantry_ingress::tls::parse_host_pattern(host)?;
        let path = self.dir.join(file_name(&name, wildcard));
        if !path.exists() {
            return Err(StoreError::NotFound(pattern(&name, wildcard)));
        }
        info(&pattern(&name, wildcard), &path)
    }

    /// Every certificate stored through the admin API, by hostname pattern.
    pub fn list(&self) -> Result<Vec<CertificateInfo>, StoreError> {
        let mut out = Vec::new();
        for (host, path) in stored(&self.dir)? {
            out.push(info(&host, &path)?);
        }
        out.sort_by(|a, b| a.host.cmp(&b.host));
        Ok(out)
    }
}

/// `*.example.com` is stored as `_.example.com.pem`.
fn file_name(name: &str, wildcard: bool) -> String {
    if wildcard {
        format!("_.{name}.pem")
    } else {
        format!("{name}.pem")
    }
}

fn pattern(name: &str, wildcard: bool) -> String {
    if wildcard {
        format!("*.{name}")
    } else {
        name.to_string()
    }
}

/// The stored certificates' hostname patterns and files; temporary and foreign files are skipped.
fn stored(dir: &Path) -> Result<Vec<(String, PathBuf)>, StoreError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(StoreError::Read {
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| StoreError::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        let file = entry.file_name();
        let Some(stem) = file.to_str().and_then(|f| f.strip_suffix(".pem")) else {
            continue;
        };
        let host = match stem.strip_prefix("_.") {
            Some(parent) => format!("*.{parent}"),
            None => stem.to_string(),
        };
        if tenantry_ingress::tls::parse_host_pattern(&host).is_ok() {
            out.push((host, entry.path()));
        }
    }
    Ok(out)
}

fn read(path: &Path) -> Result<Vec<u8>, StoreError> {
    std::fs::read(path).map_err(|source| StoreError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn invalid(path: &Path) -> impl FnOnce(CertificateError) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Invalid { path, source }
}

/// Builds a set from the config's files, then the data directory's (which win for a hostname
/// both name: the API is the later word).
fn load(config: &TlsConfig, dir: &Path) -> Result<CertificateSet, StoreError> {
    let mut set = CertificateSet::default();
    if let Some(files) = &config.default {
        let key =
            certified_key(&read(&files.cert)?, &read(&files.key)?).map_err(invalid(&files.cert))?;
        set.set_default(key);
    }
    for c in &config.certificates {
        let key = certified_key(&read(&c.files.cert)?, &read(&c.files.key)?)
            .map_err(invalid(&c.files.cert))?;
        for host in &c.hosts {
            set.insert(host, key.clone())
                .map_err(invalid(&c.files.cert))?;
        }
    }
    for (host, path) in stored(dir)? {
        let pem = read(&path)?;
        let key = certified_key(&pem, &pem).map_err(invalid(&path))?;
        set.insert(&host, key).map_err(invalid(&path))?;
    }
    Ok(set)
}

fn info(host: &str, path: &Path) -> Result<CertificateInfo, StoreError> {
    let pem = read(path)?;
    let chain = certificate_chain(&pem).map_err(invalid(path))?;
    let leaf = &chain[0];
    // The PEM text up to the key: the chain as uploaded.
    let text = String::from_utf8_lossy(&pem);
    let end = text
        .rfind("-----END CERTIFICATE-----")
        .map_or(0, |i| i + "-----END CERTIFICATE-----".len());
    let modified_on = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as i64);
    Ok(CertificateInfo {
        host: host.to_string(),
        fingerprint_sha256: hex::encode(Sha256::digest(leaf.as_ref())),
        chain_length: chain.len(),
        certificate_pem: format!("{}\n", &text[..end]),
        modified_on,
    })
}
