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

#[test]
fn a_stuck_log_sink_blocks_no_core() {
    // A Worker that logs 60 lines of 4 KiB per request (within its log allowance), and a node
    // whose stderr is a pipe nobody reads: it fills after the first request. Logging is
    // queued for a writer thread, so every request is still answered; were it written on the
    // serving core, that core would block in write(2) and these requests would time out.
    let dir = tempfile::tempdir().unwrap();
    let loud = r#"(module
        (import "tenantry:worker/v1" "log" (func $log (param i32 i32 i32) (result i32)))
        (memory (export "memory") 1)
        (func (export "tenantry_fetch") (result i32)
          (local $i i32)
          (memory.fill (i32.const 0) (i32.const 76) (i32.const 4096))
          (block $d (loop $l
            (br_if $d (i32.eq (local.get $i) (i32.const 60)))
            (drop (call $log (i32.const 1) (i32.const 0) (i32.const 4096)))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $l)))
          (i32.const 0)))"#;
    let body = format!(
        "[[namespace]]\nname = \"production\"\n{}{}[[route]]\nhost = \"*.example.test\"\n\
         namespace = \"production\"\nscript_from = \"host_label\"\n",
        worker("production", "alice", "hello", ""),
        wat_worker(dir.path(), "production", "loud", loud, ""),
    );
    let config = dir.path().join("tenantry.toml");
    std::fs::write(&config, config_text(&body, "auto")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Held, never read, until the end.
    let stuck_stderr = child.stderr.take();
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
    // 30 requests log ~7 MiB, far past what the pipe holds; every get() gives up after
    // IO_TIMEOUT, so a blocked core shows as a failure here, not a hang.
    let answered: Vec<u16> = (0..30)
        .flat_map(|_| {
            [
                get(addr, "loud.example.test", "/").status,
                get(addr, "alice.example.test", "/").status,
            ]
        })
        .collect();
    child.kill().unwrap();
    child.wait().unwrap();
    drop(stuck_stderr);
    assert!(answered.iter().all(|&s| s == 200), "{answered:?}");
}
