"""Bad --db values get a clear error naming what to do, exit 2, and create nothing."""

import os
import sqlite3
import subprocess
import sys

import pytest
from click.testing import CliRunner

from mit_network_audit.cli import main


@pytest.mark.parametrize("command", ["verify", "log", "report"])
@pytest.mark.parametrize("dsn, says", [
    ("bogus://x", "unknown journal DSN scheme 'bogus'"),
    ("postgresql://postgres@127.0.0.1:1/nowhere", "Connection refused"),
])
def test_unusable_dsn_is_a_clear_error(command, dsn, says):
    result = CliRunner().invoke(main, [command, "--db", dsn])
    assert result.exit_code == 2, result.output
    assert says in result.output
    assert "--db" in result.output


def test_missing_sqlite_journal_is_not_created_by_a_reader(tmp_path):
    path = tmp_path / "absent.db"
    result = CliRunner().invoke(main, ["verify", "--db", f"sqlite:///{path}"])
    assert result.exit_code == 2
    assert "no journal at" in result.output and "mit-network-audit run" in result.output
    assert not os.path.exists(path)


@pytest.mark.parametrize("command", ["verify", "log", "report", "settings get"])
@pytest.mark.parametrize("kind", ["empty file", "another application's database"])
def test_a_reader_leaves_a_file_that_is_no_journal_untouched(tmp_path, command, kind):
    path = tmp_path / "app.sqlite"
    if kind == "empty file":
        path.write_bytes(b"")
    else:
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total INTEGER)")
        conn.commit()
        conn.close()
    before = path.read_bytes()
    result = CliRunner().invoke(main, [*command.split(), "--db", str(path)])
    assert result.exit_code == 2, result.output
    assert "no journal in" in result.output and "--db" in result.output
    assert path.read_bytes() == before  # no journal tables, no switch to WAL
    assert sorted(os.listdir(tmp_path)) == ["app.sqlite"]


def _damaged_journal(tmp_path) -> str:
    """A real journal whose egress_log pages were overwritten (the schema page is intact, so it opens)."""
    from mit_network_audit.interceptor.event import internal_event
    from mit_network_audit.journal import open_store

    path = tmp_path / "damaged.db"
    store = open_store(str(path))
    store.append([internal_event("heartbeat", detail="x" * 200) for _ in range(300)])
    store.close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'egress_log'").fetchone()[0]
    conn.close()
    with open(path, "r+b") as fh:
        fh.seek((root - 1) * page_size)
        fh.write(b"\xa5" * page_size)
    return str(path)


@pytest.mark.parametrize("command", ["log", "show 1", "report", "rollup", "export --key {dir}/k --out {dir}/bundle"])
def test_a_damaged_journal_is_one_line_and_exit_2(tmp_path, command):
    dsn = _damaged_journal(tmp_path)
    assert CliRunner().invoke(main, ["keys", "init", "--out", str(tmp_path / "k")]).exit_code == 0
    args = command.format(dir=tmp_path).split()
    result = CliRunner().invoke(main, [*args, "--db", dsn])
    assert result.exit_code == 2, result.output
    assert "database disk image is malformed" in result.output
    assert "integrity_check" in result.output
    assert not isinstance(result.exception, sqlite3.Error) and "Traceback" not in result.output


def test_a_postgresql_journal_missing_its_table_is_one_line_and_exit_2(pg_dsn):
    import psycopg

    from mit_network_audit.journal import open_store

    open_store(pg_dsn).close()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE egress_log")
    result = CliRunner().invoke(main, ["log", "--db", pg_dsn])
    assert result.exit_code == 2, result.output
    assert 'relation "egress_log" does not exist' in result.output and "Traceback" not in result.output
    assert not isinstance(result.exception, psycopg.Error)


@pytest.mark.parametrize("command", ["rollup --loop", "checkpoint --loop"])
@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf"])
def test_a_loop_interval_that_is_not_a_positive_number_is_a_usage_error(sqlite_dsn, command, value):
    from mit_network_audit.interceptor.event import internal_event
    from mit_network_audit.journal import open_store

    open_store(sqlite_dsn).append([internal_event("start")])
    result = CliRunner().invoke(main, [*command.split(), "--db", sqlite_dsn, "--interval", value])
    assert result.exit_code == 2, result.output  # it used to reach time.sleep(): a ValueError traceback
    assert "Invalid value for '--interval'" in result.output and "greater than 0" in result.output


