"""The rollup: hourly and daily buckets of the journal, maintained incrementally by a chain_seq watermark.

The Trust Report reads only these tables, never the journal, so a report over 10M rows costs
what a few thousand bucket rows cost.  The aggregation runs inside the database (one
INSERT ... SELECT ... GROUP BY per chunk into a delta table, folded into the hours and the days
by ON CONFLICT), which is why catch-up is fast.  A period reads the days it holds whole and the
hours only at its edges (``period_rows``): 30 days of a busy journal are ~20k bucket rows, not
~220k.  Rebuildable at any time from the journal (``rebuild``); ``consistency`` checks totals.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US  # UTC days
CHUNK = 500_000
KEY = (
    "bucket_us",
    "direction",
    "channel",
    "host",
    "addon",
    "dest_class",
    "outcome",
    "vendor_bound",
    "component",
    "method",
)
VALUES = ("n", "req_bytes", "resp_bytes", "max_req_bytes", "lost", "first_seq", "last_seq", "first_us", "last_us")
COLUMNS = KEY + VALUES
# VALUES merged over several buckets of one key
MERGED = (
    "sum(n), sum(req_bytes), sum(resp_bytes), max(max_req_bytes), sum(lost), "
    "min(first_seq), max(last_seq), min(first_us), max(last_us)"
)
WATERMARK = "rollup_seq"
# Key columns the Audit Log filters on, each indexed with last_seq (report/logsearch.py)
SEARCHED = ("host", "addon", "channel", "direction", "outcome", "dest_class", "vendor_bound")
# The path side table (distinct (host, module, path) per hourly bucket, for the Audit Log's text search) holds
# every path of the rows above this seq; a rollup created before the table existed knows none below it.
PATHS_FROM = "rollup_paths_from"
# Bumped by ``rebuild``: a reader that saw the rollup change generation under it cannot trust it.
EPOCH = "rollup_epoch"
# The widest seq range of any key (last_seq - first_seq), kept with the keys in each catch-up
# transaction: a key with first_seq <= S has last_seq <= S + span, which bounds the search's index walk.
SPAN = "rollup_span"
# Set once mna_rollup_day holds every hour of mna_rollup (a rollup made before the day level is
# folded into it once, from its hours, by the next catch-up).
DAYS = "rollup_days"


def ddl(pg: bool) -> list[str]:
    """The rollup's DDL (CREATE TABLE/INDEX IF NOT EXISTS), for PostgreSQL (``pg``) or SQLite."""
    big = "BIGINT"
    columns = f"""bucket_us {big} NOT NULL, direction TEXT NOT NULL, channel TEXT NOT NULL, host TEXT NOT NULL,
            addon TEXT NOT NULL, dest_class TEXT NOT NULL, outcome TEXT NOT NULL, vendor_bound INTEGER NOT NULL,
            component TEXT NOT NULL, method TEXT NOT NULL,
            n {big} NOT NULL, req_bytes {big} NOT NULL, resp_bytes {big} NOT NULL, max_req_bytes {big} NOT NULL,
            lost {big} NOT NULL, first_seq {big}, last_seq {big}, first_us {big}, last_us {big}"""
    return [
        f"CREATE TABLE IF NOT EXISTS mna_rollup ({columns}, PRIMARY KEY ({', '.join(KEY)}))",
        # the same keys with bucket_us = the UTC day: whole days of a period are read from here
        f"CREATE TABLE IF NOT EXISTS mna_rollup_day ({columns}, PRIMARY KEY ({', '.join(KEY)}))",
        "CREATE INDEX IF NOT EXISTS mna_rollup_vendor ON mna_rollup (vendor_bound, bucket_us)",
        # The Audit Log's search (report/logsearch.py) reads matching keys newest first by last_seq.
        "CREATE INDEX IF NOT EXISTS mna_rollup_last ON mna_rollup (last_seq)",
        *[f"CREATE INDEX IF NOT EXISTS mna_rollup_{c} ON mna_rollup ({c}, last_seq)" for c in SEARCHED],
        # path first: the search reads its distinct paths by a loose index scan
        f"""CREATE TABLE IF NOT EXISTS mna_rollup_path (
            bucket_us {big} NOT NULL, host TEXT NOT NULL, addon TEXT NOT NULL, path TEXT NOT NULL,
            PRIMARY KEY (path, host, addon, bucket_us))""",
        f"""CREATE TABLE IF NOT EXISTS mna_rollup_process (
            hostname TEXT NOT NULL, pid {big} NOT NULL, first_us {big}, last_us {big}, last_seq {big},
            last_kind TEXT, detail TEXT, PRIMARY KEY (hostname, pid))""",
    ]


