"""The journal table's columns, shared by every store: one column per NetEvent field + chain fields.

Lists (query_keys, headers, via) are stored as canonical JSON text, booleans as integers on SQLite;
``decode_row`` turns a stored tuple back into the exact NetEvent that was hashed.
"""

from __future__ import annotations

import json

from ..interceptor.event import BOOL_FIELDS, FIELD_NAMES, INT_FIELDS, LIST_FIELDS, NetEvent
from .store import JournalRow, RowFilter

SCHEMA_VERSION = 1
TABLE = "egress_log"
CHAIN_FIELDS = ("leaf_hash", "prev_hash", "row_hash")
COLUMNS: tuple[str, ...] = ("chain_seq", *FIELD_NAMES, *CHAIN_FIELDS)
SELECT_LIST = ", ".join(COLUMNS)

# Indexed columns usable as equality filters, each paired with chain_seq for keyset pagination.
INDEXED_FILTERS = ("direction", "channel", "host", "addon", "vendor_bound", "outcome", "dest_class")


def column_type(name: str, *, postgres: bool) -> str:
    if name == "chain_seq":
        return "BIGINT PRIMARY KEY" if postgres else "INTEGER PRIMARY KEY"
    if name in BOOL_FIELDS:
        return "BOOLEAN NOT NULL" if postgres else "INTEGER NOT NULL"
    if name in INT_FIELDS:
        return "BIGINT" if postgres else "INTEGER"
    return "TEXT"


_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def encode_fields(fields: dict, *, bool_as_int: bool) -> list:
    out = []
    for name in FIELD_NAMES:
        value = fields[name]
        if name in LIST_FIELDS:
            value = _dumps(value)
        elif bool_as_int and name in BOOL_FIELDS:
            value = int(value)
        out.append(value)
    return out


_LIST_INDEXES = frozenset(i for i, n in enumerate(FIELD_NAMES) if n in LIST_FIELDS)
_BOOL_INDEXES = frozenset(i for i, n in enumerate(FIELD_NAMES) if n in BOOL_FIELDS)
_N = len(FIELD_NAMES)


def _as_tuple(value) -> tuple:
    """A list field as stored.  The program that wrote the row may have put a scalar or null there
    (``via=5``, ``query_keys=None``): read it as one item, or none, so the row can still be shown — a
    TypeError here took down every page that lists the row (verify reports the row, its hash was made
    over the value as written)."""
    if isinstance(value, (list, str, dict)):
        return tuple(value)  # a string or object as before: the canonical form (canonical.py) reads it so too
    return () if value is None else (value,)


def decode_row(row) -> JournalRow:
    values = row[1:1 + _N]
    kwargs = {}
    for i, name in enumerate(FIELD_NAMES):
        value = values[i]
        if i in _LIST_INDEXES:
            value = _as_tuple(json.loads(value)) if value else ()
        elif i in _BOOL_INDEXES:
            value = bool(value)
        kwargs[name] = value
    return JournalRow(row[0], NetEvent(**kwargs), row[1 + _N], row[2 + _N], row[3 + _N])


def contains_pattern(text: str) -> str:
    """A LIKE/ILIKE pattern (used with ``ESCAPE '\\'``) matching values that contain ``text`` literally:
    ``%``, ``_`` and the escape character itself are escaped.  The Audit Log's rollup-guided search and
    the grouped view build their patterns here too, so they match exactly what the plain query does."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def where_clause(flt: RowFilter | None, placeholder: str, *, before_seq: int | None = None,
                 after_seq: int | None = None, text_op: str = "LIKE") -> tuple[str, list]:
    """SQL WHERE (with leading ' WHERE ' or '') and its parameters for a RowFilter."""
    clauses: list[str] = []
    params: list = []
    if flt is not None:
        for name in INDEXED_FILTERS:
            value = getattr(flt, name)
            if value is not None:
                clauses.append(f"{name} = {placeholder}")
                params.append(value)
        if flt.since_us is not None:
            clauses.append(f"logged_at_us >= {placeholder}")
            params.append(flt.since_us)
        if flt.until_us is not None:
            clauses.append(f"logged_at_us < {placeholder}")
            params.append(flt.until_us)
        if flt.text:
            like = contains_pattern(flt.text)
            clauses.append(
                f"(host {text_op} {placeholder} ESCAPE '\\' OR addon {text_op} {placeholder} ESCAPE '\\'"
                f" OR path {text_op} {placeholder} ESCAPE '\\')"
            )
            params += [like, like, like]
    if before_seq is not None:
        clauses.append(f"chain_seq < {placeholder}")
        params.append(before_seq)
    if after_seq is not None:
        clauses.append(f"chain_seq > {placeholder}")
        params.append(after_seq)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params
