//! Responses are always well-formed, whatever a Worker does: only final statuses (200–599) are
//! ever sent as an answer, and no body goes out where HTTP forbids one, so a Worker can never
//! make a kept-alive connection (perhaps a shared proxy's) read its next response as this one.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use crate::common::*;

/// A guest that sets `status` (ignoring the result) and writes `body`.
fn status_guest(status: i32, body: &str) -> String {
    format!(
        r#"(module
          (import "tenantry:worker/v1" "response_set_status" (func $status (param i32 i32) (result i32)))
          (import "tenantry:worker/v1" "response_body_write" (func $write (param i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 0) "{body}")
          (func (export "tenantry_fetch") (result i32)
            (drop (call $status (i32.const 0) (i32.const {status})))
            (drop (call $write (i32.const 0) (i32.const 0) (i32.const {len})))
            (i32.const 0)))"#,
        len = body.len()
    )
}

/// A `[[worker]]` in namespace `production` from WAT text, compiled into `dir`.
fn wat_worker(dir: &std::path::Path, name: &str, wat: &str) -> String {
    let path = dir.join(format!("{name}.wasm"));
    std::fs::write(&path, wat::parse_str(wat).unwrap()).unwrap();
    format!(
        "[[worker]]\nnamespace = \"production\"\nname = \"{name}\"\nmodule = \"{}\"\n",
        path.display()
    )
}

fn config(dir: &std::path::Path, extra: &str) -> String {
    let mut c = String::from(
        "[[namespace]]\nname = \"production\"\n\
         [[route]]\nhost = \"*.example.test\"\nnamespace = \"production\"\nscript_from = \"host_label\"\n",
    );
    for (name, status) in [
        ("continue", 100),
        ("switching", 101),
        ("early", 103),
        ("nocontent", 204),
        ("notmodified", 304),
        ("toohigh", 600),
    ] {
        c += &wat_worker(dir, name, &status_guest(status, "smuggled"));
    }
    c += &worker("production", "alice", "hello", "");
    c += extra;
    c
}

#[test]
fn interim_and_invalid_statuses_are_refused_and_the_connection_stays_in_step() {
    let guests = tempfile::tempdir().unwrap();
    let node = TestNode::start(&config(guests.path(), ""));
    let mut conn = Conn::open(node.addr);
    for name in ["continue", "switching", "early", "toohigh"] {
        // The Worker's `response_set_status` failed, so it answered with the default 200.
        conn.send(format!("GET / HTTP/1.1\r\nHost: {name}.example.test\r\n\r\n").as_bytes());
        let r = conn.read_response(false);
        assert_eq!((r.status, r.text().as_str()), (200, "smuggled"), "{name}");
        // The same connection still answers the next request with its own response.
        conn.send(b"GET / HTTP/1.1\r\nHost: alice.example.test\r\n\r\n");
        let r = conn.read_response(false);
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "hello from tenantry\n")
        );
    }
}

#[test]
fn no_body_goes_out_with_204_304_or_head() {
    let guests = tempfile::tempdir().unwrap();
    let node = TestNode::start(&config(guests.path(), ""));
    let mut conn = Conn::open(node.addr);
    // Pipelined: if any body leaked, the following response would not parse.
    conn.send(
        b"GET / HTTP/1.1\r\nHost: nocontent.example.test\r\n\r\n\
          GET / HTTP/1.1\r\nHost: notmodified.example.test\r\n\r\n\
          HEAD / HTTP/1.1\r\nHost: alice.example.test\r\n\r\n\
          GET / HTTP/1.1\r\nHost: alice.example.test\r\n\r\n",
    );
    let r = conn.read_response(false);
    assert_eq!(r.status, 204);
    assert_eq!(r.header("content-length"), None);
    let r = conn.read_response(false);
    assert_eq!(r.status, 304);
    assert_eq!(r.header("content-length"), None);
    let r = conn.read_response(true);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("20"));
    let r = conn.read_response(false);
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "hello from tenantry\n")
    );
}

/// An upstream that answers every request with `101 Switching Protocols` and then, on the same
/// connection, bytes that look like a second response.
fn switching_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            std::thread::spawn(move || {
                stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut out = stream;
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    line.clear();
                }
                let _ = out.write_all(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: smuggle\r\nConnection: upgrade\r\n\r\n\
                      HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled",
                );
            });
        }
    });
    addr
}

#[test]
fn a_forwarded_interim_status_is_a_500_never_sent_on() {
    let guests = tempfile::tempdir().unwrap();
    let upstream = switching_upstream();
    let extra = format!(
        "[subrequests]\nallow = [\"127.0.0.1\"]\n{}",
        worker("production", "fetcher", "fetcher", "")
    );
    let node = TestNode::start(&config(guests.path(), &extra));
    let url = format!("http://{upstream}/")
        .replace(':', "%3A")
        .replace('/', "%2F");
    let mut conn = Conn::open(node.addr);
    conn.send(format!("GET /?url={url} HTTP/1.1\r\nHost: fetcher.example.test\r\n\r\n").as_bytes());
    let r = conn.read_response(false);
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(
        r.text()
            .contains("status 101, which is not a final HTTP status"),
        "{}",
        r.text()
    );
    conn.send(b"GET / HTTP/1.1\r\nHost: alice.example.test\r\n\r\n");
    let r = conn.read_response(false);
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "hello from tenantry\n")
    );
}
