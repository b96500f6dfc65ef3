"""Journal throughput against raw baselines, interleaved in one run, so the ratios mean something on
a shared machine.

    .venv/bin/python bench/bench_journal_ab.py [--rows 50000] [--rounds 3] [--verify-rows 1000000]

Each round measures, back to back on fresh databases (the same 37-column rows, batches of 1,000):

* chaining without a database: the reference path (``chain`` + ``schema.encode_fields``) vs the fast
  path the stores use (``chain_rows``);
* SQLite: raw ``executemany`` of pre-encoded, pre-hashed rows in ``BEGIN IMMEDIATE`` per batch vs
  ``SQLiteStore.append``;
* PostgreSQL, 1 writer: raw COPY of pre-encoded, pre-hashed rows under the advisory lock vs
  ``PostgresStore.append``;
* PostgreSQL, 4 writer processes sharing one journal: the same raw COPY vs ``append``.

Then verify of a ``--verify-rows`` SQLite journal with 1 and with every core, next to the
single-core reference "canonical JSON of every row" (``json.dumps`` of decoded rows), and bytes/row.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time

import psycopg

sys.path.insert(0, os.path.dirname(__file__))

from bench_journal import BATCH, append_rate, drop_pg_db, new_pg_db, sample_events  # noqa: E402

from mit_network_audit.interceptor.event import NetEvent, new_event_id  # noqa: E402
from mit_network_audit.journal import open_store, schema  # noqa: E402
from mit_network_audit.journal.canonical import ZERO_HASH, canonical_bytes, chain, chain_rows  # noqa: E402
from mit_network_audit.journal.sqlite import _INSERT  # noqa: E402
from mit_network_audit.journal.verify import verify  # noqa: E402

COPY = f"COPY egress_log ({schema.SELECT_LIST}) FROM STDIN"


def reference_rows(events, bool_as_int):
    return [(s, *schema.encode_fields(f, bool_as_int=bool_as_int), leaf, prev, row)
            for s, f, leaf, prev, row in chain(events, 1, ZERO_HASH)]


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def raw_sqlite_rate(path: str, rows) -> float:
    open_store(path).close()
    import sqlite3

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")

    def run():
        for i in range(0, len(rows), BATCH):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(_INSERT, rows[i:i + BATCH])
            conn.execute("COMMIT")

    took = timed(run)
    conn.close()
    return len(rows) / took


def _copy_batches(dsn: str, rows, barrier=None, out=None):
    with psycopg.connect(dsn) as conn:
        if barrier is not None:
            barrier.wait()
        start = time.perf_counter()
        for i in range(0, len(rows), BATCH):
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(1)")
                with conn.cursor().copy(COPY) as copy:
                    for r in rows[i:i + BATCH]:
                        copy.write_row(r)
        end = time.perf_counter()
    if out is not None:
        out.put((start, end))
    return len(rows) / (end - start)


def raw_copy_rate(dsn: str, rows) -> float:
    open_store(dsn).close()
    return _copy_batches(dsn, rows)


def _append_worker(dsn, events, barrier, out):
    store = open_store(dsn)
    barrier.wait()
    start = time.perf_counter()
    for i in range(0, len(events), BATCH):
        store.append(events[i:i + BATCH])
    out.put((start, time.perf_counter()))
    store.close()


def four_writers(dsn: str, per_proc: list, raw: bool) -> float:
    """4 processes sharing one journal; raw: pre-encoded COPY with disjoint chain_seq ranges."""
    open_store(dsn).close()
    ctx = multiprocessing.get_context("fork")
    barrier, out = ctx.Barrier(len(per_proc)), ctx.Queue()
    target = _copy_batches if raw else _append_worker
    ps = [ctx.Process(target=target, args=(dsn, part, barrier, out)) for part in per_proc]
    for p in ps:
        p.start()
    spans = [out.get() for _ in ps]
    for p in ps:
        p.join()
    return sum(len(p) for p in per_proc) / (max(e for _, e in spans) - min(s for s, _ in spans))


def with_pg(fn):
    dsn = new_pg_db()
    try:
        return fn(dsn)
    finally:
        drop_pg_db(dsn)


def pg_bytes(dsn: str) -> int:
    with psycopg.connect(dsn) as c:
        return c.execute("SELECT pg_total_relation_size('egress_log')").fetchone()[0]


def fresh(events):
    return [NetEvent.from_dict({**e.as_dict(), "event_id": new_event_id()}) for e in events]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=50_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--verify-rows", type=int, default=1_000_000)
    ap.add_argument("--skip-verify", action="store_true")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="mna-h5-bench-")
    results: dict[str, list[float]] = {}

    def note(name, rate):
        results.setdefault(name, []).append(rate)
        print(f"  {name}: {rate:,.0f} rows/s", flush=True)

    print(f"load average at start: {os.getloadavg()}", flush=True)
    for rnd in range(args.rounds):
        print(f"round {rnd + 1}", flush=True)
        events = sample_events(args.rows)
        note("chaining, reference path (chain + encode_fields)",
             len(events) / timed(lambda: reference_rows(events, False)))  # noqa: B023
        note("chaining, fast path (chain_rows)",
             len(events) / timed(lambda: chain_rows(events, 1, ZERO_HASH, bool_as_int=False)))  # noqa: B023
        rows_int = reference_rows(fresh(events), True)
        note("SQLite raw executemany (pre-encoded)", raw_sqlite_rate(os.path.join(tmp, f"r{rnd}.db"), rows_int))
        path = os.path.join(tmp, f"a{rnd}.db")
        note("SQLite append", append_rate(path, fresh(events)))
        sqlite_size = sum(os.path.getsize(path + s) for s in ("", "-wal") if os.path.exists(path + s))
        rows_pg = reference_rows(fresh(events), False)
        note("PG 1 writer raw COPY (pre-encoded)", with_pg(lambda d: raw_copy_rate(d, rows_pg)))  # noqa: B023

        def pg_one(dsn, evs=fresh(events)):
            return append_rate(dsn, evs), pg_bytes(dsn)

        rate, pg_size = with_pg(pg_one)
        note("PG 1 writer append", rate)
        quarter = args.rows // 4
        raw_parts = [reference_rows(fresh(events[:quarter]), False) for _ in range(4)]
        for k, part in enumerate(raw_parts):  # disjoint chain_seq ranges, unique prev_hash per row
            raw_parts[k] = [(r[0] + k * quarter, *r[1:-2], f"{k}{r[-2][1:]}", r[-1]) for r in part]
        note("PG 4 writers raw COPY (pre-encoded)", with_pg(lambda d: four_writers(d, raw_parts, True)))  # noqa: B023
        parts = [fresh(events[:quarter]) for _ in range(4)]
        note("PG 4 writers append", with_pg(lambda d: four_writers(d, parts, False)))  # noqa: B023
    print(f"load average after appends: {os.getloadavg()}", flush=True)

    print("\n| measurement | median rows/s | runs |\n|---|---:|---|")
    for name, rates in results.items():
        print(f"| {name} | {statistics.median(rates):,.0f} | {', '.join(f'{r:,.0f}' for r in rates)} |")
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"\nratios: SQLite append / raw executemany = {med['SQLite append'] / med['SQLite raw executemany (pre-encoded)']:.2f}; "
          f"PG 1 writer append / raw COPY = {med['PG 1 writer append'] / med['PG 1 writer raw COPY (pre-encoded)']:.2f}; "
          f"PG 4 writers append / raw COPY = {med['PG 4 writers append'] / med['PG 4 writers raw COPY (pre-encoded)']:.2f}; "
          f"chaining fast / reference = {med['chaining, fast path (chain_rows)'] / med['chaining, reference path (chain + encode_fields)']:.2f}")
    print(f"bytes per row on disk ({args.rows:,} rows): SQLite {sqlite_size / args.rows:,.0f} (file + WAL, with "
          f"indexes); PostgreSQL {pg_size / args.rows:,.0f} (table + indexes + TOAST)", flush=True)
    if args.skip_verify:
        return

    vpath = os.path.join(tmp, "v.db")
    store = open_store(vpath)
    chunk = sample_events(50_000)
    for _ in range(max(1, args.verify_rows // len(chunk))):
        evs = fresh(chunk)
        for i in range(0, len(evs), 5000):
            store.append(evs[i:i + 5000])
    print(f"\nverify over {store.max_seq():,} rows; load average {os.getloadavg()}", flush=True)
    for rnd in range(2):
        def canon_only():
            for raw in store.iter_raw(1, None, 50_000):
                jr = schema.decode_row(raw)
                canonical_bytes(jr.event.as_dict(), jr.chain_seq)

        print(f"| reference: canonical JSON only, 1 core (round {rnd + 1}) | "
              f"{store.max_seq() / timed(canon_only):,.0f} |", flush=True)
        for workers in (1, os.cpu_count() or 1):
            start = time.perf_counter()
            result = verify(store, workers=workers)
            took = time.perf_counter() - start
            assert result.ok, result
            print(f"| verify, {workers} worker(s) (round {rnd + 1}) | {result.rows_checked / took:,.0f} |", flush=True)
    store.close()
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
