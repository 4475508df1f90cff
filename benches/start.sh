#!/usr/bin/env bash
# A node's start on a namespace of many Workers (issue 13, item 1; docs/performance.md "Start
# and resident memory"): for each size, a data directory is built once (a config of that many
# Workers of the 31 KB Rust hello in one namespace, as benches/scale.sh builds it), then nodes
# are started on it with nothing to deploy, ROUNDS times per binary, the binaries alternating.
# Each start prints the time until the port accepts and the node's RSS then (VmRSS, and of it
# the file-backed RssFile: mapped index pages). Every binary starts on its own copy of the
# directory (a newer build rewrites an older index format once, on a first start not timed).
# One serving thread on CPU 0.
#
#   benches/start.sh [sizes=1000 100000]
#   ROUNDS=5 TENANTRY_BINS="before=/path/to/old/tenantry after=target/release/tenantry" benches/start.sh 1000000
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("$@")
(( ${#sizes[@]} )) || sizes=(1000 100000)
source benches/common.sh
bins=(${TENANTRY_BINS:-current=target/release/tenantry})
[[ -n "${TENANTRY_BINS:-}" ]] || build_all
rounds=${ROUNDS:-3}

head() {
  printf 'data_dir = "data"\n\n[server]\nlisten = "127.0.0.1:18101"\nthreads = 1\n\n'
  printf '[admin]\nlisten = "127.0.0.1:18102"\ntokens = ["scale-token"]\n\n'
  printf '[[namespace]]\nname = "s"\n\n[[route]]\nhost = "*.s.test"\nnamespace = "s"\nscript_from = "host_label"\n\n'
}
status_kb() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$server_pid/status"; }

for n in "${sizes[@]}"; do
  dir=target/start/$n
  mkdir -p "$dir"
  if [[ ! -d "$dir/built/data/namespaces/s" ]]; then
    echo "== building $n Workers" >&2
    mkdir -p "$dir/built"
    {
      head
      for i in $(seq 0 $(( n - 1 ))); do
        printf '[[worker]]\nnamespace = "s"\nname = "w%d"\nmodule = "../../../guests/wasm32-wasip1/release/hello.wasm"\n' "$i"
      done
    } > "$dir/built/build.toml"
    TENANTRY_BIN=${bins[0]#*=} START_WAIT_S=3600 start_server "$dir/built/build.toml" 18101
    stop_server
  fi
  for spec in "${bins[@]}"; do
    name=${spec%%=*}
    if [[ ! -d "$dir/$name/data" ]]; then
      mkdir -p "$dir/$name"
      cp -a "$dir/built/data" "$dir/$name/"
      head > "$dir/$name/serve.toml"
      TENANTRY_BIN=${spec#*=} START_WAIT_S=3600 start_server "$dir/$name/serve.toml" 18101
      stop_server
    fi
  done
  for round in $(seq 1 "$rounds"); do
    for spec in "${bins[@]}"; do
      name=${spec%%=*}
      t0=$(date +%s%N)
      TENANTRY_BIN=${spec#*=} START_WAIT_S=600 start_server "$dir/$name/serve.toml" 18101
      ms=$(( ($(date +%s%N) - t0) / 1000000 ))
      rss=$(status_kb VmRSS) file=$(status_kb RssFile)
      stop_server
      echo "$n $name round $round: start $ms ms, RSS $rss kB (file-backed $file kB)"
    done
  done
done
