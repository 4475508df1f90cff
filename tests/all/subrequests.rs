//! Subrequests end to end: user Workers `fetch` a real upstream server on 127.0.0.1 through the
//! node's HTTP client; the egress policy refuses non-public addresses unless allowed; and an
//! outbound Worker set on a dispatch namespace binding sees (and allows, rewrites, answers or
//! blocks) every subrequest of the Workers dispatched through it.

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::*;

/// A keep-alive HTTP/1.1 server answering every request with `upstream saw: <request line>`
/// followed by its header lines, counting the connections it accepted.
struct Upstream {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
}

impl Upstream {
    fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                count.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || serve(stream));
            }
        });
        Upstream { addr, connections }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

fn serve(stream: TcpStream) {
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let Some((head, _body)) = read_upstream_request(&mut reader) else {
            return;
        };
        // `/big/<n>`: n bytes, by Content-Length; `/bigchunked/<n>`: n bytes in 64 KiB chunks.
        let target = head[0].split(' ').nth(1).unwrap_or("/").to_string();
        if let Some(n) = target.strip_prefix("/big/") {
            let n: usize = n.parse().unwrap();
            let mut response =
                format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n").into_bytes();
            response.resize(response.len() + n, b'x');
            if out.write_all(&response).is_err() {
                return;
            }
            continue;
        }
        if let Some(n) = target.strip_prefix("/bigchunked/") {
            let mut left: usize = n.parse().unwrap();
            let mut response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            while left > 0 {
                let n = left.min(64 << 10);
                response.extend(format!("{n:x}\r\n").as_bytes());
                response.resize(response.len() + n, b'y');
                response.extend(b"\r\n");
                left -= n;
            }
            response.extend(b"0\r\n\r\n");
            if out.write_all(&response).is_err() {
                return;
            }
            continue;
        }
        let text = format!("upstream saw: {}\n", head.join("\n"));
        let chunked = head[0].contains("chunked");
        let response = if chunked {
            let (a, b) = text.split_at(text.len() / 2);
            format!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nx-upstream: yes\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
                a.len(),
                b.len()
            )
        } else {
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nx-upstream: yes\r\n\r\n{text}",
                text.len()
            )
        };
        if out.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

fn query(url: &str) -> String {
    url.replace(':', "%3A")
        .replace('/', "%2F")
        .replace('?', "%3F")
}

fn config(allow: &str) -> String {
    let mut c = format!(
        "[subrequests]\nallow = [{allow}]\n\
         [[namespace]]\nname = \"customers\"\n[[namespace]]\nname = \"sandboxed\"\n\
         [[route]]\nhost = \"direct.test\"\nnamespace = \"customers\"\nscript = \"fetcher\"\n\
         [[route]]\nhost = \"*.example.test\"\nworker = \"dispatcher\"\n"
    );
    c += &worker("customers", "fetcher", "fetcher", "");
    c += &worker(
        "customers",
        "budget",
        "fetcher",
        "limits = { subrequests = 2 }",
    );
    c += &worker("sandboxed", "fetcher", "fetcher", "");
    c += &worker(
        "sandboxed",
        "relay",
        "fetcher",
        "bindings = [{ type = \"service\", name = \"BACKEND\", service = \"fetcher\" }]",
    );
    c += &format!(
        "[[platform_worker]]\nname = \"dispatcher\"\nmodule = \"{}\"\n\
         bindings = [\n  {{ type = \"dispatch_namespace\", name = \"CUSTOMERS\", namespace = \"customers\" }},\n  \
         {{ type = \"dispatch_namespace\", name = \"SANDBOXED\", namespace = \"sandboxed\", \
         outbound = {{ service = \"outbound\", parameters = [\"customer\"] }} }},\n]\n\
         [[platform_worker]]\nname = \"outbound\"\nmodule = \"{}\"\n",
        guest("dispatcher").display(),
        guest("outbound").display()
    );
    c
}

