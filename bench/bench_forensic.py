"""Forensic body capture: what the body tap costs the audited caller, off vs on, side by side.

Configurations, interleaved round by round in one process (rotating order), same loopback server
(another process), same requests.Session, real interceptor and real journal sink (SQLite):

* ``off``           — capture off: ``runtime.body_tap is None`` (the default)
* ``on_out_scope``  — capture on, the call's host is not in scope (known at the first chunk: no copy)
* ``on_in_scope``   — capture on and in scope: buffer, AES-GCM at finish, queue to the writer thread

Reported: median over rounds of wall time and of the calling thread's CPU time per call
(``time.thread_time_ns``: what the tap adds to the caller's own path; the writer thread's work is
not in it).  Plus a micro-benchmark of ``Call.add_request_body`` + the tap's ``finish`` alone (in scope: the
AES-GCM seal included, the queue and the write left out).

    .venv/bin/python bench/bench_forensic.py --rounds 7 --calls 300
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

SERVER = r"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a): pass
s = ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--sizes", default="4096,65536")
    args = ap.parse_args()

    import requests

    import mit_network_audit as mna
    from mit_network_audit.interceptor import capture
    from mit_network_audit.interceptor.event import internal_event
    from mit_network_audit.interceptor.forensic_tap import BodyTap
    from mit_network_audit.journal import forensic
    from mit_network_audit.journal.sink import BatchingSink

    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    port = int(server.stdout.readline())
    url = f"http://127.0.0.1:{port}/upload"
    tmp = tempfile.mkdtemp(prefix="bench-forensic-")
    dsn = f"sqlite:///{tmp}/journal.db"
    sink = BatchingSink(dsn)
    mna.install(sink=sink)
    public = forensic.public_key(os.urandom(32))
    writer = forensic.BodyWriter(dsn, public)
    taps = {
        "off": None,
        "on_out_scope": BodyTap(writer.submit, hosts=["elsewhere.example"], max_bytes=65536),
        "on_in_scope": BodyTap(writer.submit, hosts=["127.0.0.1"], max_bytes=65536),
    }
    session = requests.Session()
    results: dict = {}
    try:
        for size in [int(s) for s in args.sizes.split(",")]:
            body = os.urandom(size)
            for name in taps:  # warm-up
                capture.runtime.body_tap = taps[name]
                for _ in range(30):
                    session.post(url, data=body)
            names = list(taps)
            for r in range(args.rounds):
                order = names[r % len(names) :] + names[: r % len(names)]
                for name in order:
                    capture.runtime.body_tap = taps[name]
                    w0, c0 = time.perf_counter_ns(), time.thread_time_ns()
                    for _ in range(args.calls):
                        session.post(url, data=body)
                    w1, c1 = time.perf_counter_ns(), time.thread_time_ns()
                    capture.runtime.body_tap = None
                    writer.flush(30)
                    sink.flush(30)
                    results.setdefault((size, name), []).append(
                        ((w1 - w0) / args.calls / 1e3, (c1 - c0) / args.calls / 1e3)
                    )
        # micro: the hook alone (no I/O): feed one chunk and finish, per call
        micro: dict = {}
        ev = internal_event("x")
        ev = type(ev)(
            **{
                **ev.as_dict(),
                "direction": "outbound",
                "host": "127.0.0.1",
                "query_keys": (),
                "req_headers": (),
                "resp_headers": (),
                "via": (),
            }
        )

        sealer = forensic.Sealer(public)

        def seal_and_drop(event_id, at, data, seen, truncated):  # what submit does, minus the queue
            sealer.seal(event_id, at, data, seen, truncated)

        micro_taps = {
            "off": None,
            "on_out_scope": BodyTap(seal_and_drop, hosts=["elsewhere.example"], max_bytes=65536),
            "on_in_scope": BodyTap(seal_and_drop, hosts=["127.0.0.1"], max_bytes=65536),
        }
        for size in [int(s) for s in args.sizes.split(",")]:
            chunk = os.urandom(size)
            for r in range(args.rounds):
                for name in (
                    ["off", "on_out_scope", "on_in_scope"]
                    if r % 2 == 0
                    else ["on_in_scope", "on_out_scope", "off"]
                ):
                    tap = micro_taps[name]
                    capture.runtime.body_tap = tap
                    n = 2000
                    c0 = time.thread_time_ns()
                    for _ in range(n):
                        call = capture.Call("requests", "outbound")
                        call.host = "127.0.0.1"
                        call.add_request_body(chunk)
                        if call.tap_state is not None and tap is not None:
                            tap.finish(call, ev)
                    micro.setdefault((size, name), []).append((time.thread_time_ns() - c0) / n / 1e3)
                    capture.runtime.body_tap = None
    finally:
        capture.runtime.body_tap = None
        mna.uninstall()
        writer.close()
        sink.close()
        server.kill()

    print(f"rounds={args.rounds} calls={args.calls} (medians over rounds)")
    print("| body | configuration | wall per call (µs) | caller CPU per call (µs) | added CPU vs off (µs) |")
    print("|---:|---|---:|---:|---:|")
    for (size, name), values in results.items():
        wall = statistics.median(v[0] for v in values)
        cpu = statistics.median(v[1] for v in values)
        base = statistics.median(v[1] for v in results[(size, "off")])
        added = "—" if name == "off" else f"{cpu - base:+.1f}"
        print(f"| {size:,} B | {name} | {wall:.1f} | {cpu:.1f} | {added} |")
    print()
    print("| body | configuration | Call + add_request_body (+ tap finish) CPU (µs) | added vs off (µs) |")
    print("|---:|---|---:|---:|")
    for (size, name), values in micro.items():
        cpu = statistics.median(values)
        base = statistics.median(micro[(size, "off")])
        print(f"| {size:,} B | {name} | {cpu:.2f} | {'—' if name == 'off' else f'{cpu - base:+.2f}'} |")
    print(f"\nwriter: {writer.counters}")


if __name__ == "__main__":
    main()
