//! The HTTP/1.1 server on its own (no wasm): a handler that echoes what it received, served on
//! both monoio drivers, driven with raw bytes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::Bytes;
use tenantry_core::{Request, Response};
use tenantry_ingress::{Driver, Handler, ServerConfig, ServerHandle, ServerLimits, Timeouts};

use crate::common::Conn;

/// Answers `METHOD TARGET HOST\n` + `len=N\n` + the body, and counts requests per connection
/// order via an `x-seq` request header echoed back.
struct Echo;

impl Handler for Echo {
    async fn call(&self, req: Request) -> Response {
        let mut body = Vec::new();
        body.extend_from_slice(&req.method);
        body.push(b' ');
        body.extend_from_slice(&req.target);
        body.push(b' ');
        body.extend_from_slice(&req.host);
        body.extend_from_slice(format!("\nlen={}\n", req.body.len()).as_bytes());
        body.extend_from_slice(&req.body);
        let mut resp = Response::text(200, body);
        if let Some(seq) = req.header(b"x-seq") {
            resp.headers.push((Bytes::from_static(b"x-seq"), seq));
        }
        if req.target.as_ref() == b"/no-content" {
            resp.status = 204;
        }
        resp
    }
}

fn server(driver: Driver, limits: ServerLimits, timeouts: Timeouts) -> ServerHandle {
    let config = ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        threads: 2,
        driver,
        limits,
        timeouts,
        tls: None,
    };
    tenantry_ingress::start(config, |_| Echo).expect("server starts")
}

fn default_server(driver: Driver) -> ServerHandle {
    server(driver, ServerLimits::default(), Timeouts::default())
}

const DRIVERS: [Driver; 2] = [Driver::IoUring, Driver::Legacy];

fn each_driver(test: impl Fn(SocketAddr)) {
    for driver in DRIVERS {
        let s = default_server(driver);
        assert!(s.drivers().iter().all(|d| *d
            == if driver == Driver::Legacy {
                "legacy"
            } else {
                "io_uring"
            }));
        test(s.local_addr());
        s.join();
    }
}

#[test]
fn keep_alive_serves_many_requests_on_one_connection() {
    each_driver(|addr| {
        let mut c = Conn::open(addr);
        for i in 0..20 {
            c.send(format!("GET /r{i} HTTP/1.1\r\nHost: a.test\r\n\r\n").as_bytes());
            let r = c.read_response(false);
            assert_eq!(r.status, 200);
            assert_eq!(r.text(), format!("GET /r{i} a.test\nlen=0\n"));
            assert!(r.header("date").is_some_and(|d| d.ends_with(" GMT")));
            assert!(r.header("connection").is_none());
        }
    });
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    each_driver(|addr| {
        let mut c = Conn::open(addr);
        let mut batch = Vec::new();
        for i in 0..50 {
            batch.extend_from_slice(
                format!(
                    "POST /p HTTP/1.1\r\nHost: h\r\nx-seq: {i}\r\nContent-Length: 3\r\n\r\nab{}",
                    i % 10
                )
                .as_bytes(),
            );
        }
        c.send(&batch);
        for i in 0..50 {
            let r = c.read_response(false);
            assert_eq!(r.header("x-seq"), Some(i.to_string().as_str()));
            assert_eq!(r.text(), format!("POST /p h\nlen=3\nab{}", i % 10));
        }
    });
}

