"""Settings stored with the journal (journal/settings.py): round trip on SQLite and PostgreSQL, every
change journaled (old -> new) before it is stored and the chain still verifies, bad keys and values
refused with nothing written, the CLI, the consumers (vacuum, checkpoint/rollup loops), the Trust
Report, and the in-process live poller (runner/live_settings.py) including a database that goes away."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest
from click.testing import CliRunner

from mit_network_audit.cli import main
from mit_network_audit.interceptor import capture
from mit_network_audit.journal import forensic, open_store
from mit_network_audit.journal import settings as S
from mit_network_audit.journal.verify import verify
from mit_network_audit.report.catalogue import load_catalogue
from mit_network_audit.report.trust import build_report
from trust_support import events, key_env, old_events  # noqa: F401  (fixtures)

CLI = [sys.executable, "-m", "mit_network_audit.cli"]


def settings_rows(store) -> list[dict]:
    return [json.loads(r.event.detail) for r in store.rows(limit=1000) if r.event.method == "settings"]


def test_defaults_cover_every_key_and_forensic_defaults_come_from_forensic(sqlite_dsn):
    store = open_store(sqlite_dsn)
    got = S.get_settings(store)
    assert list(got) == list(S.SETTINGS)
    assert {"capture.disabled_channels", "retention.days", "rollup.interval_s", "checkpoint.interval_s"} <= set(got)
    for key, default in forensic.DEFAULTS.items():
        assert got[key] == default and S.SETTINGS[key].default == default
    assert got["capture.disabled_channels"] == [] and got["retention.days"] == 90
    assert S.version(store) is None
    store.close()


def test_round_trip_journaled_and_chain_verifies(any_dsn):
    store = open_store(any_dsn)
    store.append(events(5))
    values = {
        "capture.disabled_channels": "smtp, socket",
        "retention.days": "180",
        "rollup.interval_s": "30",
        "checkpoint.interval_s": "600",
        "verify.interval_s": "120",
        "forensic.enabled": "on",
        "forensic.addons": "acme_connector,crm",
        "forensic.hosts": '["api.partner.example", "127.0.0.1"]',
        "forensic.max_bytes": "4096",
        "forensic.retention_days": "7",
    }
    versions = set()
    for key, raw in values.items():
        S.set_setting(store, key, raw, actor="olga")
        versions.add(S.version(store))
    assert len(versions) == len(values)  # every change replaces the version token
    got = S.get_settings(store)
    assert got == {
        "capture.disabled_channels": ["smtp", "socket"],
        "retention.days": 180,
        "rollup.interval_s": 30,
        "checkpoint.interval_s": 600,
        "verify.interval_s": 120,
        "forensic.enabled": True,
        "forensic.addons": ["acme_connector", "crm"],
        "forensic.hosts": ["api.partner.example", "127.0.0.1"],
        "forensic.max_bytes": 4096,
        "forensic.retention_days": 7,
    }
    # stored as canonical text under setting.<key> (what forensic.py's fallback and the Trust Report read)
    assert store.meta_get("setting.forensic.enabled") == "true"
    assert store.meta_get("setting.capture.disabled_channels") == "smtp,socket"
    # a second process (a new connection) reads the same
    other = open_store(any_dsn)
    assert S.get_settings(other) == got
    other.close()
    rows = settings_rows(store)[::-1]
    assert [(r["key"], r["actor"]) for r in rows] == [(k, "olga") for k in values]
    assert rows[0]["old"] == "" and rows[0]["new"] == "smtp,socket"
    assert rows[1]["old"] == "90" and rows[1]["new"] == "180"
    assert rows[4] == {"actor": "olga", "key": "verify.interval_s", "old": "900", "new": "120"}
    assert rows[5] == {"actor": "olga", "key": "forensic.enabled", "old": "false", "new": "true"}
    # change back: old -> new the other way round
    S.set_setting(store, "capture.disabled_channels", "", actor="olaf")
    last = settings_rows(store)[0]
    assert last == {"actor": "olaf", "key": "capture.disabled_channels", "old": "smtp,socket", "new": ""}
    assert S.get_settings(store)["capture.disabled_channels"] == []
    # the internal rows are ordinary chained rows
    internal = [r for r in store.rows(limit=100) if r.event.method == "settings"]
    assert all(r.event.direction == "internal" and r.event.channel == "audit" for r in internal)
    assert verify(store).ok
    store.close()


def test_journaled_before_stored(sqlite_dsn):
    """The row is appended first: when the journal refuses the append, the value is not stored."""
    store = open_store(sqlite_dsn)
    store.append(events(2))
    before = store.count()
    store.conn.execute("CREATE TRIGGER h_refuse BEFORE INSERT ON egress_log BEGIN SELECT RAISE(ABORT, 'full'); END")
    with pytest.raises(Exception, match="full"):
        S.set_setting(store, "retention.days", "5", actor="olga")
    assert store.meta_get("setting.retention.days") is None and S.version(store) is None
    store.conn.execute("DROP TRIGGER h_refuse")
    assert store.count() == before
    S.set_setting(store, "retention.days", "5", actor="olga")
    assert S.get_settings(store)["retention.days"] == 5 and store.count() == before + 1
    store.close()


@pytest.mark.parametrize(
    "key,raw,says",
    [
        ("no.such.key", "1", "unknown setting 'no.such.key'"),
        ("retention", "1", "did you mean retention.days"),
        ("retention.days", "ninety", "not a whole number"),
        ("retention.days", "0", "out of range"),
        ("retention.days", "true", "not a whole number"),
        ("capture.disabled_channels", "socket,telnet", "unknown channel(s) 'telnet'"),
        ("forensic.enabled", "maybe", "use true or false"),
        ("forensic.max_bytes", str(forensic.MAX_BYTES_CEILING + 1), "out of range"),
        ("forensic.hosts", "a b", "not a host or addon name"),
        ("forensic.hosts", "a\x00b", "control character"),
        ("forensic.hosts", "[1, 2", "not a JSON list"),
    ],
)
def test_bad_key_or_value_refused_nothing_written(any_dsn, key, raw, says):
    store = open_store(any_dsn)
    S.set_setting(store, "retention.days", "30", actor="olga")
    rows, version = store.count(), S.version(store)
    before = S.get_settings(store)
    with pytest.raises(S.SettingRefused, match=None) as refused:
        S.set_setting(store, key, raw, actor="mallory")
    assert says in str(refused.value)
    assert isinstance(refused.value, ValueError)
    # several at once: one bad value and nothing at all is written, not even the good ones
    with pytest.raises(S.SettingRefused):
        S.set_settings(store, {"rollup.interval_s": "10", key: raw}, actor="mallory")
    assert store.count() == rows and S.version(store) == version and S.get_settings(store) == before
    store.close()


def test_no_actor_or_no_change_writes_nothing(sqlite_dsn):
    store = open_store(sqlite_dsn)
    with pytest.raises(S.SettingRefused, match="actor"):
        S.set_setting(store, "retention.days", "5", actor=" ")
    assert S.set_settings(store, {"retention.days": "90"}, actor="olga") == []  # 90 is the default already
    S.set_setting(store, "capture.disabled_channels", "socket,smtp", actor="olga")
    assert S.set_settings(store, {"capture.disabled_channels": "smtp,socket"}, actor="olga") == []  # same set
    assert len(settings_rows(store)) == 1
    store.close()


def test_forensic_change_setting_goes_through_settings(sqlite_dsn):
    store = open_store(sqlite_dsn)
    forensic.change_setting(store, "forensic.hosts", "127.0.0.1", actor="olga")
    with pytest.raises(S.SettingRefused):
        forensic.change_setting(store, "forensic.max_bytes", "-1", actor="olga")
    assert forensic.current_settings(store)["forensic.hosts"] == ["127.0.0.1"]
    assert settings_rows(store) == [{"actor": "olga", "key": "forensic.hosts", "old": "", "new": "127.0.0.1"}]
    # a value written straight to the meta table (forensic.py's old fallback) is read too
    store.meta_set("setting.forensic.enabled", "true")
    assert S.get_settings(store)["forensic.enabled"] is True
    store.meta_set("setting.retention.days", "garbage")  # unreadable: the default, counted
    assert S.get_settings(store)["retention.days"] == 90
    store.close()


# -- CLI --------------------------------------------------------------------------------------------
def test_cli_get_set(tmp_path):
    dsn = f"sqlite:///{tmp_path}/j.db"
    open_store(dsn).close()

    def cli(*args):
        return subprocess.run([*CLI, "settings", *args, "--db", dsn], capture_output=True, text=True, timeout=60)

    helped = subprocess.run([*CLI, "settings", "set", "--help"], capture_output=True, text=True, timeout=60)
    for key in S.SETTINGS:
        assert key in helped.stdout
    text = cli("get")
    assert text.returncode == 0 and "capture.disabled_channels  (empty)  (default)" in text.stdout
    done = cli("set", "capture.disabled_channels=socket,smtp", "retention.days=14", "--actor", "olga")
    assert done.returncode == 0, done.stderr
    assert "capture.disabled_channels: (empty) -> smtp,socket" in done.stdout
    assert "retention.days: 90 -> 14" in done.stdout
    got = json.loads(cli("get", "--format", "json").stdout)
    assert got["capture.disabled_channels"] == ["smtp", "socket"] and got["retention.days"] == 14
    assert json.loads(cli("get", "retention.days", "--format", "json").stdout) == {"retention.days": 14}
    bad = cli("set", "retention.days=7", "capture.disabled_channels=telnet")
    assert bad.returncode == 1 and "unknown channel(s) 'telnet'" in bad.stderr and "nothing was changed" in bad.stderr
    assert json.loads(cli("get", "--format", "json").stdout)["retention.days"] == 14
    assert cli("set", "retention.days").returncode == 1  # not KEY=VALUE
    assert "unknown setting" in cli("get", "nope").stderr
    missing = subprocess.run([*CLI, "settings", "get", "--db", f"{tmp_path}/none.db"], capture_output=True,
                             text=True, timeout=60)
    assert missing.returncode == 2 and "no journal at" in missing.stderr
    unchanged = cli("set", "retention.days=14")
    assert unchanged.returncode == 0 and "retention.days: unchanged" in unchanged.stdout
    store = open_store(dsn)
    assert [(r["key"], r["actor"]) for r in settings_rows(store)] == [
        ("retention.days", "olga"), ("capture.disabled_channels", "olga")]
    assert verify(store).ok
    store.close()


# -- consumers --------------------------------------------------------------------------------------
def test_vacuum_uses_retention_days(tmp_path, key_env):  # noqa: F811
    dsn = f"sqlite:///{tmp_path}/j.db"
    store = open_store(dsn)
    store.append(old_events(20, days=10))
    store.append(old_events(15, days=3))
    store.append(events(3))
    S.set_setting(store, "retention.days", "5", actor="olga")
    store.close()
    result = CliRunner().invoke(main, ["vacuum", "--db", dsn, "--yes"])
    assert result.exit_code == 0 and "removed rows 1..20" in result.output, result.output
    store = open_store(dsn)
    assert store.min_seq() == 21 and verify(store).ok
    store.close()


def test_rollup_loop_uses_the_interval_setting(tmp_path):
    dsn = f"sqlite:///{tmp_path}/j.db"
    store = open_store(dsn)
    store.append(events(3))
    S.set_setting(store, "rollup.interval_s", "1", actor="olga")
    store.close()
    proc = subprocess.Popen([*CLI, "rollup", "--loop", "--db", dsn], stdout=subprocess.PIPE, text=True)
    try:
        assert "rolling up every 1 s (setting rollup.interval_s)" in proc.stdout.readline()
        assert "rolled up 4 rows" in proc.stdout.readline()
        store = open_store(dsn)
        store.append(events(2))
        store.close()
        started = time.monotonic()
        assert "rolled up 2 rows" in proc.stdout.readline()
        assert time.monotonic() - started < 10
    finally:
        proc.terminate()
        proc.wait(10)


def test_checkpoint_loop_reads_its_interval(tmp_path, key_env):  # noqa: F811
    dsn = f"sqlite:///{tmp_path}/j.db"
    store = open_store(dsn)
    store.append(events(3))
    S.set_setting(store, "checkpoint.interval_s", "42", actor="olga")
    store.close()
    proc = subprocess.Popen([*CLI, "checkpoint", "--loop", "--db", dsn], stdout=subprocess.PIPE, text=True,
                            env={**os.environ})
    try:
        assert "or 42 s (setting checkpoint.interval_s)" in proc.stdout.readline()
    finally:
        proc.terminate()
        proc.wait(10)


# -- Trust Report -----------------------------------------------------------------------------------
def test_trust_report_says_review_while_a_channel_is_disabled(sqlite_dsn):
    store = open_store(sqlite_dsn)
    store.append(events(3, host="api.openai.com"))
    cat = load_catalogue()
    since = time.time_ns() // 1000 - 3600 * 10**6

    def line():
        rep = build_report(store, since, catalogue=cat)
        return rep, {x.rule: x for x in rep.lines}.get("channels_disabled")

    assert line()[1] is None
    S.set_setting(store, "capture.disabled_channels", "smtp", actor="olga")
    rep, disabled = line()
    assert rep.verdict in ("review", "alarm") and disabled is not None
    assert "smtp" in disabled.message and disabled.details["now"] == ["smtp"]
    assert disabled.chain_seqs  # evidence: the settings row
    S.set_setting(store, "capture.disabled_channels", "", actor="olga")
    rep, disabled = line()  # re-enabled: still Review for this period (smtp was off for part of it)
    assert disabled is not None and disabled.details == {"now": [], "changed_in_period": ["smtp"]}
    later = time.time_ns() // 1000 + 1
    assert "channels_disabled" not in {x.rule for x in build_report(store, later, catalogue=cat).lines}
    store.close()


# -- live settings in this process ------------------------------------------------------------------
@pytest.fixture
def live(monkeypatch):
    from mit_network_audit.runner import live_settings

    monkeypatch.setenv(live_settings.POLL_ENV, "0.1")
    import mit_network_audit as mna

    mna.install(sink=mna.MemorySink(), salt=b"x" * 32)
    yield live_settings
    live_settings.stop()
    live_settings._callbacks.clear()
    live_settings._state["following"] = False
    mna.uninstall()
    capture.set_disabled(())


def _wait(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.02)
    return predicate()


def test_live_on_change_and_disabled_channels(any_dsn, live):
    store = open_store(any_dsn)
    live.start(any_dsn)
    seen = []
    live.on_change(lambda s: seen.append(s["capture.disabled_channels"]))
    assert seen == [[]]  # the current settings, at once
    live.follow_disabled_channels(["ftp"])
    assert capture.runtime.disabled == {"ftp"}
    S.set_setting(store, "capture.disabled_channels", "socket,smtp", actor="olga")
    assert _wait(lambda: capture.runtime.disabled == {"ftp", "socket", "smtp"})
    assert seen[-1] == ["smtp", "socket"]
    assert not capture.channel_enabled("socket") and capture.channel_enabled("requests")
    S.set_setting(store, "capture.disabled_channels", "", actor="olga")
    assert _wait(lambda: capture.runtime.disabled == {"ftp"})  # the launch-time floor stays
    # the poller never audits itself, and a settings change that is not about channels leaves them alone
    S.set_setting(store, "retention.days", "3", actor="olga")
    assert _wait(lambda: live.current()["retention.days"] == 3)
    assert capture.runtime.disabled == {"ftp"}
    assert [t.name for t in threading.enumerate()].count("mna-live-settings") == 1
    store.close()


def test_live_keeps_last_settings_when_the_database_goes_away(pg_dsn, live):
    import psycopg

    from pg_support import PG_ADMIN

    store = open_store(pg_dsn)
    S.set_setting(store, "capture.disabled_channels", "smtp", actor="olga")
    store.close()
    live.start(pg_dsn)
    live.follow_disabled_channels(())
    assert capture.runtime.disabled == {"smtp"}
    errors = capture.counters["errors.live_settings_read"]
    name = pg_dsn.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")  # the poller's connection is cut, the db is gone
        try:
            assert _wait(lambda: capture.counters["errors.live_settings_read"] >= errors + 2)
            assert capture.runtime.disabled == {"smtp"}  # fail-open: the last settings stay
            assert live.current()["capture.disabled_channels"] == ["smtp"]
        finally:
            admin.execute(f"CREATE DATABASE {name}")  # scratch_database drops it again
    # and it comes back: a new journal there, with its own settings, is followed again
    store = open_store(pg_dsn)
    S.set_setting(store, "capture.disabled_channels", "imap", actor="olga")
    store.close()
    assert _wait(lambda: capture.runtime.disabled == {"imap"})


def test_live_journal_down_at_start_applies_at_first_read(pg_dsn, live):
    """A process that starts while its journal cannot be read captures everything (fail-open) and
    takes the settings at the poller's first successful read."""
    import psycopg

    from pg_support import PG_ADMIN

    name = pg_dsn.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        seen = []
        live.start(pg_dsn)  # never raises
        live.on_change(lambda s: seen.append(s["capture.disabled_channels"]))
        live.follow_disabled_channels(())
        assert live.current() is None and capture.runtime.disabled == frozenset() and seen == []
        admin.execute(f"CREATE DATABASE {name}")
    # The poller reads under live._lock: hold it while the journal and its setting are written, or a
    # poll between open_store (the schema) and set_setting reads the defaults first (a test race).
    with live._lock:
        store = open_store(pg_dsn)
        S.set_setting(store, "capture.disabled_channels", "pop3", actor="olga")
        store.close()
    assert _wait(lambda: capture.runtime.disabled == {"pop3"})
    assert seen == [["pop3"]]


def test_concurrent_writers_chain_old_to_new(pg_dsn):
    """Two officers saving at once (PostgreSQL): every settings row's old is the previous row's new."""
    open_store(pg_dsn).close()

    def writer(values):
        store = open_store(pg_dsn)
        for v in values:
            S.set_setting(store, "retention.days", str(v), actor=f"w{values[0]}")
        store.close()

    threads = [threading.Thread(target=writer, args=(list(range(start, start + 400, 2)),)) for start in (100, 101)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store = open_store(pg_dsn)
    rows = settings_rows(store)[::-1]
    assert len(rows) == 400
    assert rows[0]["old"] == "90"
    assert all(a["new"] == b["old"] for a, b in zip(rows, rows[1:], strict=False))
    assert S.get_settings(store)["retention.days"] == int(rows[-1]["new"])
    assert verify(store).ok
    store.close()
