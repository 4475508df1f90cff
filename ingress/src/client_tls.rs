//! TLS for subrequests: the node's rustls client configuration and the errors a Worker sees when
//! an `https://` upstream cannot be trusted.
//!
//! One [`ClientConfig`] is built at start and shared (`Arc`) by every core's [`Client`]. Its
//! session cache is rustls' default in-memory one (256 sessions), which lives *inside* that
//! config: so a session ticket one core received resumes a handshake on any core of the node.
//! The cache is behind a mutex, touched once per handshake, never per request.
//!
//! Certificates are verified by rustls' webpki verifier against the bundled Mozilla roots
//! (`webpki-roots`) plus the operator's own CAs (`[subrequests] ca_file`). The name checked is
//! the URL's host, never the resolved address; an IP-literal host is checked against the
//! certificate's IP SANs. Only TLS 1.2 and 1.3 are offered.
//!
//! [`Client`]: crate::client::Client

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use rustls::{CertificateError, ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

/// The node's TLS client configuration: bundled web PKI roots plus `extra_ca_pem` (the
/// operator's `ca_file`, one or more PEM certificates), if any.
pub fn client_config(extra_ca_pem: Option<&[u8]>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(pem) = extra_ca_pem {
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| format!("not a PEM certificate file: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("a certificate in it is not a usable CA: {e}"))?;
            added += 1;
        }
        if added == 0 {
            return Err("it holds no PEM `CERTIFICATE` block".into());
        }
    }
    let provider = Arc::new(crate::tls::provider().clone());
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The name a TLS connection to `host` (the URL's host, lower-cased, brackets stripped) is sent
/// (SNI, for a DNS name) and verified against.
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_string())
        .map_err(|_| format!("`{host}` is not a host name a TLS certificate can be checked for"))
}

/// What went wrong in a TLS handshake with `host` at `addr`, in words a Worker's author can act
/// on: an untrusted issuer, a name mismatch and an expired certificate each say so; anything else
/// is a handshake failure with rustls' reason.
pub(crate) fn handshake_failure(host: &str, addr: SocketAddr, e: &io::Error) -> String {
    let rustls_error = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    let Some(err) = rustls_error else {
        let why = if e.kind() == io::ErrorKind::UnexpectedEof {
            "the server closed the connection".to_string()
        } else {
            e.to_string()
        };
        return format!("TLS handshake with `{host}` ({addr}) failed: {why}");
    };
    match err {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer => format!(
                "the TLS certificate of `{host}` ({addr}) is not trusted: it is not issued by a \
                 known certificate authority (an operator can add one in [subrequests] ca_file)"
            ),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!(
                    "the TLS certificate of {addr} does not match the host name: it is not valid \
                     for `{host}`"
                )
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                format!("the TLS certificate of `{host}` ({addr}) has expired")
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                format!("the TLS certificate of `{host}` ({addr}) is not valid yet")
            }
            other => format!("the TLS certificate of `{host}` ({addr}) is invalid: {other}"),
        },
        other => format!("TLS handshake with `{host}` ({addr}) failed: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operator_ca_file_must_hold_certificates() {
        assert!(client_config(None).is_ok());
        let e = client_config(Some(b"not pem at all")).unwrap_err();
        assert!(e.contains("no PEM"), "{e}");
        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".into()]).unwrap();
        assert!(client_config(Some(ca.cert.pem().as_bytes())).is_ok());
        let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(client_config(Some(garbage.as_bytes())).is_err());
    }

    #[test]
    fn ip_literal_hosts_are_checked_as_addresses() {
        assert!(matches!(
            server_name("127.0.0.1").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("::1").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("api.example.com").unwrap(),
            ServerName::DnsName(_)
        ));
        assert!(server_name("bad name").is_err());
    }
}
