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
