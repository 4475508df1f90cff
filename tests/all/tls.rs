//! The HTTPS data plane: certificates chosen by SNI, reloads under traffic, certificates managed
//! through the admin API, and hostile handshakes. Certificates come from a test CA made with
//! `rcgen`; the client is rustls over std sockets.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};
use serde_json::{Value, json};

use crate::admin::{admin, api, get_api, json_req};
use crate::common::*;

// ---- a test CA ----

/// A certificate authority for one test.
pub(crate) struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A leaf certificate and its key, as PEM, and the leaf's DER to compare with what a handshake
/// presented.
#[derive(Clone)]
pub(crate) struct Leaf {
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
    pub(crate) der: Vec<u8>,
}

impl Ca {
    pub(crate) fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "tenantry test CA");
        Ca {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    /// A certificate for `hosts` (names or `*.` wildcards), signed by this CA.
    pub(crate) fn issue(&self, hosts: &[&str]) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }

    fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.issuer.der().clone()).unwrap();
        roots
    }
}

impl Leaf {
    /// Writes the certificate and key to `dir/{name}.crt` and `dir/{name}.key`.
    fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        replace_file(&cert, &self.cert_pem);
        replace_file(&key, &self.key_pem);
        (cert, key)
    }
}

/// Replaces a file the way deploy tools do: write beside it, then rename over it.
fn replace_file(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

// ---- a rustls client ----

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Accepts any certificate (so that a test can see which one a name got) and checks only the
/// handshake signatures.
#[derive(Debug)]
struct AnyCertificate;

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client configuration that verifies the server against `ca`, or (`None`) accepts anything.
fn client_config(ca: Option<&Ca>) -> Arc<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let mut config = match ca {
        Some(ca) => builder.with_root_certificates(ca.roots()),
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate)),
    }
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// An HTTPS connection with its handshake done.
struct Tls {
    stream: rustls::StreamOwned<ClientConnection, TcpStream>,
    buf: Vec<u8>,
}

