#!/usr/bin/env bash
# HTTPS against plain HTTP on one pinned serving thread (docs/performance.md, "HTTPS"): the hello
# Worker over kept-alive TLS and kept-alive plain connections of the same node, measured
# alternately; then new TLS handshakes per second (`Connection: close`: wrk opens a connection,
# with a full handshake, for every request; it resumes no sessions). The node runs on CPU 0,
# wrk on CPU 1.
#
#   benches/tls.sh [duration=10s] [connections=64] [rounds=2]
#
# BASELINE_BIN=path/to/older/tenantry also runs that binary (plain only, port 18090) alternately
# with this one, to compare the plain path before and after a change.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10s}
conns=${2:-64}
rounds=${3:-2}
source benches/common.sh
build_all

dir=target/tls-bench
mkdir -p "$dir"
if [[ ! -f $dir/cert.pem ]]; then
  # An ECDSA P-256 certificate, the common choice for new sites (and rustls' fastest signer).
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
    -subj /CN=alice.example.test -addext subjectAltName=DNS:alice.example.test,DNS:*.example.test \
    -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
fi
config=benches/load/.tls.toml
{ cat benches/load/tenantry.toml
  printf '\n[server.tls]\nlisten = "127.0.0.1:18443"\ncert = "../../%s/cert.pem"\nkey = "../../%s/key.pem"\n' "$dir" "$dir"
} > "$config"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -f "$config" benches/load/.baseline.toml; }
trap cleanup EXIT
wait_port() {
  for _ in $(seq 1 200); do
    (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on port $1" >&2; exit 1
}
RUST_LOG=warn taskset -c 0 target/release/tenantry serve --config "$config" >/dev/null 2>>target/bench-server.log &
pids+=($!)
wait_port 18080
wait_port 18443
if [[ -n ${BASELINE_BIN:-} ]]; then
  sed -e 's/127.0.0.1:18080/127.0.0.1:18090/' -e 's#target/load-data#target/load-data-baseline#' \
    benches/load/tenantry.toml > benches/load/.baseline.toml
  RUST_LOG=warn taskset -c 0 "$BASELINE_BIN" serve --config benches/load/.baseline.toml >/dev/null 2>>target/bench-server.log &
  pids+=($!)
  wait_port 18090
fi

host=(-H 'Host: alice.example.test')
close=(-H 'Connection: close')
# Warm every path up.
for url in http://127.0.0.1:18080/ https://127.0.0.1:18443/ ${BASELINE_BIN:+http://127.0.0.1:18090/}; do
  taskset -c 1 wrk -t1 -c"$conns" -d2s "${host[@]}" "$url" >/dev/null
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
for round in $(seq 1 "$rounds"); do
  echo "== round $round: plain, kept alive ==" >&2; plain=$(wrk_rps "${host[@]}" http://127.0.0.1:18080/hello)
  echo "== round $round: TLS, kept alive ==" >&2; tls=$(wrk_rps "${host[@]}" https://127.0.0.1:18443/hello)
  if [[ -n ${BASELINE_BIN:-} ]]; then
    echo "== round $round: baseline binary, plain, kept alive ==" >&2; base=$(wrk_rps "${host[@]}" http://127.0.0.1:18090/hello)
  fi
  echo "== round $round: plain, a new connection per request ==" >&2; plain_new=$(wrk_rps "${host[@]}" "${close[@]}" http://127.0.0.1:18080/hello)
  echo "== round $round: TLS, a new connection (full handshake) per request ==" >&2; tls_new=$(wrk_rps "${host[@]}" "${close[@]}" https://127.0.0.1:18443/hello)
  printf 'round %s: kept alive: TLS %.0f req/s, plain %.0f req/s, TLS/plain %s' "$round" "$tls" "$plain" "$(ratio "$tls" "$plain")"
  [[ -n ${BASELINE_BIN:-} ]] && printf '; baseline plain %.0f req/s, this/baseline %s' "$base" "$(ratio "$plain" "$base")"
  printf '\nround %s: new connections: TLS %.0f handshakes/s, plain %.0f conn/s\n' "$round" "$tls_new" "$plain_new"
done
