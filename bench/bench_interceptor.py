"""Interceptor overhead, side by side, interleaved rounds, each configuration in its own process.

    .venv/bin/python bench/bench_interceptor.py [--rounds 7] [--calls 2000]
    .venv/bin/python bench/bench_interceptor.py --instructions   # callgrind instruction counts
    .venv/bin/python bench/bench_interceptor.py --paired --rounds 40 --calls 300   # one process, blocks

* requests.Session.get (keep-alive) to a loopback server (in another process): no instrumentation,
  ours (a writer-shaped sink without a database), ours_journal (the real SQLite journal sink), OpenTelemetry requests+urllib3 with a no-op tracer provider, and with the SDK + in-memory exporter;
* a raw socket connect + close to a loopback listener: none vs ours;
* a WSGI request through the middleware (called directly, no server): none vs ours;
* RSS after 100k audited calls vs uninstrumented.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap

SERVER = textwrap.dedent("""
    import sys
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else Nagle + delayed ACK add ~40 ms per call
        def do_GET(self):
            self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"ok")
        def log_message(self, *a): pass
    s = ThreadingHTTPServer(("127.0.0.1", 0), H)
    print(s.server_address[1], flush=True)
    s.serve_forever()
""")

# The writer-shaped sink every worker below uses (bench_backstop.py too), spliced in at "# WRITER_SINK".
WRITER_SINK = textwrap.dedent("""
    import collections, threading, time

    class WriterSink:
        # Shaped like the journal's BatchingSink without the database: emit() appends to a deque, a
        # writer thread takes the events every 100 ms and reads every field the way the journal's
        # canonical encoding does (event.field_values) -- that is where the pipeline (redaction,
        # classification) runs.
        def __init__(self):
            self.q = collections.deque()
            threading.Thread(target=self.run, daemon=True).start()
        def emit(self, event):
            self.q.append(event)
        def run(self):
            from mit_network_audit.interceptor.event import field_values
            while True:
                time.sleep(0.1)
                while self.q:
                    field_values(self.q.popleft())
        def drain(self):
            while self.q:
                time.sleep(0.01)
