"""serve and user: the web dashboard and its accounts."""

from __future__ import annotations

import sys

import click

from .common import db_option, open_or_exit


def register(group: click.Group) -> None:
    group.add_command(serve)
    group.add_command(user)


@click.command()
@db_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="address to bind; keep 127.0.0.1 unless a TLS proxy sits in front")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(1, 65535))
def serve(dsn, host, port):
    """Serve the dashboard (Trust Report, Traffic Summary, Audit Log, Verify & Export).

    Create an account first: mit-network-audit user add NAME --role auditor
    """
    try:
        import uvicorn

        from ..web.server import create_dashboard
    except ImportError:
        click.echo("the dashboard needs the web extra: pip install 'mit-network-audit[web]'", err=True)
        sys.exit(2)
    store = open_or_exit(dsn, create=True)
    from ..web.auth import Accounts

    if not Accounts(store).list():
        click.echo("note: no accounts yet — add one with `mit-network-audit user add NAME --role officer`", err=True)
    click.echo(f"dashboard on http://{host}:{port}/")
    uvicorn.run(create_dashboard(store.dsn), host=host, port=port, log_level="warning")


@click.group()
def user():
    """Dashboard accounts: add, remove, passwd, token, list."""


def _accounts(dsn):
    from ..web.auth import Accounts

    return Accounts(open_or_exit(dsn, create=True))


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    return click.prompt("password", hide_input=True, confirmation_prompt=True)


@user.command("add")
@db_option
@click.argument("name")
@click.option("--role", type=click.Choice(["viewer", "auditor", "officer"]), required=True,
              help="viewer: reports; auditor: + rows, verify, export; officer: + settings")
@click.option("--password-stdin", is_flag=True, help="read the password from standard input")
def user_add(dsn, name, role, password_stdin):
    """Add an account."""
    if not name.strip() or name != name.strip() or not name.isprintable():
        click.echo(f"error: {name!r} is not a user name: use printable characters, not blank, no spaces at "
                   "either end", err=True)
        sys.exit(2)
    try:
        _accounts(dsn).add(name, role, _read_password(password_stdin))
    except ValueError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(f"added {name} ({role})")


@user.command("remove")
@db_option
@click.argument("name")
def user_remove(dsn, name):
    """Remove an account, its sessions and its API tokens."""
    accounts = _accounts(dsn)
    if accounts.get(name) is None:
        click.echo(f"error: no user {name!r} (see `mit-network-audit user list`)", err=True)
        sys.exit(2)
    accounts.remove(name)
    click.echo(f"removed {name}")


@user.command("passwd")
@db_option
@click.argument("name")
@click.option("--password-stdin", is_flag=True)
def user_passwd(dsn, name, password_stdin):
    """Change a password (ends the account's sessions)."""
    try:
        _accounts(dsn).set_password(name, _read_password(password_stdin))
    except ValueError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(f"password changed for {name}")


@user.command("token")
@db_option
@click.argument("name")
def user_token(dsn, name):
    """Make an API token for scripts (Authorization: Bearer TOKEN); shown once."""
    try:
        click.echo(_accounts(dsn).new_token(name))
    except ValueError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


@user.command("list")
@db_option
def user_list(dsn):
    """List accounts and roles."""
    for name, role in _accounts(dsn).list():
        click.echo(f"{name}\t{role}")
