"""Shared CLI pieces: the --db option, time parsing, opening a store with a helpful error."""

from __future__ import annotations

import contextlib
import math
import re
import sys
import time
from datetime import UTC, datetime

import click

from ..journal import default_dsn, display_dsn, open_store

DB_HELP = ("Journal DSN: a file path, sqlite:///relative/path, sqlite:////absolute/path or "
           "postgresql://user@host/db. "
           "Default: $MNA_DB, else journal.db in the user data directory.")

db_option = click.option("--db", "dsn", default=None, metavar="DSN", help=DB_HELP)

_REL = re.compile(r"^(\d+)\s*([smhdw])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_time_us(text: str | None) -> int | None:
    """'24h', '7d', '30m' (ago) or an ISO date/time -> microseconds since the epoch."""
    if text is None:
        return None
    m = _REL.match(text.strip())
    if m:
        ago_us = int(m.group(1)) * _UNIT[m.group(2)] * 1_000_000
        return max(0, time.time_ns() // 1000 - ago_us)  # further back than 1970: the beginning
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r}: use a duration like 24h, 7d, 30m, or an ISO date like 2026-11-01") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1_000_000)


def parse_period(since: str | None, until: str | None) -> tuple[int | None, int | None]:
    """--since and --until as microseconds (``parse_time_us``); a usage error naming the option when
    one cannot be read, or when the period ends before it begins."""
    times = []
    for option, text in (("--since", since), ("--until", until)):
        try:
            times.append(parse_time_us(text))
        except click.BadParameter as exc:
            exc.param_hint = f"'{option}'"
            raise
    since_us, until_us = times
    if since_us is not None and until_us is not None and since_us > until_us:
        raise click.UsageError(f"--since {since} is after --until {until}: the period would be empty "
                               "(a duration counts back from now: --since 7d --until 1d)")
    return since_us, until_us


def positive_seconds(ctx, param, value: float | None) -> float | None:
    """A click callback for an --interval: a finite number of seconds above 0 (or not given)."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise click.BadParameter(f"{value}: give a number of seconds greater than 0, e.g. 60")
    return value


def format_us(us: int | None) -> str:
    if us is None:
        return "-"
    return datetime.fromtimestamp(us / 1e6, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def open_or_exit(dsn: str | None, *, create: bool = False):
    """Open the journal or exit 2 with an error that says what to do next."""
    dsn = dsn or default_dsn()
    try:
        return open_store(dsn, create=create)
    except FileNotFoundError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except Exception as exc:  # database down, bad DSN, permissions
        click.echo(f"error: cannot open the journal {display_dsn(dsn)!r}: {type(exc).__name__}: {exc}\n"
                   "Check the --db DSN (a path, sqlite:///path or postgresql://...) and that the database is reachable.",
                   err=True)
        sys.exit(2)


def database_errors() -> tuple[type[BaseException], ...]:
    """What a store raises when the database itself fails mid-command (a damaged SQLite file, a
    PostgreSQL server gone): the CLI turns these into one line and exit 2, never a traceback."""
    import sqlite3

    errors: tuple[type[BaseException], ...] = (sqlite3.Error,)
    try:
        import psycopg
    except ImportError:  # the postgres extra is not installed
        return errors
    return (*errors, psycopg.Error)


def database_failed(exc: BaseException) -> None:
    click.echo(f"error: the journal database failed: {type(exc).__name__}: {exc}\n"
               "Check that the database is reachable and intact (a SQLite file: "
               "sqlite3 FILE 'PRAGMA integrity_check'), then run `mit-network-audit verify`.", err=True)
    sys.exit(2)


@contextlib.contextmanager
def verify_progress(store, *, show: bool = True):
    """A transient progress bar on stderr for a chain re-check; yields verify's progress callback
    (None when not shown: JSON output, or no terminal)."""
    if not show or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("verifying"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,} rows"),
                  TimeRemainingColumn(), transient=True, console=Console(stderr=True)) as progress:
        task = progress.add_task("verify", total=store.max_seq() or 1)
        yield lambda done, total: progress.update(task, completed=done, total=total)
