//! Config files: what `tenantry check` accepts, and the file:line errors for what it does not.

use std::path::Path;

use tenantry::config::Config;

use crate::common::*;

fn parse_err(text: &str) -> String {
    match Config::parse(text, Path::new("/etc/tenantry.toml")) {
        Ok(_) => panic!("config was accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_example_config_parses() {
    let config = Config::load(&repo_root().join("examples/tenantry.toml")).unwrap();
    assert_eq!(config.namespaces, ["production"]);
    assert_eq!(config.workers.len(), 6);
    assert_eq!(config.server.addr.port(), 8080);
    assert_eq!(config.routes.len(), 1);
}

#[test]
fn unknown_field_is_named_with_its_line() {
    let e = parse_err("[server]\nlisten = \"127.0.0.1:0\"\nlisten_port = 3\n");
    assert!(e.starts_with("/etc/tenantry.toml:3: "), "{e}");
    assert!(e.contains("listen_port"), "{e}");
}

#[test]
fn syntax_error_has_a_line() {
    let e = parse_err("[server]\n\nlisten = \n");
    assert!(e.starts_with("/etc/tenantry.toml:3"), "{e}");
}

#[test]
fn semantic_errors_are_specific() {
    let ns = "[[namespace]]\nname = \"production\"\n";
    let cases = [
        (
            format!("{ns}[[worker]]\nnamespace = \"staging\"\nname = \"a\"\nmodule = \"a.wasm\"\n"),
            ":4: ",
            "namespace `staging` is not declared",
        ),
        (
            format!(
                "{ns}[[worker]]\nnamespace = \"production\"\nname = \"Bad Name\"\nmodule = \"a.wasm\"\n"
            ),
            ":5: ",
            "lower-case",
        ),
        (
            format!("{ns}[[namespace]]\nname = \"production\"\n"),
            ":4: ",
            "declared twice",
        ),
        (
            format!(
                "{ns}[[worker]]\nnamespace = \"production\"\nname = \"a\"\nmodule = \"a.wasm\"\nbindings = [{{ type = \"kv\", name = \"X\", text = \"y\" }}]\n"
            ),
            ":7: ",
            "type `kv` is not one of",
        ),
        (
            format!(
                "{ns}[[worker]]\nnamespace = \"production\"\nname = \"a\"\nmodule = \"a.wasm\"\ntags = [\"a,b\"]\n"
            ),
            ":5: ",
            "may not contain `,`",
        ),
        (
            format!(
                "{ns}[[worker]]\nnamespace = \"production\"\nname = \"a\"\nmodule = \"a.wasm\"\nlimits = {{ memory_mb = 4096 }}\n"
            ),
            ":5: ",
            "exceeds engine.max_memory_mb",
        ),
        (
            format!("{ns}[[route]]\nnamespace = \"production\"\n"),
            ":4: ",
            "exactly one of `script` and `script_from`",
        ),
        (
            format!("{ns}[[route]]\nnamespace = \"production\"\nscript_from = \"path\"\n"),
            ":5: ",
            "expected \"host_label\"",
        ),
        (
            "[server]\nlisten = \"nope\"\n".to_string(),
            ":2: ",
            "server.listen `nope`",
        ),
        (
            "[server]\ndriver = \"kqueue\"\n".to_string(),
            ":2: ",
            "expected auto, io_uring or legacy",
        ),
        (
            "[engine]\nmax_loaded_modules = 0\n".to_string(),
            ":2: ",
            "max_loaded_modules must be at least 1",
        ),
        (
            "[engine]\nmax_mapped_indexes = 0\n".to_string(),
            ":2: ",
            "max_mapped_indexes must be at least 1",
        ),
    ];
    for (text, line, needle) in cases {
        let e = parse_err(&text);
        assert!(
            e.contains(line) && e.contains(needle),
            "expected {line}…{needle} in: {e}\nfor:\n{text}"
        );
    }
}

#[test]
fn a_missing_or_invalid_module_fails_the_deploy_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.wasm"), b"\0asm\x01\0\0\0garbage").unwrap();
    for (module, needle) in [
        ("missing.wasm", "cannot read"),
        ("bad.wasm", "invalid WebAssembly"),
    ] {
        let text = format!(
            "data_dir = \"data\"\n[engine]\nmax_instances = 8\n[[namespace]]\nname = \"p\"\n\
             [[worker]]\nnamespace = \"p\"\nname = \"w\"\nmodule = \"{module}\"\n"
        );
        let path = dir.path().join("t.toml");
        std::fs::write(&path, &text).unwrap();
        let config = Config::parse(&text, &path).unwrap();
        let e = format!("{:#}", tenantry::deploy::check(&config).unwrap_err());
        assert!(
            e.contains("p/w") && e.contains(module) && e.contains(needle),
            "{e}"
        );
    }
}

#[test]
fn errors_about_a_secret_binding_never_show_its_value() {
    let e = parse_err(
        "[[namespace]]\nname = \"ns\"\n[[worker]]\nnamespace = \"ns\"\nname = \"w\"\nmodule = \"w.wasm\"\n\
         bindings = [{ type = \"secret_text\", name = \"S\", text = \"do-not-echo-7c6b\", json = 1 }]\n",
    );
    assert!(e.contains("binding `S`"), "{e}");
    assert!(!e.contains("do-not-echo-7c6b"), "{e}");
}

#[test]
fn syntax_errors_on_a_secret_line_never_show_its_value() {
    let e = parse_err(
        "[[namespace]]\nname = \"ns\"\n[[worker]]\nnamespace = \"ns\"\nname = \"w\"\nmodule = \"w.wasm\"\n\
         bindings = [{ type = \"secret_text\", name = \"S\", text = \"do-not-echo-8d7c\", bogus = 1 }]\n",
    );
    assert!(e.contains("bogus"), "{e}");
    assert!(!e.contains("do-not-echo-8d7c"), "{e}");
}

#[test]
fn admission_defaults_follow_the_pool_and_overrides_apply() {
    let path = Path::new("/etc/tenantry.toml");
    let config = Config::parse(
        "[server]\nthreads = 2\n[engine]\nmax_instances = 1000\n",
        path,
    )
    .unwrap();
    let a = config.admission;
    // Half of each core's 500 slots for requests from the network, a quarter of that per Worker.
    assert_eq!((a.max_in_flight, a.max_in_flight_per_worker), (250, 62));
    assert_eq!(a.max_queued, 250);
    assert_eq!(a.max_queued_per_cpu_bound_worker, 0);
    assert_eq!(config.engine.idle_cap(), 250);

    let config = Config::parse(
        "[server]\nthreads = 2\n[engine]\nmax_idle_instances = 7\n\
         [admission]\nmax_in_flight = 9\nmax_queued_per_worker = 0\nmax_queue_wait_ms = 5\nretry_after_s = 3\n\
         max_queued_per_cpu_bound_worker = 2\n",
        path,
    )
    .unwrap();
    let a = config.admission;
    assert_eq!((a.max_in_flight, a.max_queued_per_worker), (9, 0));
    assert_eq!(a.max_queue_wait, std::time::Duration::from_millis(5));
    assert_eq!(a.retry_after_s, 3);
    assert_eq!(a.max_queued_per_cpu_bound_worker, 2);
    assert_eq!(config.engine.idle_cap(), 7);

    let e = parse_err("[admission]\nmax_in_flight_per_worker = 0\n");
    assert!(
        e.contains("admission.max_in_flight_per_worker must be at least 1"),
        "{e}"
    );
    let e = parse_err("[admission]\nmax_in_fligth = 3\n");
    assert!(e.contains("max_in_fligth"), "{e}");
}

/// A config deploy reads modules as the compile pool gets to them, a few ahead (issue 13): with
/// more Workers than it keeps in flight, every one is deployed and served; a module missing
/// among the later ones fails the deploy with its name and publishes nothing.
#[test]
fn a_deploy_of_more_workers_than_it_reads_ahead_serves_every_one() {
    const WORKERS: usize = 40;
    let modules = tempfile::tempdir().unwrap();
    let mut body = String::from(
        "[[namespace]]\nname = \"many\"\n[[route]]\nhost = \"*.many.test\"\nnamespace = \"many\"\nscript_from = \"host_label\"\n",
    );
    for i in 0..WORKERS {
        // Distinct bytes, so each is compiled on its own.
        let wat = format!(
            "(module (memory (export \"memory\") 1) (global i32 (i32.const {i})) \
             (func (export \"tenantry_fetch\") (result i32) (i32.const 0)))"
        );
        body.push_str(&wat_worker(
            modules.path(),
            "many",
            &format!("w{i}"),
            &wat,
            "",
        ));
    }
    let node = TestNode::start(&body);
    for i in 0..WORKERS {
        let resp = get(node.addr, &format!("w{i}.many.test"), "/");
        assert_eq!(resp.status, 200, "w{i}: {}", resp.text());
    }
    drop(node);

    let broken = body.replace(
        &modules.path().join("w35.wasm").display().to_string(),
        &modules.path().join("gone.wasm").display().to_string(),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tenantry.toml");
    let text = config_text(&broken, "auto");
    let config = Config::parse(&text, &path).unwrap();
    let e = format!("{:#}", tenantry::serve::Node::start(&config).err().unwrap());
    assert!(e.contains("many/w35") && e.contains("gone.wasm"), "{e}");
    assert!(
        !dir.path().join("data/namespaces/many").exists(),
        "a failed deploy published its namespace"
    );
}
