"""Trust anchors: keys init, checkpoint, export, verify-bundle, prove, vacuum, verify-checkpoints.

Exit status everywhere: 0 success, 1 a check failed (tampering), 2 usage or I/O error.
"""

from __future__ import annotations

import json
import os
import sys
import time

import click

from ..journal import checkpoint as ckpt
from ..journal import settings as journal_settings
from ..journal.export import BundleError, export_bundle, prove, verify_bundle
from ..journal.keys import KeyProblem, default_key_path, init_key, load_signing_key, load_verifier
from ..journal.vacuum import parse_age, vacuum
from .common import db_option, open_or_exit, parse_period, positive_seconds

key_option = click.option("--key", "key_path", default=None, metavar="PATH",
                          help="Signing key file (default: $MNA_SIGNING_KEY_FILE or the user config dir; "
                               "$MNA_SIGNING_KEY overrides).")
witness_option = click.option("--witness", "witness", default=None, metavar="PATH",
                              help="Witness file outside the database (default: $MNA_WITNESS_FILE, else "
                                   "witness/<hash of the DSN>.jsonl beside the key).")


def register(group: click.Group) -> None:
    group.add_command(keys)
    group.add_command(checkpoint)
    group.add_command(export)
    group.add_command(verify_bundle_cmd)
    group.add_command(prove_cmd)
    group.add_command(vacuum_cmd)
    group.add_command(verify_checkpoints)


def _fail(message: str, code: int = 2):
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _os_fail(exc: OSError, doing: str, hint: str = "") -> None:
    """A file the command needs could not be written (the journal's signer lock beside it, the witness
    file, the bundle): one line naming it, exit 2.  Standard output closed early (``| head``) is not
    that: click ends quietly, as for any command."""
    if isinstance(exc, BrokenPipeError):
        raise exc
    where = "" if exc.filename is None else f": {exc.filename!r}"
    _fail(f"{doing}: {exc.strerror or exc}{where}{hint}")


def _setting(store, key: str, fallback):
    """A setting's value (journal/settings.py); ``fallback`` if the settings cannot be read."""
    try:
        return journal_settings.get_settings(store)[key]
    except Exception:
        return fallback


def _key(key_path, required=True):
    """The signing key; a --key that was given must exist (never silently the default key instead)."""
    try:
        return load_signing_key(key_path, required=required or key_path is not None)
    except KeyProblem as exc:
        _fail(str(exc))


@click.group()
def keys() -> None:
    """The checkpoint signing key (Ed25519, kept outside the database)."""


@keys.command("init")
@click.option("--out", "path", default=None, metavar="PATH", help="Where to write the key (mode 0600).")
@click.option("--name", default=None, help="Key name in signatures (default: mit-network-audit/<hostname>).")
@click.option("--force", is_flag=True, help="Replace an existing key (rotation: old checkpoints stay valid "
                                             "only under the old public key).")
def keys_init(path, name, force):
    """Create the signing key; print the public key and its C2SP key id.

    \b
    Keep the printed public key somewhere the database cannot reach (give it to your auditor):
    it is what proves that checkpoints and bundles were signed by you.
    """
    try:
        key, where = init_key(path, name=name, force=force)
    except KeyProblem as exc:
        _fail(str(exc))
    click.echo(f"signing key written to {where} (mode 0600); public key in {where}.pub")
    click.echo(f"public key: {key.verifier.vkey}")
    click.echo(f"key id:     {key.key_id.hex()}")


@keys.command("show")
@key_option
def keys_show(key_path):
    """Print the public key (from the signing key or its .pub file)."""
    verifier = load_verifier(key_path=key_path or default_key_path())
    if verifier is None:
        _fail("no key: run `mit-network-audit keys init`")
    click.echo(verifier.vkey)


@click.command()
@db_option
@key_option
@witness_option
@click.option("--every", "every_rows", type=click.IntRange(1, None), default=None, help="With --loop: sign after this many new rows.")
@click.option("--interval", type=float, default=None, callback=positive_seconds,
              help="With --loop: sign after this many seconds (default: the setting checkpoint.interval_s, "
                   "re-read at every turn).")
@click.option("--loop", is_flag=True, help="Keep running and sign every N rows or T seconds (a scheduler).")
def checkpoint(dsn, key_path, witness, every_rows, interval, loop):
    """Sign a checkpoint of the journal now (or keep signing with --loop)."""
    store = open_or_exit(dsn)
    key = _key(key_path)
    try:
        if not loop:
            cp = ckpt.make_checkpoint(store, key, witness_path=witness)
            if cp is None:
                _fail("another process is the journal's elected signer right now", 1)
            click.echo(f"checkpoint: {cp.size:,} rows, root {cp.root.hex()[:16]}…, signed "
                       f"{time.strftime('%Y-%m-%d %H:%M:%SZ', time.gmtime(cp.time_s))}")
            click.echo(cp.note, nl=False)
            return
        every_rows, fixed = every_rows or 10_000, interval
        interval = fixed or _setting(store, "checkpoint.interval_s", 300)
        source = "" if fixed else " (setting checkpoint.interval_s)"
        click.echo(f"signing every {every_rows:,} rows or {interval:g} s{source} (Ctrl-C to stop)")
        while True:
            cp = ckpt.maybe_checkpoint(store, every_rows=every_rows, every_seconds=interval, key=key,
                                       witness_path=witness)
            if cp is not None:
                click.echo(f"checkpoint at {cp.size:,}")
            time.sleep(min(interval, 5.0))
            if not fixed:
                interval = _setting(store, "checkpoint.interval_s", interval)
    except ckpt.TamperDetected as exc:
        _fail(f"refusing to sign: {exc}", 1)
    except ckpt.EmptyJournal as exc:
        _fail(str(exc))
    except OSError as exc:  # a read-only journal directory (its signer lock), an unwritable witness file
        _os_fail(exc, "cannot sign a checkpoint")
    except KeyboardInterrupt:
        pass


