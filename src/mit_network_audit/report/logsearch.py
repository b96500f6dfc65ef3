"""The Audit Log's query: the journal's own rows, newest first, guided by the hourly rollup.

A plain ``WHERE a = ? AND b = ? ORDER BY chain_seq DESC LIMIT 50`` walks one column's index until
it has 50 rows; when the combination is rare or matches nothing (a host with no vendor-bound rows,
a text that is nowhere, a module and a path that never meet) it walks that whole index, which at
10M rows is seconds.  The rollup knows, per hour and key, whether any row of the key exists and the
seq range (first_seq..last_seq) holding them, so the search here asks it first and reads the
journal only inside those ranges:

* rows above the rollup's watermark (not folded yet) are searched directly (a bounded tail);
* below it, the matching rollup keys are read newest first by last_seq, merged into disjoint seq
  segments, and each segment is searched with the same filter as the plain query;
* a text search also matches paths, which the rollup's keys do not carry: the side table
  ``mna_rollup_path`` holds the distinct (hour, host, module, path), so a key is a candidate only
  when its host or module matches, or a path of its host and module in its hour does.

The rows are exactly the plain query's, in the same order (tests compare both on SQLite and
PostgreSQL): every rollup condition is implied by the journal filter, so the segments hold every
matching row, and inside a segment the journal filter itself decides.  A filter of at most one
equality and nothing else keeps the plain query: its index holds only matching rows.

Work is bounded by a time budget: when a page has searched for ``budget_s`` without filling, it
stops and says where (``next_before``): the next page continues below, so paging on gives exactly
the plain query's rows, and no page costs more than the budget plus one segment.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..journal.schema import contains_pattern
from ..journal.store import JournalRow, RowFilter
from . import rollup

# Equality filters the rollup's key holds, in the rollup's own column names.
KEY_FILTERS = ("direction", "channel", "host", "addon", "vendor_bound", "outcome", "dest_class")
TAIL_CATCH_UP = 50_000  # more unfolded rows than this above the watermark: fold them first
CAP = 256  # rollup keys read per round
BUDGET_S = 0.12
# Before asking the rollup, the newest rows below the page's start are searched directly in a bounded
# window: a combination that is merely uncommon (errors to one host) fills its page there in one
# query, where the rollup's hour-sized segments would take several.  With equality filters only the
# window costs the matching entries of one (column, chain_seq) index; a text or time filter reads
# the window's rows, so its window is small.
PROBE_ROWS = 20_000
PROBE_ROWS_SCAN = 5_000


@dataclass
class Page:
    rows: list[JournalRow]
    next_before: int | None  # pass as before_seq for the next page; None: nothing older matches
    searched_to: int | None = None  # set when the budget cut the page short: rows >= this were searched


def _conditions(flt: RowFilter) -> int:
    """How many conditions the plain query would have to combine (a time bound or a text search is
    never an index walk over matching rows only, so each counts as two)."""
    n = sum(getattr(flt, name) is not None for name in KEY_FILTERS)
    return n + 2 * ((flt.since_us is not None) + (flt.until_us is not None) + bool(flt.text))


def plain(store, flt: RowFilter | None, *, before_seq: int | None = None, limit: int = 50) -> Page:
    rows = store.rows(flt, before_seq=before_seq, limit=limit)
    return Page(rows, rows[-1].chain_seq if len(rows) == limit and rows else None)


def _meta_int(store, key: str, default: int | None = None) -> int | None:
    value = store.meta_get(key)
    return int(value) if value is not None else default


LOOSE_MAX = 2_000  # distinct values read by a loose index scan before the text search reads them all


def _distinct_like(store, table: str, col: str, op: str, p: str, like: str) -> list[str] | None:
    """The distinct values of ``table.col`` that match ``like``, by a loose index scan (one index seek
    per distinct value, on both backends); None when there are more than LOOSE_MAX of them."""
    rows = store.execute_raw(
        f"WITH RECURSIVE d(v, n) AS (SELECT min({col}), 1 FROM {table} UNION ALL "
        f"SELECT (SELECT min({col}) FROM {table} WHERE {col} > d.v), d.n + 1 FROM d "
        f"WHERE d.v IS NOT NULL AND d.n <= {LOOSE_MAX}) "
        f"SELECT v, n, v {op} {p} ESCAPE '\\' FROM d WHERE v IS NOT NULL",
        (like,),
    )
    if rows and max(int(r[1]) for r in rows) > LOOSE_MAX:
        return None
    return [r[0] for r in rows if r[2]]


def _any_path(store, p: str, paths: list[str], flt: RowFilter) -> bool:
    """Does any of ``paths`` occur with the filter's host and module (when it names them)?"""
    where, params = [f"path IN ({', '.join([p] * len(paths))})"], list(paths)
    for col in ("host", "addon"):
        if getattr(flt, col) is not None:
            where.append(f"{col} = {p}")
            params.append(getattr(flt, col))
    return bool(store.execute_raw(f"SELECT 1 FROM mna_rollup_path WHERE {' AND '.join(where)} LIMIT 1", params))


