//! Builds the JavaScript engine (`runtimes/js`, a `wasm32-wasip1` guest) with
//! `scripts/build-js.sh` and hands its path to `src/js.rs`, which embeds it: the node ships one
//! binary, and every JavaScript Worker runs on the engine it was built with.
//!
//! The guest is built by its own cargo invocation (its own workspace and target directory,
//! `target/guests`), with the environment this build's cargo sets for *this* crate removed, so
//! that flags meant for the host (sanitizers, clippy's wrapper, coverage) never reach it.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest
        .parent()
        .expect("loader/ is inside the workspace")
        .to_path_buf();
    for watched in [
        "runtimes/js/src",
        "runtimes/js/Cargo.toml",
        "runtimes/js/Cargo.lock",
        "runtimes/js/web/src",
        "runtimes/js/web/Cargo.toml",
        "sdk/rust/src",
        "sdk/rust/Cargo.toml",
        "scripts/build-js.sh",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let script = root.join("scripts/build-js.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script).current_dir(&root);
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let host_only = matches!(
            key,
            "RUSTFLAGS"
                | "CARGO_ENCODED_RUSTFLAGS"
                | "RUSTC_WRAPPER"
                | "RUSTC_WORKSPACE_WRAPPER"
                | "CARGO_TARGET_DIR"
                | "CARGO_BUILD_TARGET"
                | "RUSTDOCFLAGS"
                | "CARGO_ENCODED_RUSTDOCFLAGS"
                | "CARGO_LLVM_COV"
                | "RUSTUP_TOOLCHAIN"
        ) || key.starts_with("CARGO_PROFILE_")
            || key.starts_with("CARGO_CFG_")
            || key.starts_with("CARGO_FEATURE_")
            || key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_MANIFEST_")
            || key.starts_with("DEP_")
            || matches!(
                key,
                "OUT_DIR"
                    | "TARGET"
                    | "HOST"
                    | "OPT_LEVEL"
                    | "PROFILE"
                    | "DEBUG"
                    | "NUM_JOBS"
                    | "RUSTC"
                    | "RUSTDOC"
                    | "RUSTC_LINKER"
            );
        if host_only {
            cmd.env_remove(key);
        }
    }
    let status = cmd.status().unwrap_or_else(|e| {
        panic!("cannot run {}: {e}", script.display());
    });
    if !status.success() {
        panic!(
            "building the JavaScript engine failed ({status}); see the output above. \
             On a fresh machine run `scripts/setup.sh` first (it installs clang, lld and wasi-libc)."
        );
    }
    let wasm = root.join("target/guests/wasm32-wasip1/release/tenantry_js.wasm");
    assert!(wasm.exists(), "{} was not built", wasm.display());
    println!("cargo:rustc-env=TENANTRY_JS_ENGINE_WASM={}", wasm.display());
}
