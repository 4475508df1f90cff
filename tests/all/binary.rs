//! The `tenantry` binary itself: `serve` on port 0 (it prints the address it bound) and `check`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::common::*;

fn write_config(dir: &std::path::Path) -> std::path::PathBuf {
    let body = format!(
        "[[namespace]]\nname = \"production\"\n{}[[route]]\nnamespace = \"production\"\nscript = \"alice\"\n",
        worker("production", "alice", "hello", "")
    );
    let path = dir.join("tenantry.toml");
    std::fs::write(&path, config_text(&body, "auto")).unwrap();
    path
}

#[test]
fn serve_prints_its_address_and_answers() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let mut child = Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("tenantry listening on http://")
        .unwrap_or_else(|| panic!("unexpected: {line}"));
    let resp = get(addr.parse().unwrap(), "whatever", "/");
    // SIGTERM for a graceful stop, as an init system would send.
    // SAFETY: plain FFI call with a valid pid and signal number.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(
        (resp.status, resp.text().as_str()),
        (200, "hello from tenantry\n")
    );
    assert!(status.success(), "serve exited with {status}");
}

#[test]
fn check_validates_and_compiles() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let out = Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("ok (1 namespaces, 1 workers compiled, 1 routes)")
    );

    std::fs::write(&config, "[server]\nbogus = 1\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tenantry.toml:2") && err.contains("bogus"),
        "{err}"
    );
}

#[test]
fn secrets_never_reach_the_log() {
    let secret = "never-log-me-5e4d3c";
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "[[namespace]]\nname = \"production\"\n{}[[route]]\nnamespace = \"production\"\nscript = \"alice\"\n",
        worker(
            "production",
            "alice",
            "env_reader",
            &format!(
                "bindings = [{{ type = \"secret_text\", name = \"TOKEN\", text = \"{secret}\" }}]"
            )
        )
    );
    let config = dir.path().join("tenantry.toml");
    std::fs::write(&config, config_text(&body, "auto")).unwrap();
    let log = dir.path().join("log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr: std::net::SocketAddr = line
        .trim()
        .strip_prefix("tenantry listening on http://")
        .unwrap()
        .parse()
        .unwrap();
    // The Worker may show its own secret; the node must not log it, whatever happens.
    assert_eq!(get(addr, "x", "/?name=TOKEN").text(), secret);
    assert_eq!(get(addr, "x", "/?name=MISSING").status, 404);
    let mut c = Conn::open(addr);
    c.send(b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n");
    assert_eq!(c.read_response(false).status, 400);
    // SAFETY: plain FFI call with a valid pid and signal number.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap();
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("deployed the config"),
        "the log was captured: {logged}"
    );
    assert!(
        !logged.contains(secret),
        "a secret reached the log:\n{logged}"
    );
}
