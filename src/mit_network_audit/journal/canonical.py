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
from itertools import repeat
from operator import attrgetter, getitem, itemgetter

from ..interceptor.event import (
    BOOL_FIELDS,
    FIELD_NAMES,
    INT_FIELDS,
    LIST_FIELDS,
    NetEvent,
    UnbuiltEvent,
    field_values,
)

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


# -- fast paths (same bytes as the reference above; pinned by tests/test_journal_canonical_fast.py) ------
# The canonical document is the concatenation of its members in JCS key order:
#     {"addon":A,"addon_author":B,"call_site":C,"chain_seq":N,"channel":D,...,"via":Z}
# and the text of one member depends only on its field and its value.  Most values repeat from row to
# row (hosts, channels, headers, call sites), so each field keeps a small memo: value -> member text
# (',"host":"api.example.com"'), filled by the *reference* encoder on a miss.  A row is then one C-level
# ``map`` of dict lookups and one ``str.join``: no per-row dict, no key sort, no JSON encoder call for
# the repeated values.  The text around the members is baked into the first and last memo's text:
# the 0x00 leaf prefix and "{" before "addon", '"chain_seq":' + a 0x01 marker after "call_site"
# (JSON never emits a raw control character, so the marker is unambiguous), "}" after "via".
#
# A memo keyed by value alone would confuse values that are equal across types (1 == True == 1.0), so
# a row takes the memo path only when every field has one of the types it is declared with (checked
# in C per row as a tuple of types, against a set of the type tuples seen so far), and a tuple of
# anything but str is encoded but never remembered.  Any other row goes the reference way.
_N = len(FIELD_NAMES)
_KEYS = tuple(sorted(FIELD_NAMES))  # the canonical order, chain_seq left out
assert _KEYS[:3] == ("addon", "addon_author", "call_site") and sorted((*_KEYS, "chain_seq"))[3] == "chain_seq"
_getm = dict.__getitem__
_encode_str = json.encoder.encode_basestring  # the C one when there is one, as JSONEncoder uses
_sha256 = hashlib.sha256
_MEMO_LIMIT = 2048  # per field; a full memo starts over (unique values such as event_id just cycle)
_NONE = type(None)


def _as_stored_list(value):
    """A list column as ``schema.decode_row`` reads it (NULL/'' = empty), for the canonical form."""
    return list(json.loads(value)) if value else []


class _Members(dict):
    """value -> the canonical member text of one field, computed by the reference encoder on a miss."""

    __slots__ = ("prefix", "suffix", "convert")

    def __init__(self, key: str, convert=None) -> None:
        super().__init__()
        i = _KEYS.index(key)
        self.prefix = ("\x00{" if i == 0 else ",") + _dumps(key) + ":"
        self.suffix = ',"chain_seq":\x01' if key == "call_site" else ("}" if i == len(_KEYS) - 1 else "")
        self.convert = convert

    def __missing__(self, value):
        t = type(value)
        if self.convert is not None:
            text = _dumps(self.convert(value))
        elif t is str:
            text = _encode_str(value)  # what the encoder does with a str
        elif t is int:
            text = int.__repr__(value)  # ... and with an int
        else:
            text = _dumps(value)
        text = self.prefix + text + self.suffix
        if type(value) is tuple and not all(type(x) is str for x in value):
            return text  # (1,) == (True,): never remembered
        if len(self) >= _MEMO_LIMIT:
            self.clear()
        self[value] = text
        return text


def _types(key: str, *, stored: bool) -> frozenset:
    if key in LIST_FIELDS:
        return frozenset({str, _NONE}) if stored else frozenset({tuple})
    if key in BOOL_FIELDS:
        return frozenset({bool, int, _NONE}) if stored else frozenset({bool})
    if key in INT_FIELDS:
        return frozenset({int, _NONE})
    return frozenset({str, _NONE})


class _Encoder:
    """The memo path for one source of rows: NetEvents (append) or stored tuples (verify)."""

    def __init__(self, *, stored: bool) -> None:
        def convert(key):
            if stored and key in LIST_FIELDS:
                return _as_stored_list
            if stored and key in BOOL_FIELDS:
                return bool
            return None

        self.memos = tuple(_Members(k, convert(k)) for k in _KEYS)
        self.allowed = tuple(_types(k, stored=stored) for k in _KEYS)
        self.signatures: dict[tuple, bool] = {}

    def members(self, values: tuple) -> tuple | None:
        """The member texts of a row whose values are in canonical order, or None (use the reference)."""
        sig = tuple(map(type, values))
        ok = self.signatures.get(sig)
        if ok is None:
            ok = all(t in a for t, a in zip(sig, self.allowed, strict=True))
            if len(self.signatures) >= _MEMO_LIMIT:
                self.signatures.clear()
            self.signatures[sig] = ok
        if not ok:
            return None
        try:
            return tuple(map(_getm, self.memos, values))
        except TypeError:  # an unhashable value: a list or dict inside a tuple
            return None