#[test]
fn requests_split_at_every_byte_are_reassembled() {
    let s = default_server(Driver::Auto);
    let raw = b"POST /split HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
    let mut stream = TcpStream::connect(s.local_addr()).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    for b in raw {
        stream.write_all(&[*b]).unwrap();
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(b"abcde") {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 200 OK\r\n"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    assert!(got.ends_with(b"\r\n\r\nPOST /split s\nlen=5\nabcde"));
}

#[test]
fn chunked_and_content_length_bodies() {
    each_driver(|addr| {
        let mut c = Conn::open(addr);
        c.send(b"PUT /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwiki\r\n5\r\npedia\r\n0\r\nX-Trailer: 1\r\n\r\n");
        assert_eq!(c.read_response(false).text(), "PUT /c h\nlen=9\nwikipedia");
        let big = vec![b'z'; 300_000];
        let mut req = format!(
            "POST /big HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
            big.len()
        )
        .into_bytes();
        req.extend_from_slice(&big);
        c.send(&req);
        let r = c.read_response(false);
        assert_eq!(r.body.len(), "POST /big h\nlen=300000\n".len() + big.len());
        assert!(r.body.ends_with(&big));
    });
}

#[test]
fn expect_continue_gets_an_interim_response() {
    let s = default_server(Driver::Auto);
    let mut c = Conn::open(s.local_addr());
    c.send(b"POST /e HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n");
    let interim = c.read_response(false);
    assert_eq!(interim.status, 100);
    c.send(b"hi");
    assert_eq!(c.read_response(false).text(), "POST /e h\nlen=2\nhi");
}

#[test]
fn head_no_content_close_and_http10() {
    each_driver(|addr| {
        let mut c = Conn::open(addr);
        c.send(b"HEAD /h HTTP/1.1\r\nHost: h\r\n\r\nGET /no-content HTTP/1.1\r\nHost: h\r\n\r\n");
        let head = c.read_response(true);
        assert_eq!(head.status, 200);
        let expected = "HEAD /h h\nlen=0\n".len().to_string();
        assert_eq!(head.header("content-length"), Some(expected.as_str()));
        let nc = c.read_response(true);
        assert_eq!(nc.status, 204);
        assert!(nc.header("content-length").is_none());
        // The next bytes on the wire must be the next response: nothing leaked from HEAD/204.
        c.send(b"GET /after HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
        let r = c.read_response(false);
        assert_eq!(r.text(), "GET /after h\nlen=0\n");
        assert_eq!(r.header("connection"), Some("close"));
        assert!(
            c.read_to_close().is_empty(),
            "the server closes after Connection: close"
        );

        let mut c = Conn::open(addr);
        c.send(b"GET /old HTTP/1.0\r\n\r\n");
        let r = c.read_response(false);
        assert_eq!(r.text(), "GET /old \nlen=0\n");
        assert!(c.read_to_close().is_empty(), "HTTP/1.0 closes by default");

        let mut c = Conn::open(addr);
        c.send(b"GET /ka HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert_eq!(
            c.read_response(false).header("connection"),
            Some("keep-alive")
        );
        c.send(b"GET /ka2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert_eq!(c.read_response(false).text(), "GET /ka2 \nlen=0\n");
    });
}

/// Sends `raw`, expects `status` with a message containing `needle`, then a closed connection.
fn refused(addr: SocketAddr, raw: &[u8], status: u16, needle: &str) {
    let mut c = Conn::open(addr);
    c.send(raw);
    let r = c.read_response(false);
    assert_eq!(
        r.status,
        status,
        "{}: {}",
        String::from_utf8_lossy(raw),
        r.text()
    );
    assert!(r.text().contains(needle), "{:?} lacks {needle:?}", r.text());
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.read_to_close().is_empty(), "nothing after a refusal");
}

#[test]
fn framing_violations_are_refused_and_close() {
    each_driver(|addr| {
        refused(addr, b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc", 400, "Content-Length and Transfer-Encoding");
        refused(
            addr,
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
            400,
            "more than one Content-Length",
        );
        refused(
            addr,
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3x\r\n\r\nabc",
            400,
            "invalid Content-Length",
        );
        refused(
            addr,
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n",
            400,
            "unsupported Transfer-Encoding",
        );
        refused(addr, b"GET / HTTP/1.1\r\n\r\n", 400, "missing Host");
        refused(
            addr,
            b"GET /\x7f HTTP/1.1\r\nHost: h\r\n\r\n",
            400,
            "malformed",
        );
        refused(
            addr,
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            400,
            "chunk",
        );
        // The valid request before a bad one is still answered, in order.
        let mut c = Conn::open(addr);
        c.send(b"GET /ok HTTP/1.1\r\nHost: h\r\n\r\nGET / HTTP/9.9\r\nHost: h\r\n\r\n");
        assert_eq!(c.read_response(false).status, 200);
        assert_eq!(c.read_response(false).status, 505);
    });
}

#[test]
fn hosts_targets_line_endings_and_expectations_are_strict() {
    each_driver(|addr| {
        for (raw, status, needle) in [
            (&b"GET @evil.test/x HTTP/1.1\r\nHost: h\r\n\r\n"[..], 400, "invalid request target"),
            (b"GET http://u@evil.test/x HTTP/1.1\r\nHost: h\r\n\r\n", 400, "invalid Host"),
            (b"GET / HTTP/1.1\r\nHost: echo.evil.test?.example.test\r\n\r\n", 400, "invalid Host"),
            (b"GET / HTTP/1.1\r\nHost: \r\n\r\n", 400, "invalid Host: empty host"),
            (b"GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400, "only for OPTIONS"),
            (b"GET /a b HTTP/1.1\r\nHost: h\r\n\r\n", 400, "whitespace"),
            (b"GET / HTTP/1.1\r\nHost: h\r\nX: a\nTransfer-Encoding: chunked\r\n\r\n", 400, "LF without CR"),
            (b"GET / HTTP/1.1\r\nHost: h\r\nExpect: foo\r\n\r\n", 417, "expectation"),
            (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5 junk\r\nhello\r\n0\r\n\r\n", 400, "chunk extension"),
            (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;a\x00b\r\nhello\r\n0\r\n\r\n", 400, "chunk extension"),
        ] {
            refused(addr, raw, status, needle);
        }
        let long = format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(20 << 10));
        refused(addr, long.as_bytes(), 414, "request target is longer");

        // Absolute form: the target's authority is the one the handler sees.
        let mut c = Conn::open(addr);
        c.send(b"GET http://Other.Test:81/p?q HTTP/1.1\r\nHost: h\r\n\r\nOPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(
            c.read_response(false).text(),
            "GET /p?q Other.Test:81\nlen=0\n"
        );
        assert_eq!(c.read_response(false).text(), "OPTIONS * h\nlen=0\n");
    });
}

/// A server on one core (so its connection share is the whole cap) with these limits.
fn one_core(limits: ServerLimits, timeouts: Timeouts) -> ServerHandle {
    let config = ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        threads: 1,
        driver: Driver::Auto,
        limits,
        timeouts,
        tls: None,
    };
    tenantry_ingress::start(config, |_| Echo).expect("server starts")
}

#[test]
fn a_trickling_body_is_cut_off_by_the_total_request_deadline() {
    let timeouts = Timeouts {
        body_read: Duration::from_secs(5),
        request_read: Duration::from_millis(500),
        ..Timeouts::default()
    };
    let s = one_core(ServerLimits::default(), timeouts);
    let mut c = Conn::open(s.local_addr());
    c.send(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n");
    // One byte well inside the per-read timeout, again and again: only the total deadline ends
    // it. The writer stops when the server has closed the connection.
    let mut writer = c.try_clone_stream();
    let trickle = std::thread::spawn(move || {
        for _ in 0..100 {
            if writer.write_all(b"x").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let r = c.read_response(false);
    assert_eq!(r.status, 408, "{}", r.text());
    trickle.join().unwrap();
}

#[test]
fn a_client_that_never_reads_is_dropped_at_the_write_deadline() {
    let timeouts = Timeouts {
        write: Duration::from_millis(300),
        ..Timeouts::default()
    };
    let s = one_core(ServerLimits::default(), timeouts);
    let stream = TcpStream::connect(s.local_addr()).unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    // Pipelined 1 MiB uploads whose 1 MiB answers are never read: the server's writes stall,
    // then it stops reading, then this writer stalls, until the server gives up and closes.
    let sender = std::thread::spawn(move || {
        let mut request = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1048576\r\n\r\n".to_vec();
        request.resize(request.len() + (1 << 20), b'p');
        for _ in 0..256 {
            if writer.write_all(&request).is_err() {
                return true;
            }
        }
        false
    });
    assert!(
        sender.join().unwrap(),
        "the server kept the connection although the client never read"
    );
    drop(stream);
}

#[test]
fn connections_past_the_cap_wait_in_the_backlog() {
    let limits = ServerLimits {
        max_connections: 2,
        ..ServerLimits::default()
    };
    let s = one_core(limits, Timeouts::default());
    let mut first = Conn::open(s.local_addr());
    let mut second = Conn::open(s.local_addr());
    for c in [&mut first, &mut second] {
        c.send(b"GET /held HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(c.read_response(false).status, 200);
    }
    // The third connects (the kernel's backlog), but is not served while two are open...
    let third = TcpStream::connect(s.local_addr()).unwrap();
    third
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    (&third)
        .write_all(b"GET /third HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    let mut byte = [0u8; 1];
    let waited = (&third).read(&mut byte);
    assert!(
        matches!(&waited, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "served past the cap: {waited:?}"
    );
    // ...and is as soon as one closes.
    drop(first);
    third
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let n = (&third).read(&mut byte).unwrap();
    assert_eq!(n, 1);
}

#[test]
fn the_body_budget_gives_503_with_retry_after_and_frees_itself() {
    let limits = ServerLimits {
        max_buffered_body_bytes: 1000,
        ..ServerLimits::default()
    };
    let s = one_core(limits, Timeouts::default());
    // Holds 800 bytes of budget while its body is incomplete.
    let mut holder = Conn::open(s.local_addr());
    holder.send(b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 800\r\n\r\nstart");
    // Wait until the server has the first request's head (and so its reservation): a request
    // on the same connection would queue behind it, so probe the budget with tiny requests.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut probe = Conn::open(s.local_addr());
        probe.send(b"POST /probe HTTP/1.1\r\nHost: h\r\nContent-Length: 300\r\n\r\n");
        probe.send(&[b'b'; 300]);
        let r = probe.read_response(false);
        if r.status == 503 {
            assert_eq!(r.header("retry-after"), Some("1"));
            assert!(r.text().contains("too many request bodies"), "{}", r.text());
            break;
        }
        assert_eq!(r.status, 200);
        assert!(
            std::time::Instant::now() < deadline,
            "the budget never filled"
        );
    }
    // A request without a body needs no budget.
    let mut c = Conn::open(s.local_addr());
    c.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(c.read_response(false).status, 200);
    // The holder finishes; its reservation is returned.
    holder.send(&[b'x'; 795]);
    assert_eq!(holder.read_response(false).status, 200);
    let mut c = Conn::open(s.local_addr());
    c.send(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 900\r\n\r\n");
    c.send(&[b'y'; 900]);
    assert_eq!(c.read_response(false).status, 200);
}

#[test]
fn size_limits_give_431_and_413() {
    let limits = ServerLimits {
        max_header_bytes: 1024,
        max_body_bytes: 100,
        ..ServerLimits::default()
    };
    let s = server(Driver::Auto, limits, Timeouts::default());
    let addr = s.local_addr();
    let long = format!(
        "GET / HTTP/1.1\r\nHost: h\r\nX-Big: {}\r\n\r\n",
        "a".repeat(2000)
    );
    refused(addr, long.as_bytes(), 431, "larger than 1024 bytes");
    refused(
        addr,
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 101\r\n\r\n",
        413,
        "larger than 100 bytes",
    );
    let mut chunked = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        chunked.extend_from_slice(b"28\r\n");
        chunked.extend_from_slice(&[b'c'; 40]);
        chunked.extend_from_slice(b"\r\n");
    }
    refused(addr, &chunked, 413, "larger than 100 bytes");
    // A body of exactly the limit passes.
    let mut c = Conn::open(addr);
    let mut ok = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n".to_vec();
    ok.extend_from_slice(&[b'k'; 100]);
    c.send(&ok);
    assert_eq!(c.read_response(false).status, 200);
}

#[test]
fn slow_heads_time_out_with_408_and_idle_connections_close() {
    let timeouts = Timeouts {
        header_read: Duration::from_millis(300),
        body_read: Duration::from_millis(300),
        idle: Duration::from_millis(300),
        drain: Duration::from_secs(5),
        ..Timeouts::default()
    };
    for driver in DRIVERS {
        let s = server(driver, ServerLimits::default(), timeouts);
        let mut c = Conn::open(s.local_addr());
        c.send(b"GET / HTTP/1.1\r\nHost:");
        let r = c.read_response(false);
        assert_eq!(r.status, 408);
        assert!(r.text().contains("request head"));

        let mut c = Conn::open(s.local_addr());
        c.send(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc");
        let r = c.read_response(false);
        assert_eq!(r.status, 408);
        assert!(r.text().contains("request body"));

        let mut c = Conn::open(s.local_addr());
        c.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(c.read_response(false).status, 200);
        assert!(
            c.read_to_close().is_empty(),
            "an idle connection is closed without a response"
        );
        s.join();
    }
}

#[test]
fn shutdown_closes_idle_connections_and_frees_the_port() {
    for driver in DRIVERS {
        let s = server(driver, ServerLimits::default(), Timeouts::default());
        let addr = s.local_addr();
        let mut c = Conn::open(addr);
        c.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(c.read_response(false).status, 200);
        s.join(); // returns although `c` is still open and idle
        assert!(c.read_to_close().is_empty());
        assert!(
            TcpStream::connect(addr).is_err(),
            "nothing listens after shutdown"
        );
    }
}
