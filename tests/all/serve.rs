//! The full data path: route → namespace index → pooled instance → guest → response bytes.

use crate::common::*;

fn namespace_with(workers: &str) -> String {
    format!(
        "[[namespace]]\nname = \"production\"\n{workers}\n\
         [[route]]\nhost = \"*.example.test\"\nnamespace = \"production\"\nscript_from = \"host_label\"\n"
    )
}

fn basic() -> String {
    namespace_with(
        &[
            worker("production", "alice", "hello", ""),
            worker("production", "bob", "echo", ""),
            worker(
                "production",
                "carol",
                "env_reader",
                r#"bindings = [
  { type = "plain_text", name = "GREETING", text = "hi there" },
  { type = "json", name = "SETTINGS", json = { theme = "dark" } },
  { type = "secret_text", name = "API_KEY", text = "s3cret" },
]"#,
            ),
        ]
        .concat(),
    )
}

#[test]
fn hello_is_answered_by_the_routed_worker() {
    let node = TestNode::start(&basic());
    let resp = get(node.addr, "alice.example.test", "/hello");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.text(), "hello from tenantry\n");
    assert_eq!(resp.header("x-worker"), Some("hello"));
    assert!(resp.header("date").is_some());
    assert_eq!(resp.header("content-length"), Some("20"));
}

#[test]
fn unknown_worker_is_404_and_unrouted_host_is_404() {
    let node = TestNode::start(&basic());
    let resp = get(node.addr, "nobody.example.test", "/");
    assert_eq!(resp.status, 404);
    assert!(resp.text().contains("Worker not found"), "{}", resp.text());
    let resp = get(node.addr, "elsewhere.org", "/");
    assert_eq!(resp.status, 404);
    assert!(resp.text().contains("No route"), "{}", resp.text());
}

#[test]
fn echo_sees_method_url_headers_and_body() {
    let node = TestNode::start(&basic());
    let body = b"{\"n\": 42}";
    let resp = request(
        node.addr,
        "POST",
        "bob.example.test",
        "/submit?x=1",
        &[("X-Custom", "yes")],
        body,
    );
    assert_eq!(resp.status, 200);
    let text = resp.text();
    assert!(
        text.starts_with("POST http://bob.example.test/submit?x=1\n"),
        "{text}"
    );
    assert!(text.contains("X-Custom: yes\n"), "{text}");
    assert!(text.ends_with("\n\n{\"n\": 42}"), "{text}");
    assert_eq!(resp.header("x-echo-length"), Some("9"));
}

#[test]
fn chunked_request_body_reaches_the_guest_dechunked() {
    let node = TestNode::start(&basic());
    let mut conn = Conn::open(node.addr);
    conn.send(
        b"PUT /c HTTP/1.1\r\nHost: bob.example.test\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nTrailer: x\r\n\r\n",
    );
    let resp = conn.read_response(false);
    assert_eq!(resp.status, 200);
    assert!(resp.text().ends_with("\n\nhello, world"), "{}", resp.text());
    assert_eq!(resp.header("x-echo-length"), Some("12"));
}

#[test]
fn keep_alive_and_pipelining_through_the_full_path() {
    let node = TestNode::start(&basic());
    let mut conn = Conn::open(node.addr);
    // Three requests in one write, to two different Workers; answers come back in order.
    conn.send(
        b"GET /1 HTTP/1.1\r\nHost: alice.example.test\r\n\r\n\
          POST /2 HTTP/1.1\r\nHost: bob.example.test\r\nContent-Length: 3\r\n\r\nabc\
          GET /3 HTTP/1.1\r\nHost: alice.example.test\r\n\r\n",
    );
    let a = conn.read_response(false);
    let b = conn.read_response(false);
    let c = conn.read_response(false);
    assert_eq!(a.text(), "hello from tenantry\n");
    assert!(b.text().starts_with("POST http://bob.example.test/2\n") && b.text().ends_with("abc"));
    assert_eq!(c.text(), "hello from tenantry\n");
    // And the connection is still usable afterwards.
    conn.send(b"HEAD / HTTP/1.1\r\nHost: alice.example.test\r\n\r\n");
    let head = conn.read_response(true);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("20"));
    assert!(head.body.is_empty());
}

#[test]
fn env_bindings_reach_only_their_worker() {
    let node = TestNode::start(&basic());
    let resp = get(node.addr, "carol.example.test", "/?name=GREETING");
    assert_eq!((resp.status, resp.text().as_str()), (200, "hi there"));
    assert_eq!(resp.header("x-binding-kind"), Some("plain_text"));
    let resp = get(node.addr, "carol.example.test", "/?name=SETTINGS");
    assert_eq!(resp.header("x-binding-kind"), Some("json"));
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&resp.body).unwrap(),
        serde_json::json!({"theme": "dark"})
    );
    let resp = get(node.addr, "carol.example.test", "/?name=API_KEY");
    assert_eq!((resp.status, resp.text().as_str()), (200, "s3cret"));
    assert_eq!(resp.header("x-binding-kind"), Some("secret_text"));
    let resp = get(node.addr, "carol.example.test", "/?name=MISSING");
    assert_eq!(resp.status, 404);
}

#[test]
fn both_drivers_serve_the_full_path() {
    for driver in ["legacy", "io_uring"] {
        let node = TestNode::start_with_driver(&basic(), driver);
        let resp = get(node.addr, "alice.example.test", "/");
        assert_eq!(resp.status, 200, "driver {driver}");
        assert_eq!(resp.text(), "hello from tenantry\n", "driver {driver}");
    }
}

#[test]
fn restart_serves_what_was_deployed() {
    let config = basic();
    let mut node = TestNode::start(&config);
    assert_eq!(get(node.addr, "alice.example.test", "/").status, 200);
    let index = node.dir.path().join("data/namespaces/production");
    assert!(index.exists(), "the namespace index is on disk");
    node.restart(&config);
    let resp = get(node.addr, "alice.example.test", "/");
    assert_eq!(
        (resp.status, resp.text().as_str()),
        (200, "hello from tenantry\n")
    );
}

#[test]
fn routes_by_path_prefix_and_header() {
    let config = format!(
        "[[namespace]]\nname = \"staging\"\n{}{}\
         [[route]]\nhost = \"api.example.com\"\npath_prefix = \"/echo\"\nnamespace = \"staging\"\nscript = \"e\"\n\
         [[route]]\nheader = {{ name = \"x-tenant\", value = \"h\" }}\nnamespace = \"staging\"\nscript = \"h\"\n\
         [[route]]\nnamespace = \"staging\"\nscript_from = \"header:x-worker\"\n",
        worker("staging", "e", "echo", ""),
        worker("staging", "h", "hello", ""),
    );
    let node = TestNode::start(&config);
    let resp = get(node.addr, "api.example.com", "/echo/x");
    assert!(
        resp.text().starts_with("GET http://api.example.com/echo/x"),
        "{}",
        resp.text()
    );
    let resp = request(
        node.addr,
        "GET",
        "api.example.com",
        "/other",
        &[("x-tenant", "h")],
        b"",
    );
    assert_eq!(resp.text(), "hello from tenantry\n");
    let resp = request(node.addr, "GET", "any.host", "/", &[("x-worker", "e")], b"");
    assert!(
        resp.text().starts_with("GET http://any.host/"),
        "{}",
        resp.text()
    );
    let resp = request(
        node.addr,
        "GET",
        "any.host",
        "/",
        &[("x-worker", "nope")],
        b"",
    );
    assert_eq!(resp.status, 404);
}
