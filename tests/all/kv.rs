//! KV namespaces end to end: Workers write and read through `kv_namespace` bindings
//! (examples/workers/kv_store), each seeing only the namespaces it is bound to, with Cloudflare's
//! limits, paged lists, concurrent writers on both cores, and data that survives a restart.

use serde_json::Value;

use crate::common::*;

fn config() -> String {
    let mut c = String::from(
        "[[kv_namespace]]\ntitle = \"cache-a\"\n[[kv_namespace]]\ntitle = \"cache-b\"\n\
         [[namespace]]\nname = \"customers\"\n\
         [[route]]\nhost = \"*.example.test\"\nnamespace = \"customers\"\nscript_from = \"host_label\"\n",
    );
    let bound = |title: &str| {
        format!(
            "bindings = [{{ type = \"kv_namespace\", name = \"CACHE\", namespace = \"{title}\" }}]"
        )
    };
    c += &worker("customers", "a", "kv_store", &bound("cache-a"));
    c += &worker("customers", "a2", "kv_store", &bound("cache-a"));
    c += &worker("customers", "b", "kv_store", &bound("cache-b"));
    c
}

fn put(n: &TestNode, host: &str, path: &str, body: &[u8]) -> Resp {
    request(n.addr, "PUT", host, path, &[], body)
}

#[test]
fn workers_read_and_write_their_own_kv_namespaces() {
    let mut n = TestNode::start(&config());

    // A writes; A2 (bound to the same namespace) reads; B (another namespace) does not see it.
    let r = put(
        &n,
        "a.example.test",
        "/k/greeting?metadata=%7B%22v%22%3A1%7D&ttl=3600",
        b"hello",
    );
    assert_eq!(r.status, 204, "{}", r.text());
    let r = get(n.addr, "a2.example.test", "/k/greeting");
    assert_eq!((r.status, r.text()), (200, "hello".to_string()));
    assert_eq!(r.header("x-kv-metadata"), Some(r#"{"v":1}"#));
    let expiration: u64 = r.header("x-kv-expiration").unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        (now + 3590..=now + 3610).contains(&expiration),
        "{expiration} vs {now}"
    );
    assert_eq!(get(n.addr, "b.example.test", "/k/greeting").status, 404);

    // Cloudflare's limits, with the host's explanation.
    let r = put(&n, "a.example.test", "/k/short?ttl=10", b"x");
    assert_eq!(r.status, 400);
    assert!(
        r.text().contains("expiration_ttl must be at least 60"),
        "{}",
        r.text()
    );
    let long_key = "k".repeat(513);
    let r = put(&n, "a.example.test", &format!("/k/{long_key}"), b"x");
    assert_eq!(r.status, 400);
    assert!(r.text().contains("1 to 512 bytes"), "{}", r.text());
    let big_meta = format!("%22{}%22", "m".repeat(1100));
    let r = put(
        &n,
        "a.example.test",
        &format!("/k/m?metadata={big_meta}"),
        b"x",
    );
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.text().contains("limit of 1024 bytes"), "{}", r.text());

    // Lists page by prefix.
    for i in 0..25 {
        let r = put(&n, "a.example.test", &format!("/k/user:{i:02}"), b"v");
        assert_eq!(r.status, 204);
    }
    let mut names = Vec::new();
    let mut cursor = String::new();
    loop {
        let r = get(
            n.addr,
            "a.example.test",
            &format!("/list?prefix=user:&limit=10&cursor={cursor}"),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        for k in v["keys"].as_array().unwrap() {
            names.push(k["name"].as_str().unwrap().to_string());
        }
        if v["list_complete"] == true {
            break;
        }
        cursor = v["cursor"].as_str().unwrap().to_string();
    }
    assert_eq!(names.len(), 25);
    assert_eq!(names.first().map(String::as_str), Some("user:00"));
    assert_eq!(names.last().map(String::as_str), Some("user:24"));

    // Deleting, then a restart keeps the rest.
    assert_eq!(
        request(n.addr, "DELETE", "a.example.test", "/k/user:00", &[], b"").status,
        204
    );
    n.restart(&config());
    assert_eq!(get(n.addr, "a.example.test", "/k/greeting").text(), "hello");
    assert_eq!(get(n.addr, "a.example.test", "/k/user:00").status, 404);
    assert_eq!(get(n.addr, "a.example.test", "/k/user:01").status, 200);
}

#[test]
fn concurrent_writers_on_both_cores() {
    let n = TestNode::start(&config());
    let addr = n.addr;
    let writers: Vec<_> = (0..8)
        .map(|w| {
            std::thread::spawn(move || {
                // One connection per writer: the kernel spreads them over both serving cores.
                let mut conn = Conn::open(addr);
                for i in 0..20 {
                    let body = format!("{w}-{i}");
                    conn.send(
                        format!(
                            "PUT /k/w{w}-{i:02} HTTP/1.1\r\nHost: a.example.test\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    );
                    assert_eq!(conn.read_response(false).status, 204);
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let r = get(n.addr, "a.example.test", "/list?prefix=w");
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["keys"].as_array().unwrap().len(), 160, "{v}");
    assert_eq!(get(n.addr, "a2.example.test", "/k/w7-19").text(), "7-19");
}