def test_the_sqlite_scheme_is_read_in_any_case(tmp_path, monkeypatch):
    """`SQLite:///j.db` is the journal j.db, as `sqlite:///j.db` is; it used to be taken for a path
    (a directory named 'SQLite:' made in the current directory)."""
    from mit_network_audit.interceptor.event import internal_event
    from mit_network_audit.journal import open_store

    monkeypatch.chdir(tmp_path)
    open_store("SQLite:///j.db").append([internal_event("start")])
    assert sorted(p for p in os.listdir(tmp_path) if not p.startswith("j.db")) == []
    result = CliRunner().invoke(main, ["log", "--db", f"SQLITE:///{tmp_path}/j.db".replace("///", "////"),
                                       "--format", "jsonl"])
    assert result.exit_code == 0 and '"method": "start"' in result.output, result.output


@pytest.mark.parametrize("command", [["log"], ["verify"], ["run", "--", "true"]])
def test_a_password_in_the_dsn_is_not_echoed_in_errors(pg_dsn, command):
    with_password = pg_dsn.replace("postgres@", "postgres:Sw0rdfish-secret@")  # trust auth: accepted, unused
    closed_port = with_password.replace(":5432/", ":1/")
    keyword_form = "host=127.0.0.1 port=1 user=postgres password=Sw0rdfish-secret dbname=x"
    for dsn in ([closed_port, keyword_form, "mysql://u:Sw0rdfish-secret@h/x"]
                + ([with_password] if command[0] != "run" else [])):  # no journal in it: "run" would make one
        args = [command[0], "--db", dsn, *command[1:]]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2, (dsn, result.output)
        assert "Sw0rdfish-secret" not in result.output and "***" in result.output, result.output


@pytest.mark.parametrize("command", ["serve", "demo --open"])
@pytest.mark.parametrize("port", ["99999", "0", "-1"])
def test_a_port_outside_1_to_65535_is_a_usage_error(sqlite_dsn, command, port):
    # serve --port 99999 said "dashboard on http://127.0.0.1:99999/" and listened on 34463 (99999 mod 65536)
    result = CliRunner().invoke(main, [*command.split(), "--db", sqlite_dsn, "--port", port])
    assert result.exit_code == 2 and "Invalid value for '--port'" in result.output, result.output


def test_user_remove_of_an_account_that_does_not_exist_says_so(sqlite_dsn):
    runner = CliRunner()
    result = runner.invoke(main, ["user", "remove", "nobody", "--db", sqlite_dsn])
    assert result.exit_code == 2 and "no user 'nobody'" in result.output, result.output  # it said "removed nobody"
    result = runner.invoke(main, ["user", "add", "alice", "--role", "viewer", "--password-stdin", "--db", sqlite_dsn],
                           input="correct horse battery\n")
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["user", "remove", "alice", "--db", sqlite_dsn])
    assert result.exit_code == 0 and "removed alice" in result.output
    assert runner.invoke(main, ["user", "list", "--db", sqlite_dsn]).output == ""


@pytest.mark.parametrize("dsn", ["sqlite:/x.db", "sqlite:x.db", "SQLite:/x.db", "postgresql:/db"])
@pytest.mark.parametrize("command", ["log", "run -- true"])
def test_a_mistyped_scheme_is_refused_not_taken_for_a_file_name(tmp_path, dsn, command):
    name, *rest = command.split()
    paths = [os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    done = subprocess.run([sys.executable, "-m", "mit_network_audit.cli", name, "--db", dsn, *rest], cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(paths)}, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and "is not a DSN" in done.stderr and "sqlite:///" in done.stderr, done.stderr
    assert os.listdir(tmp_path) == []  # it made a directory 'sqlite:' (or a file 'sqlite:x.db') here


@pytest.mark.parametrize("name", ["", " ", " alice", "al\x1bice", "bob\n"])
def test_user_add_refuses_a_name_that_is_blank_or_not_printable(sqlite_dsn, name):
    result = CliRunner().invoke(main, ["user", "add", name, "--role", "officer", "--password-stdin", "--db", sqlite_dsn],
                                input="correct horse battery\n")
    assert result.exit_code == 2 and "is not a user name" in result.output, result.output  # it added them
    assert CliRunner().invoke(main, ["user", "list", "--db", sqlite_dsn]).output == ""


@pytest.mark.parametrize("dsn", [":memory:", "sqlite:///:memory:", "sqlite:///"])
def test_run_refuses_a_journal_that_lives_only_in_memory(tmp_path, dsn):
    """Each audited process would write into its own memory: every row gone at exit, exit status 0."""
    paths = [os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    done = subprocess.run([sys.executable, "-m", "mit_network_audit.cli", "run", "--db", dsn, "--", "true"],
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": os.pathsep.join(paths)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "is not a journal file" in done.stderr, done.stderr
