"""Report figures: rollup catch-up rows/s, full rollup rebuild, `report` time over a big journal.

    .venv/bin/python bench/bench_report.py [--rows 1000000] [--pg] [--scale-rollup 10000000]

Builds the journal fast: 2,000 real rows go through the store (real hashes, a realistic mix of
addons, hosts, classes and a few licence-shape violations), then SQL clones them into ``--rows``
rows by shifting chain_seq, event_id, prev_hash and time (one hour of traffic per ~40k rows).
The clones do not verify as a chain (nothing here runs verify); the rollup and the report only
read the columns, so the figures are those of a real journal of that size.
Nothing is asserted; the numbers go to docs/benchmarks.md ("Report").
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import uuid

from mit_network_audit.interceptor.event import NetEvent
from mit_network_audit.journal import open_store, schema
from mit_network_audit.report import rollup
from mit_network_audit.report.trust import build_report

SEED_ROWS = 2_000
T0 = 1_767_225_600_000_000
STEP_US = 90_000  # one row every 90 ms: 40k rows an hour -> 250 hourly buckets at 10M

MIX = [  # (weight, addon, host, dest_class, vendor_bound, component, method, req_bytes)
    (40, "llm_assistant", "api.openai.com", "provider", False, "openai", "POST", 3000),
    (
        25,
        "acme_mail_sync",
        "smtp.gmail.com",
        "provider",
        False,
        "google-mail",
        "EHLO,MAIL,RCPT,DATA,QUIT",
        9000,
    ),
    (20, "sale", "erp.example.org", "own", False, "own", "GET", 300),
    (10, "mit_licence", "licence.mit-vendor.example", "vendor", True, "mit-licence", "POST", 400),
    (4, "website", "cdn.unknown-thing.example", "unknown", False, "", "GET", 200),
    (1, "crm_export_plus", "licence.mit-vendor.example", "vendor", True, "mit-licence", "PUT", 900_000),
]


def seed_events() -> list[NetEvent]:
    rnd = random.Random(7)
    weights = [m[0] for m in MIX]
    out = []
    for i in range(SEED_ROWS):
        _, addon, host, cls, vb, comp, method, req = rnd.choices(MIX, weights)[0]
        t = T0 + i * STEP_US
        out.append(
            NetEvent(
                event_id=uuid.uuid4().hex,
                logged_at_us=t,
                started_at_us=t - 900,
                duration_us=900,
                direction="outbound",
                channel="requests",
                protocol="https",
                method=method,
                host=host,
                port=443,
                path="/v1/x",
                dest_ip="203.0.113.9",
                dest_port=443,
                status=200,
                outcome="ok" if i % 97 else "error",
                error=None if i % 97 else "builtins.TimeoutError",
                req_bytes=req + i % 100,
                resp_bytes=5000,
                addon=addon,
                pid=4242 + i % 4,
                hostname="erp-1",
                vendor_bound=vb,
                component=comp or None,
                dest_class=cls,
            )
        )
    return out


def clone_sql(pg: bool, copies_from: int, copies_to: int) -> str:
    """Copy the seed rows (chain_seq 1..SEED_ROWS) as copies k = copies_from..copies_to-1."""
    shift = {
        "chain_seq": f"s.chain_seq + k * {SEED_ROWS}",
        "event_id": "s.event_id || '-' || k",
        "prev_hash": "s.prev_hash || '-' || k",
        "logged_at_us": f"s.logged_at_us + k * {SEED_ROWS * STEP_US}",
        "started_at_us": f"s.started_at_us + k * {SEED_ROWS * STEP_US}",
    }
    cols = schema.COLUMNS
    select = ", ".join(shift.get(c, f"s.{c}") for c in cols)
    series = (
        f"generate_series({copies_from}::bigint, {copies_to - 1}::bigint) AS g(k)"
        if pg
        else f"(WITH RECURSIVE g(k) AS (SELECT {copies_from} UNION ALL SELECT k + 1 FROM g "
        f"WHERE k < {copies_to - 1}) SELECT k FROM g) AS g"
    )
    return (
        f"INSERT INTO {schema.TABLE} ({', '.join(cols)}) SELECT {select} FROM {schema.TABLE} s, {series} "
        f"WHERE s.chain_seq <= {SEED_ROWS}"
    )


def build(store, rows: int) -> float:
    started = time.perf_counter()
    store.append(seed_events())
    copies = max(1, rows // SEED_ROWS)
    pg = getattr(store, "kind", "") == "postgres"
    for lo in range(1, copies, 50):
        store.execute_raw(clone_sql(pg, lo, min(copies, lo + 50)))
    return time.perf_counter() - started


def report_at_scale(store, n: int, target_rows: int) -> None:
    """`report` over a rollup as big as a ``target_rows`` journal's, without building that journal.

    The measured buckets are copied forward in time (k copies shifted by the span they cover), so the
    rollup holds what ``target_rows`` rows of the same mix would produce.  The journal itself stays
    small: the evidence lookups run on it (indexed, LIMIT 20), which is the part this leaves optimistic.
    """
    span_hours = (n * STEP_US) // rollup.HOUR_US + 1
    copies = max(1, target_rows // n)
    cols = (
        [r[1] for r in store.execute_raw("PRAGMA table_info(mna_rollup)")]
        if getattr(store, "kind", "") != "postgres"
        else [
            r[0]
            for r in store.execute_raw(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'mna_rollup' ORDER BY ordinal_position"
            )
        ]
    )
    shifted = ", ".join(
        f"bucket_us + k * {span_hours * rollup.HOUR_US}"
        if c == "bucket_us"
        else f"{c} + k * {n}"
        if c in ("first_seq", "last_seq")
        else c
        for c in cols
    )
    for k in range(1, copies):
        store.execute_raw(
            f"INSERT INTO mna_rollup ({', '.join(cols)}) SELECT {shifted.replace('k *', f'{k} *')} "
            f"FROM mna_rollup WHERE bucket_us < {T0 + span_hours * rollup.HOUR_US}"
        )
    buckets, rows = store.execute_raw("SELECT count(*), sum(n) FROM mna_rollup")[0]
    times = []
    for _ in range(5):
        t = time.perf_counter()
        rep = build_report(
            store,
            since_us=0,
            until_us=T0 + copies * span_hours * rollup.HOUR_US,
            now_us=T0 + copies * span_hours * rollup.HOUR_US,
            catch_up=False,
        )
        times.append(time.perf_counter() - t)
    print(
        f"report over a rollup of {rows:,} rows ({buckets:,} buckets, rollup-equivalent, journal not built): "
        f"best {min(times) * 1000:.0f} ms, median {sorted(times)[2] * 1000:.0f} ms; verdict {rep.verdict}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--pg", action="store_true", help="PostgreSQL on 127.0.0.1 (own database, dropped after)")
    ap.add_argument(
        "--scale-rollup",
        type=int,
        default=0,
        help="also time `report` over a rollup as big as this many journal rows' (e.g. 10000000)",
    )
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="mna_bench_report_")
    dbname = f"mna_report_bench_{uuid.uuid4().hex[:8]}"
    if args.pg:
        import psycopg

        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
            c.execute(f"CREATE DATABASE {dbname}")
        dsn = f"postgresql://postgres@127.0.0.1:5432/{dbname}"
    else:
        dsn = f"sqlite:///{os.path.join(tmp, 'journal.db')}"
    store = open_store(dsn)
    try:
        took = build(store, args.rows)
        n = store.max_seq()
        print(f"journal: {n:,} rows built in {took:.1f}s ({'postgres' if args.pg else 'sqlite'})", flush=True)

        t = time.perf_counter()
        res = rollup.catch_up(store)
        catch = time.perf_counter() - t
        print(
            f"rollup catch-up (from empty): {res.rows:,} rows in {catch:.2f}s = {res.rows / catch:,.0f} rows/s"
        )
        buckets = store.execute_raw("SELECT count(*) FROM mna_rollup")[0][0]
        print(f"rollup buckets: {buckets:,}")

        times = []
        for _ in range(5):
            t = time.perf_counter()
            rep = build_report(store, since_us=0, until_us=T0 + (n + 1) * STEP_US, now_us=T0 + n * STEP_US)
            times.append(time.perf_counter() - t)
        print(
            f"report over the whole journal (reads the rollup): best {min(times) * 1000:.0f} ms, "
            f"median {sorted(times)[2] * 1000:.0f} ms; verdict {rep.verdict}, {len(rep.lines)} lines"
        )

        if args.scale_rollup:
            report_at_scale(store, n, args.scale_rollup)

        t = time.perf_counter()
        res = rollup.rebuild(store)
        rb = time.perf_counter() - t
        print(f"full rollup rebuild: {res.rows:,} rows in {rb:.2f}s = {res.rows / rb:,.0f} rows/s")
        c = rollup.consistency(store)
        print(f"consistency: {c['message']} ok={c['ok']}")
    finally:
        store.close()
        if args.pg:
            import psycopg

            with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
                c.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
        else:
            for f in os.listdir(tmp):
                os.remove(os.path.join(tmp, f))
            os.rmdir(tmp)


if __name__ == "__main__":
    sys.exit(main())
