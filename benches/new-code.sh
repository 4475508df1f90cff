#!/usr/bin/env bash
# Deploying never-seen code (issue 13, item 6; docs/performance.md): a node with one serving
# thread, pinned to CPU 0 (the compile threads share that CPU); the admin API gets
# examples/workers/regex_json (~1 MB of regex + serde_json) with new bytes each time (the digits
# of its NONCE rewritten), and we time
#   - PUT → the first 200 from the Worker (the PUT's own time, then polling the data plane);
#   - PUT → the optimised artifact serving: the script's `compiled_tier` (admin API) says
#     `optimised` and a request answers 200 (without a baseline tier that is the first 200).
#
#   benches/new-code.sh [uploads=5]
#   TENANTRY_BIN=path/to/other/tenantry benches/new-code.sh   (compare two builds)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-5}
source benches/common.sh
# A given binary is measured as it is (an older build, to compare); else build this tree.
if [[ -z "${TENANTRY_BIN:-}" ]]; then build_all; fi
data=target/new-code
rm -rf "$data"
mkdir -p "$data"
wasm=target/guests/wasm32-wasip1/release/regex_json.wasm
echo "module: $wasm, $(stat -c %s "$wasm") bytes; binary: ${TENANTRY_BIN:-target/release/tenantry}"
cat > "$data/tenantry.toml" <<'TOML'
data_dir = "node"
[server]
listen = "127.0.0.1:18097"
threads = 1
[admin]
listen = "127.0.0.1:18098"
tokens = ["bench-token"]
[[namespace]]
name = "up"
[[route]]
host = "*.up.test"
namespace = "up"
script_from = "host_label"
TOML
start_server "$data/tenantry.toml" 18097
api=http://127.0.0.1:18098/client/v4/accounts/a/workers/dispatch/namespaces/up/scripts
ms() { echo $(( ($2 - $1) / 1000000 )); }
# Upload #0 is a warm-up, not counted: at start the node prepares its JavaScript engine on the
# compile pool (~20 s on one core), and an upload may queue behind that.
for i in $(seq 0 "$n"); do
  # Same length, other digits: a new module hash, so nothing is reused from earlier uploads.
  python3 - "$wasm" "$data/w$i.wasm" <<'PY'
import random, sys
src, dst = sys.argv[1], sys.argv[2]
marker = b"tenantry-new-code-nonce:"
data = open(src, "rb").read()
at = data.index(marker) + len(marker)
nonce = "".join(random.choice("0123456789") for _ in range(16)).encode()
open(dst, "wb").write(data[:at] + nonce + data[at + 16:])
PY
  t0=$(date +%s%N)
  curl -sf -o "$data/put-$i.json" -X PUT "$api/w$i" -H 'Authorization: Bearer bench-token' \
    -H 'Content-Type: application/wasm' --data-binary "@$data/w$i.wasm"
  t_put=$(date +%s%N)
  until curl -sf -o /dev/null -H "Host: w$i.up.test" http://127.0.0.1:18097/; do :; done
  t_first=$(date +%s%N)
  # `compiled_tier` is absent from builds without a baseline tier: the first 200 was optimised.
  if grep -q '"compiled_tier"' "$data/put-$i.json"; then
    until curl -sf -H 'Authorization: Bearer bench-token' "$api/w$i" | grep -q '"compiled_tier":"optimised"'; do
      sleep 0.005
    done
    curl -sf -o /dev/null -H "Host: w$i.up.test" http://127.0.0.1:18097/
  fi
  t_opt=$(date +%s%N)
  [[ $i == 0 ]] && continue
  echo "upload #$i: PUT $(ms "$t0" "$t_put") ms, PUT → first 200 $(ms "$t0" "$t_first") ms, PUT → optimised serving $(ms "$t0" "$t_opt") ms"
done
