# Shared by the load benchmarks (benches/*.sh): sourced, not run.

command -v wrk >/dev/null || { echo "wrk is not installed: run scripts/setup.sh --all" >&2; exit 1; }

# Guests and release binaries; one package set for every script, so they share one build.
build_all() {
  scripts/build-guests.sh
  cargo build --quiet --release -p tenantry -p tenantry-benches --bins
}

server_pid=
stop_server() { [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null; wait 2>/dev/null || true; }
trap stop_server EXIT

# start_server CONFIG PORT: `tenantry serve` pinned to CPU 0; returns once PORT accepts (within
# START_WAIT_S seconds, 10 by default: deploying a large config takes longer).
start_server() {
  RUST_LOG=${RUST_LOG:-warn} taskset -c 0 "${TENANTRY_BIN:-target/release/tenantry}" serve --config "$1" >/dev/null 2>>target/bench-server.log &
  server_pid=$!
  for _ in $(seq 1 $(( ${START_WAIT_S:-10} * 20 ))); do
    (exec 3<>/dev/tcp/127.0.0.1/"$2") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on port $2" >&2
  exit 1
}

# wrk_rps ARGS...: wrk pinned to CPU 1 with $conns connections for $duration; prints its report
# on stderr and the requests/s on stdout.
wrk_rps() {
  local out
  out=$(mktemp)
  taskset -c 1 wrk -t1 -c"$conns" -d"$duration" --latency "$@" > "$out"
  cat "$out" >&2
  awk '/Requests\/sec/ {print $2}' "$out"
  rm -f "$out"
}
