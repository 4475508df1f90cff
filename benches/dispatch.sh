#!/usr/bin/env bash
# The cost of one dispatch hop (docs/performance.md): the same hello Worker on one pinned serving
# thread, reached directly by a declarative route and through the example dispatch Worker
# (dispatcher → dispatch_namespace binding → customer Worker), with wrk on the other CPU.
#
#   benches/dispatch.sh [duration=10s] [connections=64]
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10s}
conns=${2:-64}
command -v wrk >/dev/null || { echo "wrk is not installed: run scripts/setup.sh --all" >&2; exit 1; }

scripts/build-guests.sh
# The same package set as load.sh, so the two share one build.
cargo build --quiet --release -p tenantry -p tenantry-benches --bins

pid=
cleanup() { [[ -n "$pid" ]] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT
RUST_LOG=warn taskset -c 0 target/release/tenantry serve --config benches/load/dispatch.toml >/dev/null &
pid=$!
for _ in $(seq 1 200); do
  (exec 3<>/dev/tcp/127.0.0.1/18082) 2>/dev/null && break
  sleep 0.05
done

out=$(mktemp)
run() {
  taskset -c 1 wrk -t1 -c"$conns" -d"$duration" --latency -H "Host: $1" http://127.0.0.1:18082/ > "$out"
  cat "$out" >&2
  awk '/Requests\/sec/ {print $2}' "$out"
}
taskset -c 1 wrk -t1 -c"$conns" -d2s -H 'Host: direct.test' http://127.0.0.1:18082/ >/dev/null
taskset -c 1 wrk -t1 -c"$conns" -d2s -H 'Host: alice.example.test' http://127.0.0.1:18082/ >/dev/null
echo "== direct route =="; direct=$(run direct.test)
echo "== through the dispatcher =="; hop=$(run alice.example.test)
awk -v d="$direct" -v h="$hop" 'BEGIN {
  printf "direct %.0f req/s, dispatched %.0f req/s (%.2f of direct); one hop costs %.2f us of core time\n",
    d, h, h / d, (1e6 / h) - (1e6 / d) }'
