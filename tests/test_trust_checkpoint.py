"""Signed checkpoints on SQLite and PostgreSQL: format, witness file, elected signer, and the
tampering a hash chain alone cannot see (tail truncation, full rewrite with recomputed hashes),
plus a deleted checkpoint and replayed old ones — each caught."""

from __future__ import annotations

import json
import threading

import pytest
from click.testing import CliRunner

from mit_network_audit.cli import main
from mit_network_audit.journal import checkpoint as ckpt
from mit_network_audit.journal import open_store
from mit_network_audit.journal.merkle import root_of
from mit_network_audit.journal.verify import verify
from trust_support import attacker, events, key_env, trust_dsn, trust_pg  # noqa: F401  (fixtures)


def _alarms(store, **kw) -> dict[str, str]:
    return {c["name"]: c["message"] for c in ckpt.verify_trust(store, **kw) if not c["ok"]}


def _journal(dsn, n1=40, n2=20):
    store = open_store(dsn)
    store.append(events(n1))
    first = ckpt.make_checkpoint(store)
    store.append(events(n2))
    second = ckpt.make_checkpoint(store)
    return store, first, second


def test_checkpoint_note_db_and_witness(trust_dsn, key_env):  # noqa: F811
    store, first, second = _journal(trust_dsn)
    assert (first.size, second.size, second.prev_size) == (40, 60, 40)
    lines = second.note.split("\n")
    assert lines[0] == ckpt.origin_of(store) and lines[1] == "60" and lines[3].startswith("head ")
    assert lines[5] == "" and lines[6].startswith("— auditor.example/erp-1 ")
    leaves = [bytes.fromhex(r.leaf_hash) for r in store.iter_range(1, 60)]
    assert second.root == root_of(leaves) and second.head.hex() == store.get(60).row_hash
    assert ckpt.make_checkpoint(store) == second  # nothing new: no new signature
    witness = ckpt.read_witness(ckpt.default_witness_path(store))
    assert [ckpt.open_note(r["note"], key_env.verifier).size for r in witness] == [40, 60]
    assert witness[1]["vkey"] == key_env.verifier.vkey
    assert [r[0] for r in store.execute_raw("SELECT tree_size FROM mna_checkpoints ORDER BY tree_size")] == [40, 60]
    checks = ckpt.verify_trust(store)
    assert all(c["ok"] for c in checks), checks
    assert verify(store).ok
    store.close()


def test_checkpoint_tables_are_append_only(trust_dsn, key_env):  # noqa: F811
    store, _, _ = _journal(trust_dsn)
    for sql in ("DELETE FROM mna_checkpoints", "UPDATE mna_checkpoints SET note = 'x'",
                "DELETE FROM mna_merkle_nodes"):
        with pytest.raises(Exception, match="append-only"):
            store.execute_raw(sql)
    store.close()


def _truncate_tail(dsn, store):
    conn, p = attacker(dsn)
    conn.execute(f"DELETE FROM egress_log WHERE chain_seq > {p}", (45,))
    conn.close()


def _rewrite_everything(dsn, store):
    """Replace every row (a host changed) with a *valid* new chain, and remove every trace in the DB."""
    rows = [r.event for r in store.iter_range(1, 60)]
    conn, _ = attacker(dsn)
    for table in ("egress_log", "mna_checkpoints", "mna_merkle_state", "mna_merkle_nodes"):
        conn.execute(f"DELETE FROM {table}")
    conn.close()
    fresh = open_store(dsn)
    fresh.append([r.__class__(**{**r.as_dict(), "host": "innocent.example", "query_keys": (), "req_headers": (),
                                 "resp_headers": (), "via": ()}) for r in rows])
    fresh.close()


def _delete_checkpoint(dsn, store):
    conn, p = attacker(dsn)
    conn.execute(f"DELETE FROM mna_checkpoints WHERE tree_size = {p}", (60,))
    conn.close()


def _rollback_database(dsn, store):
    """Restore an 'older backup': the journal and its checkpoints as they were at size 40."""
    conn, p = attacker(dsn)
    conn.execute(f"DELETE FROM egress_log WHERE chain_seq > {p}", (40,))
    conn.execute(f"DELETE FROM mna_checkpoints WHERE tree_size > {p}", (40,))
    conn.execute("DELETE FROM mna_merkle_state")
    conn.close()


def _replay_into_witness(dsn, store):
    path = ckpt.default_witness_path(store)
    records = ckpt.read_witness(path)
    with open(path, "a") as fh:
        fh.write(json.dumps(records[0]) + "\n")


