"""Journal stores for real: hashing format, append/read, triggers, tamper detection, concurrency."""

import json
import multiprocessing
import sqlite3
import threading

import psycopg
import pytest
import rfc8785
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mit_network_audit.interceptor.event import NetEvent, internal_event
from mit_network_audit.journal import open_store
from mit_network_audit.journal.canonical import canonical_bytes
from mit_network_audit.journal.store import RowFilter
from mit_network_audit.journal.verify import verify

text = st.text(max_size=30)
maybe_text = st.none() | text
small_int = st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
events = st.builds(
    NetEvent, event_id=st.text("0123456789abcdef", min_size=32, max_size=32), logged_at_us=small_int,
    started_at_us=small_int, duration_us=small_int, direction=st.sampled_from(["inbound", "outbound", "internal"]),
    channel=text, protocol=maybe_text, method=maybe_text, host=maybe_text, port=st.none() | small_int,
    path=maybe_text, query_keys=st.lists(text, max_size=3).map(tuple), status=st.none() | small_int,
    req_bytes=small_int, resp_bytes=small_int, req_headers=st.lists(text, max_size=3).map(tuple),
    via=st.lists(text, max_size=3).map(tuple), vendor_bound=st.booleans(), addon=maybe_text, detail=maybe_text)


# per-field strategies, 1,000 examples; test_journal_canonical_batched.py covers 10,000 events fast
@settings(max_examples=1_000, deadline=None, suppress_health_check=list(HealthCheck))
@given(event=events, seq=st.integers(min_value=1, max_value=2**53 - 1))
def test_canonical_bytes_equal_rfc8785(event, seq):
    doc = event.as_dict()
    assert canonical_bytes(doc, seq) == rfc8785.dumps({**doc, "chain_seq": seq})


def make_events(n, **kw):
    return [internal_event("heartbeat", detail=json.dumps({"i": i}), **kw) for i in range(n)]


def test_append_read_filters_and_pagination(any_dsn):
    store = open_store(any_dsn)
    store.append(make_events(30))
    store.append([NetEvent(**{**internal_event("x").as_dict(), "direction": "outbound", "channel": "requests",
                              "host": "api.openai.com", "addon": "llm_assistant", "vendor_bound": False,
                              "query_keys": ("a",), "via": ("requests", "urllib3")})])
    assert store.count() == 31 and store.head().chain_seq == 31
    row = store.get(31)
    assert row.event.via == ("requests", "urllib3") and row.event.query_keys == ("a",)
    assert store.get_by_event_id(row.event.event_id).chain_seq == 31
    assert [r.chain_seq for r in store.rows(RowFilter(direction="outbound"))] == [31]
    assert [r.chain_seq for r in store.rows(RowFilter(text="openai"))] == [31]
    assert store.count(RowFilter(vendor_bound=False, channel="requests")) == 1
    page1 = store.rows(limit=10)
    page2 = store.rows(before_seq=page1[-1].chain_seq, limit=10)
    assert [r.chain_seq for r in page1 + page2] == list(range(31, 11, -1))
    assert verify(store).ok
    store.close()


def test_sqlite_triggers_refuse_update_and_delete(sqlite_dsn):
    store = open_store(sqlite_dsn)
    store.append(make_events(3))
    conn = sqlite3.connect(store.path)
    for sql in ("UPDATE egress_log SET host = 'x' WHERE chain_seq = 2", "DELETE FROM egress_log WHERE chain_seq = 3",
                "DELETE FROM egress_log", "UPDATE mna_vacuum_guard SET cut_seq = -1"):
        with pytest.raises(sqlite3.DatabaseError):
            conn.execute(sql)
    assert store.count() == 3


def test_postgres_triggers_refuse_even_the_owner(pg_dsn):
    store = open_store(pg_dsn)
    store.append(make_events(3))
    conn = psycopg.connect(pg_dsn, autocommit=True)  # postgres: superuser and table owner
    for sql in ("UPDATE egress_log SET host = 'x'", "DELETE FROM egress_log WHERE chain_seq = 1",
                "TRUNCATE egress_log"):
        with pytest.raises(psycopg.errors.RaiseException):
            conn.execute(sql)
    conn.execute("SET session_replication_role = replica")  # ENABLE ALWAYS: still refused
    with pytest.raises(psycopg.errors.RaiseException):
        conn.execute("DELETE FROM egress_log")
    assert store.count() == 3


TAMPERS = ["field", "delete_middle", "insert", "swap", "leaf_rehash"]