_EVENTS = _Encoder(stored=False)
_STORED = _Encoder(stored=True)
_canon_values = attrgetter(*_KEYS)
_canon_of_field_values = itemgetter(*(FIELD_NAMES.index(k) for k in _KEYS))
_stored_canon_values = itemgetter(*(1 + FIELD_NAMES.index(k) for k in _KEYS))
# Column values in FIELD_NAMES order from the canonical-order values.
_columns = itemgetter(*(_KEYS.index(n) for n in FIELD_NAMES))
# List columns store the member's value text: (column index, member index, slice start, slice end).
_LIST_COLUMNS = tuple(
    (FIELD_NAMES.index(k), i, len(_EVENTS.memos[i].prefix), -len(_EVENTS.memos[i].suffix) or None)
    for i, k in enumerate(_KEYS) if k in LIST_FIELDS)
_LIST_AT = tuple(i for i, n in enumerate(FIELD_NAMES) if n in LIST_FIELDS)
_BOOL_AT = tuple(i for i, n in enumerate(FIELD_NAMES) if n in BOOL_FIELDS)


def _reference_columns(fields: dict, bool_as_int: bool) -> list:
    values = [fields[name] for name in FIELD_NAMES]
    for i in _LIST_AT:
        values[i] = _dumps_list(values[i])
    if bool_as_int:
        for i in _BOOL_AT:
            values[i] = int(values[i])
    return values


_dumps_list = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode  # = schema.encode_fields


def _storable_text(value):
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
    if isinstance(value, list):
        return [_storable_text(v) for v in value]
    return value


def storable(events) -> list[NetEvent]:
    """The events with any text a database cannot store escaped: a lone surrogate -- what a file
    name, argument or header that is not UTF-8 decodes to (``surrogateescape``) -- as its Python
    escape (``\\udcff``), and NUL, which PostgreSQL text cannot hold, as ``\\x00``.  One such value
    must not make a whole batch unwritable (the sink would retry it forever, and nothing after it
    would be written).  A store's ``append`` retries a batch through this when writing it failed so;
    events without such text come back as they are."""
    out = []
    for event in events:
        fields = event.as_dict()
        safe = {k: _storable_text(v) for k, v in fields.items()}
        out.append(event if safe == fields else NetEvent.from_dict(safe))
    return out


def prepare_rows(events, *, bool_as_int: bool) -> list[tuple]:
    """The part of chaining that does not depend on ``chain_seq`` or ``prev_hash``, done *before* a
    writer takes the journal lock: per event, the leaf hash input before and after the ``chain_seq``
    value (0x00 prefix included), and the encoded column values.  ``link_prepared`` finishes the job
    under the lock.  A row the memo path cannot take is kept as (None, its fields, its columns) and
    hashed the reference way in ``link_prepared``.
    """
    # A captured call's event is read once, here: its values straight from the build, no slots filled.
    unbuilt, by_build, by_slots = UnbuiltEvent, _canon_of_field_values, _canon_values
    values_rows = [by_build(field_values(e)) if type(e) is unbuilt else by_slots(e) for e in events]
    prepared = _prepare_columns(values_rows, bool_as_int) if len(values_rows) >= COLUMN_MIN_ROWS else None
    if prepared is None:
        prepared = _prepare_row_by_row(events, values_rows, bool_as_int)
    return prepared


COLUMN_MIN_ROWS = 16  # below, the per-column set-up costs more than it saves (~12 rows, measured)


# Column by column, a batch costs one C-level ``map`` per field instead of a Python step per value:
# the memo's lookups for fields whose values repeat, and for the fields in _FRESH, which take a new
# value on almost every row (a memo would only miss, and a miss calls back into Python), the value's
# JSON straight from ``int.__repr__`` / the C string encoder.  Only when every value of a column is of
# a type its field is declared with; else the whole batch goes row by row (``_prepare_row_by_row``).
_FRESH = frozenset({"event_id", "fingerprint", "logged_at_us", "started_at_us", "duration_us", "src_port",
                    "req_bytes", "resp_bytes"})
