"""Bad --db values get a clear error naming what to do, exit 2, and create nothing."""

import os

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
