"""The Trust Report as text for a terminal (rich)."""

from __future__ import annotations

import re
from datetime import UTC

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .trust import Report

_STYLE = {"alarm": "bold white on red", "review": "bold black on yellow", "all_clear": "bold white on green"}
_TITLE = {"alarm": "ALARM", "review": "REVIEW", "all_clear": "ALL CLEAR"}
_ICON = {"alarm": "✖", "review": "!", "info": "✔"}


# What a row's text (a client's Host header or request method, a module's name) must not do on a
# terminal: control characters (ESC sequences clear the screen, retitle the window, fake colours),
# and the bidi controls that reorder what is shown.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(value) -> str:
    """Text from the journal for a terminal, its control characters shown as escapes (``\\x1b``)."""
    return _UNSAFE.sub(_escape, str(value))


def safe_text(value, style: str = "") -> Text:
    """``printable`` text as rich Text: never read as markup ("[/b]" is not a tag; an unmatched one
    used to end the report in a MarkupError, "[link=...]" made a link)."""
    return Text(printable(value), style=style)


def _fmt_us(us: int) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(us / 1e6, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def render(report: Report, console: Console) -> None:
    head = Text(f" {_TITLE[report.verdict]} ", style=_STYLE[report.verdict])
    start = "the beginning" if report.since_us <= 0 else _fmt_us(report.since_us)
    head.append(f"  Trust Report, {start} → {_fmt_us(min(report.until_us, 2**52))}")
    console.print(head)
    console.print()
    for line in report.lines:
        colour = {"alarm": "red", "review": "yellow", "info": "green"}[line.level]
        icon = _ICON[line.level]
        if line.rule == "chain_not_checked":  # not a finding either way: say it, without a tick
            colour, icon = "dim", "·"
        console.print(Text(f"{icon} ", style=colour) + safe_text(line.message, colour), highlight=False)
        if line.chain_seqs:
            seqs = ", ".join(str(s) for s in line.chain_seqs[:12]) + (" …" if len(line.chain_seqs) > 12 else "")
            console.print(f"    evidence: {line.count:,} row(s); chain_seq {seqs}"
                          f"  (mit-network-audit show SEQ)", style="dim", highlight=False)
    console.print()
    for title, key in ((f"Bound for {report.vendor_name}", "vendor_bound"), ("Everything else", "other")):
        table = Table(title=safe_text(title), title_justify="left", box=None, header_style="bold")
        for col in ("Module", "Destination", "Class", "Component", "Calls", "Sent bytes"):
            table.add_column(col, justify="right" if col in ("Calls", "Sent bytes") else "left")
        for addon, info in sorted(report.summary[key].items()):
            for host, dest in sorted(info["destinations"].items()):
                table.add_row(safe_text(addon), safe_text(host), safe_text(dest["dest_class"]),
                              safe_text(dest["component"] or "—"), f"{dest['calls']:,}", f"{dest['req_bytes']:,}")
        console.print(table if table.row_count else Group(safe_text(title, "italic"), Text("  nothing")))
        console.print()
    inbound = report.summary["inbound"]
    if inbound["requests"]:
        console.print(f"Inbound: {inbound['requests']:,} request(s) served.", highlight=False)
    if inbound.get("connections"):
        owners = ", ".join(f"{addon} ({info['connections']:,})" for addon, info in sorted(inbound["listeners"].items()))
        console.print(safe_text(f"Inbound: {inbound['connections']:,} TCP connection(s) accepted outside any HTTP "
                                f"layer, on listeners opened by {owners}."), highlight=False)
    console.print(Panel.fit("exit status: 0 all clear · 1 review · 2 alarm", style="dim"))
