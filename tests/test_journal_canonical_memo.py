"""The memo path of ``canonical`` (append: ``prepare_rows``; verify: ``stored_leaf``) against the reference,
on the inputs a value-keyed memo could get wrong: values equal across types (1 == True == 1.0), tuples
of non-strings, str/int subclasses, lists where tuples belong, unhashable values, memos that overflow,
and stored columns that are not what the writer wrote (non-canonical list JSON, JSON of a non-list,
garbage, 2 in a boolean column).
"""

import enum
import hashlib
import random
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mit_network_audit.interceptor.event import NetEvent, new_event_id
from mit_network_audit.journal import canonical, schema
from mit_network_audit.journal.canonical import (
    ZERO_HASH,
    canonical_bytes,
    chain,
    chain_rows,
    stored_leaf,
    stored_leaves,
)
from test_journal_canonical_batched import build


def reference(events, first, prev, bool_as_int):
    return [(s, *schema.encode_fields(f, bool_as_int=bool_as_int), leaf, p, r)
            for s, f, leaf, p, r in chain(events, first, prev)]


def reference_leaf(raw):
    """What verify's reference path hashes: decode_row + NetEvent.as_dict + canonical_bytes (or None)."""
    try:
        jr = schema.decode_row(raw)
        return hashlib.sha256(b"\x00" + canonical_bytes(jr.event.as_dict(), jr.chain_seq)).digest()
    except Exception:
        return None


class Port(enum.IntEnum):
    HTTPS = 443


class Name(str):
    pass


def base() -> NetEvent:
    return build(random.Random(7), ["api.example.com", "x"], [1, 443])


# Each list is appended in order in one batch *and* one event per batch, so a value remembered for an
# earlier row (port=1) is looked up for a later, equal but differently typed one (port=True).
CONFUSABLE = [
    [dict(port=1), dict(port=True), dict(port=1.0), dict(port=1)],
    [dict(status=0), dict(status=False), dict(status=0)],
    [dict(vendor_bound=True), dict(vendor_bound=1), dict(vendor_bound=False), dict(vendor_bound=0)],
    [dict(via=("1",)), dict(via=(1,)), dict(via=(True,)), dict(via=(1.0,)), dict(via=("1",))],
    [dict(query_keys=("a",)), dict(query_keys=["a"]), dict(query_keys=(Name("a"),)), dict(query_keys=("a",))],
    [dict(host="h"), dict(host=Name("h")), dict(host="h")],
    [dict(port=443), dict(port=Port.HTTPS), dict(port=443)],
    [dict(method=None), dict(method="GET"), dict(method=None)],
    [dict(detail='{"chain_seq":1}'), dict(addon='","chain_seq":9,"x":"'), dict(call_site="\x01\x00\"\\")],
    [dict(path="é\u2028😀"), dict(path="é\u2028😀")],
]


@pytest.mark.parametrize("changes", CONFUSABLE)
@pytest.mark.parametrize("bool_as_int", [True, False])
def test_equal_values_of_other_types_are_not_confused(changes, bool_as_int):
    events = [replace(base(), **c) for c in changes]
    prev = bytes(range(32))
    assert chain_rows(events, 5, prev, bool_as_int=bool_as_int) == reference(events, 5, prev, bool_as_int)
    for e in events:  # one per batch: the memo outlives the batch
        assert chain_rows([e], 3, ZERO_HASH, bool_as_int=bool_as_int) == reference([e], 3, ZERO_HASH, bool_as_int)


def test_unhashable_and_unencodable_values_take_the_reference_way():
    ok = replace(base(), detail={"b": 1, "a": [2]}, via=({"k": "v"},))  # as the reference encodes them
    assert chain_rows([ok], 1, ZERO_HASH, bool_as_int=False) == reference([ok], 1, ZERO_HASH, False)
    bad = replace(base(), via=(frozenset({1}),))
    with pytest.raises(TypeError):
        reference([bad], 1, ZERO_HASH, False)
    with pytest.raises(TypeError):
        chain_rows([bad], 1, ZERO_HASH, bool_as_int=False)


def test_memos_stay_bounded_and_right_after_overflowing():
    rng = random.Random(3)
    events = [replace(base(), host=f"h{i}", port=i, via=(f"v{i % 5000}",), method=rng.choice([None, "GET"]))
              for i in range(3 * canonical._MEMO_LIMIT)]
    assert chain_rows(events, 1, ZERO_HASH, bool_as_int=True) == reference(events, 1, ZERO_HASH, True)
    assert all(len(m) <= canonical._MEMO_LIMIT for m in canonical._EVENTS.memos)
    assert len(canonical._EVENTS.signatures) <= canonical._MEMO_LIMIT


