//! TLS termination for the data plane: certificates chosen by SNI, swapped atomically on reload.
//!
//! ```text
//!  ClientHello ─► Certificates::resolve ─► current CertificateSet (ArcSwap)
//!                   exact host ─► *.parent (one label) ─► default ─► none: handshake alert
//! ```
//!
//! A reload builds a whole new [`CertificateSet`] and swaps it in; a handshake already past
//! `resolve` keeps the key it was given, and an established connection never looks again, so
//! replacing certificates drops nothing.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use monoio::BufResult;
use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::net::TcpStream;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The only application protocol offered in ALPN: the server speaks HTTP/1.1 alone, and a client
/// that offers ALPN without it is refused with `no_application_protocol` (RFC 7301 §3.2).
pub const ALPN_HTTP_1_1: &[u8] = b"http/1.1";

/// Default bound on a TLS handshake, from accept to the last handshake message: a client that
/// stalls mid-ClientHello holds a connection slot and a rustls state for at most this long.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS listener that runs beside the plain one on every core.
#[derive(Debug, Clone)]
pub struct TlsListener {
    /// The listening address; port 0 picks a free port (every core then shares it).
    pub addr: SocketAddr,
    /// The certificates handshakes choose from; replace its set to reload.
    pub certificates: Arc<Certificates>,
    /// From accept to the end of the handshake ([`DEFAULT_HANDSHAKE_TIMEOUT`]); past it the
    /// connection is closed without a response (there is no HTTP to answer with yet).
    pub handshake_timeout: Duration,
}

/// Why a certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateError {
    #[error("no PEM `CERTIFICATE` block found")]
    NoCertificate,
    #[error("reading the certificate PEM: {0}")]
    CertificatePem(rustls_pki_types::pem::Error),
    #[error(
        "no private key PEM block found (expected PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)"
    )]
    NoKey,
    #[error("reading the private key PEM: {0}")]
    KeyPem(rustls_pki_types::pem::Error),
    /// Unsupported key type, or a key that is not the certificate's.
    #[error("the key does not fit the certificate: {0}")]
    Key(rustls::Error),
    #[error(
        "hostname `{0}`: expected a DNS name (letters, digits, `-`, `.`) or `*.` followed by one"
    )]
    Hostname(String),
}

/// Parses a PEM certificate chain (leaf first) and its PEM private key, and checks that the key
/// is the leaf's.
pub fn certified_key(
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<CertifiedKey>, CertificateError> {
    let chain = certificate_chain(cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => CertificateError::NoKey,
        e => CertificateError::KeyPem(e),
    })?;
    CertifiedKey::from_der(chain, key, provider())
        .map(Arc::new)
        .map_err(CertificateError::Key)
}

/// The PEM certificates in `pem` (a chain, leaf first); at least one.
pub fn certificate_chain(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, CertificateError> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| match e {
            rustls_pki_types::pem::Error::NoItemsFound => CertificateError::NoCertificate,
            e => CertificateError::CertificatePem(e),
        })?;
    if chain.is_empty() {
        return Err(CertificateError::NoCertificate);
    }
    Ok(chain)
}

/// The crypto provider of both sides of TLS (the data plane and subrequests): `ring`, which
/// builds without cmake (aws-lc-rs needs it). Named rather than taken from the process default,
/// so that another crate enabling a second provider cannot make the choice ambiguous at run time.
pub(crate) fn provider() -> &'static CryptoProvider {
    static PROVIDER: std::sync::OnceLock<CryptoProvider> = std::sync::OnceLock::new();
    PROVIDER.get_or_init(rustls::crypto::ring::default_provider)
}

/// A hostname pattern a certificate is served for: `shop.example.com`, or `*.example.com`
/// (exactly one label in place of the star, as certificate wildcards match; RFC 6125 §6.4.3).
/// Returns the lower-cased name and whether it is a wildcard.
pub fn parse_host_pattern(host: &str) -> Result<(String, bool), CertificateError> {
    let lower = host.to_ascii_lowercase();
    let (name, wildcard) = match lower.strip_prefix("*.") {
        Some(parent) => (parent, true),
        None => (lower.as_str(), false),
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(CertificateError::Hostname(host.to_string()));
    }
    Ok((name.to_string(), wildcard))
}

/// One generation of certificates: what a handshake picks from.
#[derive(Clone, Default)]
pub struct CertificateSet {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` is stored under `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

impl CertificateSet {
    /// Serves `key` for `host` (a name or a `*.` wildcard, see [`parse_host_pattern`]); a later
    /// insert for the same pattern replaces an earlier one.
    pub fn insert(&mut self, host: &str, key: Arc<CertifiedKey>) -> Result<(), CertificateError> {
        let (name, wildcard) = parse_host_pattern(host)?;
        if wildcard {
            self.wildcard.insert(name, key);
        } else {
            self.exact.insert(name, key);
        }
        Ok(())
    }

    /// Serves `key` when no hostname matches, and to clients that send no SNI.
    pub fn set_default(&mut self, key: Arc<CertifiedKey>) {
        self.default = Some(key);
    }