def _rollup_where(store, flt: RowFilter, p: str, pg: bool, paths_from: int) -> tuple[str | None, list]:
    """Conditions on rollup keys implied by the filter (None: no key can match)."""
    clauses: list[str] = []
    params: list = []
    for name in KEY_FILTERS:
        value = getattr(flt, name)
        if value is None:
            continue
        clauses.append(f"{name} = {p}")
        # NULL host/addon are '' in the rollup ('' there stands for both: a superset, which is safe)
        params.append((1 if value else 0) if name == "vendor_bound" else value)
    if flt.since_us is not None:
        clauses.append(f"last_us >= {p}")
        params.append(flt.since_us)
    if flt.until_us is not None:
        clauses.append(f"first_us < {p}")
        params.append(flt.until_us)
    if flt.text:
        # The journal's own operator over the same values: LIKE on SQLite, ILIKE on PostgreSQL.  The
        # text is matched against the few distinct hosts, modules and paths, not against every key.
        op = "ILIKE" if pg else "LIKE"
        like = contains_pattern(flt.text)
        hosts = _distinct_like(store, "mna_rollup", "host", op, p, like)
        addons = _distinct_like(store, "mna_rollup", "addon", op, p, like)
        paths = _distinct_like(store, "mna_rollup_path", "path", op, p, like)
        either: list[str] = []
        for col, values in (("host", hosts), ("addon", addons)):
            if values is None:
                either.append(f"{col} {op} {p} ESCAPE '\\'")
                params.append(like)
            elif values:
                either.append(f"{col} IN ({', '.join([p] * len(values))})")
                params += values
        if paths is None:
            either.append(f"(bucket_us, host, addon) IN (SELECT bucket_us, host, addon FROM mna_rollup_path "
                          f"WHERE path {op} {p} ESCAPE '\\')")
            params.append(like)
        elif paths and not _any_path(store, p, paths, flt):
            pass  # the matching paths never occur with the filter's host/module: no key through a path
        elif paths:
            # one primary-key lookup per candidate key and path (not a table of all the paths' pairs)
            either.append(f"EXISTS (SELECT 1 FROM mna_rollup_path t WHERE t.path IN ({', '.join([p] * len(paths))})"
                          " AND t.host = mna_rollup.host AND t.addon = mna_rollup.addon"
                          " AND t.bucket_us = mna_rollup.bucket_us)")
            params += paths
        if paths_from > 0:  # keys folded before the path table existed: their paths are unknown
            either.append(f"first_seq <= {p}")
            params.append(paths_from)
        if not either:
            return None, []
        clauses.append("(" + " OR ".join(either) + ")")
    return " AND ".join(clauses), params


def search(store, flt: RowFilter | None, *, before_seq: int | None = None, limit: int = 50,
           budget_s: float = BUDGET_S) -> Page:
    """The Audit Log page: ``store.rows(flt, before_seq=..., limit=...)``'s rows, found faster."""
    if flt is None or _conditions(flt) <= 1:
        return plain(store, flt, before_seq=before_seq, limit=limit)
    started = time.perf_counter()
    pg = getattr(store, "kind", "") == "postgres"
    p = "%s" if pg else "?"
    try:
        head = store.max_seq()
        mark = _meta_int(store, rollup.WATERMARK, 0)
        if head - mark > TAIL_CATCH_UP:
            rollup.catch_up(store)
            mark = _meta_int(store, rollup.WATERMARK, 0)
        epoch = store.meta_get(rollup.EPOCH)
        paths_from = _meta_int(store, rollup.PATHS_FROM, mark)
        span = _meta_int(store, rollup.SPAN)
    except Exception:  # a rollup we cannot read or fold (read-only user, ...): the plain query
        return plain(store, flt, before_seq=before_seq, limit=limit)
    try:
        # PostgreSQL: custom plans only.  The same statements come back page after page; psycopg
        # prepares them after 5 runs and the server then switches to a generic plan, which cannot
        # see which index the values favour (10M rows: 15 ms -> 150-350 ms from the 11th page on).
        with rollup.custom_plans(store):
            return _guided(store, flt, before_seq, limit, budget_s, started, pg, p, head, mark, epoch,
                           paths_from, span)
    except _Fallback:
        return plain(store, flt, before_seq=before_seq, limit=limit)