_ddl = ddl  # the former private name, kept for callers written against it


def _is_pg(store) -> bool:
    return getattr(store, "kind", "") == "postgres"


@contextlib.contextmanager
def _transaction(store):
    """One writer at a time: PostgreSQL advisory lock, SQLite BEGIN IMMEDIATE."""
    if _is_pg(store):
        with store._lock, store.conn.transaction():
            store.conn.execute("SELECT pg_advisory_xact_lock(%s)", (0x6D6E615F726F6C,))
            yield
    else:
        with store._lock:
            store.conn.execute("BEGIN IMMEDIATE")
            try:
                yield
                store.conn.execute("COMMIT")
            except BaseException:
                if store.conn.in_transaction:  # SQLite may have rolled back already (disk full, I/O error)
                    store.conn.execute("ROLLBACK")
                raise


# PostgreSQL: GROUP BYs over the rollup's ten text key columns as hash aggregates.  The planner
# guesses about one group per row and sorts under the database's collation instead, 2-4x slower at
# 10M journal rows (catch_up, trust._groups).
HASH_AGGREGATES = ("SET LOCAL work_mem = '64MB'", "SET LOCAL enable_sort = off")
# PostgreSQL: statements planned for their values every time, never by a prepared statement's generic plan.
CUSTOM_PLANS = ("SET LOCAL plan_cache_mode = force_custom_plan",)


@contextlib.contextmanager
def pg_local(store, settings: tuple[str, ...]):
    """One transaction with ``settings`` (``SET LOCAL`` statements) on PostgreSQL; nothing on SQLite."""
    if not _is_pg(store):
        yield
        return
    with store._lock, store.conn.transaction():
        for statement in settings:
            store.execute_raw(statement)
        yield


def hash_aggregates(store):
    return pg_local(store, HASH_AGGREGATES)


def custom_plans(store):
    return pg_local(store, CUSTOM_PLANS)


