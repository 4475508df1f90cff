#!/usr/bin/env bash
# Memory of a config deploy (issue 13, item 4; docs/performance.md): a node starts on a config
# of N Workers (20 000 by default) of the 31 KB Rust hello module, one serving thread; prints the
# time to serving and the node's peak RSS (VmHWM) once it serves.
#
#   benches/deploy-mem.sh [workers=20000]
#   TENANTRY_BIN=/path/to/older/tenantry benches/deploy-mem.sh   # another build
set -euo pipefail
cd "$(dirname "$0")/.."
workers=${1:-20000}
source benches/common.sh
[[ -n "${TENANTRY_BIN:-}" ]] || build_all

dir=target/deploy-mem
mkdir -p "$dir"
{
  printf 'data_dir = "data"\n\n[server]\nlisten = "127.0.0.1:18099"\nthreads = 1\n\n'
  printf '[admin]\nenabled = false\n\n[[namespace]]\nname = "d"\n\n'
  for i in $(seq 1 "$workers"); do
    printf '[[worker]]\nnamespace = "d"\nname = "w%d"\nmodule = "../guests/wasm32-wasip1/release/hello.wasm"\n' "$i"
  done
} > "$dir/tenantry.toml"
rm -rf "$dir/data"
started=$(date +%s%N)
START_WAIT_S=300 start_server "$dir/tenantry.toml" 18099
elapsed_ms=$(( ($(date +%s%N) - started) / 1000000 ))
echo "$workers Workers: serving after $elapsed_ms ms; peak RSS $(awk '$1 == "VmHWM:" {print $2}' "/proc/$server_pid/status") KiB"
