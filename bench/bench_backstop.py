"""Backstop and inbound overhead, side by side: interleaved rounds, each configuration in its own process.

    .venv/bin/python bench/bench_backstop.py [--rounds 7] [--calls 2000]
    .venv/bin/python bench/bench_backstop.py --instructions   # callgrind instruction counts

* raw socket connect + close to a loopback listener, nobody owns it (the socket layer makes a row);
* the same connect + close under an owner (an outer layer's call is current: the socket layer only
  adds the peer address) -- the path every HTTP/mail call takes, where the <= 2 us target applies;
* accept() + close of a connection to a listener of the process: its own inbound row (``accept``), or
  claimed by an HTTP layer as every request on a WSGI/ASGI server does (``accept_claimed``);
* a WSGI request through AuditWSGIMiddleware, called directly (no server, so only our cost moves).

Figures: wall median per operation and the caller thread's CPU per operation; "added" is the CPU
difference against the uninstrumented process of the same round (medians over rounds).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import textwrap

from bench_interceptor import instructions, with_writer_sink  # same directory

WORKER = textwrap.dedent("""
    import io, json, socket, statistics, sys, time
    mode, what, port, calls = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

    # WRITER_SINK

    class CountingSink(WriterSink):  # the writer-shaped sink, counting what it got
        n = 0
        def emit(self, event):
            CountingSink.n += 1
            super().emit(event)

    if mode == "ours":
        import mit_network_audit
        from mit_network_audit.interceptor import capture
        mit_network_audit.install(sink=CountingSink(), salt=b"bench" * 8)
    samples, cpu = [], []
    if what in ("raw_connect", "owned_connect", "owned_nop"):
        owned = what != "raw_connect" and mode == "ours"
        connect = what != "owned_nop"  # owned_nop: the same loop without connect (instruction baseline)
        def once(measure):
            owner = capture.begin("bench", host="127.0.0.1", port=port) if owned else None
            c = socket.socket()
            k = time.thread_time_ns(); t = time.perf_counter_ns()
            if connect:
                c.connect(("127.0.0.1", port))
            c.close()
            w, u = time.perf_counter_ns() - t, time.thread_time_ns() - k
            if owner is not None:
                capture.end(owner)
            if measure:
                samples.append(w); cpu.append(u)
        for _ in range(200):
            once(False)
        for _ in range(calls):
            once(True)
    elif what in ("accept", "accept_claimed"):
        # The inbound backstop: accept() + close of a connection to a listener of this process.  The
        # client side connects outside the timed window (suppressed: not a row).  accept_claimed: an
        # HTTP layer claims the connection (what every request on a WSGI/ASGI server does), no row.
        import contextlib
        srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(64)
        address = srv.getsockname()
        quiet = capture.suppressed if mode == "ours" else contextlib.nullcontext
        if mode == "ours" and what == "accept_claimed":
            from mit_network_audit.interceptor.channels.socket import claim_inbound
        for i in range(calls + 200):
            with quiet():
                c = socket.create_connection(address)
            k = time.thread_time_ns(); t = time.perf_counter_ns()
            conn, peer = srv.accept()
            if mode == "ours" and what == "accept_claimed":
                claim_inbound(peer[0], peer[1], address[1])
            conn.close()
            w, u = time.perf_counter_ns() - t, time.thread_time_ns() - k
            c.close()
            if i >= 200:
                samples.append(w); cpu.append(u)
    elif what == "wsgi":
        def app(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
            return [b"hello"]
        if mode == "ours":
            from mit_network_audit.interceptor.inbound import AuditWSGIMiddleware
            app = AuditWSGIMiddleware(app, app_name="bench")
        def environ():
            return {"REQUEST_METHOD": "GET", "PATH_INFO": "/orders/42", "QUERY_STRING": "page=1",
                    "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "REMOTE_ADDR": "127.0.0.1",
                    "REMOTE_PORT": "5555", "HTTP_HOST": "shop", "HTTP_ACCEPT": "*/*", "wsgi.url_scheme": "http",
                    "wsgi.input": io.BytesIO(b"")}
        sr = lambda status, headers, exc_info=None: None
        for i in range(calls + 500):
            env = environ()
            k = time.thread_time_ns(); t = time.perf_counter_ns()
            it = app(env, sr)
            b"".join(it)
            getattr(it, "close", lambda: None)()
            w, u = time.perf_counter_ns() - t, time.thread_time_ns() - k
            if i >= 500:
                samples.append(w); cpu.append(u)
    rows = CountingSink.n if mode == "ours" else 0
    print(json.dumps({"median_us": statistics.median(samples) / 1000, "cpu_us": statistics.median(cpu) / 1000,
                      "rows": rows}))
""")
WORKER = with_writer_sink(WORKER)


LISTENER = textwrap.dedent("""
    import socket
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0)); s.listen(4096)
    print(s.getsockname()[1], flush=True)
    while True:
        c, _ = s.accept(); c.close()
