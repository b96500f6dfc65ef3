"""PostgresStore(create=False) runs no DDL; migrate_on(cursor) brings a schema up inside the caller's
transaction; verify's range workers find the same first bad row as the serial path."""

import psycopg
import pytest

from mit_network_audit.interceptor.event import internal_event
from mit_network_audit.journal import open_store, verify
from mit_network_audit.journal.postgres import PostgresStore, migrate_on, schema_version


def _tables(dsn):
    with psycopg.connect(dsn) as c:
        return {r[0] for r in c.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


def test_create_false_runs_no_ddl(pg_dsn):
    with pytest.raises(FileNotFoundError):
        PostgresStore(pg_dsn, create=False)
    assert _tables(pg_dsn) == set()
    with pytest.raises(FileNotFoundError):
        open_store(pg_dsn, create=False)
    assert _tables(pg_dsn) == set()


def test_migrate_on_cursor_then_open_without_create(pg_dsn):
    with psycopg.connect(pg_dsn) as conn, conn.transaction(), conn.cursor() as cur:
        assert schema_version(cur) is None
        migrate_on(cur)
        assert schema_version(cur) == 1
        migrate_on(cur)  # idempotent
    store = PostgresStore(pg_dsn, create=False)
    try:
        store.append([internal_event("heartbeat", detail=str(i)) for i in range(5)])
        assert store.count() == 5
        assert verify.verify(store).ok
    finally:
        store.close()


@pytest.mark.parametrize("bad_seq", [1, 7, 8, 13, 20])
def test_range_verify_matches_serial(tmp_path, monkeypatch, bad_seq):
    """Ranges of 7 rows (so the boundaries fall inside the journal), tamper with one row."""
    store = open_store(f"sqlite:///{tmp_path}/j.db")
    store.append([internal_event("heartbeat", detail=str(i)) for i in range(20)])
    store.execute_raw("DROP TRIGGER egress_log_no_update")
    store.execute_raw("UPDATE egress_log SET detail = 'x' WHERE chain_seq = ?", (bad_seq,))
    whole = verify.verify(store)
    monkeypatch.setattr(verify, "CHUNK", 7)
    ranged = verify.verify(store)
    monkeypatch.setattr(verify, "PARALLEL_MIN_ROWS", 1)
    parallel = verify.verify(store, workers=2)
    assert not whole.ok and whole.first_bad_seq == bad_seq and whole.problem == "hash_mismatch"
    assert ranged.as_dict() == whole.as_dict() == parallel.as_dict()
    store.close()


@pytest.mark.parametrize("seq", [7, 8, 14, 20])
def test_range_verify_delete_and_link(tmp_path, monkeypatch, seq):
    store = open_store(f"sqlite:///{tmp_path}/j.db")
    store.append([internal_event("heartbeat", detail=str(i)) for i in range(20)])
    store.execute_raw("DROP TRIGGER egress_log_no_delete")
    store.execute_raw("DROP TRIGGER egress_log_no_update")
    results = []
    for chunk in (20_000, 7):
        monkeypatch.setattr(verify, "CHUNK", chunk)
        results.append(verify.verify(store).as_dict())
    assert results[0] == results[1] and results[0]["ok"]
    store.execute_raw("UPDATE egress_log SET prev_hash = ? WHERE chain_seq = ?", ("11" * 32, seq))
    linked = []
    for chunk in (20_000, 7):
        monkeypatch.setattr(verify, "CHUNK", chunk)
        linked.append(verify.verify(store).as_dict())
    assert linked[0] == linked[1] and not linked[0]["ok"] and linked[0]["first_bad_seq"] == seq
    store.execute_raw("DELETE FROM egress_log WHERE chain_seq = ?", (seq,))
    gapped = []
    for chunk in (20_000, 7):
        monkeypatch.setattr(verify, "CHUNK", chunk)
        gapped.append(verify.verify(store).as_dict())
    assert gapped[0] == gapped[1]
    if seq < 20:  # deleting the newest row is a tail truncation: only the signed checkpoints see it
        assert not gapped[0]["ok"] and gapped[0]["problem"] == "gap" and gapped[0]["first_bad_seq"] == seq
    store.close()
