"""Journal figures measured side by side in one run, with a fair raw-COPY reference and a serial vs
parallel verify, so the ratios mean something on a shared machine.

    .venv/bin/python bench/bench_journal_ab.py [--rows 100000] [--verify-rows 1000000]

* append: ``store.append`` in batches of 1,000 (what the BatchingSink does), SQLite and PostgreSQL
  (1 writer; 4 writer processes sharing one journal);
* reference: the same rows, hashes precomputed and every column pre-encoded, pushed with COPY under
  the advisory lock — the database's own ceiling for this row shape;
* cost of the chaining alone (canonical JSON + two SHA-256 + column encoding, no database);
* verify of a ``--verify-rows`` SQLite journal with 1 worker and with every core;
* bytes per row on disk.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import psycopg

sys.path.insert(0, os.path.dirname(__file__))

from bench_journal import BATCH, append_rate, drop_pg_db, new_pg_db, parallel_rate, sample_events  # noqa: E402

from mit_network_audit.interceptor.event import NetEvent, new_event_id  # noqa: E402
from mit_network_audit.journal import open_store, schema  # noqa: E402
from mit_network_audit.journal.canonical import ZERO_HASH, chain  # noqa: E402
from mit_network_audit.journal.verify import verify  # noqa: E402


def encoded_rows(events, bool_as_int):
    return [(s, *schema.encode_fields(f, bool_as_int=bool_as_int), leaf, prev, row)
            for s, f, leaf, prev, row in chain(events, 1, ZERO_HASH)]


def chaining_rate(events) -> float:
    start = time.perf_counter()
    encoded_rows(events, False)
    return len(events) / (time.perf_counter() - start)


def raw_copy_rate(dsn: str, events) -> float:
    open_store(dsn).close()
    rows = encoded_rows(events, False)
    with psycopg.connect(dsn) as conn:
        start = time.perf_counter()
        for i in range(0, len(rows), BATCH):
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(1)")
                with conn.cursor().copy(f"COPY egress_log ({schema.SELECT_LIST}) FROM STDIN") as copy:
                    for r in rows[i:i + BATCH]:
                        copy.write_row(r)
        return len(rows) / (time.perf_counter() - start)


def pg_bytes(dsn: str) -> int:
    with psycopg.connect(dsn) as c:
        return c.execute("SELECT pg_total_relation_size('egress_log')").fetchone()[0]


def with_pg(fn):
    dsn = new_pg_db()
    try:
        return fn(dsn)
    finally:
        drop_pg_db(dsn)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--verify-rows", type=int, default=1_000_000)
    args = ap.parse_args()
    events = sample_events(args.rows)
    tmp = tempfile.mkdtemp(prefix="mna-bench-")
    print("| measurement | rows/s |\n|---|---:|", flush=True)

    class Out(list):  # print each figure as soon as it is measured: a slow machine keeps partial results
        def append(self, item):
            print(f"| {item[0]} | {item[1]} |", flush=True)
            super().append(item)

    out = Out()

    out.append(("chaining only (canonical JSON + 2 x SHA-256 + encode), no database", f"{chaining_rate(events):,.0f}"))
    path = os.path.join(tmp, "a.db")
    out.append(("append, SQLite, 1 writer", f"{append_rate(path, events):,.0f}"))
    sqlite_size = sum(os.path.getsize(path + s) for s in ("", "-wal") if os.path.exists(path + s))
    print(f"(SQLite bytes per row: {sqlite_size / args.rows:,.0f})", flush=True)

    def pg_one(dsn):
        rate = append_rate(dsn, events)
        return rate, pg_bytes(dsn)

    rate, pg_size = with_pg(pg_one)
    out.append(("append, PostgreSQL, 1 writer", f"{rate:,.0f}"))
    out.append(("append, PostgreSQL, 4 writer processes", f"{with_pg(lambda d: parallel_rate(d, args.rows // 4)):,.0f}"))
    out.append(("reference: raw COPY of pre-encoded rows under the advisory lock",
                f"{with_pg(lambda d: raw_copy_rate(d, events)):,.0f}"))

    vpath = os.path.join(tmp, "v.db")
    store = open_store(vpath)
    chunk = sample_events(50_000)
    for _ in range(max(1, args.verify_rows // len(chunk))):
        fresh = [NetEvent.from_dict({**e.as_dict(), "event_id": new_event_id()}) for e in chunk]
        for i in range(0, len(fresh), 5000):
            store.append(fresh[i:i + 5000])
    for workers in (1, os.cpu_count() or 1):
        start = time.perf_counter()
        result = verify(store, workers=workers)
        took = time.perf_counter() - start
        assert result.ok
        out.append((f"verify, SQLite, {result.rows_checked:,} rows, {workers} worker process(es)",
                     f"{result.rows_checked / took:,.0f}"))
    store.close()

    print(f"\nbytes per row on disk ({args.rows:,} rows): SQLite {sqlite_size / args.rows:,.0f} (file + WAL, with "
          f"indexes); PostgreSQL {pg_size / args.rows:,.0f} (table + indexes + TOAST)")


if __name__ == "__main__":
    main()