TAMPERS = {
    "truncate_tail": (_truncate_tail, {"journal vs checkpoint": "tail truncated"}),
    "rewrite_everything": (_rewrite_everything, {"journal vs checkpoint": "rewritten",
                                                 "checkpoints in database": "deleted from the database"}),
    "delete_checkpoint": (_delete_checkpoint, {"checkpoints in database": "deleted from the database"}),
    "rollback_database": (_rollback_database, {"journal vs checkpoint": "tail truncated",
                                               "checkpoints in database": "deleted from the database"}),
    "replay_old_checkpoint": (_replay_into_witness, {"checkpoint consistency": "replays an older checkpoint"}),
}


@pytest.mark.parametrize("kind", sorted(TAMPERS))
def test_tampering_is_caught(kind, trust_dsn, key_env):  # noqa: F811
    store, _, _ = _journal(trust_dsn)
    store.close()
    tamper, expected = TAMPERS[kind]
    tamper(trust_dsn, open_store(trust_dsn))
    store = open_store(trust_dsn)
    if kind in ("truncate_tail", "rewrite_everything", "rollback_database"):
        assert verify(store).ok  # the hash chain alone is fooled ...
    alarms = _alarms(store)  # ... the checkpoints are not
    for name, words in expected.items():
        assert name in alarms and words in alarms[name], (kind, alarms)
    if kind != "delete_checkpoint" and kind != "replay_old_checkpoint":
        with pytest.raises(ckpt.TamperDetected):  # and nobody can bless the damage with a new signature
            store.append(events(1))
            ckpt.make_checkpoint(store)
    # `mit-network-audit verify` reports it with exit status 1
    result = CliRunner().invoke(main, ["verify", "--db", trust_dsn])
    assert result.exit_code == 1, result.output
    store.close()


def test_witness_is_the_source_of_truth_when_the_db_copies_vanish(trust_dsn, key_env):  # noqa: F811
    store, _, _ = _journal(trust_dsn)
    conn, _ = attacker(trust_dsn)
    conn.execute("DELETE FROM mna_checkpoints")
    conn.close()
    alarms = _alarms(store)
    assert "deleted from the database" in alarms["checkpoints in database"]
    assert "journal vs checkpoint" not in alarms  # the journal itself still matches the witnessed root
    store.close()


def test_a_different_key_does_not_verify(trust_dsn, key_env, tmp_path):  # noqa: F811
    store, _, _ = _journal(trust_dsn)
    from mit_network_audit.journal.keys import SigningKey

    stranger = SigningKey.generate("auditor.example/erp-1")  # same name, different key
    alarms = _alarms(store, verifier=stranger.verifier)
    assert "not signed by the trusted key" in alarms["checkpoint signatures"]
    store.close()


def test_without_any_key_verify_pins_the_witness_key_and_says_so(trust_dsn, key_env, monkeypatch, tmp_path):  # noqa: F811
    store, _, _ = _journal(trust_dsn)
    witness = ckpt.default_witness_path(store)
    monkeypatch.setenv("MNA_SIGNING_KEY_FILE", str(tmp_path / "nowhere" / "k"))
    checks = ckpt.verify_trust(store, witness_path=witness)
    assert all(c["ok"] for c in checks) and "pinned from the witness" in checks[0]["message"]
    empty = ckpt.verify_trust(store, witness_path=str(tmp_path / "none.jsonl"))
    assert empty[0]["level"] == "review" and "no signing or public key" in empty[0]["message"]
    store.close()


def test_one_elected_signer(trust_dsn, key_env):  # noqa: F811
    store = open_store(trust_dsn)
    store.append(events(5))
    other = open_store(trust_dsn)
    ckpt.ensure_tables(other)
    with ckpt.signer_lock(other) as elected:
        assert elected
        assert ckpt.make_checkpoint(store) is None  # someone else signs right now
    assert ckpt.make_checkpoint(store).size == 5
    other.close()
    store.close()