def period_rows(store, since_us: int, until_us: int) -> tuple[str, tuple]:
    """A FROM-clause subquery (and its parameters) of bucket rows that together hold exactly the
    hours from ``since_us``'s hour up to ``until_us``: whole UTC days from mna_rollup_day, the
    edges from mna_rollup.  Its rows are partial sums — merge them per key (GROUP BY) to read them.

    The last day is read whole when no hour of it reaches ``until_us`` (the usual case: until is
    now), found by one index seek; so a 30-day period reads ~30 days + the first day's later hours.
    """
    p = "%s" if _is_pg(store) else "?"
    low = (since_us // HOUR_US) * HOUR_US
    first_day = -(-low // DAY_US) * DAY_US
    end_day = (until_us // DAY_US) * DAY_US
    if end_day < until_us:
        newest = store.execute_raw(f"SELECT max(bucket_us) FROM mna_rollup WHERE bucket_us >= {p}", (end_day,))[0][0]
        if newest is None or newest < until_us:
            end_day += DAY_US
    cols = ", ".join(COLUMNS)
    if end_day <= first_day:
        return f"(SELECT {cols} FROM mna_rollup WHERE bucket_us >= {p} AND bucket_us < {p}) r", (low, until_us)
    return (
        f"(SELECT {cols} FROM mna_rollup_day WHERE bucket_us >= {p} AND bucket_us < {p} "
        f"UNION ALL SELECT {cols} FROM mna_rollup WHERE bucket_us >= {p} AND bucket_us < {p} "
        f"UNION ALL SELECT {cols} FROM mna_rollup WHERE bucket_us >= {p} AND bucket_us < {p}) r",
        (first_day, end_day, low, first_day, end_day, until_us),
    )


def ensure_tables(store) -> None:
    for statement in ddl(_is_pg(store)):
        store.execute_raw(statement)


def _delta_ddl() -> str:
    """One chunk's hourly aggregate, folded into both levels (temporary: this connection only)."""
    return f"CREATE TEMP TABLE IF NOT EXISTS mna_rollup_delta AS SELECT {', '.join(COLUMNS)} FROM mna_rollup WHERE false"


def _fold_sql(pg: bool, table: str, bucket_us: str) -> str:
    """Add the delta's rows into ``table`` at ``bucket_us`` (the hour itself, or its day)."""
    greatest = "GREATEST" if pg else "max"
    least = "LEAST" if pg else "min"
    updates = ", ".join(
        [
            f"n = {table}.n + excluded.n",
            f"req_bytes = {table}.req_bytes + excluded.req_bytes",
            f"resp_bytes = {table}.resp_bytes + excluded.resp_bytes",
            f"max_req_bytes = {greatest}({table}.max_req_bytes, excluded.max_req_bytes)",
            f"lost = {table}.lost + excluded.lost",
            f"first_seq = {least}({table}.first_seq, excluded.first_seq)",
            f"last_seq = {greatest}({table}.last_seq, excluded.last_seq)",
            f"first_us = {least}({table}.first_us, excluded.first_us)",
            f"last_us = {greatest}({table}.last_us, excluded.last_us)",
        ]
    )
    key = ", ".join(KEY[1:])
    # WHERE true: SQLite's parser needs it between a SELECT and ON CONFLICT
    return f"""
        INSERT INTO {table} ({", ".join(COLUMNS)})
        SELECT {bucket_us}, {key}, {MERGED}
        FROM mna_rollup_delta WHERE true GROUP BY {bucket_us}, {key}
        ON CONFLICT ({", ".join(KEY)}) DO UPDATE SET {updates}"""


def _days_from_hours_sql() -> str:
    key = ", ".join(KEY[1:])
    day = f"(bucket_us / {DAY_US}) * {DAY_US}"
    return (
        f"INSERT INTO mna_rollup_day ({', '.join(COLUMNS)}) SELECT {day}, {key}, {MERGED} "
        f"FROM mna_rollup GROUP BY {day}, {key}"
    )


def _aggregate_sql(pg: bool) -> str:
    # A gap row's detail is the writer's JSON ({"lost": 12, ...}); one that is not (an edited row:
    # verify's alarm) counts 0 here instead of failing every rollup, and with it every report.
    lost = (
        "coalesce(substring(detail from '^\\{.*\"lost\": ?([0-9]{1,18})[,}]')::bigint, 0)"
        if pg
        else "CASE WHEN json_valid(detail) THEN coalesce(CAST(json_extract(detail, '$.lost') AS INTEGER), 0) "
             "ELSE 0 END"
    )
    p = "%s" if pg else "?"
    return f"""
        INSERT INTO mna_rollup_delta ({", ".join(COLUMNS)})
        SELECT (logged_at_us / {HOUR_US}) * {HOUR_US}, direction, channel, coalesce(host, ''), coalesce(addon, ''),
               dest_class, outcome, CASE WHEN vendor_bound THEN 1 ELSE 0 END, coalesce(component, ''),
               coalesce(method, ''), count(*), sum(req_bytes), sum(resp_bytes), max(req_bytes),
               sum(CASE WHEN direction = 'internal' AND method = 'gap' THEN {lost} ELSE 0 END),
               min(chain_seq), max(chain_seq), min(logged_at_us), max(logged_at_us)
        FROM egress_log WHERE chain_seq > {p} AND chain_seq <= {p}
        GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10"""


def _path_sql(pg: bool) -> str:
    p = "%s" if pg else "?"
    return f"""
        INSERT INTO mna_rollup_path (bucket_us, host, addon, path)
        SELECT DISTINCT (logged_at_us / {HOUR_US}) * {HOUR_US}, coalesce(host, ''), coalesce(addon, ''), path
        FROM egress_log WHERE chain_seq > {p} AND chain_seq <= {p} AND path IS NOT NULL
        ON CONFLICT (path, host, addon, bucket_us) DO NOTHING"""


def _process_sql(pg: bool) -> str:
    p = "%s" if pg else "?"
    greatest = "GREATEST" if pg else "max"
    least = "LEAST" if pg else "min"
    return f"""
        INSERT INTO mna_rollup_process (hostname, pid, first_us, last_us, last_seq, last_kind, detail)
        SELECT l.hostname, l.pid, agg.first_us, agg.last_us, agg.last_seq, l.method, l.detail
        FROM (SELECT coalesce(hostname, '') AS hostname, pid, min(logged_at_us) AS first_us,
                     max(logged_at_us) AS last_us, max(chain_seq) AS last_seq
              FROM egress_log WHERE chain_seq > {p} AND chain_seq <= {p} AND direction = 'internal'
                AND method IN ('start', 'heartbeat', 'stop') GROUP BY coalesce(hostname, ''), pid) agg
        JOIN egress_log l ON l.chain_seq = agg.last_seq
        WHERE true
        ON CONFLICT (hostname, pid) DO UPDATE SET first_us = {least}(mna_rollup_process.first_us, excluded.first_us),
            last_us = {greatest}(mna_rollup_process.last_us, excluded.last_us),
            last_seq = excluded.last_seq, last_kind = excluded.last_kind, detail = excluded.detail"""


@dataclass
class RollupResult:
    rows: int
    watermark: int


def catch_up(store, progress=None, chunk: int = CHUNK) -> RollupResult:
    """Fold every journal row above the watermark into the buckets."""
    ensure_tables(store)
    pg = _is_pg(store)
    aggregate, processes, paths = _aggregate_sql(pg), _process_sql(pg), _path_sql(pg)
    hours, days = _fold_sql(pg, "mna_rollup", "bucket_us"), _fold_sql(pg, "mna_rollup_day", f"(bucket_us / {DAY_US}) * {DAY_US}")
    p = "%s" if pg else "?"
    store.execute_raw(_delta_ddl())
    if store.meta_get(DAYS) is None:
        with _transaction(store):
            if store.meta_get(DAYS) is None:  # a rollup made before the day level: its days, once
                store.execute_raw("DELETE FROM mna_rollup_day")
                store.execute_raw(_days_from_hours_sql())
                store.meta_set(DAYS, "1")
    head = store.max_seq()
    folded = 0
    while True:
        with _transaction(store):
            mark = int(store.meta_get(WATERMARK) or 0)
            if mark >= head:
                break
            if pg:
                # A chunk holds a few thousand keys, not ~one per row as the planner guesses: hash
                # aggregate its 500k rows (10M-row journal: 2.9 -> 1.2 s per chunk), this transaction only.
                for statement in HASH_AGGREGATES:
                    store.execute_raw(statement)
            if store.meta_get(PATHS_FROM) is None:
                store.meta_set(PATHS_FROM, str(mark))  # rows up to here were folded without their paths
            upper = min(head, mark + chunk)
            store.execute_raw("DELETE FROM mna_rollup_delta")
            store.execute_raw(aggregate, (mark, upper))
            store.execute_raw(hours)
            store.execute_raw(days)
            store.execute_raw(processes, (mark, upper))
            store.execute_raw(paths, (mark, upper))
            span = store.execute_raw(
                f"SELECT coalesce(max(last_seq - first_seq), 0) FROM mna_rollup WHERE last_seq > {p}", (mark,)
            )[0][0]
            old_span = store.meta_get(SPAN)
            if old_span is not None or mark == 0:
                store.meta_set(SPAN, str(max(int(span), int(old_span or 0))))
            store.meta_set(WATERMARK, str(upper))
        folded += upper - mark
        if progress:
            progress(upper, head)
    return RollupResult(folded, max(head, int(store.meta_get(WATERMARK) or 0)))


def rebuild(store, progress=None) -> RollupResult:
    ensure_tables(store)
    with _transaction(store):
        store.execute_raw("DELETE FROM mna_rollup")
        store.execute_raw("DELETE FROM mna_rollup_day")
        store.meta_set(DAYS, "1")
        store.execute_raw("DELETE FROM mna_rollup_process")
        store.execute_raw("DELETE FROM mna_rollup_path")
        low = str((store.min_seq() or 1) - 1)
        store.meta_set(WATERMARK, low)
        store.meta_set(PATHS_FROM, low)
        store.meta_set(SPAN, "0")
        store.meta_set(EPOCH, str(int(store.meta_get(EPOCH) or 0) + 1))
    return catch_up(store, progress)


def consistency(store) -> dict:
    """Rollup totals == journal counts up to the watermark (rows kept since the last vacuum)."""
    ensure_tables(store)
    mark = int(store.meta_get(WATERMARK) or 0)
    low = store.min_seq() or 1
    p = "%s" if _is_pg(store) else "?"
    journal = store.execute_raw(f"SELECT count(*) FROM egress_log WHERE chain_seq <= {p}", (mark,))[0][0]
    rolled = store.execute_raw(f"SELECT coalesce(sum(n), 0) FROM mna_rollup WHERE last_seq >= {p}", (low,))[
        0
    ][0]
    if low > 1:
        # Buckets may straddle the vacuum cut; compare only what both still fully hold.
        rolled = store.execute_raw(
            f"SELECT coalesce(sum(n), 0) FROM mna_rollup WHERE first_seq >= {p}", (low,)
        )[0][0]
        journal = store.execute_raw(
            f"SELECT count(*) FROM egress_log WHERE chain_seq <= {p} AND chain_seq >= "
            f"(SELECT coalesce(min(first_seq), {p}) FROM mna_rollup WHERE first_seq >= {p})",
            (mark, low, low),
        )[0][0]
    days_ok = _days_match_hours(store)
    message = f"rollup holds {int(rolled):,} rows, journal {int(journal):,} up to seq {mark}"
    return {
        "name": "rollup",
        "ok": int(journal) == int(rolled) and days_ok,
        "watermark": mark,
        "journal_rows": int(journal),
        "rollup_rows": int(rolled),
        "days_match_hours": days_ok,
        "message": message if days_ok else message + "; the daily buckets differ from the hourly ones (run `rollup --rebuild`)",
    }


def _days_match_hours(store) -> bool:
    """The day level holds exactly the hours' keys and totals, day by day."""
    key = ", ".join(KEY[1:])
    day = f"(bucket_us / {DAY_US}) * {DAY_US}"
    totals = "count(*), coalesce(sum(n), 0), coalesce(sum(req_bytes), 0), coalesce(sum(resp_bytes), 0), coalesce(sum(lost), 0)"
    from_hours = store.execute_raw(
        f"SELECT {totals} FROM (SELECT sum(n) AS n, sum(req_bytes) AS req_bytes, sum(resp_bytes) AS resp_bytes, "
        f"sum(lost) AS lost FROM mna_rollup GROUP BY {day}, {key}) h"
    )[0]
    return [int(v) for v in from_hours] == [int(v) for v in store.execute_raw(f"SELECT {totals} FROM mna_rollup_day")[0]]
