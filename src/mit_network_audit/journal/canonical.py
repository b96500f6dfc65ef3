"""The journal's hashing format (DESIGN §4) — keep it stable and documented in docs/hashing.md.

    canon     = RFC 8785 (JCS) bytes of the row's fields + chain_seq (no leaf/prev/row hash)
    leaf_hash = SHA-256(0x00 || canon)                      # RFC 9162 leaf
    row_hash  = SHA-256(0x02 || prev_hash || leaf_hash)     # chain link; prev of seq 1 = 32 zero bytes

On our restricted schema (str, int < 2**53, bool, null, lists of str) ``json.dumps`` with sorted
keys and no whitespace is byte-identical to JCS; a property test pins that against ``rfc8785``.
"""

from __future__ import annotations

import hashlib
import json
from operator import attrgetter

from ..interceptor.event import BOOL_FIELDS, FIELD_NAMES, LIST_FIELDS, NetEvent

ZERO_HASH = bytes(32)
_LEAF_PREFIX = b"\x00"
_LINK_PREFIX = b"\x02"
_dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def canonical_bytes(fields: dict, chain_seq: int) -> bytes:
    doc = dict(fields)
    doc["chain_seq"] = chain_seq
    return _dumps(doc).encode("utf-8")


def event_canonical(event: NetEvent, chain_seq: int) -> bytes:
    return canonical_bytes(event.as_dict(), chain_seq)


def leaf_hash(canon: bytes) -> bytes:
    return hashlib.sha256(_LEAF_PREFIX + canon).digest()


def link_hash(prev_hash: bytes, leaf: bytes) -> bytes:
    return hashlib.sha256(_LINK_PREFIX + prev_hash + leaf).digest()


def chain(events, first_seq: int, prev_hash: bytes):
    """Yield (seq, fields, leaf_hex, prev_hex, row_hex) for a batch, continuing after ``prev_hash``."""
    seq = first_seq
    for event in events:
        fields = event.as_dict()
        leaf = leaf_hash(canonical_bytes(fields, seq))
        row = link_hash(prev_hash, leaf)
        yield seq, fields, leaf.hex(), prev_hash.hex(), row.hex()
        prev_hash = row
        seq += 1


# -- fast paths (same bytes as canonical_bytes; pinned by tests/test_journal_canonical_fast.py) --------
# The canonical document's keys in JCS order, with chain_seq slotted in: the encoder then needs no sort,
# and tuples encode as JSON arrays exactly like the lists ``as_dict`` makes.
_CANON_ORDER = tuple(sorted((*FIELD_NAMES, "chain_seq")))
_SEQ_AT = _CANON_ORDER.index("chain_seq")
_get_before = attrgetter(*_CANON_ORDER[:_SEQ_AT])
_get_after = attrgetter(*_CANON_ORDER[_SEQ_AT + 1:])
_get_fields = attrgetter(*FIELD_NAMES)
_dumps_ordered = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_LIST_AT = tuple(i for i, n in enumerate(FIELD_NAMES) if n in LIST_FIELDS)
_BOOL_AT = tuple(i for i, n in enumerate(FIELD_NAMES) if n in BOOL_FIELDS)
_N = len(FIELD_NAMES)
_sha256 = hashlib.sha256


def prepare_rows(events, *, bool_as_int: bool) -> list[tuple[bytes, bytes, list]]:
    """The part of chaining that does not depend on ``chain_seq`` or ``prev_hash``, done *before* a
    writer takes the journal lock: per event, the canonical JSON before and after the ``chain_seq``
    member, and the encoded column values.  ``link_prepared`` finishes the job under the lock.

    The halves are two JSON objects encoded separately, so splicing ``"chain_seq":N`` between them
    gives exactly the one-object encoding: the keys are already in JCS order and nothing else moves.
    """
    out = []
    dumps, before, after, fields_of = _dumps_ordered, _get_before, _get_after, _get_fields
    keys_before, keys_after = _CANON_ORDER[:_SEQ_AT], _CANON_ORDER[_SEQ_AT + 1:]
    list_at, bool_at = _LIST_AT, _BOOL_AT
    for event in events:
        head = dumps(dict(zip(keys_before, before(event), strict=True)))
        tail = dumps(dict(zip(keys_after, after(event), strict=True)))
        values = list(fields_of(event))
        for i in list_at:
            values[i] = dumps(values[i])
        if bool_as_int:
            for i in bool_at:
                values[i] = int(values[i])
        out.append(((head[:-1] + ',"chain_seq":').encode("utf-8"), ("," + tail[1:]).encode("utf-8"), values))
    return out


def link_prepared(prepared, first_seq: int, prev_hash: bytes) -> list[tuple]:
    """Stored tuples (seq, *encoded fields, leaf, prev, row) hex, continuing after ``prev_hash``."""
    out = []
    sha = _sha256
    seq = first_seq
    prev_hex = prev_hash.hex()
    for head, tail, values in prepared:
        leaf = sha(b"\x00" + head + str(seq).encode() + tail).digest()
        row = sha(b"\x02" + prev_hash + leaf).digest()
        row_hex = row.hex()
        out.append((seq, *values, leaf.hex(), prev_hex, row_hex))
        prev_hash, prev_hex = row, row_hex
        seq += 1
    return out


def chain_rows(events, first_seq: int, prev_hash: bytes, *, bool_as_int: bool) -> list[tuple]:
    """The stored tuples for a batch, ready for INSERT/COPY: (seq, *encoded fields, leaf, prev, row) hex.

    Same bytes as ``chain`` + ``schema.encode_fields`` without the per-row dict copies and key sort.
    """
    return link_prepared(prepare_rows(events, bool_as_int=bool_as_int), first_seq, prev_hash)


def raw_canonical(raw) -> bytes:
    """Canonical bytes straight from a stored tuple (seq, *FIELD_NAMES columns, leaf, prev, row).

    Lists are stored as JSON text (NULL/'' = empty), booleans as 0/1 on SQLite: decoded the same way
    ``schema.decode_row`` does, without building a NetEvent.
    """
    values = list(raw[1:1 + _N])
    for i in _LIST_AT:
        v = values[i]
        values[i] = json.loads(v) if v else []
    for i in _BOOL_AT:
        values[i] = bool(values[i])
    doc = dict(zip(FIELD_NAMES, values, strict=True))
    doc["chain_seq"] = raw[0]
    return _dumps(doc).encode("utf-8")
