"""Times a node's admin API and data plane at one namespace size (benches/scale.sh; stdlib only).

    python3 benches/scale/measure.py ADMIN_PORT DATA_PORT NAMESPACE WORKERS MODULE

Prints one Markdown table row: upload of known bytes p50/p99, get-script p50, a 1000-entry list
page p50, and a data-plane request to a Worker in the middle of the namespace p50/p99.
"""

import http.client
import statistics
import sys
import time

TOKEN = "scale-token"


def timed(conn, method, path, body=None, headers=None, expect=200):
    headers = dict(headers or {}, Authorization="Bearer " + TOKEN)
    started = time.perf_counter()
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    elapsed = time.perf_counter() - started
    if resp.status != expect:
        sys.exit(f"{method} {path}: {resp.status} {data[:300]!r}")
    return elapsed


def pct(samples, p):
    samples = sorted(samples)
    return samples[min(len(samples) - 1, int(round(p / 100 * (len(samples) - 1))))]


def ms(seconds):
    return f"{seconds * 1000:.1f} ms"


def main():
    admin_port, data_port, ns, workers, module = sys.argv[1:6]
    workers = int(workers)
    wasm = open(module, "rb").read()
    base = f"/client/v4/accounts/local/workers/dispatch/namespaces/{ns}"
    admin = http.client.HTTPConnection("127.0.0.1", int(admin_port), timeout=600)
    uploads = [
        timed(admin, "PUT", f"{base}/scripts/upload-{i}", wasm, {"Content-Type": "application/wasm"})
        for i in range(20)
    ]
    middle = f"w{workers // 2}"
    gets = [timed(admin, "GET", f"{base}/scripts/{middle}") for _ in range(20)]
    pages = [timed(admin, "GET", f"{base}/scripts?limit=1000&cursor={middle}") for _ in range(10)]
    data = http.client.HTTPConnection("127.0.0.1", int(data_port), timeout=60)
    host = {"Host": f"{middle}.{ns}.test"}
    for _ in range(100):
        timed(data, "GET", "/", headers=host)
    requests = [timed(data, "GET", "/", headers=host) for _ in range(2000)]
    print(
        f"| {workers:,} | {ms(pct(uploads, 50))} / {ms(pct(uploads, 99))} | {ms(statistics.median(gets))} "
        f"| {ms(statistics.median(pages))} | {pct(requests, 50) * 1e6:.0f} / {pct(requests, 99) * 1e6:.0f} µs |"
    )


if __name__ == "__main__":
    main()