impl Tls {
    /// Connects and completes the handshake for `sni`.
    fn connect(addr: SocketAddr, sni: &str, config: &Arc<ClientConfig>) -> Result<Tls, String> {
        let sock = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        sock.set_nodelay(true).unwrap();
        let name = ServerName::try_from(sni.to_string()).unwrap();
        let conn = ClientConnection::new(config.clone(), name).unwrap();
        let mut stream = rustls::StreamOwned::new(conn, sock);
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut stream.sock)
                .map_err(|e| e.to_string())?;
        }
        Ok(Tls {
            stream,
            buf: Vec::new(),
        })
    }

    /// The leaf certificate the server presented.
    fn leaf(&self) -> Vec<u8> {
        self.stream.conn.peer_certificates().unwrap()[0].to_vec()
    }

    fn alpn(&self) -> Option<Vec<u8>> {
        self.stream.conn.alpn_protocol().map(<[u8]>::to_vec)
    }

    /// Sends a GET and reads its (Content-Length framed) response.
    fn get(&mut self, host: &str, path: &str, close: bool) -> Result<Resp, String> {
        let connection = if close { "close" } else { "keep-alive" };
        let req =
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: {connection}\r\n\r\n");
        self.stream
            .write_all(req.as_bytes())
            .map_err(|e| format!("writing: {e}"))?;
        self.read_response()
    }

    fn read_response(&mut self) -> Result<Resp, String> {
        loop {
            if let Some(resp) = take_response(&mut self.buf, false)? {
                return Ok(resp);
            }
            self.fill()?;
        }
    }

    fn fill(&mut self) -> Result<(), String> {
        let mut chunk = [0u8; 16 << 10];
        let n = loop {
            match self.stream.read(&mut chunk) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("reading: {e}")),
                Ok(n) => break n,
            }
        };
        if n == 0 {
            return Err("closed before a whole response".into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

/// The leaf certificate the node presents for `sni`, or why the handshake failed.
fn served_leaf(addr: SocketAddr, sni: &str) -> Result<Vec<u8>, String> {
    Tls::connect(addr, sni, &client_config(None)).map(|t| t.leaf())
}

// ---- nodes ----

/// The `hello` Worker answering every host, plus `tls` (a `[server.tls]` table body).
fn tls_node(tls: &str) -> TestNode {
    tls_node_with_driver(tls, "auto")
}

fn tls_node_with_driver(tls: &str, driver: &str) -> TestNode {
    TestNode::start_with_driver(
        &format!(
            "[server.tls]\nlisten = \"127.0.0.1:0\"\n{tls}\n\
         [[namespace]]\nname = \"production\"\n{}\
         [[route]]\nnamespace = \"production\"\nscript = \"alice\"\n",
            worker("production", "alice", "hello", "")
        ),
        driver,
    )
}

fn tls_addr(node: &TestNode) -> SocketAddr {
    node.node
        .as_ref()
        .unwrap()
        .tls_addr()
        .expect("a TLS listener")
}

/// A `[server.tls]` body with `default` as the default certificate and `hosts` each its own.
pub(crate) fn tls_table(dir: &Path, default: Option<&Leaf>, hosts: &[(&str, &Leaf)]) -> String {
    let mut out = String::new();
    if let Some(leaf) = default {
        let (cert, key) = leaf.write(dir, "default");
        out.push_str(&format!(
            "cert = \"{}\"\nkey = \"{}\"\n",
            cert.display(),
            key.display()
        ));
    }
    for (i, (host, leaf)) in hosts.iter().enumerate() {
        let (cert, key) = leaf.write(dir, &format!("host-{i}"));
        out.push_str(&format!(
            "[[server.tls.certificate]]\nhosts = [\"{host}\"]\ncert = \"{}\"\nkey = \"{}\"\n",
            cert.display(),
            key.display()
        ));
    }
    out
}

// ---- tests ----

#[test]
fn sni_picks_the_certificate_for_each_hostname() {
    let ca = Ca::new();
    let files = tempfile::tempdir().unwrap();
    let default = ca.issue(&["default.test"]);
    let shop = ca.issue(&["shop.example.test"]);
    let blog = ca.issue(&["blog.example.test"]);
    let wild = ca.issue(&["*.tenants.test"]);
    let table = tls_table(
        files.path(),
        Some(&default),
        &[
            ("shop.example.test", &shop),
            ("blog.example.test", &blog),
            ("*.tenants.test", &wild),
        ],
    );
    let node = tls_node(&table);
    let addr = tls_addr(&node);
    assert_eq!(served_leaf(addr, "shop.example.test").unwrap(), shop.der);
    assert_eq!(served_leaf(addr, "blog.example.test").unwrap(), blog.der);
    assert_eq!(served_leaf(addr, "SHOP.Example.test").unwrap(), shop.der);
    assert_eq!(served_leaf(addr, "alice.tenants.test").unwrap(), wild.der);
    // A wildcard stands for one label only.
    assert_eq!(served_leaf(addr, "a.b.tenants.test").unwrap(), default.der);
    assert_eq!(served_leaf(addr, "tenants.test").unwrap(), default.der);
    assert_eq!(served_leaf(addr, "unknown.test").unwrap(), default.der);
    // A client that checks names against the CA accepts the certificates it was given.
    let verified = client_config(Some(&ca));
    for host in ["shop.example.test", "blog.example.test", "x.tenants.test"] {
        let mut tls = Tls::connect(addr, host, &verified).unwrap();
        assert_eq!(tls.get(host, "/", true).unwrap().status, 200);
    }
}

#[test]
fn unknown_sni_without_a_default_fails_the_handshake() {
    let ca = Ca::new();
    let files = tempfile::tempdir().unwrap();
    let shop = ca.issue(&["shop.example.test"]);
    let node = tls_node(&tls_table(
        files.path(),
        None,
        &[("shop.example.test", &shop)],
    ));
    let addr = tls_addr(&node);
    assert_eq!(served_leaf(addr, "shop.example.test").unwrap(), shop.der);
    let err = served_leaf(addr, "unknown.test").unwrap_err();
    assert!(err.contains("alert"), "expected an alert, got: {err}");
}

#[test]
fn tls_answers_like_plain_http_with_alpn() {
    // io_uring where the kernel allows it, and epoll.
    for driver in ["auto", "legacy"] {
        answers_like_plain(driver);
    }
}

fn answers_like_plain(driver: &str) {
    let ca = Ca::new();
    let files = tempfile::tempdir().unwrap();
    let default = ca.issue(&["alice.example.test"]);
    let node = tls_node_with_driver(&tls_table(files.path(), Some(&default), &[]), driver);
    let plain = get(node.addr, "alice.example.test", "/hello");
    let mut tls = Tls::connect(
        tls_addr(&node),
        "alice.example.test",
        &client_config(Some(&ca)),
    )
    .unwrap();
    assert_eq!(tls.alpn().as_deref(), Some(&b"http/1.1"[..]));
    // Several requests on one kept-alive connection, then one that closes it.
    for _ in 0..3 {
        let secure = tls.get("alice.example.test", "/hello", false).unwrap();
        assert_eq!((secure.status, secure.text()), (plain.status, plain.text()));
        assert_eq!(secure.header("x-worker"), plain.header("x-worker"));
    }
    let last = tls.get("alice.example.test", "/hello", true).unwrap();
    assert_eq!(last.header("connection"), Some("close"));
    assert_eq!(plain.status, 200);
    // The same framing rules apply: a malformed request gets the same 400 over TLS.
    tls = Tls::connect(
        tls_addr(&node),
        "alice.example.test",
        &client_config(Some(&ca)),
    )
    .unwrap();
    tls.stream
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
        .unwrap();
    let bad = tls.read_response().unwrap();
    let mut conn = Conn::open(node.addr);
    conn.send(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n");
    let plain_bad = conn.read_response(false);
    assert_eq!(
        (bad.status, bad.text()),
        (plain_bad.status, plain_bad.text())
    );
    assert_eq!(bad.status, 400);
}

#[test]
fn sessions_resume_on_any_core() {
    let ca = Ca::new();
    let files = tempfile::tempdir().unwrap();
    let node = tls_node(&tls_table(files.path(), Some(&ca.issue(&["a.test"])), &[]));
    // One client configuration keeps the tickets the server sent; the node runs two cores and
    // the kernel spreads the connections between them.
    let config = client_config(Some(&ca));
    for i in 0..6 {
        let mut tls = Tls::connect(tls_addr(&node), "a.test", &config).unwrap();
        let kind = tls.stream.conn.handshake_kind();
        let expected = if i == 0 {
            rustls::HandshakeKind::Full
        } else {
            rustls::HandshakeKind::Resumed
        };
        assert_eq!(kind, Some(expected), "connection {i}");
        // The response brings the session tickets along.
        assert_eq!(tls.get("a.test", "/", true).unwrap().status, 200);
    }
}

#[test]
fn a_client_offering_only_other_protocols_is_refused() {
    let ca = Ca::new();
    let files = tempfile::tempdir().unwrap();
    let node = tls_node(&tls_table(files.path(), Some(&ca.issue(&["a.test"])), &[]));
    let mut config = (*client_config(None)).clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    // rustls sends `no_application_protocol` and closes; the client may see the alert or, if
    // the close overtakes it, a reset.
    assert!(Tls::connect(tls_addr(&node), "a.test", &Arc::new(config)).is_err());
}

/// A client thread's tally while certificates change under it.
#[derive(Default)]
struct Traffic {
    ok: AtomicUsize,
    failed: AtomicUsize,
    errors: std::sync::Mutex<Vec<String>>,
}

impl Traffic {
    fn record(&self, result: Result<Resp, String>) {
        match result {
            Ok(r) if r.status == 200 => {
                self.ok.fetch_add(1, Ordering::Relaxed);
            }
            Ok(r) => self.fail(format!("status {}: {}", r.status, r.text())),
            Err(e) => self.fail(e),
        }
    }

    fn fail(&self, e: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        self.errors.lock().unwrap().push(e);
    }
}

/// Sends requests until `stop`: on one kept-alive connection, and each on a new connection.
fn traffic(
    addr: SocketAddr,
    ca: &Ca,
    stop: Arc<AtomicBool>,
    tally: Arc<Traffic>,
) -> Vec<std::thread::JoinHandle<()>> {
    let config = client_config(Some(ca));
    let kept = {
        let (config, stop, tally) = (config.clone(), stop.clone(), tally.clone());
        std::thread::spawn(move || {
            let mut tls = match Tls::connect(addr, "alice.example.test", &config) {
                Ok(t) => t,
                Err(e) => return tally.fail(e),
            };
            while !stop.load(Ordering::Relaxed) {
                tally.record(tls.get("alice.example.test", "/", false));
            }
        })
    };
    let fresh = std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let result = Tls::connect(addr, "alice.example.test", &config)
                .and_then(|mut t| t.get("alice.example.test", "/", true));
            tally.record(result);
        }
    });
    vec![kept, fresh]
}

