#!/usr/bin/env bash
# Slow and greedy clients against a node: the host memory they can pin and how long until the
# node reaps them (docs/performance.md, "Slow and greedy clients").
#
#   benches/slow-clients.sh [CONNECTIONS]     default 30
#
# 1. CONNECTIONS clients each announce a 16 MiB body and send all of it but the last byte, then
#    wait: the node's RSS is read before and after (the buffered-body budget bounds it).
# 2. One client sends a body one byte every 5 s (inside the 30 s per-read timeout): the time
#    until the node answers 408 and closes is the total request-read deadline (60 s).
set -euo pipefail
cd "$(dirname "$0")/.."
conns=${1:-30}
port=18093

scripts/build-guests.sh
cargo build --quiet --release -p tenantry
dir=$(mktemp -d)
cat > "$dir/tenantry.toml" <<TOML
data_dir = "$dir/data"
[server]
listen = "127.0.0.1:$port"
[[namespace]]
name = "production"
[[worker]]
namespace = "production"
name = "echo"
module = "$PWD/target/guests/wasm32-wasip1/release/echo.wasm"
[[route]]
host = "*"
namespace = "production"
script = "echo"
TOML
RUST_LOG=warn target/release/tenantry serve --config "$dir/tenantry.toml" >/dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 200); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.05; done

python3 - "$pid" "$port" "$conns" <<'PY'
import socket, sys, time
pid, port, conns = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
def rss_mb():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
size = 16 << 20
before = rss_mb()
socks, refused = [], 0
for _ in range(conns):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(f"POST / HTTP/1.1\r\nHost: echo.test\r\nContent-Length: {size}\r\n\r\n".encode())
    try:
        s.sendall(b"x" * (size - 1))
    except OSError:
        pass  # refused (503 and closed) while sending: counted below
    socks.append(s)
time.sleep(2)
for s in socks:
    s.settimeout(0.2)
    try:
        answer = s.recv(64)
        if answer.startswith(b"HTTP/1.1 503") or not answer:
            refused += 1
    except socket.timeout:
        pass  # still held: the body is buffered, waiting for its last byte
    except OSError:
        refused += 1
held = rss_mb()
print(f"{conns} clients holding 16 MiB bodies: RSS {before:.0f} MiB -> {held:.0f} MiB; {refused} refused with 503")
for s in socks:
    s.close()

s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"POST / HTTP/1.1\r\nHost: echo.test\r\nContent-Length: 1000\r\n\r\n")
start = time.time()
s.settimeout(5)
answer = b""
while True:
    try:
        s.sendall(b"x")
    except OSError:
        break
    try:
        chunk = s.recv(4096)
        if not chunk:
            break
        answer += chunk
    except socket.timeout:
        continue
    except OSError:
        break
status = answer.split(b"\r\n", 1)[0].decode(errors="replace")
print(f"a client sending one body byte every 5 s was reaped after {time.time() - start:.1f} s ({status or 'closed'})")
PY
