//! `https://` subrequests end to end: Workers (wasm and JavaScript) fetch a local TLS upstream
//! whose certificates a test CA made here signs; the node trusts that CA through
//! `[subrequests] ca_file`. Each way a TLS upstream can fail (expired, wrong name, unknown CA, a
//! broken handshake) reaches the Worker as its own clear error; idle TLS connections are reused,
//! sessions resume on new ones, and the egress policy still applies.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::common::*;

/// A certificate authority made for one test.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM: what `ca_file` holds.
    pub pem: String,
}

/// A server certificate chain and its key.
pub struct Leaf {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for `names` (DNS names or IP addresses), valid now.
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        self.leaf_with(names, |_| {})
    }

    /// A certificate for `names` whose validity ended in 2020.
    pub fn expired_leaf(&self, names: &[&str]) -> Leaf {
        self.leaf_with(names, |p| {
            p.not_before = rcgen::date_time_ymd(2019, 1, 1);
            p.not_after = rcgen::date_time_ymd(2020, 1, 1);
        })
    }

    fn leaf_with(&self, names: &[&str], edit: impl FnOnce(&mut CertificateParams)) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        edit(&mut params);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            chain: vec![cert.der().clone()],
            key: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        }
    }

    /// Writes the CA certificate into `dir`, for `[subrequests] ca_file`.
    pub fn write_pem(&self, dir: &Path) -> PathBuf {
        let path = dir.join("test-ca.pem");
        std::fs::write(&path, &self.pem).unwrap();
        path
    }
}

/// How a [`TlsUpstream`] treats each connection.
#[derive(Clone)]
enum Behaviour {
    /// TLS with this certificate, then keep-alive HTTP/1.1 answering `https upstream saw: <request
    /// head>`; `/close` answers with `Connection: close` and closes (with `close_notify`),
    /// `/until-close` sends a body delimited by closing the connection (without `close_notify`).
    Serve(Arc<rustls::ServerConfig>),
    /// Reads the ClientHello, then closes the connection.
    CloseMidHandshake,
    /// Answers the ClientHello with plain HTTP.
    Garbage,
    /// Reads the ClientHello and never answers (until the client gives up and closes).
    Stall,
}

/// A TLS upstream on 127.0.0.1, counting the connections it accepted and the handshakes that
/// resumed an earlier session.
pub struct TlsUpstream {
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicUsize>,
    pub resumed: Arc<AtomicUsize>,
}

impl TlsUpstream {
    pub fn serving(leaf: Leaf) -> TlsUpstream {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(leaf.chain, leaf.key)
            .unwrap();
        Self::start(Behaviour::Serve(Arc::new(config)))
    }

    fn start(behaviour: Behaviour) -> TlsUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let resumed = Arc::new(AtomicUsize::new(0));
        let (count, resumes) = (accepted.clone(), resumed.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                count.fetch_add(1, Ordering::SeqCst);
                let (behaviour, resumes) = (behaviour.clone(), resumes.clone());
                std::thread::spawn(move || serve(stream, behaviour, &resumes));
            }
        });
        TlsUpstream {
            addr,
            accepted,
            resumed,
        }
    }

    /// `https://<host>:<port><path>`.
    pub fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.addr.port())
    }
}

fn serve(mut stream: TcpStream, behaviour: Behaviour, resumed: &AtomicUsize) {
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let config = match behaviour {
        Behaviour::Serve(config) => config,
        Behaviour::CloseMidHandshake => {
            let _ = stream.read(&mut [0u8; 512]);
            return;
        }
        Behaviour::Stall => {
            stream.set_read_timeout(None).ok();
            let mut buf = [0u8; 512];
            while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
            return;
        }
        Behaviour::Garbage => {
            let _ = stream.read(&mut [0u8; 512]);
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
            return;
        }
    };
    let mut conn = rustls::ServerConnection::new(config).unwrap();
    // A client that rejects the certificate ends the handshake here.
    while conn.is_handshaking() {
        if conn.complete_io(&mut stream).is_err() {
            return;
        }
    }
    if conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
        resumed.fetch_add(1, Ordering::SeqCst);
    }
    let mut reader = BufReader::new(rustls::StreamOwned::new(conn, stream));
    loop {
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let line = line.trim_end().to_string();
            if line.is_empty() {
                break;
            }
            head.push(line);
        }
        let close = head[0].contains("/close");
        let text = format!("https upstream saw: {}\n", head.join("\n"));
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nx-upstream: tls\r\n{}\r\n{text}",
            text.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        let tls = reader.get_mut();
        if head[0].contains("/until-close") {
            // A body delimited by the end of the connection, closed without `close_notify`.
            let _ = tls.write_all(format!("HTTP/1.1 200 OK\r\n\r\n{text}").as_bytes());
            let _ = tls.flush();
            return;
        }
        if tls.write_all(response.as_bytes()).is_err() || tls.flush().is_err() {
            return;
        }
        if close {
            tls.conn.send_close_notify();
            let _ = tls.flush();
            return;
        }
    }
}

