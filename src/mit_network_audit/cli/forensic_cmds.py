"""Forensic body capture: ``forensic key init``, ``forensic status``, ``forensic enable``/``disable``,
``forensic list``, ``forensic read``, ``forensic purge``.

Switching capture on or off and its scope are settings (``forensic enable --hosts ...`` is a shortcut for
``settings set forensic.hosts=... forensic.enabled=true``); every change is a journaled settings row.
Every ``read`` first appends a ``forensic_read`` row to the journal (who, which event) and shows
nothing if that row cannot be written.  Exit status: 0 success, 1 refused or not found, 2 usage/I-O.
"""

from __future__ import annotations

import getpass
import json
import os
import sys

import click

from ..journal import forensic
from ..report.render import printable
from .common import db_option, format_us, open_or_exit


def register(group: click.Group) -> None:
    group.add_command(forensic_group)


def _fail(message: str, code: int = 2):
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.group("forensic")
def forensic_group() -> None:
    """Forensic body capture (off by default; officers only; every read journaled)."""


@forensic_group.group("key")
def key_group() -> None:
    """The X25519 key pair bodies are sealed to (kept outside the database).

    \b
    private key (readers only):    forensic.key (0600) or $MNA_FORENSIC_KEY
    public key (audited hosts):    forensic.key.pub or $MNA_FORENSIC_PUBLIC_KEY"""


@key_group.command("init")
@click.option(
    "--out",
    "path",
    default=None,
    metavar="PATH",
    help="Where to write the private key (mode 0600; the public key goes to PATH.pub; default "
    "$MNA_FORENSIC_KEY_FILE or <config dir>/forensic.key).",
)
@click.option("--force", is_flag=True, help="Replace an existing key: bodies sealed to it become unreadable.")
def key_init(path, force):
    """Create the forensic key pair (private key mode 0600, public key beside it)."""
    try:
        written = forensic.init_key(path, force=force)
    except forensic.KeyProblem as exc:
        _fail(str(exc))
    with open(written + ".pub") as fh:
        public = fh.read().strip()
    click.echo(
        f"forensic private key written to {written} (mode 0600), public key to {written}.pub\n"
        f"audited processes need only the public key: copy {written}.pub next to their key path, or set\n"
        f"  {forensic.ENV_PUBLIC_KEY}={public}\n"
        "keep the private key with the officers only (and a copy in a safe place: without it no body can "
        "be read)"
    )


@forensic_group.command("status")
@db_option
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def status(dsn, fmt):
    """Whether capture is on, its scope, and how many bodies are stored."""
    store = open_or_exit(dsn)
    scope = forensic.scope_from_settings(forensic.current_settings(store))
    data = {
        "enabled": scope.enabled,
        "addons": list(scope.addons),
        "hosts": list(scope.hosts),
        "max_bytes": scope.max_bytes,
        "retention_days": scope.retention_days,
        "stored": forensic.count_bodies(store),
    }
    if fmt == "json":
        click.echo(json.dumps(data, sort_keys=True))
        return
    click.echo(f"capture: {'ON' if scope.enabled else 'off'}")
    click.echo(
        f"scope: addons={','.join(scope.addons) or '-'} hosts={','.join(scope.hosts) or '-'}"
        + (
            "  (both empty: nothing is in scope; use * to mean every call)"
            if not scope.addons and not scope.hosts
            else ""
        )
    )
    click.echo(f"size cap: {scope.max_bytes} bytes per body; retention: {scope.retention_days} days")
    click.echo(f"bodies stored: {data['stored']}")


@forensic_group.command("enable")
@db_option
@click.option(
    "--hosts", default=None, metavar="LIST", help="Comma list of destination hosts in scope (* = any)."
)
@click.option(
    "--addons", default=None, metavar="LIST", help="Comma list of owners (addons) in scope (* = any)."
)
@click.option(
    "--max-bytes",
    type=click.IntRange(0, forensic.MAX_BYTES_CEILING),
    default=None,
    help="Bytes kept per body.",
)
@click.option("--retention-days", type=click.IntRange(1, None), default=None, help="Days a body is kept.")
@click.option("--actor", default=None, help="Who switches it on (journaled). Default: the login name.")
def enable_cmd(dsn, hosts, addons, max_bytes, retention_days, actor):
    """Switch capture on (scope first, then the switch; every change is a journaled settings row).

    Same keys as `settings set forensic.*=...`.  With no addons and no hosts in scope nothing is
    captured: name them, or use * for every call."""
    store = open_or_exit(dsn)
    actor = actor or _login()
    changes = [
        ("forensic.hosts", hosts),
        ("forensic.addons", addons),
        ("forensic.max_bytes", None if max_bytes is None else str(max_bytes)),
        ("forensic.retention_days", None if retention_days is None else str(retention_days)),
        ("forensic.enabled", "true"),
    ]
    try:
        for key, value in changes:
            if value is not None:
                forensic.change_setting(store, key, value, actor=actor)
    except Exception as exc:
        _fail(f"could not change the settings: {type(exc).__name__}: {exc}")
    scope = forensic.scope_from_settings(forensic.current_settings(store))
    click.echo(
        f"forensic capture ON: addons={','.join(scope.addons) or '-'} hosts={','.join(scope.hosts) or '-'} "
        f"max_bytes={scope.max_bytes} retention_days={scope.retention_days}"
    )
    if not scope.addons and not scope.hosts:
        click.echo(
            "warning: the scope is empty, so nothing is captured (use --hosts/--addons, * = any)", err=True
        )
    try:
        has_key = forensic.load_public_key(required=False) is not None
    except forensic.KeyProblem:
        has_key = False
    if not has_key:
        click.echo(
            "warning: no forensic key on this machine: audited processes without the public key store nothing "
            "(mit-network-audit forensic key init)",
            err=True,
        )


