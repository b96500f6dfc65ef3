"""The retention vacuum (DESIGN §4): anchor row, signed checkpoint, then the only delete allowed.

1. Under the elected signer's lock, pick the cut: the oldest row logged inside the retention window
   (so no row younger than the window is ever removed).
2. Append an ``internal`` anchor row whose ``detail`` records the cut, the ``row_hash`` of the last
   removed row (the kept chain's starting point) and the Merkle left edge of the removed prefix (the
   peaks that stand in for the removed leaves in every later root and proof).
3. Sign a checkpoint covering the anchor, and check that the anchor's peaks plus the kept leaves
   give exactly the signed root — only then
4. delete the rows below the cut: SQLite raises ``mna_vacuum_guard.cut_seq`` and PostgreSQL sets
   ``mna.vacuum_cut`` inside the deleting transaction, which is what the journal's triggers let
   through (journal/sqlite.py, journal/postgres.py).  Any other delete is still refused.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

from ..interceptor.event import internal_event
from .checkpoint import (
    TamperDetected,
    _pg,
    ensure_tables,
    iter_chain,
    max_seq,
    sign_locked,
    signer_lock,
    transaction,
    tree_view,
)
from .keys import SigningKey, load_signing_key
from .merkle import CompactRange, peak_layout


@dataclass
class VacuumResult:
    removed: int
    cut_seq: int | None = None
    anchor_seq: int | None = None
    checkpoint_size: int | None = None
    message: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def parse_age(text: str) -> int:
    """'90d', '12h', '30m', '3600s', '2w' -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
    text = text.strip()
    if not text or text[-1] not in units or not (text[:-1].isascii() and text[:-1].isdigit()):
        raise ValueError(f"{text!r}: use a duration like 90d, 12h or 2w")
    seconds = int(text[:-1]) * units[text[-1]]
    if seconds == 0:
        raise ValueError(f"{text!r}: a retention window of 0 would remove every row; use a duration like 90d")
    return seconds


def vacuum(store, *, older_than_s: int, key: SigningKey | None = None, witness_path: str | None = None,
           now_s: float | None = None) -> VacuumResult:
    key = key or load_signing_key(required=True)  # no key, no anchor: refuse before touching anything
    ensure_tables(store)
    now_us = int(now_s * 1_000_000) if now_s is not None else time.time_ns() // 1000
    cutoff_us = max(0, now_us - int(older_than_s * 1_000_000))  # a window reaching before 1970: nothing is older
    with signer_lock(store) as elected:
        if not elected:
            return VacuumResult(0, message="another process is the journal's signer; try again later")
        low = store.min_seq()
        if low is None:
            return VacuumResult(0, message="the journal is empty")
        newest = max_seq(store)
        young = store.execute_raw("SELECT min(chain_seq) FROM egress_log WHERE logged_at_us >= %s", (cutoff_us,))
        cut = young[0][0] if young and young[0][0] is not None else newest + 1
        if cut <= low:
            return VacuumResult(0, message=f"nothing older than the retention window (oldest kept row {low})")
        removed_through = cut - 1
        last_removed = store.execute_raw("SELECT row_hash FROM egress_log WHERE chain_seq = %s", (removed_through,))
        view = tree_view(store, removed_through)
        left_edge = [view.node(level, index).hex() for level, index in peak_layout(removed_through)]
        detail = {"cut_seq": cut, "removed_from_seq": low, "left_edge_size": removed_through, "left_edge": left_edge,
                  "last_removed_row_hash": last_removed[0][0], "older_than_us": cutoff_us,
                  "removed_rows": removed_through - low + 1}
        anchor = store.append([internal_event("anchor", detail=json.dumps(detail, sort_keys=True))])[0]
        cp = sign_locked(store, key, witness_path=witness_path)
        _check_anchor_against_checkpoint(store, detail, cp)
        with transaction(store):
            if _pg(store):
                store.execute_raw("SELECT set_config('mna.vacuum_cut', %s, true)", (str(cut),))
            else:
                store.execute_raw("UPDATE mna_vacuum_guard SET cut_seq = %s WHERE id = 1", (cut,))
            store.execute_raw("DELETE FROM egress_log WHERE chain_seq < %s", (cut,))
        if not _pg(store):
            # Give the space back only when asked; WAL keeps readers going meanwhile.
            store.execute_raw("PRAGMA wal_checkpoint(PASSIVE)")
        return VacuumResult(removed_through - low + 1, cut, anchor.chain_seq, cp.size,
                            f"removed rows {low}..{removed_through} (logged before the window); anchor at "
                            f"chain_seq {anchor.chain_seq}, checkpoint at size {cp.size}")


def _check_anchor_against_checkpoint(store, detail: dict, cp) -> None:
    """The anchor's peaks + the kept leaves must give the signed root, or nothing is deleted."""
    cr = CompactRange.from_hex(detail["left_edge_size"], detail["left_edge"])
    head = bytes.fromhex(detail["last_removed_row_hash"])
    for seq, leaf, prev, row in iter_chain(store, cr.size, cp.size):
        if prev != head.hex() or seq != cr.size + 1:
            raise TamperDetected(f"row {seq} does not continue the chain: vacuum aborted, nothing deleted")
        cr.append(bytes.fromhex(leaf))
        head = bytes.fromhex(row)
    if cr.size != cp.size or cr.root() != cp.root or head != cp.head:
        raise TamperDetected("the anchor's left edge does not reproduce the signed root: vacuum aborted, "
                             "nothing deleted")