fn query(url: &str) -> String {
    url.replace(':', "%3A")
        .replace('/', "%2F")
        .replace('?', "%3F")
}

/// A node whose `fetcher` Worker (route `direct.test`) may reach 127.0.0.1 if `allow`, trusting
/// `ca_file` besides the web PKI roots.
fn node(ca_file: &Path, allow: bool, driver: &str) -> TestNode {
    let allow = if allow { "\"127.0.0.1\"" } else { "" };
    let body = format!(
        "[subrequests]\nallow = [{allow}]\nca_file = \"{}\"\n\
         [[namespace]]\nname = \"customers\"\n\
         [[route]]\nhost = \"direct.test\"\nnamespace = \"customers\"\nscript = \"fetcher\"\n{}",
        ca_file.display(),
        worker("customers", "fetcher", "fetcher", "")
    );
    TestNode::start_with_driver(&body, driver)
}

fn fetch(n: &TestNode, url: &str) -> Resp {
    get(n.addr, "direct.test", &format!("/?url={}", query(url)))
}

#[test]
fn workers_fetch_https_upstreams_they_trust_and_reuse_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("tenantry test CA");
    let up = TlsUpstream::serving(ca.leaf(&["localhost", "127.0.0.1"]));
    let n = node(&ca.write_pem(dir.path()), true, "auto");

    // Two fetches over one client connection (one serving core): one TLS connection upstream.
    let mut conn = Conn::open(n.addr);
    for (i, host) in ["localhost", "127.0.0.1"].iter().enumerate() {
        // An IP-literal URL is verified against the certificate's IP addresses.
        let url = up.url(host, &format!("/item/{i}"));
        let path = format!("/?url={}", query(&url));
        conn.send(format!("GET {path} HTTP/1.1\r\nHost: direct.test\r\n\r\n").as_bytes());
        let r = conn.read_response(false);
        assert_eq!(r.status, 200, "{url}: {}", r.text());
        let text = r.text();
        assert!(
            text.starts_with(&format!("https upstream saw: GET /item/{i} HTTP/1.1\n")),
            "{text}"
        );
        assert_eq!(r.header("x-upstream"), Some("tls"));
    }
    // `localhost` and `127.0.0.1` are different names for the certificate: one connection each.
    let r = {
        let url = up.url("localhost", "/again");
        conn.send(
            format!(
                "GET /?url={} HTTP/1.1\r\nHost: direct.test\r\n\r\n",
                query(&url)
            )
            .as_bytes(),
        );
        conn.read_response(false)
    };
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        up.accepted.load(Ordering::SeqCst),
        2,
        "an idle TLS connection is reused for its own host name only"
    );

    // A connection the upstream closes is replaced by a new one that resumes the TLS session.
    for _ in 0..2 {
        let url = up.url("localhost", "/close");
        conn.send(
            format!(
                "GET /?url={} HTTP/1.1\r\nHost: direct.test\r\n\r\n",
                query(&url)
            )
            .as_bytes(),
        );
        let r = conn.read_response(false);
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), 3);
    assert_eq!(
        up.resumed.load(Ordering::SeqCst),
        1,
        "the new connection resumes an earlier session"
    );

    // A body that ends when the server closes, without `close_notify` (as many servers do).
    let r = fetch(&n, &up.url("localhost", "/until-close"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.text()
            .starts_with("https upstream saw: GET /until-close HTTP/1.1\n"),
        "{}",
        r.text()
    );
}