""")


def with_writer_sink(worker: str) -> str:
    return worker.replace("# WRITER_SINK\n", WRITER_SINK, 1)


WORKER = textwrap.dedent("""
    import collections, json, os, socket, statistics, sys, threading, time
    mode, what, port, calls = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

    # WRITER_SINK

    class SyncSink:
        # Reads every field inside emit(): the whole pipeline on the calling thread (upper bound).
        def __init__(self):
            from mit_network_audit.interceptor.event import field_values
            self.read = field_values
        def emit(self, event):
            self.read(event)

    if mode == "ours_journal":
        # The product as shipped: the journal's BatchingSink writing a SQLite journal (its writer
        # thread builds, chains and inserts every row beside the calling thread).
        import tempfile
        import mit_network_audit
        from mit_network_audit.journal.sink import BatchingSink
        journal_dir = tempfile.mkdtemp(prefix="mna-bench-")
        # MNA_BENCH_FLUSH_S: the writer's flush interval (see instructions(): under valgrind it is
        # stretched so that a batch holds as many rows as it does at native speed).
        flush_s = float(os.environ.get("MNA_BENCH_FLUSH_S", "0.1"))
        sink = BatchingSink(f"sqlite:///{journal_dir}/journal.db", flush_interval=flush_s)
        mit_network_audit.install(sink=sink, salt=b"bench" * 8)
    elif mode.startswith("ours"):
        import mit_network_audit
        mit_network_audit.install(sink=SyncSink() if mode == "ours_sync" else WriterSink(), salt=b"bench" * 8)
    elif mode.startswith("otel"):
        from opentelemetry.instrumentation.requests import RequestsInstrumentor
        from opentelemetry.instrumentation.urllib3 import URLLib3Instrumentor
        if mode == "otel_noop":
            from opentelemetry.trace import NoOpTracerProvider
            provider = NoOpTracerProvider()
        else:
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import SimpleSpanProcessor
            from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
            provider = TracerProvider()
            provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
        RequestsInstrumentor().instrument(tracer_provider=provider)
        URLLib3Instrumentor().instrument(tracer_provider=provider)

    def rss_kb():
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS"):
                    return int(line.split()[1])

    samples, cpu = [], []
    if what == "requests":
        import requests
        s = requests.Session()
        url = f"http://127.0.0.1:{port}/x"
        for _ in range(200):
            s.get(url)
        p0 = time.process_time_ns()  # after warm-up: the measured calls only
        for _ in range(calls):
            c = time.thread_time_ns(); t = time.perf_counter_ns(); s.get(url)
            samples.append(time.perf_counter_ns() - t); cpu.append(time.thread_time_ns() - c)
    elif what == "rss":
        import requests
        s = requests.Session()
        url = f"http://127.0.0.1:{port}/x"
        for _ in range(1000):
            s.get(url)
        base = rss_kb()
        for _ in range(calls):
            s.get(url)
        print(json.dumps({"rss_kb": rss_kb(), "base_kb": base}))
        sys.exit(0)
    elif what == "socket":
        for _ in range(200):
            c = socket.socket(); c.connect(("127.0.0.1", port)); c.close()
        p0 = time.process_time_ns()  # after warm-up: the measured calls only
        for _ in range(calls):
            c = socket.socket()
            k = time.thread_time_ns(); t = time.perf_counter_ns(); c.connect(("127.0.0.1", port)); c.close()
            samples.append(time.perf_counter_ns() - t); cpu.append(time.thread_time_ns() - k)
    elif what == "wsgi":
        import io
        def app(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain")])
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
        p0 = time.process_time_ns()  # after warm-up: the measured calls only
        for _ in range(calls):
            env = environ()
            k = time.thread_time_ns(); t = time.perf_counter_ns()
            it = app(env, sr)
            b"".join(it)
            getattr(it, "close", lambda: None)()
            samples.append(time.perf_counter_ns() - t); cpu.append(time.thread_time_ns() - k)
    # process CPU: every thread, so work moved off the caller (the background event builder) still counts
    time.sleep(0.25)  # let a writer thread finish its last batch: its CPU belongs to these calls
    proc = (time.process_time_ns() - p0) / len(samples) / 1000
    print(json.dumps({"median_us": statistics.median(samples) / 1000, "cpu_us": statistics.mean(cpu) / 1000,
                      "proc_us": proc}))
    if mode == "ours_journal":
        import shutil
        from mit_network_audit.journal.sink import flush_all
        mit_network_audit.uninstall()
        flush_all()
        shutil.rmtree(journal_dir, ignore_errors=True)
""")
WORKER = with_writer_sink(WORKER)

PAIRED = textwrap.dedent("""
    # One process, every configuration in turn in short blocks (instrument, N calls, uninstrument),
    # the order rotated each round: a configuration and the uninstrumented block it is compared with
    # run within a few seconds of each other, so the machine's slow phases hit both alike.
    import collections, json, shutil, statistics, sys, tempfile, threading, time
    port, rounds, per_block = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    import requests
    import mit_network_audit
    from mit_network_audit.journal.sink import BatchingSink
    from opentelemetry.instrumentation.requests import RequestsInstrumentor
    from opentelemetry.instrumentation.urllib3 import URLLib3Instrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import NoOpTracerProvider

    # WRITER_SINK

    journal_dir = tempfile.mkdtemp(prefix="mna-bench-")
    sinks = {"ours": WriterSink(), "ours_journal": BatchingSink(f"sqlite:///{journal_dir}/journal.db")}
    exporter = InMemorySpanExporter()
    sdk = TracerProvider()
    sdk.add_span_processor(SimpleSpanProcessor(exporter))
    providers = {"otel_noop": NoOpTracerProvider(), "otel_sdk": sdk}

    def on(mode):
        if mode in sinks:
            mit_network_audit.install(sink=sinks[mode], salt=b"bench" * 8)
        elif mode in providers:
            RequestsInstrumentor().instrument(tracer_provider=providers[mode])
            URLLib3Instrumentor().instrument(tracer_provider=providers[mode])

    def off(mode):  # outside the timed calls: the writer's backlog is written before the next block
        if mode in sinks:
            mit_network_audit.uninstall()
            sink = sinks[mode]
            sink.drain() if mode == "ours" else sink.flush()
        elif mode in providers:
            RequestsInstrumentor().uninstrument()
            URLLib3Instrumentor().uninstrument()
            exporter.clear()

    # none_again: a second uninstrumented block per round, the control -- its "added" is the noise floor.
    modes = ["none", "ours", "ours_journal", "otel_noop", "otel_sdk", "none_again"]
    s = requests.Session()
    url = f"http://127.0.0.1:{port}/x"
    medians = {m: [] for m in modes}
    for r in range(-1, rounds):  # round -1 warms every configuration up, unmeasured
        for mode in modes[r % len(modes):] + modes[:r % len(modes)]:
            on(mode)
            w = []
            for _ in range(per_block):
                t = time.perf_counter_ns(); s.get(url); w.append(time.perf_counter_ns() - t)
            off(mode)
            if r >= 0:
                medians[mode].append(statistics.median(w) / 1000)
        if r >= 0:
            print(f"round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
    sinks["ours_journal"].close()
    shutil.rmtree(journal_dir, ignore_errors=True)
    print(json.dumps(medians))
""")
PAIRED = with_writer_sink(PAIRED)

LISTENER = textwrap.dedent("""
    import socket, threading
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0)); s.listen(4096)
    print(s.getsockname()[1], flush=True)
    while True:
        c, _ = s.accept(); c.close()