def _stored(event, seq=1):
    return list(chain_rows([event], seq, ZERO_HASH, bool_as_int=True)[0])


def col(name):
    return 1 + schema.FIELD_NAMES.index(name)


STORED_EDITS = [
    ("via", '["requests", "urllib3"]'),  # not the canonical spacing: decodes to the same list
    ("via", '"ab"'),  # JSON of a string: decode_row makes ('a', 'b') of it
    ("via", '{"a": 1}'),  # JSON of an object: its keys
    ("via", "5"),  # JSON of a number: decode_row fails
    ("via", "not json"),
    ("via", "[" * 5000),  # too deep for the decoder
    ("via", ""),
    ("via", None),
    ("via", "[]"),
    ("query_keys", '["a","a"]'),
    ("vendor_bound", 2),
    ("vendor_bound", True),
    ("vendor_bound", None),
    ("port", "443"),  # SQLite keeps whatever type it is given
    ("port", 443.0),
    ("host", 5),
    ("host", b"bytes"),
    ("status", True),
]


@pytest.mark.parametrize(("name", "value"), STORED_EDITS)
def test_stored_leaf_is_the_reference_leaf_or_no_answer(name, value):
    for event in (base(), replace(base(), via=("requests", "urllib3"), vendor_bound=True)):
        raw = _stored(event)
        raw[col(name)] = value
        raw = tuple(raw)
        fast = stored_leaf(raw)
        ref = reference_leaf(raw)
        if fast is not None:
            assert fast == ref
        # and again (from the memo), and in verify's batch loop
        assert stored_leaf(raw) == fast
        assert stored_leaves([raw, raw]) == [fast, fast]


def test_stored_leaf_answers_for_what_the_writer_wrote():
    rng = random.Random(11)
    texts = ["", "a", "é\u2028", '"\\', "\x00\x1f"]
    events = [build(rng, texts, [0, 1, -1, 2**53 - 1]) for _ in range(300)]
    for bool_as_int in (True, False):  # SQLite keeps 0/1, PostgreSQL booleans
        raws = chain_rows(events, 7, ZERO_HASH, bool_as_int=bool_as_int)
        for raw, leaf in zip(raws, stored_leaves(raws), strict=True):
            assert stored_leaf(raw) == leaf is not None
            assert leaf.hex() == raw[-3] == reference_leaf(raw).hex()


def test_a_changed_list_column_is_caught_by_verify(tmp_path):
    from mit_network_audit.journal import open_store
    from mit_network_audit.journal.verify import verify

    store = open_store(str(tmp_path / "j.db"))
    store.append([replace(base(), event_id=new_event_id(), via=("requests",)) for _ in range(3)])
    assert verify(store).ok
    store.conn.execute("DROP TRIGGER egress_log_no_update")
    store.conn.execute("UPDATE egress_log SET via = '[\"requests\", \"evil\"]' WHERE chain_seq = 1")
    result = verify(store)
    assert (result.ok, result.first_bad_seq, result.problem) == (False, 1, "hash_mismatch")
    store.conn.execute("UPDATE egress_log SET via = '[\"requests\"]' WHERE chain_seq = 1")
    assert verify(store).ok
    store.conn.execute("UPDATE egress_log SET via = '[ \"requests\" ]' WHERE chain_seq = 1")
    assert verify(store).ok  # same list: what was hashed is what decode_row reads back
    store.close()


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(texts=st.lists(st.text(max_size=16), min_size=1, max_size=5),
       ints=st.lists(st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1), min_size=1, max_size=4),
       seed=st.integers(0, 2**32 - 1), rows=st.integers(canonical.COLUMN_MIN_ROWS, 40), fresh_filled=st.booleans(),
       bool_as_int=st.booleans())
def test_the_column_path_is_the_reference(texts, ints, seed, rows, fresh_filled, bool_as_int):
    """A batch of well-typed events goes column by column (memo lookups, or a format string for the
    fields that change on every call); its rows are the reference's, byte for byte."""
    rng = random.Random(seed)
    events = [build(rng, texts, ints) for _ in range(rows)]
    if fresh_filled:  # no None in the fresh columns: they take the format-string way
        events = [replace(e, **{k: rng.choice(ints) if k in schema.INT_FIELDS else rng.choice(texts)
                                for k in canonical._FRESH}) for e in events]
    values = [canonical._canon_values(e) for e in events]
    assert canonical._prepare_columns(values, bool_as_int) is not None
    prev = bytes(range(32))
    assert chain_rows(events, 9, prev, bool_as_int=bool_as_int) == reference(events, 9, prev, bool_as_int)