#[test]
fn each_tls_failure_reaches_the_worker_as_its_own_error() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("tenantry test CA");
    let stranger = TestCa::new("a CA nobody trusts");
    let expired = TlsUpstream::serving(ca.expired_leaf(&["localhost"]));
    let wrong_name = TlsUpstream::serving(ca.leaf(&["other.test"]));
    let untrusted = TlsUpstream::serving(stranger.leaf(&["localhost"]));
    let closes = TlsUpstream::start(Behaviour::CloseMidHandshake);
    let garbage = TlsUpstream::start(Behaviour::Garbage);
    let n = node(&ca.write_pem(dir.path()), true, "auto");

    for (up, expected) in [
        (&expired, "the TLS certificate of `localhost`"),
        (
            &wrong_name,
            "does not match the host name: it is not valid for `localhost`",
        ),
        (
            &untrusted,
            "is not trusted: it is not issued by a known certificate authority",
        ),
        (&closes, "TLS handshake with `localhost`"),
        (&garbage, "TLS handshake with `localhost`"),
    ] {
        let url = up.url("localhost", "/");
        let r = fetch(&n, &url);
        assert_eq!(r.status, 502, "{url}: {}", r.text());
        assert!(r.text().contains(expected), "{url}: {}", r.text());
    }
    let text = fetch(&n, &expired.url("localhost", "/")).text();
    assert!(text.contains("has expired"), "{text}");
    let text = fetch(&n, &closes.url("localhost", "/")).text();
    assert!(
        text.contains("failed: the server closed the connection"),
        "{text}"
    );
    let text = fetch(&n, &garbage.url("localhost", "/")).text();
    assert!(text.contains("failed: received corrupt message"), "{text}");
    drop(n);

    // A server that never finishes the handshake: the connect timeout covers the handshake.
    let stalls = TlsUpstream::start(Behaviour::Stall);
    let body = format!(
        "[subrequests]\nallow = [\"127.0.0.1\"]\nconnect_timeout_ms = 300\n\
         [[namespace]]\nname = \"customers\"\n\
         [[route]]\nhost = \"direct.test\"\nnamespace = \"customers\"\nscript = \"fetcher\"\n{}",
        worker("customers", "fetcher", "fetcher", "")
    );
    let n = TestNode::start(&body);
    let text = fetch(&n, &stalls.url("localhost", "/")).text();
    assert!(
        text.contains("(the TLS handshake included) timed out after 300 ms"),
        "{text}"
    );
}

#[test]
fn the_egress_policy_applies_to_https_urls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("tenantry test CA");
    let up = TlsUpstream::serving(ca.leaf(&["localhost", "127.0.0.1"]));
    let n = node(&ca.write_pem(dir.path()), false, "auto");
    for (url, what) in [
        (up.url("127.0.0.1", "/"), "loopback"),
        (up.url("localhost", "/"), "loopback"),
        ("https://10.0.0.1/".to_string(), "private"),
        ("https://169.254.169.254/".to_string(), "link-local"),
    ] {
        let r = fetch(&n, &url);
        assert_eq!(r.status, 502, "{url}: {}", r.text());
        let text = r.text();
        assert!(
            text.contains("refused") && text.contains(what),
            "{url}: {text}"
        );
    }
    assert_eq!(
        up.accepted.load(Ordering::SeqCst),
        0,
        "nothing reached the upstream"
    );
}

#[test]
fn https_subrequests_work_on_the_legacy_driver_and_from_javascript() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("tenantry test CA");
    let up = TlsUpstream::serving(ca.leaf(&["localhost"]));
    let ca_file = ca.write_pem(dir.path());
    let n = node(&ca_file, true, "legacy");
    let r = fetch(&n, &up.url("localhost", "/legacy"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.text()
            .starts_with("https upstream saw: GET /legacy HTTP/1.1\n"),
        "{}",
        r.text()
    );
    drop(n);

    // A JavaScript Worker's `fetch` shares the host call, and its errors are `TypeError`s.
    let main = dir.path().join("fetch.mjs");
    std::fs::write(
        &main,
        "export default { async fetch(request) {\n\
           const target = new URL(request.url).searchParams.get('url');\n\
           try { const r = await fetch(target); return new Response(`${r.status} ${await r.text()}`); }\n\
           catch (e) { return new Response(`${e.name}: ${e.message}`, { status: 502 }); }\n\
         } };\n",
    )
    .unwrap();
    let n = TestNode::start(&format!(
        "[subrequests]\nallow = [\"127.0.0.1\"]\nca_file = \"{}\"\n\
         [[namespace]]\nname = \"c\"\n\
         [[worker]]\nnamespace = \"c\"\nname = \"js\"\nmodule = \"{}\"\n\
         [[route]]\nhost = \"js.test\"\nnamespace = \"c\"\nscript = \"js\"\n",
        ca_file.display(),
        main.display()
    ));
    let r = get(
        n.addr,
        "js.test",
        &format!("/?url={}", query(&up.url("localhost", "/js"))),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.text()
            .starts_with("200 https upstream saw: GET /js HTTP/1.1\n"),
        "{}",
        r.text()
    );
    let r = get(
        n.addr,
        "js.test",
        &format!("/?url={}", query(&up.url("127.0.0.1", "/js"))),
    );
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(
        r.text().contains("does not match the host name"),
        "{}",
        r.text()
    );
}

