//! The server matches `docs/openapi.json`: every documented path and method is routed, every
//! other method on those paths is refused with 405, and GET results carry the fields the
//! document marks required.

use serde_json::{Value, json};

use crate::common::*;

fn spec() -> Value {
    let text = std::fs::read_to_string(repo_root().join("docs/openapi.json")).unwrap();
    serde_json::from_str(&text).expect("docs/openapi.json is valid JSON")
}

fn resolve<'a>(spec: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r.trim_start_matches("#/components/schemas/");
            &spec["components"]["schemas"][name]
        }
        None => schema,
    }
}

/// Checks `value` against the `required` fields and types of `schema`, recursively.
fn conforms(spec: &Value, schema: &Value, value: &Value, at: &str) {
    let schema = resolve(spec, schema);
    if value.is_null() && schema["nullable"] == json!(true) {
        return;
    }
    match schema["type"].as_str() {
        Some("object") => {
            assert!(value.is_object(), "{at}: expected an object, got {value}");
            for field in schema["required"].as_array().into_iter().flatten() {
                let f = field.as_str().unwrap();
                assert!(
                    value.get(f).is_some(),
                    "{at}: missing required field `{f}` in {value}"
                );
            }
            for (name, prop) in schema["properties"].as_object().into_iter().flatten() {
                if let Some(v) = value.get(name) {
                    conforms(spec, prop, v, &format!("{at}.{name}"));
                }
            }
        }
        Some("array") => {
            let items = value
                .as_array()
                .unwrap_or_else(|| panic!("{at}: expected an array, got {value}"));
            for (i, v) in items.iter().enumerate() {
                conforms(spec, &schema["items"], v, &format!("{at}[{i}]"));
            }
        }
        Some("string") => assert!(value.is_string(), "{at}: expected a string, got {value}"),
        Some("integer") => assert!(
            value.is_u64() || value.is_i64(),
            "{at}: expected an integer, got {value}"
        ),
        Some("boolean") => assert!(value.is_boolean(), "{at}: expected a boolean, got {value}"),
        _ => {}
    }
}

fn fill(path: &str, ns: &str, script: &str) -> String {
    // An existing certificate where the namespace and script exist, a missing one where not.
    let hostname = if ns == "customers" {
        "h1.example.test"
    } else {
        "missing.example.test"
    };
    path.replace("{account_id}", "acct-1")
        .replace("{hostname}", hostname)
        .replace("{dispatch_namespace}", ns)
        .replace("{script_name}", script)
        .replace("{secret_name}", "K")
        .replace("{tag}", "t1")
}

#[test]
fn the_server_matches_the_openapi_document() {
    let spec = spec();
    // With a TLS listener, so that the certificate endpoints answer.
    let ca = crate::tls::Ca::new();
    let files = tempfile::tempdir().unwrap();
    let table = crate::tls::tls_table(files.path(), Some(&ca.issue(&["default.test"])), &[]);
    let n = TestNode::start(&format!(
        "[server.tls]\nlisten = \"127.0.0.1:0\"\n{table}\n[[namespace]]\nname = \"customers\"\n"
    ));
    let a = n.node.as_ref().unwrap().admin_addr().unwrap();
    let auth = [("Authorization", "Bearer test-token")];
    // Something to read: a script with a secret and a tag.
    let wasm = std::fs::read(guest("env_reader")).unwrap();
    let put = |path: &str, ct: &str, body: &[u8]| {
        let r = request(
            a,
            "PUT",
            "admin",
            path,
            &[auth[0], ("Content-Type", ct)],
            body,
        );
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    };
    // In a namespace, and as a platform (account-level) script.
    for base in [
        "/client/v4/accounts/acct-1/workers/dispatch/namespaces/customers/scripts/s1",
        "/client/v4/accounts/acct-1/workers/scripts/s1",
    ] {
        put(base, "application/wasm", &wasm);
        put(
            &format!("{base}/secrets"),
            "application/json",
            br#"{"name": "K", "text": "v", "type": "secret_text"}"#,
        );
        put(&format!("{base}/tags"), "application/json", br#"["t1"]"#);
    }
    let leaf = ca.issue(&["h1.example.test"]);
    put(
        "/client/v4/accounts/acct-1/tls/certificates/h1.example.test",
        "application/json",
        json!({"certificate": leaf.cert_pem, "private_key": leaf.key_pem})
            .to_string()
            .as_bytes(),
    );

    let methods = ["GET", "POST", "PUT", "PATCH", "DELETE"];
    let mut checked = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in methods {
            let op = &item[method.to_lowercase()];
            if op.is_null() {
                // Not documented: the server must refuse it on this path.
                let r = request(
                    a,
                    method,
                    "admin",
                    &fill(path, "customers", "s1"),
                    &auth,
                    b"",
                );
                assert_eq!(
                    r.status,
                    405,
                    "{method} {path} is not documented but answered {}",
                    r.text()
                );
                continue;
            }
            checked += 1;
            if method == "GET" {
                let r = request(
                    a,
                    "GET",
                    "admin",
                    &fill(path, "customers", "s1"),
                    &auth,
                    b"",
                );
                assert_eq!(r.status, 200, "GET {path}: {}", r.text());
                let content = &op["responses"]["200"]["content"];
                if let Some(schema) = content["application/json"]["schema"].as_object() {
                    let v: Value = serde_json::from_slice(&r.body).unwrap();
                    conforms(
                        &spec,
                        &Value::Object(schema.clone()),
                        &v,
                        &format!("GET {path}"),
                    );
                } else {
                    assert_eq!(r.header("content-type"), Some("application/wasm"));
                }
            } else {
                // Changing calls go to a namespace or script that does not exist: routed (404 with the
                // not-found code, or 400 for a body checked first), never "no route" or 405.
                let r = request(
                    a,
                    method,
                    "admin",
                    &fill(path, "missing-ns", "missing-script"),
                    &auth,
                    b"",
                );
                let v: Value = serde_json::from_slice(&r.body).unwrap();
                let code = v["errors"][0]["code"].as_u64().unwrap_or(0);
                assert!(
                    r.status != 405 && code != 7003,
                    "{method} {path} is documented but not routed: {}",
                    r.text()
                );
                conforms(
                    &spec,
                    &json!({"$ref": "#/components/schemas/Failure"}),
                    &v,
                    &format!("{method} {path}"),
                );
            }
        }
    }
    assert!(checked >= 20, "only {checked} operations in the document");
}
