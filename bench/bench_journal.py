"""Journal throughput: batched appends (SQLite, PostgreSQL 1 and 4 writer processes, raw COPY under
an advisory lock as the reference), verify rows/s, bytes per row on disk.

    .venv/bin/python bench/bench_journal.py [--rows 200000] [--verify-rows 1000000]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
import uuid

import psycopg

from mit_network_audit.interceptor.event import NetEvent, new_event_id
from mit_network_audit.journal import open_store
from mit_network_audit.journal.verify import verify

ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
BATCH = 1000


def sample_events(n: int) -> list[NetEvent]:
    now = time.time_ns() // 1000
    return [NetEvent(event_id=new_event_id(), logged_at_us=now + i, started_at_us=now + i, duration_us=1234,
                     direction="outbound", channel="requests", protocol="https", method="POST",
                     host="api.openai.com", port=443, path="/v1/chat/completions", query_keys=("model",),
                     dest_ip="203.0.113.9", dest_port=443, src_ip="10.0.0.5", src_port=40000 + i % 20000, status=200,
                     req_bytes=812, resp_bytes=2210, req_headers=("authorization: ***", "content-type: application/json"),
                     resp_headers=("content-type: application/json",), fingerprint="ab" * 32, addon="llm_assistant",
                     call_site="llm_assistant/__init__.py:7 in ask", via=("requests", "urllib3", "http.client"),
                     pid=4242, hostname="erp-1", vendor_bound=False, component="openai", dest_class="provider")
            for i in range(n)]


def new_pg_db() -> str:
    name = f"mna_h5_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


def drop_pg_db(dsn: str) -> None:
    with psycopg.connect(ADMIN, autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {dsn.rsplit('/', 1)[1]} WITH (FORCE)")


def append_rate(dsn: str, events: list[NetEvent]) -> float:
    store = open_store(dsn)
    start = time.perf_counter()
    for i in range(0, len(events), BATCH):
        store.append(events[i:i + BATCH])
    took = time.perf_counter() - start
    store.close()
    return len(events) / took


def _writer(dsn, n, barrier, out):
    events = sample_events(n)
    store = open_store(dsn)
    barrier.wait()
    start = time.perf_counter()
    for i in range(0, n, BATCH):
        store.append(events[i:i + BATCH])
    out.put((start, time.perf_counter()))


def parallel_rate(dsn: str, n_per: int, procs: int = 4) -> float:
    open_store(dsn).close()
    ctx = multiprocessing.get_context("fork")
    barrier, out = ctx.Barrier(procs), ctx.Queue()
    ps = [ctx.Process(target=_writer, args=(dsn, n_per, barrier, out)) for _ in range(procs)]
    for p in ps:
        p.start()
    spans = [out.get() for _ in ps]
    for p in ps:
        p.join()
    return n_per * procs / (max(e for _, e in spans) - min(s for s, _ in spans))


def raw_copy_rate(dsn: str, n: int) -> float:
    """The reference: COPY of pre-encoded rows under the advisory lock, no hashing, no Python per field."""
    store = open_store(dsn)
    store.close()
    rows = [(i + 1, 1, uuid.uuid4().hex, 1, 1, 1, "outbound", "requests", False, uuid.uuid4().hex) for i in range(n)]
    with psycopg.connect(dsn) as conn:
        start = time.perf_counter()
        for i in range(0, n, BATCH):
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(1)")
                with conn.cursor().copy("COPY egress_log (chain_seq, v, event_id, logged_at_us, started_at_us, "
                                        "duration_us, direction, channel, vendor_bound, prev_hash) FROM STDIN") as copy:
                    for r in rows[i:i + BATCH]:
                        copy.write_row(r)
        return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--verify-rows", type=int, default=1_000_000)
    args = ap.parse_args()
    events = sample_events(args.rows)
    tmp = tempfile.mkdtemp(prefix="mna-bench-")
    results = []
    sqlite_path = os.path.join(tmp, "a.db")
    results.append(("append, SQLite, 1 writer", append_rate(sqlite_path, events)))
    size = sum(os.path.getsize(sqlite_path + s) for s in ("", "-wal") if os.path.exists(sqlite_path + s))
    pg = new_pg_db()
    try:
        results.append(("append, PostgreSQL, 1 writer", append_rate(pg, events)))
        with psycopg.connect(pg) as c:
            pg_bytes = c.execute("SELECT pg_total_relation_size('egress_log')").fetchone()[0]
    finally:
        drop_pg_db(pg)
    pg = new_pg_db()
    try:
        results.append(("append, PostgreSQL, 4 writer processes", parallel_rate(pg, args.rows // 4)))
    finally:
        drop_pg_db(pg)
    pg = new_pg_db()
    try:
        results.append(("reference: raw COPY under advisory lock (no hashing)", raw_copy_rate(pg, args.rows)))
    finally:
        drop_pg_db(pg)
    vpath = os.path.join(tmp, "v.db")
    store = open_store(vpath)
    chunk = sample_events(50_000)
    for _ in range(args.verify_rows // len(chunk)):
        for i in range(0, len(chunk), 5000):
            store.append([NetEvent.from_dict({**e.as_dict(), "event_id": new_event_id()}) for e in chunk[i:i + 5000]])
    start = time.perf_counter()
    result = verify(store)
    took = time.perf_counter() - start
    assert result.ok
    results.append((f"verify, SQLite, {result.rows_checked:,} rows, {os.cpu_count()} cores", result.rows_checked / took))
    from mit_network_audit.report import rollup
    from mit_network_audit.report.trust import build_report

    start = time.perf_counter()
    folded = rollup.rebuild(store).rows
    results.append((f"rollup rebuild (catch-up from zero), SQLite, {folded:,} rows", folded / (time.perf_counter() - start)))
    start = time.perf_counter()
    build_report(store, 0, catch_up=False)
    report_ms = (time.perf_counter() - start) * 1000
    print("| measurement | rows/s |\n|---|---:|")
    for name, rate in results:
        print(f"| {name} | {rate:,.0f} |")
    print(f"\nTrust Report over the {args.verify_rows:,}-row journal (reads the rollup only): {report_ms:.0f} ms")
    print(f"bytes per row on disk: SQLite {size / args.rows:,.0f} (file + WAL, with indexes); "
          f"PostgreSQL {pg_bytes / args.rows:,.0f} (table + indexes + TOAST)")


if __name__ == "__main__":
    main()
