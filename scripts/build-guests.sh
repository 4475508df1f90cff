#!/usr/bin/env bash
# Builds the example Workers (examples/workers) to wasm32-wasip1 into target/guests/.
# The test suite runs the same command itself when the modules are missing or stale.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo build --quiet --release --target wasm32-wasip1 \
  --manifest-path examples/workers/Cargo.toml --target-dir target/guests