def _tamper(kind, dsn, seq, n):
    pg = dsn.startswith("postgresql")
    conn = psycopg.connect(dsn, autocommit=True) if pg else sqlite3.connect(dsn[len("sqlite:///"):], isolation_level=None)
    if pg:
        conn.execute("ALTER TABLE egress_log DISABLE TRIGGER ALL")
    else:
        conn.execute("DROP TRIGGER egress_log_no_update")
        conn.execute("DROP TRIGGER egress_log_no_delete")
    p = "%s" if pg else "?"
    if kind == "field":
        conn.execute(f"UPDATE egress_log SET req_bytes = req_bytes + 1 WHERE chain_seq = {p}", (seq,))
    elif kind == "delete_middle":
        conn.execute(f"DELETE FROM egress_log WHERE chain_seq = {p}", (seq,))
    elif kind == "insert":
        conn.execute(f"UPDATE egress_log SET chain_seq = chain_seq + 1000 WHERE chain_seq >= {p}", (seq,))
        conn.execute(f"UPDATE egress_log SET chain_seq = chain_seq - 999 WHERE chain_seq >= {p}", (seq + 1000,))
        cols = [c for c in _columns(conn, pg) if c != "chain_seq"]
        conn.execute(f"INSERT INTO egress_log (chain_seq, {', '.join(cols)}) SELECT {p}, "
                     + ", ".join(c if c not in ('event_id', 'prev_hash') else f"{c} || 'x'" for c in cols)
                     + f" FROM egress_log WHERE chain_seq = {p}", (seq, seq + 1))
    elif kind == "swap":
        other = seq + 1 if seq < n else seq - 1
        conn.execute(f"UPDATE egress_log SET chain_seq = -1 WHERE chain_seq = {p}", (seq,))
        conn.execute(f"UPDATE egress_log SET chain_seq = {p} WHERE chain_seq = {p}", (seq, other))
        conn.execute(f"UPDATE egress_log SET chain_seq = {p} WHERE chain_seq = -1", (other,))
    elif kind == "leaf_rehash":
        # change a field AND recompute its leaf hash: the link to the next row still breaks
        from mit_network_audit.journal.canonical import canonical_bytes, leaf_hash
        store = open_store(dsn)
        ev = store.get(seq).event
        store.close()
        doc = {**ev.as_dict(), "host": "evil.example"}
        leaf = leaf_hash(canonical_bytes(doc, seq)).hex()
        conn.execute(f"UPDATE egress_log SET host = 'evil.example', leaf_hash = {p} WHERE chain_seq = {p}", (leaf, seq))
    conn.close()


def _columns(conn, pg):
    if pg:
        return [r[0] for r in conn.execute("SELECT column_name FROM information_schema.columns WHERE "
                                           "table_name = 'egress_log' ORDER BY ordinal_position").fetchall()]
    return [r[1] for r in conn.execute("PRAGMA table_info(egress_log)").fetchall()]


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(kind=st.sampled_from(TAMPERS), seq=st.integers(min_value=2, max_value=19), backend=st.sampled_from(["sqlite", "pg"]))
def test_verify_catches_tampering(tmp_path_factory, kind, seq, backend, request):
    if backend == "pg":
        dsn = request.getfixturevalue("pg_dsn")
        conn = psycopg.connect(dsn, autocommit=True)
        conn.execute("DROP TABLE IF EXISTS egress_log, mna_meta CASCADE")
        conn.close()
    else:
        dsn = f"sqlite:///{tmp_path_factory.mktemp('t')}/j.db"
    store = open_store(dsn)
    store.append(make_events(20))
    assert verify(store).ok
    store.close()
    _tamper(kind, dsn, seq, 20)
    store = open_store(dsn)
    result = verify(store)
    store.close()
    assert not result.ok, (kind, seq)
    assert result.first_bad_seq is not None and result.first_bad_seq <= seq + 1


