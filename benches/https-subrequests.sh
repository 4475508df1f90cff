#!/usr/bin/env bash
# What TLS adds to a subrequest (docs/performance.md): the fetcher example Worker on one pinned
# serving thread fetches a local upstream (`tls-upstream`, on the other CPU with wrk) over plain
# http and over https, each on a reused connection and on a new connection per subrequest (the
# upstream answers `Connection: close`); a new https connection resumes its session or makes a
# full handshake. One client
# connection, so requests/s is the inverse of the latency; the script prints µs per request for
# each case, running the cases alternately for `rounds` rounds on the noisy machine.
#
#   benches/https-subrequests.sh [duration=5s] [rounds=3]
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-5s}
rounds=${2:-3}
conns=1
source benches/common.sh

build_all
mkdir -p target/https-bench
ca=$(pwd)/target/https-bench/ca.pem
rm -f "$ca"
taskset -c 1 target/release/tls-upstream 18090 "$ca" &
upstream_pid=$!
trap 'kill $upstream_pid 2>/dev/null; stop_server' EXIT
for _ in $(seq 1 100); do [[ -s "$ca" ]] && break; sleep 0.05; done
cat > target/https-bench/node.toml <<TOML
data_dir = "data"
[server]
listen = "127.0.0.1:18089"
threads = 1
[admin]
enabled = false
[subrequests]
allow = ["127.0.0.1"]
ca_file = "ca.pem"
[[namespace]]
name = "customers"
[[worker]]
namespace = "customers"
name = "fetcher"
module = "$(pwd)/target/guests/wasm32-wasip1/release/fetcher.wasm"
[[route]]
namespace = "customers"
script = "fetcher"
TOML
start_server target/https-bench/node.toml 18089

q() { local u=${1//:/%3A}; echo "${u//\//%2F}"; }
declare -A cases=(
  [http]="http://localhost:18090/"
  [http-new]="http://localhost:18090/close"
  [https-reused]="https://localhost:18091/"
  [https-new-resumed]="https://localhost:18091/close"
  [https-new-full]="https://localhost:18092/close"
)
order=(http http-new https-reused https-new-resumed https-new-full)
for name in "${order[@]}"; do
  curl -sf "http://127.0.0.1:18089/?url=$(q "${cases[$name]}")" >/dev/null \
    || { echo "$name: the fetch failed" >&2; curl -s "http://127.0.0.1:18089/?url=$(q "${cases[$name]}")" >&2; exit 1; }
done
for round in $(seq 1 "$rounds"); do
  for name in "${order[@]}"; do
    rps=$(wrk_rps "http://127.0.0.1:18089/?url=$(q "${cases[$name]}")" 2>/dev/null)
    awk -v n="$name" -v r="$round" -v rps="$rps" 'BEGIN { printf "round %d %-18s %8.0f req/s %8.1f µs/request\n", r, n, rps, 1e6 / rps }'
  done
done
