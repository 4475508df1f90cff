#!/usr/bin/env bash
# JavaScript Workers' deploy cost and idle footprint (issue 11, docs/performance.md):
#   1. upload of a ~100 KB ES-module Worker through the admin API to its first 200 (5 times);
#   2. N JavaScript Workers (10 000 by default, distinct code) deployed from the config file,
#      each requested once, then the node's RSS per idle Worker.
#
#   benches/js-deploy.sh [workers=10000]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10000}
source benches/common.sh
build_all
data=target/js-deploy
rm -rf "$data"
mkdir -p "$data/workers"

python3 - "$data" "$n" <<'PY'
import os, sys
data, n = sys.argv[1], int(sys.argv[2])
# ~100 KB of real code: many small functions, a table, a handler that uses some of them.
fns = "\n".join(f"export function f{i}(x) {{ return (x * {i} + {i % 7}) % 1000003; }}" for i in range(1650))
big = fns + '\nexport default { fetch(request) { return new Response("big " + f7(6)); } };\n'
open(os.path.join(data, "big.mjs"), "w").write(big)
with open(os.path.join(data, "tenantry.toml"), "w") as cfg:
    cfg.write(f'data_dir = "node"\n[server]\nlisten = "127.0.0.1:18095"\nthreads = 1\n'
              '[admin]\nlisten = "127.0.0.1:18096"\ntokens = ["bench-token"]\n'
              '[[namespace]]\nname = "many"\n[[namespace]]\nname = "up"\n'
              '[[route]]\nhost = "*.many.test"\nnamespace = "many"\nscript_from = "host_label"\n'
              '[[route]]\nhost = "*.up.test"\nnamespace = "up"\nscript_from = "host_label"\n')
    for i in range(n):
        path = os.path.join(data, "workers", f"w{i}.mjs")
        open(path, "w").write(f'export default {{ fetch() {{ return new Response("worker {i}"); }} }};\n')
        cfg.write(f'[[worker]]\nnamespace = "many"\nname = "w{i}"\nmodule = "workers/w{i}.mjs"\n')
print(f"big.mjs: {len(big)} bytes")
PY

started=$(date +%s.%N)
START_WAIT_S=1800 start_server "$data/tenantry.toml" 18095
echo "deployed $n JavaScript Workers and started in $(echo "$(date +%s.%N) - $started" | bc) s"
rss() { awk '$1 == "VmRSS:" {print $2}' "/proc/$server_pid/status"; }
before=$(rss)
python3 - "$n" <<'PY'
import socket, sys
n = int(sys.argv[1])
bad = 0
for i in range(n):
    s = socket.create_connection(("127.0.0.1", 18095))
    s.sendall(f"GET / HTTP/1.1\r\nHost: w{i}.many.test\r\nConnection: close\r\n\r\n".encode())
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    if not data.startswith(b"HTTP/1.1 200") or not data.endswith(f"worker {i}".encode()):
        bad += 1
print(f"served {n} Workers once each, {bad} wrong answers")
PY
after=$(rss)
echo "RSS before the requests ${before} KiB, after ${after} KiB: $(( (after - before) * 1024 / n )) bytes per Worker served once"
# Idle reuse-mode instances are dropped after 30 s unused (tenantry_core::IDLE_INSTANCE_TTL),
# swept every 15 s: what an idle, deployed Worker costs is what is left then.
sleep 50
idle=$(rss)
echo "RSS after 50 s idle ${idle} KiB: $(( (idle - before) * 1024 / n )) bytes per deployed, idle Worker (beyond the node before any request)"

for i in 1 2 3 4 5; do
  # Distinct bytes each time, so every upload is compiled (identical ones are not).
  { cat "$data/big.mjs"; echo "// upload $i"; } > "$data/big-$i.mjs"
  t0=$(date +%s%N)
  curl -sf -o /dev/null -X PUT "http://127.0.0.1:18096/client/v4/accounts/a/workers/dispatch/namespaces/up/scripts/big$i" \
    -H 'Authorization: Bearer bench-token' \
    -F 'metadata={"main_module":"big.mjs"};type=application/json' \
    -F "big.mjs=@$data/big-$i.mjs;type=application/javascript+module"
  until curl -sf -o /dev/null -H "Host: big$i.up.test" http://127.0.0.1:18095/; do :; done
  t1=$(date +%s%N)
  echo "upload of big.mjs #$i to its first 200: $(( (t1 - t0) / 1000000 )) ms"
done