@click.command()
@db_option
@key_option
@witness_option
@click.option("--since", help="24h, 7d or an ISO date (default: the oldest row kept)")
@click.option("--until", help="ISO date or a duration ago (default: now)")
@click.option("--out", required=True, metavar="BUNDLE", help="A directory, or a path ending in .zip")
def export(dsn, key_path, witness, since, until, out):
    """Write a signed proof bundle of the rows in a period, for an auditor."""
    since_us, until_us = parse_period(since, until)
    store = open_or_exit(dsn)
    key = _key(key_path, required=False)
    try:
        info = export_bundle(store, out, since_us=since_us, until_us=until_us, key=key,
                             witness_path=witness)
    except BundleError as exc:
        _fail(str(exc))
    except ckpt.TamperDetected as exc:
        _fail(f"cannot export: {exc}", 1)
    except OSError as exc:  # --out in a missing directory, over a file, on a read-only or full disk
        if exc.filename is None or os.path.abspath(str(exc.filename)).startswith(os.path.abspath(out)):
            _os_fail(exc, "cannot write the bundle",
                     " (--out takes a directory, or a path ending in .zip in a directory that exists)")
        _os_fail(exc, "cannot export")  # the journal's signer lock, the witness file
    click.echo(f"bundle {out}: rows {info['first_seq']}..{info['last_seq']} ({info['rows']:,}), "
               f"checkpoint at {info['tree_size']:,}" + ("" if info["manifest_signed"] else " (manifest unsigned)"))
    if info["note"]:
        click.echo(f"note: {info['note']}")


@click.command("verify-bundle")
@click.argument("bundle", type=click.Path(exists=True))
@click.option("--public-key", default=None, metavar="KEY", help="The operator's public key (or a file holding it), "
                                                                 "obtained independently of the bundle.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def verify_bundle_cmd(bundle, public_key, fmt):
    """Check a proof bundle offline: needs nothing but the bundle (and the public key)."""
    res = verify_bundle(bundle, public_key)
    if fmt == "json":
        click.echo(json.dumps(res.as_dict(), indent=2))
    elif res.ok:
        click.secho(f"bundle verifies: rows {res.first_seq}..{res.last_seq} ({res.rows:,}) of {res.origin}, "
                    f"tree size {res.tree_size:,}, signed by {res.key.split('+')[0]}+{res.key.split('+')[1]}",
                    fg="green")
    else:
        click.secho("BUNDLE DOES NOT VERIFY: " + "; ".join(res.problems), fg="red", bold=True)
    if fmt == "text":
        for w in res.warnings:
            click.secho(f"warning: {w}", fg="yellow")
    sys.exit(0 if res.ok else 1)


@click.command("prove")
@db_option
@key_option
@witness_option
@click.argument("seq", type=click.IntRange(1, 2**63 - 1))
def prove_cmd(dsn, key_path, witness, seq):
    """One row with its RFC 9162 inclusion proof and the signed checkpoint (JSON)."""
    store = open_or_exit(dsn)
    key = _key(key_path, required=False)
    try:
        doc = prove(store, seq, key=key, witness_path=witness)
    except BundleError as exc:
        _fail(str(exc))
    except ckpt.TamperDetected as exc:
        _fail(str(exc), 1)
    click.echo(json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False))


@click.command("vacuum")
@db_option
@key_option
@witness_option
@click.option("--older-than", default=None,
              help="Retention window: 90d, 12h, 2w, ... (default: the setting retention.days, 90 unless set).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def vacuum_cmd(dsn, key_path, witness, older_than, yes):
    """Remove rows older than the retention window (anchor row, signed checkpoint, guarded delete)."""
    store = open_or_exit(dsn)
    if older_than is None:
        older_than = f"{_setting(store, 'retention.days', 90)}d"
    try:
        seconds = parse_age(older_than)
    except ValueError as exc:
        _fail(str(exc))
    key = _key(key_path)
    if not yes and sys.stdin.isatty():
        click.confirm(f"remove journal rows logged more than {older_than} ago?", abort=True)
    try:
        res = vacuum(store, older_than_s=seconds, key=key, witness_path=witness)
    except ckpt.TamperDetected as exc:
        _fail(f"vacuum refused: {exc}", 1)
    except OSError as exc:
        _os_fail(exc, "vacuum refused, nothing deleted")
    click.echo(res.message)


@click.command("verify-checkpoints")
@db_option
@key_option
@witness_option
@click.option("--public-key", default=None, metavar="KEY", help="Trusted public key (default: from the signing key).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def verify_checkpoints(dsn, key_path, witness, public_key, fmt):
    """Check the journal against its signed checkpoints and the witness file (also part of `verify`)."""
    store = open_or_exit(dsn)
    try:
        verifier = load_verifier(public_key, key_path=key_path) if (public_key or key_path) else None
        checks = ckpt.verify_trust(store, verifier=verifier, witness_path=witness, key_path=key_path)
    except (KeyProblem, OSError) as exc:
        _fail(str(exc))
    ok = all(c["ok"] for c in checks)
    if fmt == "json":
        click.echo(json.dumps({"ok": ok, "checks": checks}, indent=2))
    else:
        for c in checks:
            color = {"ok": "green", "review": "yellow"}.get(c["level"], "red")
            click.secho(f"{c['name']}: {c['message']}", fg=color)
    sys.exit(0 if ok else 1)
