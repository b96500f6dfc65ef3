"""log, show, verify: reading the journal and checking that nobody changed it."""

from __future__ import annotations

import json
import string
import sys
import time

import click
from rich.console import Console
from rich.table import Table

from ..journal.store import RowFilter
from ..journal.verify import verify as verify_journal
from ..report import integrity
from ..report.render import safe_text
from .common import db_option, format_us, open_or_exit, parse_period, verify_progress


def register(group: click.Group) -> None:
    group.add_command(log)
    group.add_command(show)
    group.add_command(verify)


def _row_table(rows) -> Table:
    table = Table(box=None, header_style="bold")
    for col in ("Seq", "Logged (UTC)", "Dir", "Channel", "Host", "Method", "Status", "Addon", "Vendor", "Req B", "Resp B"):
        table.add_column(col, no_wrap=col not in ("Host", "Addon"), overflow="ellipsis")
    for r in rows:
        e = r.event
        table.add_row(str(r.chain_seq), format_us(e.logged_at_us), *map(safe_text, (
                      e.direction, e.channel, e.host or "", (e.method or "")[:30])),
                      "" if e.status is None else str(e.status), safe_text(e.addon or ""),
                      "yes" if e.vendor_bound else "", str(e.req_bytes), str(e.resp_bytes),
                      style="red" if e.outcome == "error" else None)
    return table


@click.command()
@db_option
@click.option("--direction", type=click.Choice(["inbound", "outbound", "internal"]))
@click.option("--channel", help="e.g. requests, httpx, smtp, socket, wsgi")
@click.option("--host", help="exact destination host (any case; an IPv6 address with or without [ ])")
@click.option("--addon", help="exact owner (module / distribution)")
@click.option("--vendor-bound/--not-vendor-bound", default=None, help="only rows bound (or not) to the vendor")
@click.option("--outcome", type=click.Choice(["ok", "error"]))
@click.option("--since", help="24h, 7d, 30m or an ISO date")
@click.option("--until", help="ISO date or a duration ago")
@click.option("--search", "text", help="substring of host, addon or path")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--format", "fmt", type=click.Choice(["table", "json", "jsonl"]), default="table", show_default=True)
@click.option("--follow", is_flag=True, help="keep printing new rows as they are written (Ctrl-C to stop)")
def log(dsn, direction, channel, host, addon, vendor_bound, outcome, since, until, text, limit, fmt, follow):
    """Rows of the journal, newest first.

    \b
    Examples:
      mit-network-audit log --vendor-bound --since 24h
      mit-network-audit log --addon acme_connector --format jsonl > rows.jsonl
      mit-network-audit log --follow
    """
    if follow and fmt == "json":  # one JSON document never ends: each poll would print an array of its own
        raise click.UsageError("--follow prints rows as they come: use --format jsonl (one object per line) or table")
    if host:  # as the journal keeps hosts: lower case, no trailing dot, an IPv6 address without brackets
        host = host.strip().lower().rstrip(".").removeprefix("[").removesuffix("]") or host
    since_us, until_us = parse_period(since, until)
    store = open_or_exit(dsn)
    flt = RowFilter(direction=direction, channel=channel, host=host, addon=addon, vendor_bound=vendor_bound,
                    outcome=outcome, since_us=since_us, until_us=until_us, text=text)
    console = Console(width=None if sys.stdout.isatty() else 160)
    if not follow:
        _print(store.rows(flt, limit=limit), fmt, console)
        return
    # Following reads like `tail -f`: oldest first, then every new row in order, none skipped however
    # fast they come (chain_seq is gapless: each pass reads the next window of seqs, filtered).
    last = store.max_seq()
    _print(store.rows(flt, before_seq=last + 1, limit=limit)[::-1], fmt, console)
    try:
        while True:
            head = store.max_seq()
            while last < head:
                window = min(head, last + FOLLOW_WINDOW)
                new = store.rows(flt, after_seq=last, before_seq=window + 1, limit=FOLLOW_WINDOW)
                if new:
                    _print(new[::-1], fmt, console)
                last = window
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass


FOLLOW_WINDOW = 1000


def _print(rows, fmt, console) -> None:
    if fmt == "jsonl":
        for r in rows:
            click.echo(json.dumps(r.as_dict(), ensure_ascii=False, sort_keys=True))
    elif fmt == "json":
        click.echo(json.dumps([r.as_dict() for r in rows], ensure_ascii=False, indent=2, sort_keys=True))
    else:
        if not rows:
            console.print("no rows match (try a wider --since or fewer filters)")
        else:
            console.print(_row_table(rows))


@click.command()
@db_option
@click.argument("ref")
def show(dsn, ref):
    """One row in full, by chain_seq (a number) or event_id (32 hex characters)."""
    text = ref.strip()
    if len(text) == 32 and all(c in string.hexdigits for c in text):
        lookup = ("event_id", text.lower())
    elif text.isascii() and text.isdigit():
        lookup = ("chain_seq", int(text))
    else:
        click.echo(f"error: {ref!r} is neither a chain_seq (a number, as `mit-network-audit log` shows) "
                   "nor an event_id (32 hex characters)", err=True)
        sys.exit(2)
    store = open_or_exit(dsn)
    if lookup[0] == "event_id":
        row = store.get_by_event_id(lookup[1])
    else:
        row = store.get(lookup[1]) if lookup[1] < 2**63 else None
    if row is None:
        click.echo(f"error: no row {ref!r} in this journal (see `mit-network-audit log`)", err=True)
        sys.exit(2)
    click.echo(json.dumps(row.as_dict(), ensure_ascii=False, indent=2, sort_keys=True))


@click.command()
@db_option
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def verify(dsn, fmt):
    """Re-check every row's hash and every link of the chain.

    Exit status: 0 intact, 1 tampered, 2 usage or I/O error.
    """
    store = open_or_exit(dsn)
    try:
        with verify_progress(store, show=fmt == "text") as progress:
            result = verify_journal(store, progress)
        extra = integrity.further_checks(store)
    except Exception as exc:
        click.echo(f"error: verify could not read the journal: {type(exc).__name__}: {exc}", err=True)
        sys.exit(2)
    ok = result.ok and all(item.get("ok", True) for item in extra)
    if fmt == "json":
        click.echo(json.dumps({"ok": ok, "chain": result.as_dict(), "checks": extra}, indent=2))
    else:
        if result.ok and not result.rows_checked:
            click.secho("chain intact: the journal has no rows yet", fg="green")
        elif result.ok:
            click.secho(f"chain intact: {result.rows_checked:,} rows (seq {result.first_seq}..{result.last_seq})",
                        fg="green")
        else:
            click.secho(f"TAMPERED at chain_seq {result.first_bad_seq}: {result.problem}: {result.message}",
                        fg="red", bold=True)
        for item in extra:
            click.secho(f"{item['name']}: {item['message']}", fg="green" if item.get("ok", True) else "red")
    sys.exit(0 if ok else 1)
