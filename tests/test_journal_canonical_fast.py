"""The fast paths (chain_rows for append, raw_canonical for verify) give exactly the reference bytes.

Reference: ``canonical.chain`` + ``schema.encode_fields`` (append) and ``schema.decode_row`` +
``canonical_bytes`` (verify), themselves pinned to RFC 8785 by test_journal_canonical_batched.py.
"""

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mit_network_audit.interceptor.event import NetEvent, UnbuiltEvent, pending_event
from mit_network_audit.journal import schema
from mit_network_audit.journal.canonical import ZERO_HASH, canonical_bytes, chain, chain_rows, raw_canonical
from test_journal_canonical_batched import build


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(texts=st.lists(st.text(max_size=24), min_size=1, max_size=6),
       ints=st.lists(st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1), min_size=1, max_size=4),
       seed=st.integers(0, 2**32 - 1), first=st.integers(1, 2**40), bool_as_int=st.booleans())
def test_fast_paths_equal_reference(texts, ints, seed, first, bool_as_int):
    rng = random.Random(seed)
    events = [build(rng, texts, ints) for _ in range(20)]
    prev = bytes(rng.randrange(256) for _ in range(32)) if first > 1 else ZERO_HASH
    reference = [(s, *schema.encode_fields(f, bool_as_int=bool_as_int), leaf, p, r)
                 for s, f, leaf, p, r in chain(events, first, prev)]
    fast = chain_rows(events, first, prev, bool_as_int=bool_as_int)
    assert fast == reference
    for raw in fast:
        jr = schema.decode_row(raw)
        assert raw_canonical(raw) == canonical_bytes(jr.event.as_dict(), jr.chain_seq)


def test_raw_canonical_empty_list_forms():
    rng = random.Random(1)
    event = build(rng, ["a"], [1])
    raw = list(chain_rows([event], 1, ZERO_HASH, bool_as_int=True)[0])
    for i, name in enumerate(schema.FIELD_NAMES):
        if name in schema.LIST_FIELDS:
            raw[1 + i] = None
    jr = schema.decode_row(tuple(raw))
    assert raw_canonical(tuple(raw)) == canonical_bytes(jr.event.as_dict(), 1)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(texts=st.lists(st.text(max_size=24), min_size=1, max_size=6),
       ints=st.lists(st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1), min_size=1, max_size=4),
       seed=st.integers(0, 2**32 - 1), bool_as_int=st.booleans(), drop=st.sets(st.sampled_from(
           [n for n in schema.FIELD_NAMES if n not in ("event_id", "logged_at_us", "started_at_us",
                                                         "duration_us", "direction", "channel")])))
def test_an_unbuilt_event_is_hashed_from_its_build_and_reads_the_same_after(texts, ints, seed, bool_as_int, drop):
    """The writer reads a captured call's event without filling its slots (event.field_values): the
    row must be the one the built event gives, the builder must run once, and a later read of the
    event must see the very values that were hashed (defaults included, for fields a build left out)."""
    rng = random.Random(seed)
    built = [build(rng, texts, ints) for _ in range(10)]
    calls = []

    def builder(i):
        calls.append(i)
        fields = {k: v for k, v in built[i].as_dict().items() if k not in drop}
        return {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}

    unbuilt = [pending_event(builder, i) for i in range(len(built))]
    rows = chain_rows(unbuilt, 1, ZERO_HASH, bool_as_int=bool_as_int)
    assert calls == list(range(len(built)))
    assert all(type(e) is UnbuiltEvent for e in unbuilt)  # slots not filled by the writer's read
    whole = [NetEvent(**{n: getattr(e, n) for n in schema.FIELD_NAMES}) for e in unbuilt]  # fills them now
    assert calls == list(range(len(built)))  # ... from the same build, not a second one
    assert rows == chain_rows(whole, 1, ZERO_HASH, bool_as_int=bool_as_int)
    for raw, event in zip(rows, unbuilt, strict=True):
        assert schema.decode_row(raw).event == event
