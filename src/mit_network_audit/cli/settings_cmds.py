"""``settings get`` / ``settings set KEY=VALUE ...``: the settings stored with the journal.

Every change is journaled first (an ``internal`` ``settings`` row: who, key, old -> new) and reaches
every running audited process within the live-settings poll period (``$MNA_SETTINGS_POLL_S``,
default 2 s) without a restart.  Exit status: 0 done, 1 refused (unknown key, bad value), 2 usage/I-O.
"""

from __future__ import annotations

import getpass
import json
import os
import sys

import click

from ..journal import settings as journal_settings
from .common import db_option, open_or_exit


def register(group: click.Group) -> None:
    group.add_command(settings_group)


def _keys_help() -> str:
    lines = ["\b", "Keys (default in brackets):"]
    for s in journal_settings.SETTINGS.values():
        lines.append(f"  {s.key} [{journal_settings.as_text(s.default) or 'empty'}]")
    lines += [
        "",
        "Details of each key: `mit-network-audit settings get --format json` or docs/settings.md.",
    ]
    return "\n".join(lines)


def _login() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return f"uid{os.getuid()}"


def _fail(message: str, code: int) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.group("settings", epilog=_keys_help())
def settings_group() -> None:
    """Read or change the settings stored with the journal (officers; every change journaled).

    A change reaches every running audited process within seconds ($MNA_SETTINGS_POLL_S, default
    2 s), without a restart."""


@settings_group.command("get", epilog=_keys_help())
@db_option
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.argument("keys", nargs=-1, metavar="[KEY]...")
def get_cmd(dsn, fmt, keys):
    """Show every setting (or the KEYs named): its value, and whether it is the default."""
    for key in keys:
        try:
            journal_settings.known(key)
        except journal_settings.SettingRefused as exc:
            _fail(str(exc), 1)
    store = open_or_exit(dsn)
    try:
        values = journal_settings.get_settings(store)
    except Exception as exc:
        _fail(f"could not read the settings: {type(exc).__name__}: {exc}", 2)
    finally:
        store.close()
    wanted = list(keys) or list(journal_settings.SETTINGS)
    if fmt == "json":
        click.echo(json.dumps({k: values[k] for k in wanted}, indent=2))
        return
    width = max(len(k) for k in wanted)
    for key in wanted:
        setting = journal_settings.SETTINGS[key]
        text = journal_settings.as_text(values[key])
        mark = "  (default)" if journal_settings.is_default(key, values[key]) else ""
        unit = f" {setting.unit}" if setting.unit and text else ""
        click.echo(f"{key:<{width}}  {text or '(empty)'}{unit}{mark}")


@settings_group.command("set", epilog=_keys_help())
@click.argument("assignments", nargs=-1, required=True, metavar="KEY=VALUE...")
@db_option
@click.option("--actor", default=None, help="Who makes the change (journaled). Default: the login name.")
def set_cmd(assignments, dsn, actor):
    """Change settings: each KEY=VALUE is validated before any is written, then each change is
    journaled (who, key, old -> new) and stored.

    \b
    Examples:
      mit-network-audit settings set capture.disabled_channels=socket,smtp
      mit-network-audit settings set capture.disabled_channels=     # capture everything again
      mit-network-audit settings set retention.days=180 checkpoint.interval_s=600"""
    try:
        changes = [journal_settings.parse_assignment(a) for a in assignments]
        for key, raw in changes:
            journal_settings.known(key).parse(raw)
    except journal_settings.SettingRefused as exc:
        _fail(f"{exc}\nnothing was changed; see `mit-network-audit settings set --help` for the keys", 1)
    store = open_or_exit(dsn)
    try:
        made = journal_settings.set_settings(store, changes, actor=actor or _login())
    except journal_settings.SettingRefused as exc:
        _fail(f"{exc}\nnothing was changed", 1)
    except Exception as exc:
        _fail(
            f"could not change the settings: {type(exc).__name__}: {exc}\n"
            "a change is journaled before it is stored: if the journal cannot be written, nothing changes",
            2,
        )
    finally:
        store.close()
    changed = {m["key"] for m in made}
    for m in made:
        click.echo(f"{m['key']}: {m['old'] or '(empty)'} -> {m['new'] or '(empty)'}")
    for key, _ in changes:
        if key not in changed:
            click.echo(f"{key}: unchanged")
    if made:
        click.echo(
            "journaled; running audited processes apply it within "
            f"{os.environ.get('MNA_SETTINGS_POLL_S') or '2'} s (their $MNA_SETTINGS_POLL_S)"
        )
