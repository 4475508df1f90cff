#!/usr/bin/env bash
# The cost of one dispatch hop (docs/performance.md): the same hello Worker on one pinned serving
# thread, reached directly by a declarative route and through the example dispatch Worker
# (dispatcher → dispatch_namespace binding → customer Worker), and through the documents'
# JavaScript dispatcher (benches/load/dispatcher.mjs), with wrk on the other CPU.
#
#   benches/dispatch.sh [duration=10s] [connections=64]
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10s}
conns=${2:-64}
source benches/common.sh

build_all
# Deploying the JavaScript dispatcher prepares the JS engine on a new data directory (seconds).
START_WAIT_S=${START_WAIT_S:-120} start_server benches/load/dispatch.toml 18082
# Warm the paths up, then measure.
(duration=2s wrk_rps -H 'Host: direct.test' http://127.0.0.1:18082/ 2>/dev/null >/dev/null)
(duration=2s wrk_rps -H 'Host: alice.example.test' http://127.0.0.1:18082/ 2>/dev/null >/dev/null)
(duration=2s wrk_rps -H 'Host: alice.js.test' http://127.0.0.1:18082/ 2>/dev/null >/dev/null)
echo "== direct route =="; direct=$(wrk_rps -H 'Host: direct.test' http://127.0.0.1:18082/)
echo "== through the dispatcher =="; hop=$(wrk_rps -H 'Host: alice.example.test' http://127.0.0.1:18082/)
echo "== through the JavaScript dispatcher =="; js=$(wrk_rps -H 'Host: alice.js.test' http://127.0.0.1:18082/)
awk -v d="$direct" -v h="$hop" -v j="$js" 'BEGIN {
  printf "direct %.0f req/s, dispatched %.0f req/s (%.2f of direct); one hop costs %.2f us of core time\n",
    d, h, h / d, (1e6 / h) - (1e6 / d)
  printf "through the JavaScript dispatcher %.0f req/s (%.2f of direct); one hop costs %.2f us of core time\n",
    j, j / d, (1e6 / j) - (1e6 / d) }'
