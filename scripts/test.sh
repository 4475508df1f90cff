#!/usr/bin/env bash
# README command 2: every test. CI (.ci/run) runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build-guests.sh
cargo test --workspace --all-targets
cargo test --workspace --doc
CARGO_TARGET_DIR=target cargo test --manifest-path sdk/rust/Cargo.toml
# The JavaScript engine's own crates, natively (their wasm build is the loader's build script's).
CARGO_TARGET_DIR=target cargo test --manifest-path runtimes/js/web/Cargo.toml
CARGO_TARGET_DIR=target cargo test --manifest-path runtimes/js/Cargo.toml
