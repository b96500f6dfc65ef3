"""run: audit an unmodified Python program (and its Python children)."""

from __future__ import annotations

import os
import subprocess
import sys

import click

from ..journal import absolute_dsn, default_dsn, display_dsn, is_postgres, open_store
from ..journal.sqlite import path_from_dsn
from .common import db_option

SITE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "runner", "site")


def register(group: click.Group) -> None:
    group.add_command(run)


def audited_env(dsn: str, disable: str | None = None, base: dict | None = None) -> dict:
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (SITE_DIR, env.get("PYTHONPATH", "")) if p)
    env["MNA_DB"] = dsn
    if disable:
        env["MNA_DISABLE"] = disable
    return env


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@db_option
@click.option("--disable", metavar="CH,...", help="channels not to record, e.g. socket,smtp")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run(dsn, disable, command):
    """Run COMMAND with every network call it makes audited into the journal.

    The program is not modified: a sitecustomize put first on PYTHONPATH starts the auditor
    (and then runs your own sitecustomize, if you have one). Python children inherit it.

    \b
    Examples:
      mit-network-audit run -- python app.py
      mit-network-audit run --db postgresql://audit@db/odoo -- odoo-bin -c odoo.conf
      mit-network-audit run -- python -m pip download somepkg
    """
    dsn = absolute_dsn(dsn or default_dsn())  # the program and its children may change directory
    if not is_postgres(dsn) and path_from_dsn(dsn) in ("", ":memory:"):
        click.echo(f"error: {dsn!r} is not a journal file: the program's rows would vanish with it; "
                   "give a file path, sqlite:///path or postgresql://...", err=True)
        sys.exit(2)
    try:
        open_store(dsn).close()  # create the journal now, and fail early with a clear message
    except Exception as exc:
        click.echo(f"error: cannot open the journal {display_dsn(dsn)!r}: {type(exc).__name__}: {exc}", err=True)
        sys.exit(2)
    argv = list(command)
    if argv and argv[0] in ("python", "python3"):
        argv[0] = sys.executable  # the interpreter that has the auditor installed
    env = audited_env(dsn, disable)
    if hasattr(os, "execvpe") and os.name == "posix":
        # The program takes this process over (as opentelemetry-instrument does): the same PID for a
        # supervisor, a pidfile or `kill`; every signal (SIGTERM, gunicorn's HUP/TTIN...) reaches it
        # directly; its exit status is the command's, a death by signal included.
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            os.execvpe(argv[0], argv, env)
        except FileNotFoundError:
            click.echo(f"error: command not found: {argv[0]}", err=True)
            sys.exit(127)
        except PermissionError:
            click.echo(f"error: not executable: {argv[0]}", err=True)
            sys.exit(126)
    try:
        proc = subprocess.Popen(argv, env=env)
    except FileNotFoundError:
        click.echo(f"error: command not found: {argv[0]}", err=True)
        sys.exit(127)
    sys.exit(_wait(proc))


def _wait(proc: subprocess.Popen) -> int:
    """Wait for the program as a shell does.  A Ctrl-C reaches the program itself (same process
    group); the program decides how to end, and its at-exit journal flush must not be cut short
    (``subprocess.run`` would SIGKILL it 0.25 s after the interrupt).  Only a third Ctrl-C kills it."""
    interrupts = 0
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:
            interrupts += 1
            if interrupts >= 3:
                proc.kill()