#[test]
fn workers_fetch_allowed_upstreams_and_reuse_connections() {
    let up = Upstream::start();
    let n = TestNode::start(&config("\"127.0.0.1\""));

    // Five requests on one client connection: one serving core, one upstream connection.
    let mut conn = Conn::open(n.addr);
    for i in 0..5 {
        let path = format!("/?url={}", query(&up.url(&format!("/item/{i}"))));
        conn.send(format!("GET {path} HTTP/1.1\r\nHost: direct.test\r\n\r\n").as_bytes());
        let r = conn.read_response(false);
        assert_eq!(r.status, 200, "{}", r.text());
        let text = r.text();
        assert!(
            text.starts_with(&format!("upstream saw: GET /item/{i} HTTP/1.1\n")),
            "{text}"
        );
        assert!(text.contains("x-from: fetcher"), "{text}");
        assert!(text.contains(&format!("host: {}", up.addr)), "{text}");
        assert_eq!(r.header("x-upstream"), Some("yes"));
    }
    assert_eq!(
        up.connections.load(Ordering::SeqCst),
        1,
        "keep-alive connections are reused"
    );

    // Chunked upstream responses are decoded.
    let r = get(
        n.addr,
        "direct.test",
        &format!("/?url={}", query(&up.url("/chunked"))),
    );
    assert_eq!(r.status, 200);
    assert!(
        r.text()
            .starts_with("upstream saw: GET /chunked HTTP/1.1\n"),
        "{}",
        r.text()
    );

    // The subrequest budget: the script's own limit of 2.
    let r = request(
        n.addr,
        "GET",
        "x.example.test",
        &format!("/?n=3&url={}", query(&up.url("/b"))),
        &[("x-customer", "budget")],
        b"",
    );
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(
        r.text().contains("fetch 3: the subrequest limit of 2"),
        "{}",
        r.text()
    );

    // A port nothing listens on: a clear failure, not a hang.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let r = get(
        n.addr,
        "direct.test",
        &format!("/?url={}", query(&format!("http://{closed}/"))),
    );
    assert_eq!(r.status, 502);
    assert!(r.text().contains("cannot connect to"), "{}", r.text());
}

#[test]
fn non_public_addresses_are_refused_by_default() {
    let up = Upstream::start();
    let n = TestNode::start(&config(""));
    for (url, what) in [
        (up.url("/"), "loopback"),
        (format!("http://localhost:{}/", up.addr.port()), "loopback"),
        (
            "http://169.254.169.254/latest/meta-data".to_string(),
            "link-local",
        ),
        ("http://10.0.0.1/".to_string(), "private"),
        ("http://[::1]:80/".to_string(), "loopback"),
        ("http://0.0.0.0:80/".to_string(), "unspecified"),
    ] {
        let r = get(n.addr, "direct.test", &format!("/?url={}", query(&url)));
        assert_eq!(r.status, 502, "{url}: {}", r.text());
        let text = r.text();
        assert!(
            text.contains("refused") && text.contains(what),
            "{url}: {text}"
        );
    }
    assert_eq!(
        up.connections.load(Ordering::SeqCst),
        0,
        "nothing reached the upstream"
    );
}

#[test]
fn the_outbound_worker_sees_every_subrequest() {
    let up = Upstream::start();
    let n = TestNode::start(&config("\"127.0.0.1\""));
    let call = |name: &str, path: &str| {
        request(
            n.addr,
            "GET",
            "x.example.test",
            path,
            &[
                ("x-customer", name),
                ("x-binding", "SANDBOXED"),
                ("x-outbound-customer", "acme"),
            ],
            b"",
        )
    };

    // Allowed and rewritten: the upstream sees the dispatcher's parameter.
    let r = call("fetcher", &format!("/?url={}", query(&up.url("/ok"))));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("x-customer: acme"), "{}", r.text());
    assert_eq!(r.header("x-outbound"), Some("seen"));

    // Blocked, and answered by the outbound Worker itself.
    let r = call("fetcher", &format!("/?url={}", query(&up.url("/blocked"))));
    assert_eq!(
        (r.status, r.text()),
        (403, "blocked by outbound for acme\n".to_string())
    );
    let r = call("fetcher", &format!("/?url={}", query(&up.url("/answer"))));
    assert_eq!(
        (r.status, r.text()),
        (200, "answered by outbound for acme\n".to_string())
    );

    // No bypass: a service binding's callee inherits the outbound Worker.
    let r = call(
        "relay",
        &format!("/?via=service&url={}", query(&up.url("/ok"))),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-outbound"), Some("seen"), "{}", r.text());
    assert!(r.text().contains("x-customer: acme"), "{}", r.text());
    let r = call(
        "relay",
        &format!("/?via=service&url={}", query(&up.url("/blocked"))),
    );
    assert_eq!(r.status, 403);

    // The same Worker dispatched without an outbound Worker goes straight out.
    let r = request(
        n.addr,
        "GET",
        "x.example.test",
        &format!("/?url={}", query(&up.url("/direct"))),
        &[("x-customer", "fetcher")],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-outbound"), None);
    assert!(!r.text().contains("x-customer"), "{}", r.text());

    // A parameter the binding does not declare is refused.
    let r = request(
        n.addr,
        "GET",
        "x.example.test",
        &format!("/?url={}", query(&up.url("/ok"))),
        &[("x-customer", "fetcher"), ("x-outbound-customer", "acme")],
        b"",
    );
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("no outbound Worker"), "{}", r.text());
}

