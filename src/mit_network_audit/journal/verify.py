"""verify(): re-check every leaf hash and every link of the journal.

Leaf hashes are recomputed in parallel across cores (they are independent); the links are then
chained in order.  The first bad ``chain_seq`` is reported with what is wrong.  A chain alone
cannot see a truncated tail or a full rewrite with recomputed hashes: the signed checkpoints
(``journal.checkpoint``) catch those.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from . import schema
from .canonical import ZERO_HASH, canonical_bytes, leaf_hash, link_hash

CHUNK = 20_000
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


def _recompute_leaves(raw_rows: list[tuple]) -> list[tuple[int, bool]]:
    """(seq, leaf matches) for stored tuples; runs in worker processes."""
    out = []
    for raw in raw_rows:
        jr = schema.decode_row(raw)
        expected = leaf_hash(canonical_bytes(jr.event.as_dict(), jr.chain_seq)).hex()
        out.append((jr.chain_seq, expected == jr.leaf_hash))
    return out


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
    pool = ProcessPoolExecutor(workers) if workers > 1 and total >= PARALLEL_MIN_ROWS else None
    expected_seq = first
    prev = start_prev_hash if start_prev_hash is not None else (ZERO_HASH if first == 1 else None)
    checked = 0
    try:
        chunks = _chunks(store, first, last)
        pending = []
        for raw_rows in chunks:
            leaf_job = pool.submit(_recompute_leaves, raw_rows) if pool else None
            pending.append((raw_rows, leaf_job))
            if len(pending) < (workers * 2 if pool else 1):
                continue
            result = _check(pending.pop(0), expected_seq, prev)
            if isinstance(result, VerifyResult):
                result.rows_checked += checked
                return result
            expected_seq, prev, n = result
            checked += n
            if progress:
                progress(checked, total)
        while pending:
            result = _check(pending.pop(0), expected_seq, prev)
            if isinstance(result, VerifyResult):
                result.rows_checked += checked
                return result
            expected_seq, prev, n = result
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


def _chunks(store, first: int, last: int):
    buf = []
    for raw in store.iter_raw(first, last, CHUNK):
        buf.append(raw)
        if len(buf) >= CHUNK:
            yield buf
            buf = []
    if buf:
        yield buf


def _check(item, expected_seq: int, prev: bytes | None):
    raw_rows, leaf_job = item
    leaves = leaf_job.result() if leaf_job is not None else _recompute_leaves(raw_rows)
    n = 0
    for raw, (seq, leaf_ok) in zip(raw_rows, leaves, strict=True):
        leaf_hex, prev_hex, row_hex = raw[-3], raw[-2], raw[-1]
        if seq != expected_seq:
            kind = "gap" if seq > expected_seq else "fork"
            return VerifyResult(False, n, None, None, expected_seq, kind,
                                f"chain_seq {expected_seq} is missing (next stored row is {seq})")
        if not leaf_ok:
            return VerifyResult(False, n, None, None, seq, "hash_mismatch",
                                f"row {seq}: its content does not match its leaf_hash (a field was changed)")
        if prev is not None and prev_hex != prev.hex():
            return VerifyResult(False, n, None, None, seq, "link_broken",
                                f"row {seq}: prev_hash does not match row {seq - 1}'s row_hash")
        try:
            row = link_hash(bytes.fromhex(prev_hex), bytes.fromhex(leaf_hex))
        except ValueError:
            return VerifyResult(False, n, None, None, seq, "hash_mismatch", f"row {seq}: malformed hash")
        if row.hex() != row_hex:
            return VerifyResult(False, n, None, None, seq, "hash_mismatch",
                                f"row {seq}: row_hash does not match SHA-256(0x02 || prev || leaf)")
        prev = row
        expected_seq = seq + 1
        n += 1
    return expected_seq, prev, n