#[test]
fn reload_under_traffic_fails_no_request_and_serves_the_new_certificate() {
    let ca = Ca::new();
    let files = tempfile::tempdir().unwrap();
    let first = ca.issue(&["alice.example.test"]);
    let table = tls_table(files.path(), Some(&first), &[]);
    let node = tls_node(&table);
    let addr = tls_addr(&node);
    assert_eq!(served_leaf(addr, "alice.example.test").unwrap(), first.der);

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Traffic::default());
    let clients = traffic(addr, &ca, stop.clone(), tally.clone());
    let wait_for_requests = |at_least: usize| {
        while tally.ok.load(Ordering::Relaxed) + tally.failed.load(Ordering::Relaxed) < at_least {
            std::thread::yield_now();
        }
    };
    wait_for_requests(20);

    // Replace the files, reload through the node (what SIGHUP does), then through the admin API.
    let second = ca.issue(&["alice.example.test"]);
    second.write(files.path(), "default");
    let hosts = node.node.as_ref().unwrap().reload_certificates().unwrap();
    assert_eq!(hosts, 0, "only a default certificate");
    assert_eq!(served_leaf(addr, "alice.example.test").unwrap(), second.der);
    let seen = tally.ok.load(Ordering::Relaxed);
    wait_for_requests(seen + 20);

    let third = ca.issue(&["alice.example.test"]);
    third.write(files.path(), "default");
    let (status, v) = api(admin(&node), "POST", CERTS, "", b"");
    assert_eq!(status, 405, "{v}");
    let (status, v) = api(admin(&node), "POST", RELOAD, "", b"");
    assert_eq!(status, 200, "{v}");
    assert_eq!(served_leaf(addr, "alice.example.test").unwrap(), third.der);
    let seen = tally.ok.load(Ordering::Relaxed);
    wait_for_requests(seen + 20);

    // A broken file on reload keeps the current certificates and says what is wrong.
    std::fs::write(files.path().join("default.key"), "not a key").unwrap();
    let (status, v) = api(admin(&node), "POST", RELOAD, "", b"");
    assert_eq!(status, 500, "{v}");
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("default.crt"),
        "{v}"
    );
    assert_eq!(served_leaf(addr, "alice.example.test").unwrap(), third.der);
    let seen = tally.ok.load(Ordering::Relaxed);
    wait_for_requests(seen + 20);

    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let errors = tally.errors.lock().unwrap();
    assert_eq!(
        tally.failed.load(Ordering::Relaxed),
        0,
        "failed requests: {errors:?}"
    );
    assert!(tally.ok.load(Ordering::Relaxed) >= 80);
}