@forensic_group.command("disable")
@db_option
@click.option("--actor", default=None, help="Who switches it off (journaled). Default: the login name.")
def disable_cmd(dsn, actor):
    """Switch capture off (running processes drop the tap; stored bodies stay until purged)."""
    store = open_or_exit(dsn)
    try:
        forensic.change_setting(store, "forensic.enabled", "false", actor=actor or _login())
    except Exception as exc:
        _fail(f"could not change the settings: {type(exc).__name__}: {exc}")
    click.echo("forensic capture off")


@forensic_group.command("list")
@db_option
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def list_cmd(dsn, limit, fmt):
    """Stored bodies, newest first: metadata only (nothing is decrypted, so nothing is journaled)."""
    store = open_or_exit(dsn)
    items = forensic.list_bodies(store, limit=limit)
    if fmt == "json":
        click.echo(json.dumps([i.as_dict() for i in items], sort_keys=True))
        return
    if not items:
        click.echo("no bodies stored")
        return
    click.echo(f"{'seq':>8}  {'captured (UTC)':19}  {'size':>9}  {'kept':>9}  {'event_id':32}  where")
    for i in items:
        where = printable(f"{i.method or ''} {i.host or ''}{i.path or ''} ({i.addon or '?'})".strip())
        click.echo(
            f"{i.chain_seq if i.chain_seq is not None else '-':>8}  {format_us(i.captured_at_us):19}  "
            f"{i.size:>9}  {i.stored:>9}{'+' if i.truncated else ' '} {i.event_id}  {where}"
        )


@forensic_group.command("read")
@db_option
@click.argument("ref", metavar="EVENT_ID|SEQ")
@click.option("--actor", default=None, help="Who is reading (journaled). Default: the login name.")
@click.option(
    "--out",
    "out",
    default=None,
    metavar="FILE",
    help="Write the body to FILE (mode 0600) instead of standard output.",
)
@click.option("--key", "key_path", default=None, metavar="PATH", help="Forensic key file.")
def read_cmd(dsn, ref, actor, out, key_path):
    """Decrypt one captured body.  The read is journaled first; if it cannot be, nothing is shown."""
    store = open_or_exit(dsn)
    actor = actor or _login()
    fd, made = None, False
    if out:  # opened before the read: a FILE that cannot be written fails with nothing read or journaled
        made = not os.path.lexists(out)
        try:
            fd = os.open(out, os.O_WRONLY | os.O_CREAT, 0o600)
        except OSError as exc:
            _fail(f"cannot write {out!r}: {exc.strerror or exc} (nothing was read)")
    try:
        key = forensic.load_key(key_path, required=True)
        got = forensic.read_body(store, ref, actor=actor, via="cli", key=key)
    except BaseException as exc:
        if fd is not None:
            os.close(fd)
            if made:
                os.unlink(out)
        if isinstance(exc, forensic.ReadRefused | forensic.NoSuchBody):
            _fail(str(exc), 1)
        if isinstance(exc, forensic.ForensicProblem):
            _fail(str(exc), 2)
        raise
    info = got.info
    click.echo(
        f"event {info.event_id} (row {info.chain_seq if info.chain_seq is not None else '-'}): "
        f"{info.stored} of {info.size} bytes{' (truncated)' if info.truncated else ''}; "
        f"this read is journal row {got.read_seq}",
        err=True,
    )
    if fd is not None:
        os.ftruncate(fd, 0)
        with os.fdopen(fd, "wb") as fh:
            fh.write(got.body)
        click.echo(f"written to {out}", err=True)
        return
    sys.stdout.buffer.write(got.body)
    sys.stdout.buffer.flush()


@forensic_group.command("purge")
@db_option
@click.option(
    "--older-than-days",
    "days",
    type=click.IntRange(0, None),
    default=None,
    help="Default: the forensic.retention_days setting.",
)
def purge_cmd(dsn, days):
    """Delete bodies past their retention window (the journal rows stay)."""
    store = open_or_exit(dsn)
    if days is None:
        days = forensic.scope_from_settings(forensic.current_settings(store)).retention_days
    n = forensic.purge(store, days)
    click.echo(f"purged {n} bod{'y' if n == 1 else 'ies'} captured more than {days} day(s) ago")


def _login() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return f"uid:{os.getuid()}"