_FRESH_AT = tuple(k in _FRESH for k in _KEYS)
assert not _FRESH & LIST_FIELDS  # a list column's member text is sliced for its stored value
_COLUMN_AT = tuple(_KEYS.index(n) for n in FIELD_NAMES)  # FIELD_NAMES order from canonical order


def _member_columns(encoder: _Encoder, columns: list, where: list | None = None) -> list | None:
    """The parts of each row's canonical text, column by column in canonical order (a row's text is
    their ``"".join``), or None when a column holds a type its field is not declared with, or a value
    the memo cannot take (unhashable).  A memo column is one part: the member texts.  A fresh column
    is two or three: its member prefix (the same on every row), the value's JSON, its suffix.
    ``where`` (if given) receives the index of each column's memo part (None for a fresh one)."""
    out: list = []
    n = len(columns[0]) if columns else 0
    for i, column in enumerate(columns):
        if not set(map(type, column)) <= encoder.allowed[i]:
            return None
        if _FRESH_AT[i] and None not in column:  # exact int or str (checked above); None is "null"
            memo = encoder.memos[i]
            out.append(repeat(memo.prefix, n))
            out.append(list(map(int.__repr__ if _KEYS[i] in INT_FIELDS else _encode_str, column)))
            if memo.suffix:
                out.append(repeat(memo.suffix, n))
            if where is not None:
                where.append(None)
            continue
        if where is not None:
            where.append(len(out))
        try:
            out.append(list(map(encoder.memos[i].__getitem__, column)))
        except TypeError:  # an unhashable value: a list or dict inside a tuple
            return None
    return out


def _prepare_columns(values_rows: list, bool_as_int: bool) -> list[tuple] | None:
    columns = list(zip(*values_rows, strict=True))
    where: list = []
    members = _member_columns(_EVENTS, columns, where)
    if members is None:
        return None
    parts = map(bytes.partition, map(str.encode, map("".join, zip(*members, strict=True))), repeat(b"\x01"))
    stored = [columns[i] for i in _COLUMN_AT]
    for col, at, start, end in _LIST_COLUMNS:  # a list column keeps its member's value text
        stored[col] = list(map(getitem, members[where[at]], repeat(slice(start, end))))
    if bool_as_int:
        for i in _BOOL_AT:
            stored[i] = list(map(int, stored[i]))
    return [(head, tail, cols) for (head, _, tail), cols in zip(parts, zip(*stored, strict=True), strict=True)]


def _prepare_row_by_row(events, values_rows: list, bool_as_int: bool) -> list[tuple]:
    out = []
    append = out.append
    members_of, columns = _EVENTS.members, _columns
    list_columns, bool_at = _LIST_COLUMNS, _BOOL_AT
    for event, values in zip(events, values_rows, strict=True):
        members = members_of(values)
        if members is None:
            fields = event.as_dict()
            append((None, fields, _reference_columns(fields, bool_as_int)))
            continue
        head, _, tail = "".join(members).encode("utf-8").partition(b"\x01")
        cols = list(columns(values))
        for col, at, start, end in list_columns:
            cols[col] = members[at][start:end]
        if bool_as_int:
            for i in bool_at:
                cols[i] = int(cols[i])
        append((head, tail, cols))
    return out


def iter_linked(prepared, first_seq: int, prev_hash: bytes):
    """Stored tuples (seq, *encoded fields, leaf, prev, row) hex, continuing after ``prev_hash``, one at
    a time (a COPY can stream each row to the server as soon as it is linked)."""
    sha = _sha256
    seq = first_seq
    prev_hex = prev_hash.hex()
    for head, tail, values in prepared:
        if head is None:
            leaf = sha(b"\x00" + canonical_bytes(tail, seq)).digest()
        else:
            leaf = sha(head + b"%d" % seq + tail).digest()
        row = sha(b"\x02" + prev_hash + leaf).digest()
        row_hex = row.hex()
        yield (seq, *values, leaf.hex(), prev_hex, row_hex)
        prev_hash, prev_hex = row, row_hex
        seq += 1


def link_prepared(prepared, first_seq: int, prev_hash: bytes) -> list[tuple]:
    """Stored tuples (seq, *encoded fields, leaf, prev, row) hex, continuing after ``prev_hash``."""
    return list(iter_linked(prepared, first_seq, prev_hash))


def chain_rows(events, first_seq: int, prev_hash: bytes, *, bool_as_int: bool) -> list[tuple]:
    """The stored tuples for a batch, ready for INSERT/COPY: (seq, *encoded fields, leaf, prev, row) hex.

    Same bytes as ``chain`` + ``schema.encode_fields``.
    """
    return link_prepared(prepare_rows(events, bool_as_int=bool_as_int), first_seq, prev_hash)


