#!/usr/bin/env bash
# KV from a Worker (docs/performance.md): the kv_store example Worker on one pinned serving
# thread reading (GET /k/<key>) and writing (PUT /k/<key>, 100-byte values) its KV namespace, with
# wrk on the other CPU. The store runs on its own threads (redb, durable commits).
#
#   benches/kv.sh [duration=10s] [connections=64]
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10s}
conns=${2:-64}
command -v wrk >/dev/null || { echo "wrk is not installed: run scripts/setup.sh --all" >&2; exit 1; }

scripts/build-guests.sh
# The same package set as load.sh, so they share one build.
cargo build --quiet --release -p tenantry -p tenantry-benches --bins

pid=
cleanup() { [[ -n "$pid" ]] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT
RUST_LOG=warn taskset -c 0 target/release/tenantry serve --config benches/load/kv.toml >/dev/null &
pid=$!
for _ in $(seq 1 200); do
  (exec 3<>/dev/tcp/127.0.0.1/18083) 2>/dev/null && break
  sleep 0.05
done
curl -s -X PUT --data-binary 'hello from kv' http://127.0.0.1:18083/k/bench >/dev/null

out=$(mktemp)
run() {
  taskset -c 1 wrk -t1 -c"$conns" -d"$duration" --latency "$@" > "$out"
  cat "$out" >&2
  awk '/Requests\/sec/ {print $2}' "$out"
}
echo "== GET /k/bench =="; get=$(run http://127.0.0.1:18083/k/bench)
echo "== PUT /k/key-N =="; put=$(run -s benches/load/kv-put.lua http://127.0.0.1:18083/)
awk -v g="$get" -v p="$put" 'BEGIN { printf "KV get %.0f req/s, KV put %.0f req/s\n", g, p }'
