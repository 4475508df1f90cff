#!/usr/bin/env bash
# A namespace at scale (issue 13, item 7; docs/performance.md): for each size, a node is built
# with that many Workers of the 31 KB Rust hello in one namespace (in bulk, from the config
# file), then measured: time to serving, RSS and disk per Worker, upload of known bytes through
# the admin API (p50/p99 of 20), get-script, a 1000-entry list page, a data-plane request to a
# Worker of the namespace (p50/p99 of 2000, HTTP on one connection included), and the start of
# a node on that data directory without deploying anything. One serving thread on CPU 0.
#
#   benches/scale.sh [sizes=1000 10000 100000]
#   TENANTRY_BIN=/path/to/older/tenantry benches/scale.sh 1000 10000
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("$@")
(( ${#sizes[@]} )) || sizes=(1000 10000 100000)
source benches/common.sh
[[ -n "${TENANTRY_BIN:-}" ]] || build_all

dir=target/scale
mkdir -p "$dir"
module=target/guests/wasm32-wasip1/release/hello.wasm
head() {
  printf 'data_dir = "data"\n\n[server]\nlisten = "127.0.0.1:18101"\nthreads = 1\n\n'
  printf '[admin]\nlisten = "127.0.0.1:18102"\ntokens = ["scale-token"]\n\n'
  printf '[[namespace]]\nname = "s"\n\n[[route]]\nhost = "*.s.test"\nnamespace = "s"\nscript_from = "host_label"\n\n'
}
rows=()
starts=()
for n in "${sizes[@]}"; do
  echo "== $n Workers" >&2
  {
    head
    for i in $(seq 0 $(( n - 1 ))); do
      printf '[[worker]]\nnamespace = "s"\nname = "w%d"\nmodule = "../guests/wasm32-wasip1/release/hello.wasm"\n' "$i"
    done
  } > "$dir/build.toml"
  head > "$dir/serve.toml"
  rm -rf "$dir/data"
  t0=$(date +%s%N)
  START_WAIT_S=3600 start_server "$dir/build.toml" 18101
  built_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  rss=$(awk '$1 == "VmRSS:" {print $2}' "/proc/$server_pid/status")
  row=$(python3 benches/scale/measure.py 18102 18101 s "$n" "$module")
  stop_server
  disk=$(du -sb "$dir/data/namespaces" | awk '{print $1}')
  t0=$(date +%s%N)
  START_WAIT_S=3600 start_server "$dir/serve.toml" 18101
  start_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  rss_start=$(awk '$1 == "VmRSS:" {print $2}' "/proc/$server_pid/status")
  stop_server
  rows+=("$row $built_ms ms | $start_ms ms | $(( rss / 1024 )) MB / $(( rss_start / 1024 )) MB | $(( disk / n )) B |")
done
echo
echo "| Workers | upload p50 / p99 | get-script | list page (1000) | request p50 / p99 | built (config) | start, no deploy | RSS built / started | index disk per Worker |"
echo "|---:|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
