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
    let r = get(n.addr, "b.example.test", "/list");
    assert_eq!(r.text(), r#"{"keys":[],"list_complete":true}"#);

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

/// One admin request with the test token; the status and the body.
fn admin(n: &TestNode, method: &str, path: &str, ct: &str, body: &[u8]) -> Resp {
    let a = n.node.as_ref().unwrap().admin_addr().unwrap();
    request(
        a,
        method,
        "admin",
        path,
        &[("Authorization", "Bearer test-token"), ("Content-Type", ct)],
        body,
    )
}

fn json_of(r: &Resp) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.text()))
}

#[test]
fn the_cloudflare_kv_api_manages_namespaces_and_values() {
    let n = TestNode::start(
        "[[namespace]]\nname = \"customers\"\n[[route]]\nhost = \"*.example.test\"\nnamespace = \"customers\"\nscript_from = \"host_label\"\n",
    );
    let base = "/client/v4/accounts/acct-1/storage/kv/namespaces";
    let js = "application/json";

    // Namespaces: create, conflict, rename, list.
    let r = admin(&n, "POST", base, js, br#"{"title": "sessions"}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    let id = json_of(&r)["result"]["id"].as_str().unwrap().to_string();
    let r = admin(&n, "POST", base, js, br#"{"title": "sessions"}"#);
    assert_eq!(r.status, 409);
    let r = admin(
        &n,
        "PUT",
        &format!("{base}/{id}"),
        js,
        br#"{"title": "sessions-v2"}"#,
    );
    assert_eq!(json_of(&r)["result"]["title"], "sessions-v2");
    let v = json_of(&admin(&n, "GET", base, js, b""));
    assert_eq!(v["result"][0]["id"], id.as_str());
    assert_eq!(v["result_info"]["total_count"], 1);

    // Values: raw, with a TTL; multipart with metadata; keys percent-encoded in the path.
    let values = format!("{base}/{id}/values");
    let r = admin(
        &n,
        "PUT",
        &format!("{values}/user%2F1?expiration_ttl=120"),
        "application/octet-stream",
        b"alice",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = admin(&n, "GET", &format!("{values}/user%2F1"), js, b"");
    assert_eq!((r.status, r.text()), (200, "alice".to_string()));
    assert!(r.header("expiration").is_some());
    let boundary = "kvb";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"value\"\r\n\r\nbob\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\r\n{{\"plan\":\"pro\"}}\r\n--{boundary}--\r\n"
    );
    let r = admin(
        &n,
        "PUT",
        &format!("{values}/user%2F2"),
        &format!("multipart/form-data; boundary={boundary}"),
        body.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = admin(
        &n,
        "GET",
        &format!("{base}/{id}/metadata/user%2F2"),
        js,
        b"",
    );
    assert_eq!(json_of(&r)["result"]["plan"], "pro");

    // Bulk write (one pair base64) and the key list with prefix and cursor.
    let pairs: Vec<Value> = (0..12)
        .map(|i| serde_json::json!({"key": format!("item:{i:02}"), "value": "v"}))
        .chain([serde_json::json!({"key": "bin", "value": "aGk=", "base64": true})])
        .collect();
    let r = admin(
        &n,
        "PUT",
        &format!("{base}/{id}/bulk"),
        js,
        serde_json::to_string(&pairs).unwrap().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        admin(&n, "GET", &format!("{values}/bin"), js, b"").text(),
        "hi"
    );
    let v = json_of(&admin(
        &n,
        "GET",
        &format!("{base}/{id}/keys?prefix=item:&limit=10"),
        js,
        b"",
    ));
    assert_eq!(v["result"].as_array().unwrap().len(), 10);
    let cursor = v["result_info"]["cursor"].as_str().unwrap().to_string();
    let v = json_of(&admin(
        &n,
        "GET",
        &format!("{base}/{id}/keys?prefix=item:&limit=10&cursor={cursor}"),
        js,
        b"",
    ));
    assert_eq!(v["result"].as_array().unwrap().len(), 2);
    assert_eq!(v["result_info"]["cursor"], "");
    let r = admin(
        &n,
        "POST",
        &format!("{base}/{id}/bulk/delete"),
        js,
        br#"["item:00", "item:01"]"#,
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        admin(&n, "GET", &format!("{values}/item:00"), js, b"").status,
        404
    );

    // Errors change nothing and say why.
    let r = admin(&n, "PUT", &format!("{values}/k?expiration_ttl=5"), js, b"x");
    assert_eq!(r.status, 400);
    assert!(
        json_of(&r)["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("at least 60")
    );
    let r = admin(
        &n,
        "GET",
        &format!("{base}/no-such-namespace/values/k"),
        js,
        b"",
    );
    assert_eq!(r.status, 404);
    let bad_bulk = br#"[{"key": "ok", "value": "1"}, {"key": "", "value": "2"}]"#;
    assert_eq!(
        admin(&n, "PUT", &format!("{base}/{id}/bulk"), js, bad_bulk).status,
        400
    );
    assert_eq!(
        admin(&n, "GET", &format!("{values}/ok"), js, b"").status,
        404
    );

    // A Worker uploaded with a binding to it reads what the API wrote; an unknown id is refused.
    let scripts = "/client/v4/accounts/acct-1/workers/dispatch/namespaces/customers/scripts";
    let upload = |binding_id: &str| {
        let metadata = format!(
            r#"{{"main_module": "w.wasm", "bindings": [{{"type": "kv_namespace", "name": "CACHE", "namespace_id": "{binding_id}"}}]}}"#
        );
        let wasm = std::fs::read(guest("kv_store")).unwrap();
        let (ct, body) = multipart(&metadata, "w.wasm", &wasm);
        admin(&n, "PUT", &format!("{scripts}/reader"), &ct, &body)
    };
    let r = upload("0123456789abcdef0123456789abcdef");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("does not exist"), "{}", r.text());
    let r = upload(&id);
    assert_eq!(r.status, 200, "{}", r.text());
    let r = get(n.addr, "reader.example.test", "/k/user%2F2");
    assert_eq!((r.status, r.text()), (200, "bob".to_string()));
    assert_eq!(r.header("x-kv-metadata"), Some(r#"{"plan":"pro"}"#));

    // Deleting the namespace deletes its values.
    assert_eq!(
        admin(&n, "DELETE", &format!("{base}/{id}"), js, b"").status,
        200
    );
    assert_eq!(
        admin(&n, "GET", &format!("{values}/user%2F2"), js, b"").status,
        404
    );
}

/// Every file under `dir`, read whole.
fn files_under(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path, bytes));
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn secrets_are_kept_apart_from_the_index_and_never_shown() {
    let secret = "s3cret-value-9f8e7d";
    let config = format!(
        "[[namespace]]\nname = \"customers\"\n\
         [[route]]\nhost = \"*.example.test\"\nnamespace = \"customers\"\nscript_from = \"host_label\"\n{}",
        worker(
            "customers",
            "alice",
            "env_reader",
            &format!(
                "bindings = [{{ type = \"secret_text\", name = \"FROM_CONFIG\", text = \"{secret}\" }}]"
            ),
        )
    );
    let mut n = TestNode::start(&config);
    let a = n.node.as_ref().unwrap().admin_addr().unwrap();
    // `bob` comes through the API (a config deploy would replace `alice` whole on restart).
    let base = "/client/v4/accounts/acct-1/workers/dispatch/namespaces/customers/scripts/bob";
    let auth = ("Authorization", "Bearer test-token");
    let r = request(
        a,
        "PUT",
        "admin",
        base,
        &[auth, ("Content-Type", "application/wasm")],
        &std::fs::read(guest("env_reader")).unwrap(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let api_secret = "api-secret-1a2b3c";
    let r = request(
        a,
        "PUT",
        "admin",
        &format!("{base}/secrets"),
        &[auth, ("Content-Type", "application/json")],
        format!(r#"{{"name": "FROM_API", "text": "{api_secret}", "type": "secret_text"}}"#)
            .as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());

    // The Worker sees both values.
    assert_eq!(
        get(n.addr, "alice.example.test", "/?name=FROM_CONFIG").text(),
        secret
    );
    assert_eq!(
        get(n.addr, "bob.example.test", "/?name=FROM_API").text(),
        api_secret
    );

    // No read API shows them.
    for path in [
        "",
        "/bindings",
        "/settings",
        "/secrets",
        "/secrets/FROM_API",
    ] {
        let r = request(a, "GET", "admin", &format!("{base}{path}"), &[auth], b"");
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert!(
            !r.text().contains(secret) && !r.text().contains(api_secret),
            "{path}: {}",
            r.text()
        );
    }
    // The namespace index on disk holds tokens, not values; the values live in the store.
    let data = n.dir.path().join("data");
    for (path, bytes) in files_under(&data.join("namespaces")) {
        assert!(
            !contains(&bytes, secret.as_bytes()) && !contains(&bytes, api_secret.as_bytes()),
            "{} holds a secret value",
            path.display()
        );
    }

    // Rotating a secret reaches the Worker; both survive a restart (the config's is not renewed).
    let r = request(
        a,
        "PUT",
        "admin",
        &format!("{base}/secrets"),
        &[auth, ("Content-Type", "application/json")],
        br#"{"name": "FROM_API", "text": "rotated", "type": "secret_text"}"#,
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        get(n.addr, "bob.example.test", "/?name=FROM_API").text(),
        "rotated"
    );
    n.restart(&config);
    assert_eq!(
        get(n.addr, "bob.example.test", "/?name=FROM_API").text(),
        "rotated"
    );
    assert_eq!(
        get(n.addr, "alice.example.test", "/?name=FROM_CONFIG").text(),
        secret
    );

    // Deleting it removes it for the Worker.
    let a = n.node.as_ref().unwrap().admin_addr().unwrap();
    let r = request(
        a,
        "DELETE",
        "admin",
        &format!("{base}/secrets/FROM_API"),
        &[auth],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        get(n.addr, "bob.example.test", "/?name=FROM_API").status,
        404
    );
}

#[test]
fn expired_keys_are_never_returned() {
    // A node that accepts 1-second expirations (Cloudflare's minimum is 60 s).
    let config = format!("[kv]\nmin_expiration_ttl_s = 1\n{}", config());
    let n = TestNode::start(&config);
    assert_eq!(put(&n, "a.example.test", "/k/soon?ttl=1", b"x").status, 204);
    assert_eq!(
        put(&n, "a.example.test", "/k/later?ttl=3600", b"y").status,
        204
    );
    assert_eq!(get(n.addr, "a.example.test", "/k/soon").status, 200);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert_eq!(get(n.addr, "a.example.test", "/k/soon").status, 404);
    let r = get(n.addr, "a.example.test", "/list");
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    let names: Vec<&str> = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["later"]);
}

#[test]
fn the_cloudflare_kv_api_reads_in_bulk() {
    let n = TestNode::start("[[kv_namespace]]\ntitle = \"bulk\"\n");
    let base = "/client/v4/accounts/acct-1/storage/kv/namespaces";
    let js = "application/json";
    let v = json_of(&admin(&n, "GET", base, js, b""));
    let id = v["result"][0]["id"].as_str().unwrap().to_string();
    let pairs = serde_json::json!([
        {"key": "text", "value": "plain"},
        {"key": "doc", "value": "{\"n\": [1, 2]}", "metadata": {"v": 3}, "expiration_ttl": 3600},
    ]);
    let r = admin(
        &n,
        "PUT",
        &format!("{base}/{id}/bulk"),
        js,
        pairs.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let bulk = |body: Value| {
        admin(
            &n,
            "POST",
            &format!("{base}/{id}/bulk/get"),
            js,
            body.to_string().as_bytes(),
        )
    };

    // Text by default; an absent key is null.
    let r = bulk(serde_json::json!({"keys": ["text", "doc", "absent"]}));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = json_of(&r);
    assert_eq!(v["success"], true);
    assert_eq!(
        v["result"],
        serde_json::json!({"values": {"text": "plain", "doc": "{\"n\": [1, 2]}", "absent": null}})
    );
    // JSON parsed, with metadata and expiration.
    let v = json_of(&bulk(
        serde_json::json!({"keys": ["doc", "absent"], "type": "json", "withMetadata": true}),
    ));
    let doc = &v["result"]["values"]["doc"];
    assert_eq!(doc["value"], serde_json::json!({"n": [1, 2]}), "{v}");
    assert_eq!(doc["metadata"], serde_json::json!({"v": 3}), "{v}");
    assert!(doc["expiration"].as_u64().is_some(), "{v}");
    assert_eq!(v["result"]["values"]["absent"], Value::Null);
    let v = json_of(&bulk(
        serde_json::json!({"keys": ["text"], "withMetadata": true}),
    ));
    assert_eq!(
        v["result"]["values"]["text"],
        serde_json::json!({"value": "plain", "metadata": null})
    );

    // Cloudflare's limits and messages.
    let refused = |body: Value, status: u16, message: &str| {
        let r = bulk(body);
        assert_eq!(r.status, status, "{}", r.text());
        let v = json_of(&r);
        assert_eq!(v["success"], false);
        assert_eq!(v["errors"][0]["message"], message, "{v}");
    };
    refused(
        serde_json::json!({"keys": ["text"], "type": "json"}),
        400,
        "At least one of the requested keys corresponds to a non-json value",
    );
    refused(
        serde_json::json!({"keys": ["text"], "type": "arrayBuffer"}),
        400,
        "\"arrayBuffer\" is not a valid type. Use \"json\" or \"text\"",
    );
    let many: Vec<String> = (0..101).map(|i| format!("k{i}")).collect();
    refused(
        serde_json::json!({ "keys": many }),
        400,
        "You can request a maximum of 100 keys",
    );
    refused(
        serde_json::json!({"keys": []}),
        400,
        "You must request a minimum of 1 key",
    );
    let r = bulk(serde_json::json!({"keys": [""]}));
    assert_eq!(r.status, 400, "{}", r.text());
    let r = admin(
        &n,
        "POST",
        &format!("{base}/0123456789abcdef0123456789abcdef/bulk/get"),
        js,
        br#"{"keys": ["a"]}"#,
    );
    assert_eq!(r.status, 404, "{}", r.text());
    let r = admin(&n, "GET", &format!("{base}/{id}/bulk/get"), js, b"");
    assert_eq!(r.status, 405, "{}", r.text());
}