const CERTS: &str = "/client/v4/accounts/acct-1/tls/certificates";
const RELOAD: &str = "/client/v4/accounts/acct-1/tls/reload";

#[test]
fn admin_uploaded_certificates_are_served_listed_without_keys_and_kept() {
    let ca = Ca::new();
    let files = tempfile::tempdir().unwrap();
    let default = ca.issue(&["default.test"]);
    let table = tls_table(files.path(), Some(&default), &[]);
    let mut node = tls_node(&table);
    let shop = ca.issue(&["shop.example.test"]);
    let wild = ca.issue(&["*.tenants.test"]);
    let upload = |node: &TestNode, host: &str, leaf: &Leaf| {
        json_req(
            admin(node),
            "PUT",
            &format!("{CERTS}/{host}"),
            json!({"certificate": leaf.cert_pem, "private_key": leaf.key_pem}),
        )
    };
    let (status, v) = upload(&node, "shop.example.test", &shop);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["result"]["hostname"], "shop.example.test");
    assert_eq!(v["result"]["chain_length"], 1);
    let (status, v) = upload(&node, "*.tenants.test", &wild);
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        served_leaf(tls_addr(&node), "shop.example.test").unwrap(),
        shop.der
    );
    assert_eq!(
        served_leaf(tls_addr(&node), "a.tenants.test").unwrap(),
        wild.der
    );

    let (status, list) = get_api(admin(&node), CERTS);
    assert_eq!(status, 200);
    let hosts: Vec<&str> = list["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["hostname"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["*.tenants.test", "shop.example.test"]);
    let (_, one) = get_api(admin(&node), &format!("{CERTS}/shop.example.test"));
    assert_eq!(
        one["result"]["certificate"].as_str().unwrap().trim(),
        shop.cert_pem.trim()
    );
    for text in [list.to_string(), one.to_string()] {
        assert!(!text.contains("PRIVATE KEY"), "a key was read back: {text}");
    }

    // Bad uploads get specific errors and change nothing.
    let other = ca.issue(&["shop.example.test"]);
    let (status, v) = json_req(
        admin(&node),
        "PUT",
        &format!("{CERTS}/shop.example.test"),
        json!({"certificate": shop.cert_pem, "private_key": other.key_pem}),
    );
    assert_eq!((status, error_code(&v)), (400, 10030), "{v}");
    assert!(message(&v).contains("does not fit"), "{v}");
    let (status, v) = upload(&node, "bad_host!", &shop);
    assert_eq!((status, error_code(&v)), (400, 10030), "{v}");
    let (status, v) = json_req(
        admin(&node),
        "PUT",
        &format!("{CERTS}/x.test"),
        json!({"certificate": "hello", "private_key": shop.key_pem}),
    );
    assert_eq!(status, 400, "{v}");
    assert!(message(&v).contains("CERTIFICATE"), "{v}");
    let (status, v) = api(
        admin(&node),
        "PUT",
        &format!("{CERTS}/x.test"),
        "application/json",
        b"{",
    );
    assert_eq!(status, 400, "{v}");
    assert_eq!(
        served_leaf(tls_addr(&node), "shop.example.test").unwrap(),
        shop.der
    );

    // Persisted: a restarted node serves them again.
    node.restart(&format!(
        "[server.tls]\nlisten = \"127.0.0.1:0\"\n{table}\n\
         [[namespace]]\nname = \"production\"\n{}\
         [[route]]\nnamespace = \"production\"\nscript = \"alice\"\n",
        worker("production", "alice", "hello", "")
    ));
    assert_eq!(
        served_leaf(tls_addr(&node), "shop.example.test").unwrap(),
        shop.der
    );
    assert_eq!(
        served_leaf(tls_addr(&node), "a.tenants.test").unwrap(),
        wild.der
    );

    // Deleted: the name falls back to the default.
    let (status, v) = api(
        admin(&node),
        "DELETE",
        &format!("{CERTS}/shop.example.test"),
        "",
        b"",
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        served_leaf(tls_addr(&node), "shop.example.test").unwrap(),
        default.der
    );
    let (status, v) = api(
        admin(&node),
        "DELETE",
        &format!("{CERTS}/shop.example.test"),
        "",
        b"",
    );
    assert_eq!(status, 404, "{v}");
}