#[test]
fn response_bodies_stream_to_the_worker() {
    let up = Upstream::start();
    let n = TestNode::start(&config("\"127.0.0.1\""));
    // 40 MiB, more than a buffered body may be (32 MiB), read in 64 KiB pieces by a Worker
    // whose memory limit is far below that: the body streams.
    let size = 40 << 20;
    for path in [format!("/big/{size}"), format!("/bigchunked/{size}")] {
        let mut conn = Conn::open(n.addr);
        for _ in 0..2 {
            let target = format!("/?count=1&url={}", query(&up.url(&path)));
            conn.send(format!("GET {target} HTTP/1.1\r\nHost: direct.test\r\n\r\n").as_bytes());
            let r = conn.read_response(false);
            assert_eq!(r.status, 200, "{path}: {}", r.text());
            assert_eq!(r.text(), format!("read {size} bytes\n"));
        }
        // Read to its end, the upstream connection went back to the core's idle list and
        // carried the second request (the client connection keeps both on one core). The
        // second client connection may land on the other core, with its own upstream connection.
        let upstream = up.connections.load(Ordering::SeqCst);
        let most = if path.starts_with("/big/") { 1 } else { 2 };
        assert!(
            upstream <= most,
            "{upstream} upstream connections after {path}"
        );
    }

    // Forwarding buffers the body: past 32 MiB that is refused with a reason.
    let r = get(
        n.addr,
        "direct.test",
        &format!("/?url={}", query(&up.url(&format!("/big/{size}")))),
    );
    assert_eq!(r.status, 500, "{}", r.text());
    // A small body forwards fine, from a stream or not.
    let r = get(
        n.addr,
        "direct.test",
        &format!("/?url={}", query(&up.url("/bigchunked/200000"))),
    );
    assert_eq!((r.status, r.body.len()), (200, 200000));
}

#[test]
fn subrequests_and_kv_work_on_the_legacy_driver_too() {
    // The epoll driver: cross-thread wake-ups (the resolver, the KV threads) and the client's
    // sockets must work there as well as on io_uring.
    let up = Upstream::start();
    let body = format!(
        "{}[[kv_namespace]]\ntitle = \"k\"\n{}",
        config("\"127.0.0.1\""),
        worker(
            "customers",
            "kv",
            "kv_store",
            "bindings = [{ type = \"kv_namespace\", name = \"CACHE\", namespace = \"k\" }]"
        )
    );
    let n = TestNode::start_with_driver(&body, "legacy");
    let url = format!("http://localhost:{}/legacy", up.addr.port());
    // `localhost` goes through the resolver thread, then the egress policy allows 127.0.0.1.
    let r = get(n.addr, "direct.test", &format!("/?url={}", query(&url)));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.text().starts_with("upstream saw: GET /legacy HTTP/1.1\n"),
        "{}",
        r.text()
    );
    let r = request(
        n.addr,
        "PUT",
        "x.example.test",
        "/k/a",
        &[("x-customer", "kv")],
        b"1",
    );
    assert_eq!(r.status, 204, "{}", r.text());
    let r = request(
        n.addr,
        "GET",
        "x.example.test",
        "/k/a",
        &[("x-customer", "kv")],
        b"",
    );
    assert_eq!((r.status, r.text()), (200, "1".to_string()));
}