#[test]
fn the_outbound_worker_and_the_subrequest_budget_see_https_subrequests() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("tenantry test CA");
    let up = TlsUpstream::serving(ca.leaf(&["localhost"]));
    let mut body = format!(
        "[subrequests]\nallow = [\"127.0.0.1\"]\nca_file = \"{}\"\n\
         [[namespace]]\nname = \"sandboxed\"\n\
         [[route]]\nhost = \"*.example.test\"\nworker = \"dispatcher\"\n",
        ca.write_pem(dir.path()).display()
    );
    body += &worker("sandboxed", "fetcher", "fetcher", "");
    body += &worker(
        "sandboxed",
        "budget",
        "fetcher",
        "limits = { subrequests = 2 }",
    );
    body += &format!(
        "[[platform_worker]]\nname = \"dispatcher\"\nmodule = \"{}\"\n\
         bindings = [{{ type = \"dispatch_namespace\", name = \"SANDBOXED\", namespace = \"sandboxed\", \
         outbound = {{ service = \"outbound\", parameters = [\"customer\"] }} }}]\n\
         [[platform_worker]]\nname = \"outbound\"\nmodule = \"{}\"\n",
        guest("dispatcher").display(),
        guest("outbound").display()
    );
    let n = TestNode::start(&body);
    let call = |script: &str, path: &str| {
        request(
            n.addr,
            "GET",
            "x.example.test",
            path,
            &[
                ("x-customer", script),
                ("x-binding", "SANDBOXED"),
                ("x-outbound-customer", "acme"),
            ],
            b"",
        )
    };

    // The outbound Worker sees the https request first and forwards it, still over TLS.
    let r = call(
        "fetcher",
        &format!("/?url={}", query(&up.url("localhost", "/ok"))),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    assert!(
        text.starts_with("https upstream saw: GET /ok HTTP/1.1\n"),
        "{text}"
    );
    assert!(text.contains("x-customer: acme"), "{text}");
    assert_eq!(r.header("x-outbound"), Some("seen"));
    let accepted = up.accepted.load(Ordering::SeqCst);

    // Blocked there, it never reaches the upstream.
    let r = call(
        "fetcher",
        &format!("/?url={}", query(&up.url("localhost", "/blocked"))),
    );
    assert_eq!(
        (r.status, r.text()),
        (403, "blocked by outbound for acme\n".to_string())
    );
    assert_eq!(up.accepted.load(Ordering::SeqCst), accepted);

    // The budget counts https subrequests: the third of a limit of 2 fails.
    let r = call(
        "budget",
        &format!("/?n=3&url={}", query(&up.url("localhost", "/b"))),
    );
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(
        r.text().contains("fetch 3: the subrequest limit of 2"),
        "{}",
        r.text()
    );
}

#[test]
fn a_bad_ca_file_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let parse = |ca_file: &Path| {
        let text = format!("[subrequests]\nca_file = \"{}\"\n", ca_file.display());
        match tenantry::config::Config::parse(&text, &dir.path().join("tenantry.toml")) {
            Ok(_) => panic!("ca_file {} was accepted", ca_file.display()),
            Err(e) => e.to_string(),
        }
    };
    let e = parse(&dir.path().join("missing.pem"));
    assert!(
        e.contains(":2: ") && e.contains("subrequests.ca_file: cannot read"),
        "{e}"
    );
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let e = parse(&not_pem);
    assert!(e.contains("holds no PEM `CERTIFICATE` block"), "{e}");
    // A good one is accepted, relative to the config file's directory.
    TestCa::new("ok").write_pem(dir.path());
    let text = "[subrequests]\nca_file = \"test-ca.pem\"\n";
    tenantry::config::Config::parse(text, &dir.path().join("tenantry.toml")).unwrap();
}