    /// The certificate for a ClientHello's server name: the exact name, else the wildcard for
    /// its parent, else the default.
    pub fn resolve(&self, server_name: Option<&str>) -> Option<&Arc<CertifiedKey>> {
        if let Some(name) = server_name {
            // rustls hands over a validated DNS name; lower-case it only if it is not already.
            let lower;
            let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
                lower = name.to_ascii_lowercase();
                lower.as_str()
            } else {
                name
            };
            if let Some(key) = self.exact.get(name) {
                return Some(key);
            }
            if let Some((_, parent)) = name.split_once('.')
                && let Some(key) = self.wildcard.get(parent)
            {
                return Some(key);
            }
        }
        self.default.as_ref()
    }

    /// How many hostname patterns have a certificate (the default not counted).
    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0 && self.default.is_none()
    }
}

impl fmt::Debug for CertificateSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut hosts: Vec<String> = self.exact.keys().cloned().collect();
        hosts.extend(self.wildcard.keys().map(|p| format!("*.{p}")));
        hosts.sort();
        f.debug_struct("CertificateSet")
            .field("hosts", &hosts)
            .field("default", &self.default.is_some())
            .finish()
    }
}

/// The certificates of a node, shared by every core's TLS listener. `resolve` reads the current
/// set without locking; [`Certificates::replace`] swaps in a new one.
pub struct Certificates {
    current: ArcSwap<CertificateSet>,
}

impl Certificates {
    pub fn new(set: CertificateSet) -> Arc<Certificates> {
        Arc::new(Certificates {
            current: ArcSwap::from_pointee(set),
        })
    }

    /// Makes `set` the one new handshakes choose from; handshakes and connections already
    /// under way keep theirs.
    pub fn replace(&self, set: CertificateSet) {
        self.current.store(Arc::new(set));
    }

    /// The set new handshakes choose from now.
    pub fn current(&self) -> Arc<CertificateSet> {
        self.current.load_full()
    }

    /// The rustls configuration the listeners serve: TLS 1.2 and 1.3 with `ring`'s safe
    /// defaults, no client certificates, certificates from `self`, ALPN `http/1.1`. Built once
    /// and shared by every core, so that a client resuming a session may land on any core
    /// (`SO_REUSEPORT` picks one): resumption uses stateless tickets, encrypted under a key the
    /// ticketer rotates every 6 hours (tickets live 12) and held in memory only (a restart
    /// forgets them).
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider().clone()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
        config.ticketer = rustls::crypto::ring::Ticketer::new()?;
        Ok(Arc::new(config))
    }
}

impl fmt::Debug for Certificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self.current.load(), f)
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current
            .load()
            .resolve(client_hello.server_name())
            .cloned()
    }
}

/// A server-side TLS stream over TCP that fails, rather than panics, when used after a read or
/// write was cancelled.
///
/// `monoio-rustls` moves its record buffer into the kernel operation and puts it back when the
/// operation completes; a future dropped mid-operation (a timeout, a `select!`) leaves it taken,
/// and the next read or write would panic on the missing buffer. The server never uses a stream
/// again after a cancelled operation (each timeout closes the connection), and this guard keeps
/// it that way should that ever change: a later call gets an error and the connection closes.
pub struct TlsStream {
    inner: monoio_rustls::ServerTlsStream<TcpStream>,
    /// Set while an operation runs; still set after one was cancelled.
    busy: bool,
}

impl TlsStream {
    pub(crate) fn new(inner: monoio_rustls::ServerTlsStream<TcpStream>) -> TlsStream {
        TlsStream { inner, busy: false }
    }

    fn poisoned() -> io::Error {
        io::Error::other("TLS stream used after a cancelled operation")
    }
}

impl AsyncReadRent for TlsStream {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        if self.busy {
            return (Err(Self::poisoned()), buf);
        }
        self.busy = true;
        let result = self.inner.read(buf).await;
        self.busy = false;
        result
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        if self.busy {
            return (Err(Self::poisoned()), buf);
        }
        self.busy = true;
        let result = self.inner.readv(buf).await;
        self.busy = false;
        result
    }
}

impl AsyncWriteRent for TlsStream {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        if self.busy {
            return (Err(Self::poisoned()), buf);
        }
        self.busy = true;
        let result = self.inner.write(buf).await;
        self.busy = false;
        result
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        if self.busy {
            return (Err(Self::poisoned()), buf);
        }
        self.busy = true;
        let result = self.inner.writev(buf).await;
        self.busy = false;
        result
    }

    async fn flush(&mut self) -> io::Result<()> {
        if self.busy {
            return Err(Self::poisoned());
        }
        self.busy = true;
        let result = self.inner.flush().await;
        self.busy = false;
        result
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        if self.busy {
            return Err(Self::poisoned());
        }
        self.busy = true;
        let result = self.inner.shutdown().await;
        self.busy = false;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns() {
        assert_eq!(
            parse_host_pattern("Shop.Example.com").unwrap(),
            ("shop.example.com".into(), false)
        );
        assert_eq!(
            parse_host_pattern("*.example.com").unwrap(),
            ("example.com".into(), true)
        );
        for bad in [
            "",
            "*.",
            "*",
            "a..b",
            "-a.com",
            "a b.com",
            "*.*.com",
            "a.*.com",
            "ex_ample.com",
        ] {
            assert!(parse_host_pattern(bad).is_err(), "{bad:?} accepted");
        }
    }
}
