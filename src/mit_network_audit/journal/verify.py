"""verify(): re-check every leaf hash and every link of the journal.

The journal is cut into ``chain_seq`` ranges; worker processes read their own ranges straight from
the database (nothing is pickled but the verdict) and re-check every leaf and every link inside a
range from the stored tuples; the parent then checks the links *between* ranges in order.  The first bad ``chain_seq`` is reported with what is wrong.  A chain alone
cannot see a truncated tail or a full rewrite with recomputed hashes: the signed checkpoints
(``journal.checkpoint``) catch those.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import islice

from . import schema
from .canonical import (
    COLUMN_MAX_ROWS,
    COLUMN_MIN_ROWS,
    ZERO_HASH,
    canonical_bytes,
    leaf_hash,
    sha256_digest,
    stored_column_leaves,
    stored_leaves,
    stored_leaves_by_row,
)

CHUNK = 50_000  # rows per range (one task of a worker process)
READ_ROWS = COLUMN_MAX_ROWS  # rows read and checked at a time: one column pass
PARALLEL_MIN_ROWS = 100_000


@dataclass
class VerifyResult:
    ok: bool
    rows_checked: int
    first_seq: int | None = None
    last_seq: int | None = None
    first_bad_seq: int | None = None
    problem: str | None = None  # hash_mismatch | gap | link_broken | fork | missing_rows
    message: str = "journal intact"

    def as_dict(self) -> dict:
        return dict(ok=self.ok, rows_checked=self.rows_checked, first_seq=self.first_seq, last_seq=self.last_seq,
                    first_bad_seq=self.first_bad_seq, problem=self.problem, message=self.message)


def _leaf_ok(raw) -> bool:
    """Does the stored tuple's content hash to its stored leaf_hash?  The reference way: exactly what
    the journal hashed (NetEvent round trip); ``check_rows`` asks only for a row the fast path failed."""
    try:
        jr = schema.decode_row(raw)
        return leaf_hash(canonical_bytes(jr.event.as_dict(), jr.chain_seq)).hex() == jr.leaf_hash
    except Exception:
        return False


def check_rows(raw_rows, expected_seq: int, prev: bytes | None):
    """Check stored tuples in order from ``expected_seq`` after ``prev`` (None: do not check the first
    row's prev_hash).  Returns (next expected seq, last row hash, rows checked) or a VerifyResult.

    Per row: the leaf from the columns (``canonical.stored_leaves``, the reference path only when that
    cannot say or disagrees), then the link computed from the bytes already in hand (the previous
    row's computed hash, this row's computed leaf) and compared with the stored hex."""
    raw_rows = raw_rows if isinstance(raw_rows, list) else list(raw_rows)
    try:
        columns = list(zip(*raw_rows, strict=True))
    except ValueError:  # rows of different lengths: not what a store returns
        columns = None
    if columns and COLUMN_MIN_ROWS <= len(raw_rows) <= COLUMN_MAX_ROWS:
        leaves = stored_column_leaves(columns)
        if leaves is None:  # the column path cannot tell: row by row, not the column path again
            leaves = stored_leaves_by_row(raw_rows)
        elif (intact := _intact(columns, leaves, expected_seq, prev)) is not None:
            return expected_seq + len(raw_rows), intact, len(raw_rows)
    else:
        leaves = stored_leaves(raw_rows)
    n = 0
    sha = hashlib.sha256
    prev_hex = prev.hex() if prev is not None else None
    for raw, leaf in zip(raw_rows, leaves, strict=True):
        seq = raw[0]
        leaf_hex, stored_prev, row_hex = raw[-3], raw[-2], raw[-1]
        if seq != expected_seq:
            kind = "gap" if seq > expected_seq else "fork"
            return VerifyResult(False, n, None, None, expected_seq, kind,
                                f"chain_seq {expected_seq} is missing (next stored row is {seq})")
        if leaf is None or leaf.hex() != leaf_hex:
            if not _leaf_ok(raw):
                return VerifyResult(False, n, None, None, seq, "hash_mismatch",
                                    f"row {seq}: its content does not match its leaf_hash (a field was changed)")
            leaf = None
        if prev_hex is not None and stored_prev != prev_hex:
            return VerifyResult(False, n, None, None, seq, "link_broken",
                                f"row {seq}: prev_hash does not match row {seq - 1}'s row_hash")
        try:
            if prev_hex is None or leaf is None:  # first row of a range / leaf known only as hex
                prev = bytes.fromhex(stored_prev)
                leaf = bytes.fromhex(leaf_hex)
            row = sha(b"\x02" + prev + leaf).digest()
        except (ValueError, TypeError):
            return VerifyResult(False, n, None, None, seq, "hash_mismatch", f"row {seq}: malformed hash")
        prev_hex = row.hex()
        if prev_hex != row_hex:
            return VerifyResult(False, n, None, None, seq, "hash_mismatch",
                                f"row {seq}: row_hash does not match SHA-256(0x02 || prev || leaf)")
        prev = row
        expected_seq = seq + 1
        n += 1
    return expected_seq, prev, n


def _intact(columns: list, leaves: list, expected_seq: int, prev: bytes | None) -> bytes | None:
    """The last row's hash if every row is intact, else None (then ``check_rows`` finds the first bad
    row the slow way).  Checked column by column (``columns``: the stored tuples transposed), in
    C-level maps: seqs consecutive from ``expected_seq``; every leaf as stored; every row's prev_hash
    the stored row_hash before it (the first: ``prev``); every row_hash SHA-256(0x02 || stored prev ||
    leaf).  Together that is the row-by-row check: by induction each stored prev_hash is the hash
    computed for the row before."""
    seqs, leaf_hex, prevs, rows = columns[0], columns[-3], columns[-2], columns[-1]
    if None in leaves or seqs != tuple(range(expected_seq, expected_seq + len(seqs))):
        return None
    if tuple(map(bytes.hex, leaves)) != leaf_hex:
        return None
    if prevs[1:] != rows[:-1] or (prev is not None and prevs[0] != prev.hex()):
        return None
    try:
        inputs = map(b"\x02".__add__, map(bytes.__add__, map(bytes.fromhex, prevs), leaves))
        computed = list(map(sha256_digest, map(hashlib.sha256, inputs)))
    except (TypeError, ValueError):  # a stored prev_hash that is not hex text
        return None
    if tuple(map(bytes.hex, computed)) != rows:
        return None
    return computed[-1]


def _check_range(store, lo: int, hi: int):
    """(first stored seq or None, its prev_hash hex, check_rows verdict) for the range [lo, hi].

    Read and checked READ_ROWS at a time: rows just fetched are still in the CPU's caches (a whole
    range read first, then hashed, ran ~1.3x slower: every value was fetched from memory twice)."""
    stored = store.iter_raw(lo, hi, READ_ROWS)
    rows = list(islice(stored, READ_ROWS))
    if not rows:
        return None, None, (lo, None, 0)
    first_seq, first_prev_hex = rows[0][0], rows[0][-2]
    expected, prev, checked = lo, None, 0
    while rows:
        verdict = check_rows(rows, expected, prev)
        if isinstance(verdict, VerifyResult):
            verdict.rows_checked += checked
            return first_seq, first_prev_hex, verdict
        expected, prev, n = verdict
        checked += n
        rows = list(islice(stored, READ_ROWS))
    return first_seq, first_prev_hex, (expected, prev, checked)


_worker_store = None


def _worker_check_range(dsn: str, lo: int, hi: int):
    global _worker_store
    if _worker_store is None or _worker_store.dsn != dsn:
        from . import open_store

        _worker_store = open_store(dsn, create=False)
    return _check_range(_worker_store, lo, hi)


def verify(store, progress: Callable[[int, int], None] | None = None, *, start_prev_hash: bytes | None = None,
           workers: int | None = None) -> VerifyResult:
    """``start_prev_hash``: the expected prev_hash of the oldest stored row (after a retention vacuum,
    the anchor supplies it); by default seq 1 must link to 32 zero bytes and a later first row is
    accepted as the start of what is kept."""
    first = store.min_seq()
    if first is None:
        return VerifyResult(True, 0, message="journal is empty")
    last = store.max_seq()
    total = last - first + 1
    workers = workers or (os.cpu_count() or 1)
    dsn = getattr(store, "dsn", None)
    parallel = workers > 1 and total >= PARALLEL_MIN_ROWS and isinstance(dsn, str) and ":memory:" not in dsn
    ranges = [(lo, min(lo + CHUNK - 1, last)) for lo in range(first, last + 1, CHUNK)]
    expected_seq = first
    prev = start_prev_hash if start_prev_hash is not None else (ZERO_HASH if first == 1 else None)
    checked = 0
    pool = None
    try:
        if parallel:
            # spawn: a worker must not inherit the parent's database connections.
            pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
            results = (f.result() for f in [pool.submit(_worker_check_range, dsn, lo, hi) for lo, hi in ranges])
        else:
            results = (_check_range(store, lo, hi) for lo, hi in ranges)
        for first_stored, first_prev_hex, verdict in results:
            if first_stored is None:
                continue
            if first_stored != expected_seq:
                kind = "gap" if first_stored > expected_seq else "fork"
                return VerifyResult(False, checked, None, None, expected_seq, kind,
                                    f"chain_seq {expected_seq} is missing (next stored row is {first_stored})")
            if prev is not None and first_prev_hex != prev.hex():
                content_bad = (isinstance(verdict, VerifyResult) and verdict.rows_checked == 0
                               and verdict.problem == "hash_mismatch" and "leaf_hash" in verdict.message)
                if not content_bad:
                    return VerifyResult(False, checked, None, None, first_stored, "link_broken",
                                        f"row {first_stored}: prev_hash does not match row "
                                        f"{first_stored - 1}'s row_hash")
            if isinstance(verdict, VerifyResult):
                verdict.rows_checked += checked
                return verdict
            expected_seq, prev, n = verdict
            checked += n
            if progress:
                progress(checked, total)
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)
    if expected_seq != last + 1:
        return VerifyResult(False, checked, first, last, expected_seq, "missing_rows",
                            f"rows after chain_seq {expected_seq - 1} are missing")
    return VerifyResult(True, checked, first, last)
