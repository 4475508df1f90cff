#!/usr/bin/env bash
# Fair share under overload (issue 9, docs/performance.md): one tenant drives a ~5 ms CPU-bound
# Worker (benches/load/hog.wat) with many connections (256 by default: ~4x what one core can
# run at once with bounded latency) while another tenant's hello Worker is measured with a
# low-concurrency wrk. One pinned serving thread (CPU 0); both load generators on CPU 1.
#
#   benches/fairshare.sh [duration=10s] [hostile_connections=256] [victim_connections=4] [hostile_rate]
#
# With hostile_rate (requests/s), the hostile connections offer that fixed load (e.g. 800 = 4x
# the ~200 requests/s one core completes of a 5 ms Worker); without it each sends again as soon
# as it is answered, so instant 503s turn it into a flood.
#
# FAIRSHARE_VICTIM_RATE=R measures the victim open-loop instead: `loadgen` on its
# victim_connections offering R requests/s (e.g. a quarter of what it completes alone), so that
# "its unloaded throughput" is a demand the node meets alone rather than the whole core (a
# closed-loop victim that saturates the core alone can keep at most half of it under any fair
# split; docs/performance.md).
#
# TENANTRY_BIN=path runs another build of the node (e.g. the one before admission control);
# FAIRSHARE_CONFIG='[admission]\nmax_queued_per_worker = 0' appends TOML to the node's config.
# Reports: the victim's p50/p99 and throughput alone and under attack, the hostile Worker's
# admitted (200) latency alone (1 connection) and under attack, its 503s, and the node's RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10s}
hconns=${2:-256}
vconns=${3:-4}
hrate=${4:-}
secs=${duration%s}
source benches/common.sh

build_all
rm -rf target/fairshare-data
printf '%s\n%b\n' "$(cat benches/load/fairshare.toml)" "${FAIRSHARE_CONFIG:-}" > benches/load/.fairshare.toml
start_server benches/load/.fairshare.toml 18084
addr=127.0.0.1:18084
loadgen() { taskset -c 1 target/release/loadgen "$addr" "$1.example.test" / "${@:2}"; }
victim() {
  if [[ -n ${FAIRSHARE_VICTIM_RATE:-} ]]; then
    loadgen victim "$vconns" "$secs" "$FAIRSHARE_VICTIM_RATE" | sed 's/^/victim: /'
    return
  fi
  local out
  out=$(mktemp)
  taskset -c 1 wrk -t1 -c"$vconns" -d"$duration" --latency -H 'Host: victim.example.test' "http://$addr/" > "$out"
  awk '/^ +50%/ {p50=$2} /^ +99%/ {p99=$2} /Requests\/sec/ {rps=$2} /Non-2xx/ {bad=$NF}
       END { printf "victim: p50 %s, p99 %s, %s req/s, non-2xx %s\n", p50, p99, rps, bad + 0 }' "$out"
  rm -f "$out"
}
rss_kb() { awk -v f="$1" '$1 == f":" {print $2}' "/proc/$server_pid/status"; }

# Warm both Workers up.
loadgen victim 4 1 >/dev/null
loadgen hog 1 1 >/dev/null
echo "== alone =="
victim
echo -n "hog, 1 connection: "; loadgen hog 1 "$secs" | grep '^status'
echo "RSS before the attack: $(rss_kb VmRSS) KiB"
echo "== hog at $hconns connections${hrate:+, $hrate requests/s offered}, victim measured meanwhile =="
# The hog runs a second before and after the victim's window; only its requests sent well inside
# that window (from 0.5 s after the victim starts to 0.5 s before it ends) are counted: before the
# victim's first requests arrive the hog has the core to itself and may queue. (RATE 0: as many as
# the connections send.)
loadgen hog "$hconns" "$((secs + 2))" "${hrate:-0}" "1.5-$((secs)).5" > target/fairshare-hog.txt &
attacker=$!
sleep 1
victim
wait "$attacker"
sed 's/^/hog: /' target/fairshare-hog.txt
echo "RSS after the attack: $(rss_kb VmRSS) KiB (peak $(rss_kb VmHWM) KiB)"