def test_concurrent_signers_never_fork(trust_dsn, key_env):  # noqa: F811
    store = open_store(trust_dsn)
    store.append(events(3))
    results, errors = [], []

    def sign():
        s = open_store(trust_dsn)
        try:
            for _ in range(5):
                s.append(events(2))
                cp = ckpt.make_checkpoint(s)
                if cp is not None:
                    results.append(cp.size)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            s.close()

    threads = [threading.Thread(target=sign) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results
    assert all(c["ok"] for c in ckpt.verify_trust(store)), ckpt.verify_trust(store)
    store.close()


def test_maybe_checkpoint_every_n_rows_or_t_seconds(trust_dsn, key_env):  # noqa: F811
    store = open_store(trust_dsn)
    store.append(events(5))
    assert ckpt.maybe_checkpoint(store, every_rows=10, every_seconds=3600).size == 5  # first one: time since 0
    store.append(events(5))
    assert ckpt.maybe_checkpoint(store, every_rows=10, every_seconds=3600) is None
    store.append(events(5))
    assert ckpt.maybe_checkpoint(store, every_rows=10, every_seconds=3600).size == 15
    store.append(events(1))
    assert ckpt.maybe_checkpoint(store, every_rows=10, every_seconds=0).size == 16
    store.close()


def test_checkpoint_cli(tmp_path, key_env):  # noqa: F811
    dsn = f"sqlite:///{tmp_path}/j.db"
    store = open_store(dsn)
    store.append(events(12))
    store.close()
    result = CliRunner().invoke(main, ["checkpoint", "--db", dsn])
    assert result.exit_code == 0 and "checkpoint: 12 rows" in result.output and "— auditor.example/erp-1" in result.output
    result = CliRunner().invoke(main, ["verify-checkpoints", "--db", dsn, "--format", "json"])
    assert result.exit_code == 0 and json.loads(result.output)["ok"]


def test_malformed_notes_are_rejected(key_env):  # noqa: F811
    body = ckpt.format_body("mit-network-audit/journal/x", 3, b"\x01" * 32, b"\x02" * 32, 1)
    note = ckpt.sign_note(body, key_env)
    assert ckpt.open_note(note, key_env.verifier).size == 3
    for bad in (note.replace("\n3\n", "\n03\n"), note.replace("\n\n", "\n"), note[:-1],
                note.replace("time 1", "time x"), note.replace("head ", "heads "), note + "extra\n",
                note.replace("— ", "- ")):
        with pytest.raises(ckpt.NoteError):
            ckpt.open_note(bad, key_env.verifier)


def test_empty_journal_is_not_signed(tmp_path, key_env):  # noqa: F811
    dsn = f"sqlite:///{tmp_path}/j.db"
    store = open_store(dsn)
    with pytest.raises(ckpt.EmptyJournal):
        ckpt.make_checkpoint(store)
    assert ckpt.maybe_checkpoint(store, every_rows=1, every_seconds=0) is None
    result = CliRunner().invoke(main, ["checkpoint", "--db", dsn])
    assert result.exit_code == 2 and "empty" in result.output
    assert all(c["ok"] for c in ckpt.verify_trust(store))
    store.close()


def test_cli_signing_where_a_file_cannot_be_written_is_one_line_and_exit_2(tmp_path, key_env):  # noqa: F811
    """The signer lock beside the journal or the witness file cannot be made (a read-only directory;
    here a directory in the way, which root cannot write either): one line naming it, exit 2."""
    from trust_support import old_events

    dsn = f"sqlite:///{tmp_path}/j.db"
    store = open_store(dsn)
    store.append(old_events(3))
    store.append(events(3))
    store.close()
    runner = CliRunner()
    (tmp_path / "witness-dir").mkdir()
    commands = (["checkpoint"], ["vacuum", "--yes", "--older-than", "30d"], ["export", "--out", str(tmp_path / "b")])
    for command in commands:
        result = runner.invoke(main, [*command, "--db", dsn, "--witness", str(tmp_path / "witness-dir")])
        assert result.exit_code == 2 and "witness-dir" in result.output, (command, result.output)
        assert not isinstance(result.exception, OSError), result.output
    (tmp_path / "j.db.signer.lock").unlink(missing_ok=True)  # left by the runs above
    (tmp_path / "j.db.signer.lock").mkdir()
    for command in commands:
        result = runner.invoke(main, [*command, "--db", dsn])
        assert result.exit_code == 2 and "j.db.signer.lock" in result.output, (command, result.output)
        assert "cannot write the bundle" not in result.output  # the bundle is not what failed
    assert open_store(dsn).min_seq() == 1  # the vacuum deleted nothing


def test_cli_checkpoint_into_a_closed_pipe_does_not_say_it_could_not_sign(tmp_path, key_env):  # noqa: F811
    """`checkpoint | head -1`: the checkpoint is signed, the rest of the note cannot be printed; that
    is a closed pipe (click's quiet exit), not 'cannot sign a checkpoint: Broken pipe'."""
    import os
    import subprocess
    import sys

    dsn = f"sqlite:///{tmp_path}/j.db"
    open_store(dsn).append(events(3))
    paths = [os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    read, write = os.pipe()
    os.close(read)  # nobody will read what it prints
    done = subprocess.run([sys.executable, "-m", "mit_network_audit.cli", "checkpoint", "--db", dsn], stdout=write,
                          stderr=subprocess.PIPE, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(paths)})
    os.close(write)
    assert "cannot sign" not in done.stderr, done.stderr
    assert open_store(dsn).execute_raw("SELECT count(*) FROM mna_checkpoints")[0][0] == 1
