#!/usr/bin/env bash
# Round robin over N Workers of the same module bytes against one Worker (issue 13): one pinned
# serving thread with the default `[engine] workers_per_core` (1000), wrk on the other CPU asking
# w1, w2, ... wN in turn (benches/load/round-robin.lua). At N = 1001 every request misses the
# per-core cache, which then evicts on every request.
#
#   benches/round-robin.sh [duration=10s] [connections=64] [workers counts=1 1000 1001 ...]
#   TENANTRY_BIN=/path/to/older/tenantry benches/round-robin.sh ...   # another build
#   RR_DISTINCT=1 benches/round-robin.sh ...   # each Worker its own module bytes
#   RR_ENGINE='max_loaded_modules = 12000' benches/round-robin.sh ...   # lines for [engine]
#
# With RR_DISTINCT=1 every Worker gets a module of its own: a small WAT hello whose unused global
# holds the Worker's number, so each compiles (fast: ~1 ms) to its own artifact and a load may
# also map its module (the process-wide module cache keeps `[engine] max_loaded_modules`).
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10s}
conns=${2:-64}
counts=("${@:3}")
(( ${#counts[@]} )) || counts=(1 1000 1001)
source benches/common.sh
[[ -n "${TENANTRY_BIN:-}" ]] || build_all

dir=target/round-robin
mkdir -p "$dir"
max=0
for n in "${counts[@]}"; do (( n > max )) && max=$n; done
config=$dir/tenantry.toml
{
  printf 'data_dir = "data"\n\n[server]\nlisten = "127.0.0.1:18097"\nthreads = 1\n\n'
  printf '[admin]\nenabled = false\n\n[engine]\n%b\n\n[[namespace]]\nname = "rr"\n\n' "${RR_ENGINE:-}"
  printf '[[route]]\nhost = "*.rr.test"\nnamespace = "rr"\nscript_from = "host_label"\n\n'
  for i in $(seq 1 "$max"); do
    if [[ -n "${RR_DISTINCT:-}" ]]; then
      module="modules/w$i.wat"
    else
      module="../guests/wasm32-wasip1/release/hello.wasm"
    fi
    printf '[[worker]]\nnamespace = "rr"\nname = "w%d"\nmodule = "%s"\n' "$i" "$module"
  done
} > "$config"
if [[ -n "${RR_DISTINCT:-}" ]]; then
  rm -rf "$dir/modules" && mkdir -p "$dir/modules"
  for i in $(seq 1 "$max"); do
    printf '(module (memory (export "memory") 1) (global $worker i32 (i32.const %d))\n  (func (export "tenantry_fetch") (result i32) (i32.const 0)))\n' "$i" > "$dir/modules/w$i.wat"
  done
fi
rm -rf "$dir/data"
START_WAIT_S=900 start_server "$config" 18097

# Warm up: every Worker once (loads its module), then measure each count in one run of the node.
RR_WORKERS=$max taskset -c 1 wrk -t1 -c"$conns" -d2s -s benches/load/round-robin.lua http://127.0.0.1:18097/ >/dev/null
declare -A rps
for n in "${counts[@]}"; do
  echo "== $n Workers in turn" >&2
  rps[$n]=$(RR_WORKERS=$n wrk_rps -s benches/load/round-robin.lua http://127.0.0.1:18097/)
done
base=${rps[${counts[0]}]}
echo
echo "| Workers in turn | requests/s | vs ${counts[0]} |"
echo "| ---: | ---: | ---: |"
for n in "${counts[@]}"; do
  printf '| %s | %s | %.2f |\n' "$n" "${rps[$n]}" "$(echo "${rps[$n]} / $base" | bc -l)"
done
