"""Times a merge of the index delta into a large base while uploads go on (benches/merge.sh;
stdlib only).

    python3 benches/scale/merge.py ADMIN_PORT NAMESPACE INDEX_PATH MERGE_RECORDS MODULE

The namespace's delta must be empty at the start. Uploads new scripts one after another through
the admin API (raw `application/wasm`); the upload that makes the delta reach MERGE_RECORDS
records hands a merge to the merge thread, which is done when the base's header (INDEX_PATH,
bytes 16..24) shows a later generation (polled every 5 ms). Uploads go on until then and 20
more. Prints the merge's duration (from that upload's answer to the new base in place) and the
uploads' p50 / p99 / max before it and while it ran.
"""

import http.client
import os
import struct
import sys
import threading
import time

from measure import TOKEN, pct


def base_generation(path):
    with open(path, "rb") as f:
        return struct.unpack("<Q", f.read(24)[16:24])[0]


def main():
    admin_port, ns, index_path, records, module = sys.argv[1:6]
    records = int(records)
    if os.path.exists(os.path.join(os.path.dirname(index_path), "delta")):
        sys.exit("the namespace has a delta: start from a freshly built data directory")
    wasm = open(module, "rb").read()
    base = f"/client/v4/accounts/local/workers/dispatch/namespaces/{ns}"
    admin = http.client.HTTPConnection("127.0.0.1", int(admin_port), timeout=600)
    first = base_generation(index_path)
    merged_at = []

    def watch():
        while not merged_at:
            if base_generation(index_path) != first:
                merged_at.append(time.perf_counter())
            time.sleep(0.005)

    threading.Thread(target=watch, daemon=True).start()
    uploads = []  # (start, seconds)
    submitted = None
    i = 0
    while not merged_at or len([u for u in uploads if u[0] > merged_at[0]]) < 20:
        started = time.perf_counter()
        admin.request("PUT", f"{base}/scripts/merge-{i}", body=wasm,
                      headers={"Content-Type": "application/wasm", "Authorization": "Bearer " + TOKEN})
        resp = admin.getresponse()
        body = resp.read()
        if resp.status != 200:
            sys.exit(f"upload {i}: {resp.status} {body[:300]!r}")
        ended = time.perf_counter()
        uploads.append((started, ended - started))
        i += 1
        if i == records:
            submitted = ended
        if i > 8 * records:
            sys.exit("no merge after 8 x MERGE_RECORDS uploads")
    took = merged_at[0] - submitted
    before = [s for (t, s) in uploads if t < submitted]
    during = [s for (t, s) in uploads if submitted <= t < merged_at[0]]

    def row(samples):
        if not samples:
            return "none"
        return (f"{len(samples)} uploads, p50 {pct(samples, 50) * 1e3:.1f} ms / p99 "
                f"{pct(samples, 99) * 1e3:.1f} ms / max {max(samples) * 1e3:.1f} ms")

    print(f"merge of {records} records: {took:.2f} s")
    print(f"  uploads before it: {row(before)}")
    print(f"  uploads while it ran: {row(during)}")


if __name__ == "__main__":
    main()
