//! The upstream of the https subrequest benchmark (`benches/https-subrequests.sh`): one plain
//! HTTP/1.1 port and two TLS ports answering every request with `ok\n`, keep-alive unless the
//! path contains `close`. The TLS ports serve a certificate for `localhost` signed by a CA made at
//! start and written to `CA_PEM` (the node's `[subrequests] ca_file`); the first resumes sessions
//! (rustls' defaults: a stateful cache and TLS 1.3 tickets), the second never does, so a new
//! connection to it always costs a full handshake. A thread per connection: the benchmark runs
//! one connection at a time.
//!
//! `tls-upstream BASE_PORT CA_PEM`: http on BASE_PORT, https on BASE_PORT+1 (resuming) and
//! BASE_PORT+2 (full handshakes only).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::ServerConfig;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(port), Some(ca_path)) = (args.next(), args.next()) else {
        eprintln!("usage: tls-upstream BASE_PORT CA_PEM");
        std::process::exit(2);
    };
    let port: u16 = port.parse().expect("BASE_PORT is a port number");

    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    std::fs::write(&ca_path, ca_cert.pem()).expect("writing the CA file");
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();

    let config = |resume: bool| {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::from(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone()], key)
            .unwrap();
        if !resume {
            config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
            config.send_tls13_tickets = 0;
        }
        Arc::new(config)
    };
    let listeners = [
        (port, None),
        (port + 1, Some(config(true))),
        (port + 2, Some(config(false))),
    ];
    let threads: Vec<_> = listeners
        .into_iter()
        .map(|(port, tls)| {
            let listener = TcpListener::bind(("127.0.0.1", port)).expect("binding a port");
            std::thread::spawn(move || {
                for stream in listener.incoming().flatten() {
                    let tls = tls.clone();
                    std::thread::spawn(move || {
                        let _ = stream.set_nodelay(true);
                        match tls {
                            None => serve(stream),
                            Some(config) => {
                                let conn = rustls::ServerConnection::new(config).unwrap();
                                serve(rustls::StreamOwned::new(conn, stream));
                            }
                        }
                    });
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

fn serve<S: std::io::Read + Write>(stream: S) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut close = false;
        let mut first = true;
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if first {
                close = line.contains("close");
                first = false;
            }
            if line.trim_end().is_empty() {
                break;
            }
        }
        let response: &[u8] = if close {
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"
        } else {
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n"
        };
        let out = reader.get_mut();
        if out.write_all(response).is_err() || out.flush().is_err() || close {
            return;
        }
    }
}