""")


def run(mode, what, port, calls):
    out = subprocess.run(
        [sys.executable, "-c", WORKER, mode, what, str(port), str(calls)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


VALGRIND_FLUSH_S = "5.0"


def instructions(worker: str, modes, what: str, port: int, n1: int, n2: int) -> dict:
    """Instructions per call under ``valgrind --tool=callgrind`` (repeatable on a loaded machine):
    (Ir(n2 calls) - Ir(n1 calls)) / (n2 - n1), for the calling (main) thread and for all threads."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in modes:
            totals = []
            for n in (n1, n2):
                prefix = os.path.join(tmp, f"{mode}.{n}")
                subprocess.run(
                    [
                        "valgrind",
                        "--tool=callgrind",
                        "--separate-threads=yes",
                        f"--callgrind-out-file={prefix}.%p",
                        sys.executable,
                        "-c",
                        worker,
                        mode,
                        what,
                        str(port),
                        str(n),
                    ],
                    capture_output=True,
                    check=True,
                    # valgrind runs this code ~50x slower: a 5 s flush interval gives the journal
                    # writer the batches a 100 ms interval gives it natively (~200 rows at ~2k calls/s),
                    # not 50x more, 50x smaller ones whose per-batch commit would dominate.
                    env={**os.environ, "PYTHONHASHSEED": "0", "MNA_BENCH_FLUSH_S": VALGRIND_FLUSH_S},
                )
                main_ir = all_ir = 0
                for name in glob.glob(prefix + ".*"):
                    with open(name) as fh:
                        ir = next((int(line.split()[1]) for line in fh if line.startswith("totals:")), 0)
                    all_ir += ir
                    if name.endswith("-01"):
                        main_ir = ir
                totals.append((main_ir, all_ir))
            out[mode] = tuple((b - a) / (n2 - n1) for a, b in zip(totals[0], totals[1], strict=True))
    return out