@pytest.mark.parametrize("backend", ["sqlite", "pg"])
def test_verify_catches_a_fork_with_valid_hashes(tmp_path, backend, request):
    """A second row linked to an earlier one (a fork), appended with every hash honestly recomputed.
    SQLite has no UNIQUE (prev_hash) (docs/benchmarks.md: our writers cannot fork it under BEGIN
    IMMEDIATE); PostgreSQL's constraint is dropped first, as an attacker with the owner's role could.
    Either way verify reports the forked row."""
    from mit_network_audit.journal import schema
    from mit_network_audit.journal.canonical import chain_rows

    if backend == "pg":
        dsn = request.getfixturevalue("pg_dsn")
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("DROP TABLE IF EXISTS egress_log, mna_meta CASCADE")
    else:
        dsn = f"sqlite:///{tmp_path}/j.db"
    store = open_store(dsn)
    rows = store.append(make_events(10))
    store.close()
    fork_parent = rows[4]  # chain_seq 5: row 11 will claim it as its predecessor, beside row 6
    [forged] = chain_rows(make_events(1), 11, bytes.fromhex(fork_parent.row_hash), bool_as_int=backend == "sqlite")
    marks = ", ".join(["%s" if backend == "pg" else "?"] * len(forged))
    insert = f"INSERT INTO egress_log ({schema.SELECT_LIST}) VALUES ({marks})"
    if backend == "pg":
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("ALTER TABLE egress_log DROP CONSTRAINT egress_log_prev_unique")
            c.execute(insert, forged)
    else:
        c = sqlite3.connect(dsn[len("sqlite:///"):], isolation_level=None)
        assert not [r for r in c.execute("PRAGMA index_list(egress_log)") if r[1].endswith("_prev")]
        c.execute(insert, forged)
        c.close()
    store = open_store(dsn)
    result = verify(store)
    store.close()
    assert not result.ok and result.first_bad_seq == 11, result


def _writer(dsn, n_threads, per_thread):
    store = open_store(dsn)
    lock = threading.Lock()

    def work():
        for i in range(per_thread):
            with lock:  # one connection per process, shared by its threads
                store.append(make_events(1 + i % 3))

    threads = [threading.Thread(target=work) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.close()


def run_in_processes(target, arg_tuples) -> None:
    """``target(*args)`` in one spawned process per tuple, all at once; each must exit 0."""
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=target, args=args) for args in arg_tuples]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0


def assert_gapless_and_intact(dsn, expected: int) -> None:
    store = open_store(dsn)
    try:
        assert store.count() == expected and store.max_seq() == expected and store.min_seq() == 1
        assert verify(store).ok
    finally:
        store.close()


def test_four_processes_four_threads_gapless(any_dsn):
    open_store(any_dsn).close()
    run_in_processes(_writer, [(any_dsn, 4, 15)] * 4)
    assert_gapless_and_intact(any_dsn, 4 * 4 * sum(1 + i % 3 for i in range(15)))


@pytest.mark.parametrize("size", [1, 40, 700])  # one row; the column path; the staged, chunked SQLite path
def test_text_that_is_not_utf8_does_not_make_a_batch_unwritable(any_dsn, size):
    """A lone surrogate -- what a file name or argument that is not UTF-8 decodes to -- is escaped
    (backslashreplace); the batch, this row included, is written and verifies.  It used to fail the
    whole batch with UnicodeEncodeError, every time the sink retried it: every event of the process lost."""
    store = open_store(any_dsn)
    events = [internal_event("heartbeat", detail=str(i)) for i in range(size)]
    poisoned = NetEvent.from_dict({**events[size // 2].as_dict(), "call_site": "/srv/\udcffapp.py:3 in f",
                                   "req_headers": ["x-\udcfe: ***"], "host": "h\udcff.example"})
    events[size // 2] = poisoned
    rows = store.append(events)
    assert [r.chain_seq for r in rows] == list(range(1, size + 1))
    stored = store.get(size // 2 + 1).event
    assert stored.call_site == "/srv/\\udcffapp.py:3 in f" and stored.req_headers == ("x-\\udcfe: ***",)
    assert stored.host == "h\\udcff.example" and rows[size // 2].event == stored
    assert size == 1 or store.get(1).event == events[0]  # the other rows are as given
    assert verify(store).ok
    store.close()


def test_a_nul_in_text_does_not_make_a_postgresql_batch_unwritable(any_dsn):
    """PostgreSQL text cannot hold NUL (psycopg.DataError for the whole batch, retried forever by the
    sink: nothing written after it). Such a value is escaped as \\x00 there; SQLite stores it as is."""
    store = open_store(any_dsn)
    events = [internal_event("heartbeat", detail=str(i)) for i in range(30)]
    events[7] = NetEvent.from_dict({**events[7].as_dict(), "direction": "inbound", "method": "G\x00T"})
    assert [r.chain_seq for r in store.append(events)] == list(range(1, 31))
    assert store.get(8).event.method == ("G\\x00T" if store.kind == "postgres" else "G\x00T")
    assert store.get(9).event == events[8] and verify(store).ok
    store.close()
