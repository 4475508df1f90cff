#!/usr/bin/env bash
# JavaScript Workers against workerd (issue 11, docs/performance.md): the same hello Worker
# (benches/load/hello.mjs) on one pinned serving thread of each (CPU 0), wrk on CPU 1, one run.
#
#   benches/js.sh [duration=10s] [connections=64]
#
# workerd (Cloudflare's runtime) comes from npm into target/peers on first use. Also reports the
# upload of a ~100 KB JavaScript Worker to its first 200, and the node's RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10s}
conns=${2:-64}
source benches/common.sh

build_all
if [[ ! -x target/peers/node_modules/.bin/workerd ]]; then
  mkdir -p target/peers
  npm install --silent --prefix target/peers workerd >/dev/null
fi
rm -rf target/js-bench-data
START_WAIT_S=300 start_server benches/load/js.toml 18090
taskset -c 0 target/peers/node_modules/.bin/workerd serve benches/load/workerd.capnp >/dev/null 2>&1 &
workerd_pid=$!
trap 'kill $workerd_pid 2>/dev/null; stop_server' EXIT
for _ in $(seq 1 200); do (exec 3<>/dev/tcp/127.0.0.1/18091) 2>/dev/null && break; sleep 0.05; done

hdr=(-H 'Host: hello.example.test')
reuse=(-H 'Host: hello-reuse.example.test')
# Warm all up, then measure one after the other.
taskset -c 1 wrk -t1 -c"$conns" -d2s "${hdr[@]}" http://127.0.0.1:18090/ >/dev/null
taskset -c 1 wrk -t1 -c"$conns" -d2s "${reuse[@]}" http://127.0.0.1:18090/ >/dev/null
taskset -c 1 wrk -t1 -c"$conns" -d2s "${hdr[@]}" http://127.0.0.1:18091/ >/dev/null
echo "== workerd =="; w=$(wrk_rps "${hdr[@]}" http://127.0.0.1:18091/)
echo "== tenantry, JavaScript hello, a fresh instance per request =="; t=$(wrk_rps "${hdr[@]}" http://127.0.0.1:18090/)
echo "== tenantry, JavaScript hello, reused instances =="; r=$(wrk_rps "${reuse[@]}" http://127.0.0.1:18090/)
awk -v t="$t" -v r="$r" -v w="$w" 'BEGIN {
  printf "workerd %.0f req/s; tenantry fresh %.0f req/s (%.2fx), reused %.0f req/s (%.2fx)\n", w, t, t / w, r, r / w }'
echo "node RSS: $(awk '$1 == "VmRSS:" {print $2}' "/proc/$server_pid/status") KiB"
