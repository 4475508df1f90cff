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
source benches/common.sh

build_all
start_server benches/load/kv.toml 18083
curl -s -X PUT --data-binary 'hello from kv' http://127.0.0.1:18083/k/bench >/dev/null
echo "== GET /k/bench =="; get=$(wrk_rps http://127.0.0.1:18083/k/bench)
echo "== PUT /k/key-N =="; put=$(wrk_rps -s benches/load/kv-put.lua http://127.0.0.1:18083/)
awk -v g="$get" -v p="$put" 'BEGIN { printf "KV get %.0f req/s, KV put %.0f req/s\n", g, p }'
