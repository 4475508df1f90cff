#!/usr/bin/env bash
# README command 1: set up, build the example Workers, and serve examples/tenantry.toml on
# 127.0.0.1:8080 (data in ./data). Extra arguments go to `tenantry serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build-guests.sh
exec cargo run --release --bin tenantry -- serve --config examples/tenantry.toml "$@"
