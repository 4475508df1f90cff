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
source benches/common.sh

build_all
start_server benches/load/dispatch.toml 18082
# Warm both paths up, then measure.
(duration=2s wrk_rps -H 'Host: direct.test' http://127.0.0.1:18082/ 2>/dev/null >/dev/null)
(duration=2s wrk_rps -H 'Host: alice.example.test' http://127.0.0.1:18082/ 2>/dev/null >/dev/null)
echo "== direct route =="; direct=$(wrk_rps -H 'Host: direct.test' http://127.0.0.1:18082/)
echo "== through the dispatcher =="; hop=$(wrk_rps -H 'Host: alice.example.test' http://127.0.0.1:18082/)
awk -v d="$direct" -v h="$hop" 'BEGIN {
  printf "direct %.0f req/s, dispatched %.0f req/s (%.2f of direct); one hop costs %.2f us of core time\n",
    d, h, h / d, (1e6 / h) - (1e6 / d) }'
