"""canonical_bytes == RFC 8785 (the ``rfc8785`` package) over 10,000 events, built cheaply.

Drawing every one of the 37 fields through hypothesis is what makes the one-event-per-example test
slow (about 2 minutes on a loaded 2-core machine).  Here each example draws a small pool of hostile
values (the whole str range: non-BMP, controls, quotes, backslashes, U+2028; ints up to 2**53 - 1;
None) and a seeded Random that assembles 20 events from the pool, so 500 examples check 10,000
events with the values hypothesis finds hardest still in every field.
"""

import random

import rfc8785
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mit_network_audit.interceptor.event import BOOL_FIELDS, FIELD_NAMES, INT_FIELDS, LIST_FIELDS, NetEvent
from mit_network_audit.journal.canonical import canonical_bytes

EVENTS_PER_EXAMPLE = 20
NOT_NULL_TEXT = {"event_id", "direction", "channel", "outcome", "dest_class"}
NOT_NULL_INT = {"v", "logged_at_us", "started_at_us", "duration_us", "req_bytes", "resp_bytes", "pid"}


def build(rng: random.Random, texts: list[str], ints: list[int]) -> NetEvent:
    fields = {}
    for name in FIELD_NAMES:
        if name in BOOL_FIELDS:
            fields[name] = rng.random() < 0.5
        elif name in LIST_FIELDS:
            fields[name] = tuple(rng.choice(texts) for _ in range(rng.randrange(4)))
        elif name in INT_FIELDS:
            fields[name] = rng.choice(ints) if name in NOT_NULL_INT or rng.random() < 0.8 else None
        else:
            fields[name] = rng.choice(texts) if name in NOT_NULL_TEXT or rng.random() < 0.8 else None
    return NetEvent(**fields)


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@given(texts=st.lists(st.text(max_size=24), min_size=1, max_size=6),
       ints=st.lists(st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1), min_size=1, max_size=4),
       seed=st.integers(0, 2**32 - 1))
def test_canonical_bytes_equal_rfc8785_batched(texts, ints, seed):
    rng = random.Random(seed)
    for _ in range(EVENTS_PER_EXAMPLE):
        doc = build(rng, texts, ints).as_dict()
        seq = rng.choice(ints) % (2**53 - 1) + 1
        assert canonical_bytes(doc, seq) == rfc8785.dumps({**doc, "chain_seq": seq})
