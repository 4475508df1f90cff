#!/usr/bin/env bash
# A merge at scale (issue 13, item 1; docs/performance.md "Start and resident memory"): a node
# on a namespace of N Workers built by benches/start.sh (its copy for the binary named NAME,
# copied again here so the run starts with an empty delta) takes uploads of new scripts until
# the delta reaches `index_merge_records` (1024) and the merge thread has folded it into a new
# base; prints how long the merge took and the uploads' latency before and while it ran. One
# serving thread on CPU 0; the client on CPU 1.
#
#   benches/merge.sh [N=1000000] [NAME=current]
#   TENANTRY_BIN=/path/to/tenantry benches/merge.sh 1000000 before
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
name=${2:-current}
source benches/common.sh
[[ -n "${TENANTRY_BIN:-}" ]] || build_all
src=target/start/$n/$name
[[ -d "$src/data" ]] || { echo "no $src/data: run benches/start.sh $n first" >&2; exit 1; }
dir=target/merge/$n
rm -rf "$dir"
mkdir -p "$dir"
cp -a "$src/data" "$src/serve.toml" "$dir/"
START_WAIT_S=600 start_server "$dir/serve.toml" 18101
taskset -c 1 python3 benches/scale/merge.py 18102 s "$dir/data/namespaces/s/index" 1024 \
  target/guests/wasm32-wasip1/release/hello.wasm
stop_server
rm -rf "$dir"
