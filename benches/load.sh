#!/usr/bin/env bash
# The load comparison of docs/performance.md: the full Tenantry path (route → index → pooled
# instance → hello Worker) against a raw monoio+httparse responder that returns the same bytes
# without wasm, both on one pinned serving thread, with wrk on the other CPU.
#
#   benches/load.sh [duration=10s] [connections=64] [driver=io_uring|legacy]
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10s}
conns=${2:-64}
driver=${3:-io_uring}
command -v wrk >/dev/null || { echo "wrk is not installed: run scripts/setup.sh --all" >&2; exit 1; }

scripts/build-guests.sh
# One invocation for both, so cargo unifies features once and reuses the build.
cargo build --quiet --release -p tenantry -p tenantry-benches --bins

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

wait_port() {
  for _ in $(seq 1 200); do
    if (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "nothing listens on port $1" >&2; exit 1
}

sed "s/^threads = 1$/threads = 1\ndriver = \"$driver\"/" benches/load/tenantry.toml > benches/load/.run.toml
RUST_LOG=warn taskset -c 0 target/release/tenantry serve --config benches/load/.run.toml >/dev/null &
pids+=($!)
TENANTRY_DRIVER=$driver taskset -c 0 target/release/raw-responder 127.0.0.1:18081 &
pids+=($!)
wait_port 18080
wait_port 18081

out=$(mktemp)
run() {
  taskset -c 1 wrk -t1 -c"$conns" -d"$duration" --latency -H 'Host: alice.example.test' "http://127.0.0.1:$1/hello" > "$out"
  cat "$out" >&2
  awk '/Requests\/sec/ {print $2}' "$out"
}
# Warm both up, then measure alternately.
taskset -c 1 wrk -t1 -c"$conns" -d2s -H 'Host: alice.example.test' http://127.0.0.1:18080/ >/dev/null
taskset -c 1 wrk -t1 -c"$conns" -d2s -H 'Host: alice.example.test' http://127.0.0.1:18081/ >/dev/null
echo "== raw responder (no wasm) =="; raw=$(run 18081)
echo "== tenantry full path =="; full=$(run 18080)
rm -f benches/load/.run.toml
awk -v f="$full" -v r="$raw" 'BEGIN { printf "full path %.0f req/s, raw %.0f req/s, ratio %.2f\n", f, r, f / r }'
