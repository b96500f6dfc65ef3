"""Any column of any row changed by direct SQL (triggers dropped first) is caught by verify at that row.

One journal per backend is built once; each hypothesis example changes one stored value, runs verify,
then puts the original value back (and checks the journal verifies again), so hundreds of cases stay
fast.  Deletes, inserts and swaps are covered in test_journal_store.py.
"""

import json
import sqlite3

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mit_network_audit.interceptor.event import BOOL_FIELDS, FIELD_NAMES, INT_FIELDS, LIST_FIELDS, NetEvent
from mit_network_audit.journal import open_store
from mit_network_audit.journal.verify import verify
from pg_support import scratch_database

N = 12
TAMPERABLE = (*FIELD_NAMES, "leaf_hash", "prev_hash", "row_hash")


def sample(i):
    return NetEvent(event_id=f"{i:032x}", logged_at_us=1_700_000_000_000_000 + i, started_at_us=1_700_000_000_000_000,
                    duration_us=10 + i, direction="outbound", channel="requests", protocol="https", method="POST",
                    host="api.acme.example", port=443, path="/v1/licence", query_keys=("db",), dest_ip="127.0.0.1",
                    dest_port=443, src_ip="127.0.0.1", src_port=40000 + i, status=200, req_bytes=100 + i,
                    resp_bytes=50, req_headers=("content-type: application/json",), resp_headers=(),
                    fingerprint="ab" * 32, addon="acme_connector", call_site="acme/x.py:1 in f", via=("requests",),
                    pid=1, hostname="erp", vendor_bound=i % 2 == 0, component="acme", dest_class="vendor",
                    detail=None if i % 3 else "é☃")


class Journal:
    def __init__(self, dsn):
        self.dsn = dsn
        self.pg = dsn.startswith("postgresql")
        store = open_store(dsn)
        store.append([sample(i) for i in range(N)])
        store.close()
        if self.pg:
            self.conn = psycopg.connect(dsn, autocommit=True)
            self.conn.execute("ALTER TABLE egress_log DISABLE TRIGGER ALL")  # what an attacker with DDL rights does
        else:
            self.conn = sqlite3.connect(dsn[len("sqlite:///"):], isolation_level=None)
            self.conn.execute("DROP TRIGGER egress_log_no_update")
        self.p = "%s" if self.pg else "?"
        self.store = open_store(dsn)

    def read(self, column, seq):
        return self.conn.execute(f"SELECT {column} FROM egress_log WHERE chain_seq = {self.p}", (seq,)).fetchone()[0]

    def write(self, column, seq, value):
        self.conn.execute(f"UPDATE egress_log SET {column} = {self.p} WHERE chain_seq = {self.p}", (value, seq))


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def journal(request, tmp_path_factory):
    if request.param == "sqlite":
        yield Journal(f"sqlite:///{tmp_path_factory.mktemp('tamper')}/j.db")
        return
    with scratch_database("mna_journal") as dsn:
        if dsn is None:
            pytest.skip("PostgreSQL (or psycopg) not available on 127.0.0.1:5432")
        j = Journal(dsn)
        yield j
        j.store.close()
        j.conn.close()


def altered(column, old, data):
    """A different value of the same stored type."""
    if column in BOOL_FIELDS:
        return not old if isinstance(old, bool) else 1 - old
    if column in INT_FIELDS:
        return (old or 0) + data.draw(st.integers(1, 2**40), label="delta")
    if column in LIST_FIELDS:
        new = json.dumps(data.draw(st.lists(st.text(max_size=8), max_size=3), label="list"))
        return new if new != old else json.dumps(["tampered"])
    if column in ("leaf_hash", "prev_hash", "row_hash"):
        i = data.draw(st.integers(0, 63), label="hex position")
        return old[:i] + ("0" if old[i] != "0" else "1") + old[i + 1:]
    suffix = data.draw(st.text(max_size=8), label="suffix").replace("\x00", "")  # PostgreSQL text has no NUL
    return (old or "") + (suffix or "x")


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_any_field_of_any_row_is_caught_at_that_row(journal, data):
    seq = data.draw(st.integers(1, N), label="seq")
    column = data.draw(st.sampled_from(TAMPERABLE), label="column")
    old = journal.read(column, seq)
    journal.write(column, seq, altered(column, old, data))
    try:
        result = verify(journal.store)
        assert not result.ok, (column, seq)
        assert result.first_bad_seq == seq, (column, seq, result)
        assert result.problem in ("hash_mismatch", "link_broken")
    finally:
        journal.write(column, seq, old)
    assert verify(journal.store).ok


def test_verify_reads_in_small_batches_and_reports_the_same_first_bad_row(tmp_path, monkeypatch):
    """Ranges are read and checked READ_ROWS at a time, intact batches by the column-wise check:
    a tampered row in any batch (first, middle, a batch edge, last) is still the first bad row,
    with the same problem as the row-by-row check."""
    from mit_network_audit.journal import verify as verify_module

    monkeypatch.setattr(verify_module, "READ_ROWS", 7)
    store = open_store(str(tmp_path / "j.db"))
    store.append([sample(i) for i in range(40)])
    assert verify_module.verify(store).ok
    conn = store.conn
    conn.execute("DROP TRIGGER egress_log_no_update")
    for seq in (1, 7, 8, 23, 40):
        conn.execute("UPDATE egress_log SET path = path || 'x' WHERE chain_seq = ?", (seq,))
        result = verify_module.verify(store)
        assert (result.ok, result.first_bad_seq, result.problem, result.rows_checked) == (
            False, seq, "hash_mismatch", seq - 1)
        conn.execute("UPDATE egress_log SET path = substr(path, 1, length(path) - 1) WHERE chain_seq = ?", (seq,))
        assert verify_module.verify(store).ok
    for seq in (8, 15, 40):  # a link: the row's prev_hash no longer names the row before it
        conn.execute("UPDATE egress_log SET prev_hash = ? WHERE chain_seq = ?", ("ab" * 32, seq))
        result = verify_module.verify(store)
        assert (result.ok, result.first_bad_seq, result.problem) == (False, seq, "link_broken")
        good = conn.execute("SELECT row_hash FROM egress_log WHERE chain_seq = ?", (seq - 1,)).fetchone()[0]
        conn.execute("UPDATE egress_log SET prev_hash = ? WHERE chain_seq = ?", (good, seq))
    assert verify_module.verify(store).ok
    store.close()
