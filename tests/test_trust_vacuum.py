"""The retention vacuum: anchor, checkpoint, guarded delete; verify, export and prove keep working
across any number of vacuums, and every other delete is refused (or, past the triggers, caught)."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner

from mit_network_audit.cli import main
from mit_network_audit.journal import checkpoint as ckpt
from mit_network_audit.journal import open_store
from mit_network_audit.journal.export import BundleError, export_bundle, prove, verify_bundle, verify_proof
from mit_network_audit.journal.keys import KeyProblem
from mit_network_audit.journal.vacuum import parse_age, vacuum
from mit_network_audit.journal.verify import verify
from test_trust_export import standalone_ok  # noqa: E402  (the independent verifier)
from trust_support import attacker, events, key_env, old_events, trust_dsn, trust_pg  # noqa: F401  (fixtures)


def _all_ok(store):
    checks = ckpt.verify_trust(store)
    assert all(c["ok"] for c in checks), checks
    assert verify(store).ok
    return {c["name"]: c["message"] for c in checks}


def test_vacuum_then_verify_export_prove(trust_dsn, key_env, tmp_path):  # noqa: F811
    store = open_store(trust_dsn)
    store.append(old_events(300))
    ckpt.make_checkpoint(store)
    store.append(old_events(37))
    store.append(events(50))
    res = vacuum(store, older_than_s=90 * 86400)
    assert (res.removed, res.cut_seq, res.anchor_seq, res.checkpoint_size) == (337, 338, 388, 388)
    assert store.min_seq() == 338 and store.count() == 51
    anchor = json.loads(store.get(388).event.detail)
    assert anchor["cut_seq"] == 338 and anchor["left_edge_size"] == 337 and len(anchor["left_edge"]) == 4
    assert store.get(388).event.method == "anchor" and store.get(388).event.direction == "internal"
    messages = _all_ok(store)
    assert "rows 1..337 removed by the retention vacuum" in messages["retention anchor"]
    export_bundle(store, str(tmp_path / "b"))
    assert verify_bundle(str(tmp_path / "b"), key_env.verifier.vkey).ok
    assert standalone_ok(str(tmp_path / "b"), key_env.verifier.vkey)
    assert verify_proof(prove(store, 338), key_env.verifier) and verify_proof(prove(store, 388), key_env.verifier)
    with pytest.raises(BundleError, match="removed"):
        prove(store, 12)
    store.close()


def test_only_the_vacuum_may_delete(trust_dsn, key_env):  # noqa: F811
    store = open_store(trust_dsn)
    store.append(old_events(20))
    store.append(events(10))
    vacuum(store, older_than_s=30 * 86400)
    low = store.min_seq()
    for sql in (f"DELETE FROM egress_log WHERE chain_seq = {low}", "DELETE FROM egress_log",
                f"DELETE FROM egress_log WHERE chain_seq < {low + 5}"):
        with pytest.raises(Exception, match="append-only|DELETE refused"):
            store.execute_raw(sql)
    assert store.min_seq() == low and store.count() == 11
    store.close()


def test_rows_removed_past_the_triggers_are_caught(trust_dsn, key_env):  # noqa: F811
    store = open_store(trust_dsn)
    store.append(old_events(20))
    store.append(events(10))
    vacuum(store, older_than_s=30 * 86400)
    store.close()
    conn, p = attacker(trust_dsn)
    conn.execute(f"DELETE FROM egress_log WHERE chain_seq < {p}", (25,))
    conn.close()
    store = open_store(trust_dsn)
    assert verify(store).ok  # the chain from the oldest kept row still links ...
    alarms = {c["name"]: c["message"] for c in ckpt.verify_trust(store) if not c["ok"]}
    assert "journal vs checkpoint" in alarms or "retention anchor" in alarms, alarms  # ... the anchor does not
    assert "retention anchor" in alarms
    store.close()


def test_many_vacuums(trust_dsn, key_env, tmp_path):  # noqa: F811
    store = open_store(trust_dsn)
    now = time.time()
    for round_ in range(4):
        later = now + (round_ + 1) * 100 * 86400  # simulated time: each round is 100 days on
        store.append(events(17 + round_ * 13))  # logged now: older than the window by the vacuum
        if round_ % 2:
            ckpt.make_checkpoint(store)
        store.append(events(5, logged_at_us=int((later - 86400) * 1e6)))  # young at that time: kept
        res = vacuum(store, older_than_s=30 * 86400, now_s=later)
        assert res.removed > 0 and store.count() == 6, res
        _all_ok(store)
        out = str(tmp_path / f"b{round_}.zip")
        export_bundle(store, out)
        assert verify_bundle(out, key_env.verifier.vkey).ok and standalone_ok(out, key_env.verifier.vkey)
        assert verify_proof(prove(store, store.min_seq()), key_env.verifier)
        assert verify_proof(prove(store, ckpt.max_seq(store)), key_env.verifier)
    assert len(ckpt.read_witness(ckpt.default_witness_path(store))) >= 5
    store.close()


def test_vacuum_needs_the_key_and_touches_nothing_without_it(tmp_path, key_env, monkeypatch):  # noqa: F811
    store = open_store(f"sqlite:///{tmp_path}/j.db")
    store.append(old_events(10))
    monkeypatch.setenv("MNA_SIGNING_KEY_FILE", str(tmp_path / "absent"))
    with pytest.raises(KeyProblem):
        vacuum(store, older_than_s=86400)
    assert store.count() == 10 and store.min_seq() == 1
    store.close()


def test_nothing_to_remove(tmp_path, key_env):  # noqa: F811
    store = open_store(f"sqlite:///{tmp_path}/j.db")
    store.append(events(10))
    res = vacuum(store, older_than_s=86400)
    assert res.removed == 0 and store.count() == 10
    store.close()


def test_vacuum_cli(tmp_path, key_env):  # noqa: F811
    dsn = f"sqlite:///{tmp_path}/j.db"
    store = open_store(dsn)
    store.append(old_events(40))
    store.append(events(3))
    store.close()
    result = CliRunner().invoke(main, ["vacuum", "--db", dsn, "--older-than", "90d", "--yes"])
    assert result.exit_code == 0 and "removed rows 1..40" in result.output, result.output
    result = CliRunner().invoke(main, ["verify", "--db", dsn])
    assert result.exit_code == 0 and "retention anchor" in result.output, result.output
    assert parse_age("2w") == 14 * 86400
    with pytest.raises(ValueError):
        parse_age("ninety days")


def test_postgres_delete_that_sets_the_vacuum_setting_itself_is_caught(trust_pg, key_env):  # noqa: F811
    """The journal's PostgreSQL guard trusts ``mna.vacuum_cut``, which any session may set (see the
    change request in the trust-anchor report); the anchor check still catches such a delete."""
    import psycopg

    store = open_store(trust_pg)
    store.append(events(30))
    ckpt.make_checkpoint(store)
    with psycopg.connect(trust_pg) as conn:  # a transaction, like the vacuum's
        conn.execute("SELECT set_config('mna.vacuum_cut', '11', true)")
        conn.execute("DELETE FROM egress_log WHERE chain_seq < 11")
    assert store.min_seq() == 11
    alarms = {c["name"]: c["message"] for c in ckpt.verify_trust(store) if not c["ok"]}
    assert "no valid retention anchor" in alarms["retention anchor"], alarms
    store.close()


def test_vacuum_cli_odd_windows(tmp_path, key_env):  # noqa: F811
    dsn = f"sqlite:///{tmp_path}/j.db"
    store = open_store(dsn)
    store.append(old_events(5))
    store.append(events(3))
    store.close()
    runner = CliRunner()
    for window in ("0d", "0s", "\u00b2d"):  # nothing kept at all; a superscript two
        result = runner.invoke(main, ["vacuum", "--db", dsn, "--older-than", window, "--yes"])
        assert result.exit_code == 2 and result.output.startswith("error: "), (window, result.output)
    assert "0 would remove every row" in runner.invoke(main, ["vacuum", "--db", dsn, "--older-than", "0d"]).output
    for window in ("99999999999d", "9" * 40 + "w"):  # reaching before 1970 (past 64-bit microseconds)
        result = runner.invoke(main, ["vacuum", "--db", dsn, "--older-than", window, "--yes"])
        assert result.exit_code == 0 and "nothing older than the retention window" in result.output, result.output
    assert open_store(dsn).min_seq() == 1  # nothing removed by any of them


def test_rows_deleted_from_the_start_are_caught_without_any_key(trust_dsn, tmp_path, monkeypatch):  # noqa: F811
    """The default install has no signing key yet: deleting the oldest rows (the chain accepts a later
    first row when a retention anchor explains it) must still fail verify and alarm the report. The
    anchor check ran only when a key was configured: verify said 'chain intact', the report all clear."""
    for var in ("MNA_SIGNING_KEY", "MNA_PUBLIC_KEY", "MNA_WITNESS_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MNA_SIGNING_KEY_FILE", str(tmp_path / "no-key-here" / "signing.key"))
    store = open_store(trust_dsn)
    store.append(events(10))
    ckpt.ensure_tables(store)  # as the first `verify` or `report` makes them
    store.close()
    conn, p = attacker(trust_dsn)
    conn.execute(f"DELETE FROM egress_log WHERE chain_seq <= {p}", (3,))
    conn.close()
    runner = CliRunner()
    result = runner.invoke(main, ["verify", "--db", trust_dsn])
    assert result.exit_code == 1 and "rows below chain_seq 4 are gone" in result.output, result.output
    result = runner.invoke(main, ["report", "--db", trust_dsn, "--format", "json"])
    assert result.exit_code == 2 and json.loads(result.output)["verdict"] == "alarm", result.output


def test_a_vacuumed_journal_verifies_on_a_machine_without_the_key(tmp_path, key_env, monkeypatch):  # noqa: F811
    dsn = f"sqlite:///{tmp_path}/j.db"
    store = open_store(dsn)
    store.append(old_events(20))
    store.append(events(3))
    vacuum(store, older_than_s=30 * 86400)
    store.close()
    monkeypatch.setenv("MNA_SIGNING_KEY_FILE", str(tmp_path / "no-key-here" / "signing.key"))
    result = CliRunner().invoke(main, ["verify", "--db", dsn])
    assert result.exit_code == 0 and "rows 1..20 removed by the retention vacuum" in result.output, result.output
