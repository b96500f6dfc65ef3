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

from ..interceptor.event import NetEvent

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