class _Fallback(Exception):
    """The rollup cannot be trusted or read here: answer with the plain query (outside the transaction)."""


def _guided(store, flt, before_seq, limit, budget_s, started, pg, p, head, mark, epoch, paths_from,
            span) -> Page:
    upper = before_seq if before_seq is not None else head + 1  # exclusive
    out: list[JournalRow] = []
    # 1. rows above the watermark: not in the rollup yet, a bounded tail searched directly
    if upper > mark + 1:
        out = store.rows(flt, before_seq=upper, after_seq=mark, limit=limit)
        if len(out) == limit:
            return Page(out, out[-1].chain_seq)
    cursor = min(upper - 1, mark)  # the highest seq still to search
    window = PROBE_ROWS_SCAN if flt.text or flt.since_us is not None or flt.until_us is not None else PROBE_ROWS
    if cursor >= 1 and window:
        out += store.rows(flt, before_seq=cursor + 1, after_seq=max(0, cursor - window), limit=limit - len(out))
        if len(out) == limit:
            return Page(out, out[-1].chain_seq)
        cursor -= window
    try:
        where, params = _rollup_where(store, flt, p, pg, paths_from)
    except Exception:  # no rollup tables yet (a small journal nobody has reported on), ...
        raise _Fallback() from None
    if where is None:  # the rollup holds no key the filter could match: only the tail can
        return Page(out, None)
    pending: list[tuple[int, int]] = []  # parts of keys' ranges below the rounds already read
    bound: int | None = None
    while cursor >= 1:
        # 2. a round of matching keys, newest first by last_seq (unique: each row is in one key)
        # last_seq <= cursor + the widest key's span: implied by first_seq <= cursor, and it starts the
        # walk down a last_seq index at the cursor instead of at the head.  A catch-up that widens a
        # key past it raises the span in the same transaction, which the check after the read sees.
        sql = (f"SELECT first_seq, last_seq FROM mna_rollup WHERE {where} AND first_seq <= {p}"
               + (f" AND last_seq <= {p}" if span is not None else "")
               + (f" AND last_seq < {p}" if bound is not None else "")
               + f" ORDER BY last_seq DESC LIMIT {CAP}")
        try:
            keys = store.execute_raw(sql, [*params, cursor, *([cursor + span] if span is not None else []),
                                           *([bound] if bound is not None else [])])
            rebuilt = (store.meta_get(rollup.EPOCH) != epoch
                       or _meta_int(store, rollup.SPAN, span) != span)
        except Exception:  # no rollup tables yet (a small journal nobody has reported on), ...
            raise _Fallback() from None
        if rebuilt:  # rebuilt or widened under us: trust nothing read from it
            raise _Fallback()
        # every key with last_seq >= floor has been read: rows in [floor, cursor] are decided
        floor = 1 if len(keys) < CAP else int(keys[-1][1])
        ranges = [*pending, *((int(lo), min(int(hi), cursor)) for lo, hi in keys)]
        pending = [(lo, min(hi, floor - 1)) for lo, hi in ranges if lo < floor]
        segments = _merge([(max(lo, floor), hi) for lo, hi in ranges if hi >= floor and hi >= lo])
        for lo, hi in segments:
            found = store.rows(flt, before_seq=hi + 1, after_seq=lo - 1, limit=limit - len(out))
            out += found
            if len(out) == limit:
                return Page(out, out[-1].chain_seq)
            if time.perf_counter() - started > budget_s and lo > 1:
                # 3. out of time: say how far the search went; the next page goes on from there
                return Page(out, lo, searched_to=lo)
        cursor, bound = min(cursor, floor - 1), floor  # (keys straddling the cursor may decide nothing)
    return Page(out, None)


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Disjoint seq segments covering ``ranges``, newest first."""
    out: list[list[int]] = []
    for lo, hi in sorted(ranges, key=lambda r: -r[1]):
        if out and hi >= out[-1][0] - 1:
            out[-1][0] = min(out[-1][0], lo)
        else:
            out.append([lo, hi])
    return [(lo, hi) for lo, hi in out]