""")

TARGETS = {"raw_connect": None, "owned_connect": 2.0, "accept": None, "accept_claimed": None, "wsgi": 20.0}


def run(mode: str, what: str, port: int, calls: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", WORKER, mode, what, str(port), str(calls)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument(
        "--instructions",
        action="store_true",
        help="instead: instructions per operation under callgrind (none / ours)",
    )
    args = ap.parse_args()
    listener = subprocess.Popen([sys.executable, "-c", LISTENER], stdout=subprocess.PIPE, text=True)
    port = int(listener.stdout.readline())
    if args.instructions:
        try:
            print(
                "| benchmark | configuration | instructions per operation, calling thread | added "
                "| all threads | added |"
            )
            print("|---|---|---:|---:|---:|---:|")
            for what in TARGETS:
                ir = instructions(WORKER, ("none", "ours"), what, port, 500, 2500)
                if what == "owned_connect":
                    # The loop also opens and ends the owner's call (outside the timed window): take
                    # the same loop without the connect off, so only connect + close remain.
                    nop = instructions(WORKER, ("none", "ours"), "owned_nop", port, 500, 2500)
                    ir = {m: tuple(a - b for a, b in zip(ir[m], nop[m], strict=True)) for m in ir}
                    what = "owned_connect (connect + close only)"
                base = ir["none"]
                for mode, (main_ir, all_ir) in ir.items():
                    print(
                        f"| {what} | {mode} | {main_ir:,.0f} | {main_ir - base[0]:+,.0f} | {all_ir:,.0f} "
                        f"| {all_ir - base[1]:+,.0f} |"
                    )
        finally:
            listener.kill()
        return
    wall: dict[tuple[str, str], list[float]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    rows: dict[str, int] = {}
    try:
        for r in range(args.rounds):
            for what in TARGETS:
                for mode in ("none", "ours") if r % 2 == 0 else ("ours", "none"):
                    out = run(mode, what, port, args.calls * (5 if what == "wsgi" else 1))
                    wall.setdefault((what, mode), []).append(out["median_us"])
                    cpu.setdefault((what, mode), []).append(out["cpu_us"])
                    if mode == "ours":
                        rows[what] = out["rows"]
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    finally:
        listener.kill()
    print(
        "| benchmark | configuration | wall median (µs) | caller CPU median (µs) | added CPU (µs) | target |"
    )
    print("|---|---|---:|---:|---:|---|")
    for what, target in TARGETS.items():
        base = statistics.median(cpu[(what, "none")])
        for mode in ("none", "ours"):
            c = statistics.median(cpu[(what, mode)])
            added = "—" if mode == "none" else f"{c - base:+.1f}"
            goal = (
                "—"
                if mode == "none" or target is None
                else f"≤ {target:g} µs: {'met' if c - base <= target else 'NOT met'}"
            )
            print(
                f"| {what} | {mode} | {statistics.median(wall[(what, mode)]):.1f} | {c:.1f} | {added} | {goal} |"
            )
    print(f"\nrows emitted in the last 'ours' process: {rows}")


if __name__ == "__main__":
    main()