def paired(rounds: int, per_block: int) -> None:
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    try:
        out = subprocess.run(
            [sys.executable, "-c", PAIRED, server.stdout.readline().strip(), str(rounds), str(per_block)],
            stdout=subprocess.PIPE,
            text=True,
            check=True,
        )
    finally:
        server.kill()
    medians = json.loads(out.stdout.strip().splitlines()[-1])
    base = medians["none"]
    print(f"{rounds} rounds x {per_block} calls per block; per round, each block's median wall time per call")
    print("| configuration | wall median (µs), median over rounds | added: median of per-round differences (µs) "
          "| added, lowest–highest round (µs) |")
    print("|---|---:|---:|---:|")
    added = {}
    for mode, values in medians.items():
        diffs = [v - b for v, b in zip(values, base, strict=True)]
        added[mode] = statistics.median(diffs)
        cells = "— | —" if mode == "none" else f"{added[mode]:+.1f} | {min(diffs):+.1f} … {max(diffs):+.1f}"
        print(f"| {mode} | {statistics.median(values):.1f} | {cells} |")
    noop = added["otel_noop"]
    if noop > 0:
        print(f"\nadded wall per requests call / OpenTelemetry no-op's: ours {added['ours'] / noop:.2f}, "
              f"ours_journal {added['ours_journal'] / noop:.2f} (target <= 0.33; ours <= 25 µs)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--rss-calls", type=int, default=100_000)
    ap.add_argument(
        "--instructions",
        action="store_true",
        help="instead: instructions per requests call under callgrind (none / ours / ours_journal / otel_noop)",
    )
    ap.add_argument(
        "--ir-calls",
        default="100,300",
        metavar="N1,N2",
        help="with --instructions: (Ir(N2 calls) - Ir(N1 calls)) / (N2 - N1); a wider gap averages out the "
        "run-to-run wobble (~30k instructions per call at 100,300), at ~0.1 s of callgrind per call",
    )
    ap.add_argument(
        "--ir-modes",
        default="none,ours,ours_journal,otel_noop",
        help="with --instructions: the configurations to count (none is always counted: the baseline)",
    )
    ap.add_argument(
        "--paired",
        action="store_true",
        help="instead: requests configurations in one process, in alternating blocks of --calls calls "
        "(--rounds rounds); added wall latency = median over rounds of (block median - same round's "
        "uninstrumented block median); a second uninstrumented block (none_again) shows the noise floor. "
        "For a machine whose speed drifts between runs",
    )
    args = ap.parse_args()
    if args.paired:
        paired(args.rounds, args.calls)
        return
    if args.instructions:
        n_calls = tuple(int(n) for n in args.ir_calls.split(","))
        server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
        try:
            modes = ("none", *(m for m in args.ir_modes.split(",") if m and m != "none"))
            ir = instructions(WORKER, modes, "requests", int(server.stdout.readline()), *n_calls)
        finally:
            server.kill()
        print("| configuration | instructions per call, calling thread | added | all threads | added |")
        print("|---|---:|---:|---:|---:|")
        for mode, (main_ir, all_ir) in ir.items():
            base = ir["none"]
            print(
                f"| {mode} | {main_ir:,.0f} | {main_ir - base[0]:+,.0f} | {all_ir:,.0f} | {all_ir - base[1]:+,.0f} |"
            )
        if "otel_noop" not in ir:
            return
        noop = ir["otel_noop"][1] - ir["none"][1]  # all on the calling thread: OpenTelemetry has no writer
        for mode in (m for m in ("ours", "ours_journal") if m in ir):
            print(
                f"\n{mode}: added instructions / OpenTelemetry no-op's: calling thread "
                f"{(ir[mode][0] - ir['none'][0]) / noop:.3f}, all threads {(ir[mode][1] - ir['none'][1]) / noop:.3f}"
                f" (target <= 0.333); calls {n_calls[0]} -> {n_calls[1]}"
            )
        return
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    listener = subprocess.Popen([sys.executable, "-c", LISTENER], stdout=subprocess.PIPE, text=True)
    port, lport = int(server.stdout.readline()), int(listener.stdout.readline())
    results: dict[tuple[str, str], list[float]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    proc: dict[tuple[str, str], list[float]] = {}
    try:
        plan = [("requests", m) for m in ("none", "ours", "ours_journal", "ours_sync", "otel_noop", "otel_sdk")]
        plan += [("socket", m) for m in ("none", "ours")] + [("wsgi", m) for m in ("none", "ours")]
        for r in range(args.rounds):
            for what, mode in plan:
                p = lport if what == "socket" else port
                calls = args.calls * (10 if what == "wsgi" else 1)
                out = run(mode, what, p, calls)
                results.setdefault((what, mode), []).append(out["median_us"])
                cpu.setdefault((what, mode), []).append(out["cpu_us"])
                proc.setdefault((what, mode), []).append(out["proc_us"])
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
        rss = {mode: run(mode, "rss", port, args.rss_calls) for mode in ("none", "ours")}
    finally:
        server.kill()
        listener.kill()
    med = {k: statistics.median(v) for k, v in results.items()}
    cpu_med = {k: statistics.median(v) for k, v in cpu.items()}
    proc_med = {k: statistics.median(v) for k, v in proc.items()}
    print(
        "| benchmark | configuration | wall median (µs) | caller CPU per call (µs) | added caller CPU (µs) "
        "| process CPU per call, all threads (µs) | added process CPU (µs) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for (what, mode), value in med.items():
        added = cpu_med[(what, mode)] - cpu_med[(what, "none")]
        padded = proc_med[(what, mode)] - proc_med[(what, "none")]
        print(
            f"| {what} | {mode} | {value:.1f} | {cpu_med[(what, mode)]:.1f} | "
            f"{'—' if mode == 'none' else f'{added:+.1f}'} | {proc_med[(what, mode)]:.1f} | "
            f"{'—' if mode == 'none' else f'{padded:+.1f}'} |"
        )
    ours = cpu_med[("requests", "ours")] - cpu_med[("requests", "none")]
    noop = cpu_med[("requests", "otel_noop")] - cpu_med[("requests", "none")]
    print(
        f"\nadded caller CPU per requests call: ours {ours:.1f} µs, OpenTelemetry no-op {noop:.1f} µs, "
        f"ratio {ours / noop:.2f} (target <= 0.33)"
        if noop > 0
        else ""
    )
    grow = {m: (v["rss_kb"] - v["base_kb"]) / 1024 for m, v in rss.items()}
    print(
        f"RSS growth over {args.rss_calls:,} calls after warm-up: none {grow['none']:.1f} MB, ours {grow['ours']:.1f} MB; "
        f"final RSS none {rss['none']['rss_kb'] / 1024:.1f} MB, ours {rss['ours']['rss_kb'] / 1024:.1f} MB"
    )


if __name__ == "__main__":
    main()