#[test]
fn certificate_endpoints_without_tls_say_so() {
    let node = crate::admin::node();
    let (status, v) = get_api(admin(&node), CERTS);
    assert_eq!(status, 404, "{v}");
    assert!(message(&v).contains("[server.tls]"), "{v}");
}

#[test]
fn garbage_instead_of_a_client_hello_is_closed() {
    let ca = Ca::new();
    let files = tempfile::tempdir().unwrap();
    // A handshake timeout longer than the test's read timeout: only refusing the garbage closes
    // the connection in time.
    let table = tls_table(files.path(), Some(&ca.issue(&["a.test"])), &[]);
    let node = tls_node(&format!("{table}handshake_timeout_ms = 600000\n"));
    let mut sock = TcpStream::connect(tls_addr(&node)).unwrap();
    sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    sock.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .unwrap();
    let mut rest = Vec::new();
    sock.read_to_end(&mut rest)
        .expect("the server closes the connection");
    // At most a TLS alert record (content type 21), never an HTTP answer.
    assert!(rest.is_empty() || rest[0] == 21, "{rest:?}");
    // The node still serves.
    assert!(served_leaf(tls_addr(&node), "a.test").is_ok());
}

#[test]
fn a_stalled_handshake_is_closed_after_the_handshake_timeout() {
    let ca = Ca::new();
    let files = tempfile::tempdir().unwrap();
    let table = tls_table(files.path(), Some(&ca.issue(&["a.test"])), &[]);
    let node = tls_node(&format!("{table}handshake_timeout_ms = 200\n"));
    // Half of a real ClientHello, then nothing.
    let mut hello = Vec::new();
    let mut client =
        ClientConnection::new(client_config(None), ServerName::try_from("a.test").unwrap())
            .unwrap();
    client.write_tls(&mut hello).unwrap();
    let mut sock = TcpStream::connect(tls_addr(&node)).unwrap();
    sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    sock.write_all(&hello[..hello.len() / 2]).unwrap();
    let mut rest = Vec::new();
    sock.read_to_end(&mut rest)
        .expect("the server closes the stalled connection");
    assert!(rest.is_empty(), "{rest:?}");
}

