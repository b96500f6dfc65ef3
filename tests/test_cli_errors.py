"""Bad --db values get a clear error naming what to do, exit 2, and create nothing."""

import os
import sqlite3

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
