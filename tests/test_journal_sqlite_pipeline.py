"""SQLite append in chunks: a batch is staged in a TEMP table and moved into the journal by one
INSERT ... SELECT per chunk, the move of one chunk on a helper thread while the next is encoded.

What must hold whatever the chunking: the stored rows are the reference chain's, byte for byte; a
failure in either thread (an event that cannot be encoded, the journal refusing a row) writes
nothing of the batch and leaves the store usable; processes appending big batches to one file
stay gapless.
"""

import random
import sqlite3
import threading
from dataclasses import replace

import pytest

from mit_network_audit.interceptor.event import NetEvent, new_event_id
from mit_network_audit.journal import open_store, schema
from mit_network_audit.journal import sqlite as sqlite_store
from mit_network_audit.journal.canonical import ZERO_HASH, chain_rows
from mit_network_audit.journal.verify import verify
from test_journal_canonical_batched import build
from test_journal_store import assert_gapless_and_intact, run_in_processes

CHUNK = sqlite_store.PIPELINE_ROWS


def _events(n: int, seed: int = 1) -> list[NetEvent]:
    rng = random.Random(seed)
    texts = ["", "api.example.com", "é\u2028", '"\\', "\x00\x1f", "a" * 300]
    return [replace(build(rng, texts, [0, 1, -1, 443, 2**53 - 1]), event_id=new_event_id()) for _ in range(n)]


def _stored(path) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"SELECT {schema.SELECT_LIST} FROM {schema.TABLE} ORDER BY chain_seq").fetchall()
    finally:
        conn.close()


def _threads() -> set[str]:
    return {t.name for t in threading.enumerate()}


@pytest.mark.parametrize("sizes", [[1], [sqlite_store.DIRECT_ROWS + 1], [CHUNK], [CHUNK + 1], [CHUNK + 51], [2 * CHUNK], [4 * CHUNK + 7], [3, 3 * CHUNK + 1, 1]])
def test_chunked_batches_store_exactly_the_reference_rows(tmp_path, sizes):
    path = str(tmp_path / "j.db")
    events = _events(sum(sizes))
    store = open_store(path)
    returned, start = [], 0
    for n in sizes:
        returned += store.append(events[start:start + n])
        start += n
    store.close()
    expected = chain_rows(events, 1, ZERO_HASH, bool_as_int=True)
    assert _stored(path) == [tuple(r) for r in expected]
    assert [(r.chain_seq, r.row_hash) for r in returned] == [(r[0], r[-1]) for r in expected]
    assert verify(open_store(path)).ok
    assert "mna-journal-mover" not in _threads()  # every helper ended with its batch


def _refuse_row(path, seq: int) -> None:
    conn = sqlite3.connect(path)
    conn.execute(f"CREATE TRIGGER refuse_one BEFORE INSERT ON {schema.TABLE} WHEN NEW.chain_seq = {seq} "
                 "BEGIN SELECT RAISE(ABORT, 'row refused'); END")
    conn.commit()
    conn.close()


@pytest.mark.parametrize("refused", [1, CHUNK, CHUNK + 1, 3 * CHUNK + 2])  # first, helper's and last chunk
def test_a_row_the_journal_refuses_writes_nothing_of_its_batch(tmp_path, refused):
    path = str(tmp_path / "j.db")
    store = open_store(path)
    store.append(_events(3, seed=2))
    _refuse_row(path, 3 + refused)
    with pytest.raises(sqlite3.IntegrityError, match="row refused"):
        store.append(_events(3 * CHUNK + 5, seed=3))
    assert store.count() == 3 and store.max_seq() == 3
    conn = sqlite3.connect(path)
    conn.execute("DROP TRIGGER refuse_one")
    conn.commit()
    conn.close()
    store.append(_events(2 * CHUNK + 1, seed=4))  # nothing left over in the staging table
    assert store.count() == 3 + 2 * CHUNK + 1 == store.max_seq()
    assert store.execute_raw(f"SELECT count(*) FROM temp.{sqlite_store._STAGE}") == [(0,)]
    assert verify(store).ok
    store.close()
    assert "mna-journal-mover" not in _threads()


def test_an_event_that_cannot_be_encoded_in_a_later_chunk_writes_nothing(tmp_path):
    store = open_store(str(tmp_path / "j.db"))
    events = _events(3 * CHUNK)
    events[2 * CHUNK + 3] = replace(events[2 * CHUNK + 3], via=(frozenset({1}),))  # not JSON
    with pytest.raises(TypeError):
        store.append(events)
    assert store.count() == 0
    good = [e for i, e in enumerate(events) if i != 2 * CHUNK + 3]
    store.append(good)
    assert store.count() == len(good) and verify(store).ok
    store.close()


def _big_batches(path, batches, size, seed):
    store = open_store(path)
    for b in range(batches):
        store.append([NetEvent(event_id=new_event_id(), logged_at_us=1, started_at_us=1, duration_us=5,
                               direction="outbound", channel="requests",
                               host=f"h{seed}.example", port=443, path=f"/{b}/{i}")
                      for i in range(size)])
    store.close()


def test_processes_appending_big_batches_to_one_file_stay_gapless(tmp_path):
    path = str(tmp_path / "j.db")
    open_store(path).close()
    run_in_processes(_big_batches, [(path, 4, 2 * CHUNK + 13, k) for k in range(3)])
    assert_gapless_and_intact(path, 3 * 4 * (2 * CHUNK + 13))


def test_chunk_bounds_cover_the_batch_once_with_a_short_last_chunk():
    for n in range(1, 3 * CHUNK):
        bounds = sqlite_store._chunk_bounds(n)
        sizes = [b - a for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        assert bounds[0] == 0 and bounds[-1] == n and all(size > 0 for size in sizes)
        if n > CHUNK:
            assert sizes[-1] == sqlite_store.LAST_ROWS and max(sizes) < CHUNK + sqlite_store.LAST_ROWS


def test_without_a_helper_thread_a_big_batch_goes_in_one_chunk(tmp_path, monkeypatch):
    def no_thread(self, conn):
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(sqlite_store._Mover, "__init__", no_thread)
    path = str(tmp_path / "j.db")
    events = _events(3 * CHUNK + 1)
    store = open_store(path)
    store.append(events)
    store.close()
    assert _stored(path) == [tuple(r) for r in chain_rows(events, 1, ZERO_HASH, bool_as_int=True)]