#[test]
fn sighup_reloads_the_binarys_certificates() {
    use std::io::BufRead;
    let ca = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    let first = ca.issue(&["a.test"]);
    let table = tls_table(dir.path(), Some(&first), &[]);
    let body = format!(
        "[server.tls]\nlisten = \"127.0.0.1:0\"\n{table}\n\
         [[namespace]]\nname = \"production\"\n{}\
         [[route]]\nnamespace = \"production\"\nscript = \"alice\"\n",
        worker("production", "alice", "hello", "")
    );
    let path = dir.path().join("tenantry.toml");
    std::fs::write(&path, config_text(&body, "auto")).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .args(["serve", "--config"])
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let _plain = lines.next().unwrap().unwrap();
    let line = lines.next().unwrap().unwrap();
    let addr: SocketAddr = line
        .strip_prefix("tenantry listening on https://")
        .unwrap_or_else(|| panic!("unexpected: {line}"))
        .parse()
        .unwrap();
    let before = served_leaf(addr, "a.test");
    let second = ca.issue(&["a.test"]);
    second.write(dir.path(), "default");
    // SAFETY: plain FFI call with a valid pid and signal number.
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    // The reload runs on the binary's main thread: poll until new handshakes see it.
    let mut after = served_leaf(addr, "a.test");
    for _ in 0..2000 {
        if after.as_ref().is_ok_and(|l| *l == second.der) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
        after = served_leaf(addr, "a.test");
    }
    // SAFETY: as above.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(before.unwrap(), first.der);
    assert_eq!(after.unwrap(), second.der);
    assert!(status.success(), "serve exited with {status}");
}

fn error_code(v: &Value) -> u64 {
    v["errors"][0]["code"].as_u64().unwrap()
}

fn message(v: &Value) -> &str {
    v["errors"][0]["message"].as_str().unwrap()
}

#[test]
fn tls_config_errors_are_specific() {
    use tenantry::config::Config;
    let cases = [
        ("cert = \"a.crt\"\n", "missing field `listen`"),
        ("listen = \"nowhere\"\n", "server.tls.listen `nowhere`"),
        (
            "listen = \"127.0.0.1:0\"\ncert = \"a.crt\"\n",
            "`cert` and `key` go together",
        ),
        (
            "listen = \"127.0.0.1:0\"\nhandshake_timeout_ms = 0\n",
            "handshake_timeout_ms must be at least 1",
        ),
        (
            "listen = \"127.0.0.1:0\"\n[[server.tls.certificate]]\nhosts = [\"a_b.test\"]\ncert = \"a\"\nkey = \"b\"\n",
            "hostname `a_b.test`",
        ),
        (
            "listen = \"127.0.0.1:0\"\n[[server.tls.certificate]]\nhosts = []\ncert = \"a\"\nkey = \"b\"\n",
            "lists no hostname",
        ),
        (
            "listen = \"127.0.0.1:0\"\nciphers = []\n",
            "unknown field `ciphers`",
        ),
    ];
    for (tls, expected) in cases {
        let text = config_text(&format!("[server.tls]\n{tls}"), "auto");
        let err = Config::parse(&text, Path::new("t.toml"))
            .err()
            .unwrap_or_else(|| panic!("accepted: {tls}"))
            .to_string();
        assert!(err.contains(expected), "{tls}: {err}");
    }
    let same =
        "[server]\nlisten = \"127.0.0.1:18999\"\n[server.tls]\nlisten = \"127.0.0.1:18999\"\n";
    let err = Config::parse(same, Path::new("t.toml"))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("is also server.listen"), "{err}");
    // A file that is missing or not a certificate stops the start, naming it.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.crt"), "not PEM").unwrap();
    std::fs::write(dir.path().join("bad.key"), "not PEM").unwrap();
    for (cert, expected) in [
        ("missing.crt", "missing.crt"),
        ("bad.crt", "no PEM `CERTIFICATE`"),
    ] {
        let text = config_text(
            &format!(
                "[server.tls]\nlisten = \"127.0.0.1:0\"\ncert = \"{cert}\"\nkey = \"bad.key\"\n"
            ),
            "auto",
        );
        let config = Config::parse(&text, &dir.path().join("tenantry.toml")).unwrap();
        let err = format!("{:#}", tenantry::serve::Node::start(&config).err().unwrap());
        assert!(err.contains(expected), "{err}");
    }
}