def _stored_leaf_input(raw) -> bytes | None:
    """0x00 || canonical bytes of a stored tuple by the memo path, or None when it cannot say."""
    seq = raw[0]
    if type(seq) is not int:
        return None
    try:
        members = _STORED.members(_stored_canon_values(raw))
    except Exception:  # a list column that is not JSON of a list (ValueError, TypeError, RecursionError)
        return None
    if members is None:
        return None
    return "".join(members).encode("utf-8").replace(b"\x01", b"%d" % seq, 1)


def stored_leaf(raw) -> bytes | None:
    """The leaf hash of a stored tuple (seq, *FIELD_NAMES columns, leaf, prev, row) computed from its
    columns the fast way, or None when only the reference path (``schema.decode_row`` + NetEvent) can
    tell.  Where it answers, it is the reference's answer."""
    data = _stored_leaf_input(raw)
    return None if data is None else _sha256(data).digest()


def stored_leaves(raws) -> list:
    """``stored_leaf`` of every stored tuple of a list (verify's inner loop): column by column when
    every column holds what its field is declared with (as ``prepare_rows``), else row by row."""
    out: list = []
    for start in range(0, len(raws), COLUMN_MAX_ROWS):
        part = raws[start:start + COLUMN_MAX_ROWS]
        leaves = None
        if len(part) >= COLUMN_MIN_ROWS:
            try:
                leaves = stored_column_leaves(list(zip(*part, strict=True)))
            except ValueError:  # rows of different lengths
                pass
        out += leaves if leaves is not None else stored_leaves_by_row(part)
    return out


COLUMN_MAX_ROWS = 1000  # rows per column pass: the columns of a larger slice no longer fit the caches
_STORED_AT = tuple(1 + FIELD_NAMES.index(k) for k in _KEYS)  # each canonical key's stored column
sha256_digest = type(_sha256()).digest  # HASH.digest, unbound: map()-able


def stored_column_leaves(columns: list) -> list | None:
    """The leaves of stored rows given column by column (``columns[0]`` the chain_seqs, then the
    columns of ``schema.SELECT_LIST``), or None when only the row-by-row path can tell."""
    if not columns:
        return []
    seqs = columns[0]
    if len(columns) < 1 + _N or set(map(type, seqs)) != {int}:
        return None
    try:
        members = _member_columns(_STORED, [columns[i] for i in _STORED_AT])
    except Exception:  # a list column that is not JSON of a list (ValueError, TypeError, RecursionError)
        return None
    if members is None:
        return None
    texts = map(str.encode, map("".join, zip(*members, strict=True)))
    data = map(bytes.replace, texts, repeat(b"\x01"), map(b"%d".__mod__, seqs), repeat(1))
    try:
        return list(map(sha256_digest, map(_sha256, data)))
    except UnicodeEncodeError:  # a text that cannot be UTF-8 (a lone surrogate)
        return None


def stored_leaves_by_row(raws) -> list:
    out = []
    append = out.append
    memos, signatures, values_of = _STORED.memos, _STORED.signatures, _stored_canon_values
    getm, join, sha = _getm, "".join, _sha256
    for raw in raws:
        seq = raw[0]
        values = values_of(raw)
        if not signatures.get(tuple(map(type, values))) or type(seq) is not int:
            append(stored_leaf(raw))  # a type tuple not seen yet, or not one the memo path takes
            continue
        try:
            text = join(map(getm, memos, values))
        except Exception:  # see _stored_leaf_input
            append(None)
            continue
        append(sha(text.encode("utf-8").replace(b"\x01", b"%d" % seq, 1)).digest())
    return out


def raw_canonical(raw) -> bytes:
    """Canonical bytes straight from a stored tuple (seq, *FIELD_NAMES columns, leaf, prev, row).

    Lists are stored as JSON text (NULL/'' = empty), booleans as 0/1 on SQLite: read the same way
    ``schema.decode_row`` does, without building a NetEvent.
    """
    data = _stored_leaf_input(raw)
    if data is not None:
        return data[1:]
    values = list(raw[1:1 + _N])
    for i in _LIST_AT:
        values[i] = _as_stored_list(values[i])
    for i in _BOOL_AT:
        values[i] = bool(values[i])
    return canonical_bytes(dict(zip(FIELD_NAMES, values, strict=True)), raw[0])
