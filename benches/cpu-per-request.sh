#!/usr/bin/env bash
# The serving thread's CPU time per request, which a noisy machine moves less than requests/s:
# one node (its config's one serving thread pinned to CPU 0) under wrk -c64 on CPU 1 for 6 s
# after a 2 s warm-up. Prints requests/s, p99, non-2xx answers, the node's CPU µs per request (user + system,
# all its threads) and how often the epoch thread woke.
#
#   benches/cpu-per-request.sh [BIN=target/release/tenantry] [CONFIG PORT HOST PATH]
#   benches/cpu-per-request.sh target/release/tenantry benches/load/js.toml 18090 hello-reuse.example.test /
#   benches/cpu-per-request.sh target/release/tenantry benches/load/tenantry.toml 18080 alice.example.test /hello
#
# Run two builds alternately (copy each binary aside) and compare within a run.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/tenantry}
cfg=${2:-benches/load/js.toml}
port=${3:-18090}
host=${4:-hello-reuse.example.test}
path=${5:-/}
command -v wrk >/dev/null || { echo "wrk is not installed: run scripts/setup.sh --all" >&2; exit 1; }
[[ -x $bin ]] || { scripts/build-guests.sh; cargo build --quiet --release -p tenantry --bins; }
rm -rf target/js-bench-data target/load-data
RUST_LOG=warn taskset -c 0 "$bin" serve --config "$cfg" >/dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.05; done
taskset -c 1 wrk -t1 -c64 -d2s -H "Host: $host" "http://127.0.0.1:$port$path" >/dev/null
out=$(mktemp)
ticker=$(dirname "$(grep -l tenantry-epoch /proc/$pid/task/*/comm | head -1)")
cpu0=$(awk '{print $14 + $15}' /proc/$pid/stat)
wake0=$(awk '/^voluntary_ctxt_switches/ {print $2}' "$ticker/status")
taskset -c 1 wrk -t1 -c64 -d6s --latency -H "Host: $host" "http://127.0.0.1:$port$path" > "$out"
cpu1=$(awk '{print $14 + $15}' /proc/$pid/stat)
wake1=$(awk '/^voluntary_ctxt_switches/ {print $2}' "$ticker/status")
ticks_per_s=$(getconf CLK_TCK)
awk -v t=$((cpu1 - cpu0)) -v hz="$ticks_per_s" -v w=$(( (wake1 - wake0) / 6 )) '
  /requests in/ {n = $1} /Requests\/sec/ {rps = $2} / 99%/ {p99 = $2} /Non-2xx/ {bad = $NF}
  END {printf "%.0f req/s, p99 %s, non-2xx %d, node CPU %.2f us/request, epoch thread woke %d/s\n", rps, p99, bad, t * 1e6 / hz / n, w}' "$out"
rm -f "$out"
