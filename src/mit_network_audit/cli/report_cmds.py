"""report, rollup, demo: from the journal to a verdict a person can act on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import click
from rich.console import Console

from ..journal import default_dsn, display_dsn, open_store
from ..report import integrity
from ..report import rollup as rollup_mod
from ..report.catalogue import CatalogueError, load_catalogue
from ..report.render import render
from ..report.trust import build_report
from .common import db_option, open_or_exit, parse_period, positive_seconds, verify_progress

EXIT = {"all_clear": 0, "review": 1, "alarm": 2}


def register(group: click.Group) -> None:
    group.add_command(report)
    group.add_command(rollup)
    group.add_command(demo)


@click.command()
@db_option
@click.option("--since", default="24h", show_default=True, help="24h, 7d, 30d or an ISO date")
@click.option("--until", default=None, help="ISO date or duration ago (default: now)")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--verify/--no-verify", "run_verify", default=None,
              help="re-check the whole hash chain, the signed checkpoints and the rollup first, as `verify` "
                   f"does (~5 s per million rows on 2 cores). Default: for a journal of up to "
                   f"{integrity.AUTO_ROWS:,} rows (about a second); a bigger one is not re-checked unless "
                   "asked, and the report says so")
@click.option("--catalogue", "catalogues", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="an extra catalogue TOML (matched before the shipped one); repeatable")
def report(dsn, since, until, fmt, run_verify, catalogues):
    """The Trust Report: a verdict with its evidence.

    Exit status 0 all clear, 1 review, 2 alarm — usable as a CI gate.
    """
    since_us, until_us = parse_period(since, until)
    try:
        catalogue = load_catalogue(catalogues)
    except CatalogueError as exc:
        click.echo(f"error: {exc}\n(the format: docs/trust-report.md, \"The catalogue\")", err=True)
        sys.exit(2)
    store = open_or_exit(dsn)
    checked, rows = None, store.max_seq()
    if run_verify or (run_verify is None and rows <= integrity.AUTO_ROWS):
        with verify_progress(store, show=fmt == "text") as progress:
            checked = integrity.check(store, progress)
    pending = None
    if checked is None and run_verify is None:
        pending = integrity.not_checked_message(rows, "`report --verify`, or `mit-network-audit verify`")
    rep = build_report(store, since_us, until_us,
                       catalogue=catalogue, integrity=checked, chain_pending=pending)
    if fmt == "json":
        click.echo(json.dumps(rep.as_dict(), indent=2, ensure_ascii=False))
    else:
        render(rep, Console(width=None if sys.stdout.isatty() else 120))
    sys.exit(EXIT[rep.verdict])


@click.command()
@db_option
@click.option("--rebuild", is_flag=True, help="drop the rollup and fold the whole journal again")
@click.option("--check", is_flag=True, help="compare rollup totals with the journal")
@click.option("--loop", is_flag=True, help="keep rolling up every --interval seconds (a scheduler; Ctrl-C stops)")
@click.option("--interval", type=float, default=None, callback=positive_seconds,
              help="with --loop: seconds between passes (default: the setting rollup.interval_s, re-read "
                   "at every pass)")
def rollup(dsn, rebuild, check, loop, interval):
    """Fold new journal rows into the hourly rollup the reports read."""
    store = open_or_exit(dsn)
    if loop:
        _rollup_loop(store, interval)
        return
    started = time.perf_counter()
    result = (rollup_mod.rebuild if rebuild else rollup_mod.catch_up)(store)
    took = time.perf_counter() - started
    click.echo(f"rolled up {result.rows:,} rows in {took:.2f}s; watermark at chain_seq {result.watermark}")
    if check:
        c = rollup_mod.consistency(store)
        click.secho(c["message"], fg="green" if c["ok"] else "red")
        sys.exit(0 if c["ok"] else 1)


def _rollup_loop(store, fixed: float | None) -> None:
    from ..journal import settings as journal_settings

    def interval() -> float:
        if fixed:
            return fixed
        try:
            return float(journal_settings.get_settings(store)["rollup.interval_s"])
        except Exception:
            return 60.0

    every = interval()
    click.echo(f"rolling up every {every:g} s" + ("" if fixed else " (setting rollup.interval_s)") +
               " (Ctrl-C to stop)")
    try:
        while True:
            result = rollup_mod.catch_up(store)
            if result.rows:
                click.echo(f"rolled up {result.rows:,} rows; watermark at chain_seq {result.watermark}")
            time.sleep(every)
            every = interval()
    except KeyboardInterrupt:
        pass


@click.command()
@db_option
@click.option("--open/--no-open", "open_dashboard", default=False,
              help="then serve the dashboard on 127.0.0.1 and open it")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(1, 65535), help="dashboard port with --open")
def demo(dsn, open_dashboard, port):
    """Audit a small example application against loopback stand-ins and print its Trust Report.

    Starts a vendor licence server, an LLM provider and a mail server on loopback, runs an
    example shop with four third-party modules under `mit-network-audit run` — one of which
    uploads the customer list to the vendor — and prints the verdict (an alarm naming it).
    """
    from ..report.demo import standins

    if dsn is None:
        data_dir = os.path.dirname(default_dsn().replace("sqlite:///", "")) if "MNA_DB" not in os.environ else None
        dsn = "sqlite:///" + os.path.join(data_dir or tempfile.mkdtemp(prefix="mna-demo-"), "demo.db")
        path = dsn[len("sqlite:///"):]
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
    open_store(dsn).close()
    click.echo(f"journal: {display_dsn(dsn)}")
    servers = standins.StandIns().start()
    catalogue_file = os.path.join(tempfile.mkdtemp(prefix="mna-demo-"), "demo-catalogue.toml")
    with open(catalogue_file, "w") as fh:
        fh.write(standins.DEMO_CATALOGUE)
    app_dir = os.path.join(os.path.dirname(standins.__file__), "app_src")
    from .run_cmd import audited_env

    env = audited_env(dsn)
    env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], app_dir])
    env["MNA_CATALOGUE"] = catalogue_file
    click.echo("running the example shop under audit (vendor 127.0.0.2, LLM provider 127.0.0.3, mail 127.0.0.4)…")
    try:
        completed = subprocess.run([sys.executable, os.path.join(app_dir, "demo_shop.py"), servers.vendor,
                                    servers.llm, standins.MAIL_IP, str(servers.smtp_port)], env=env, timeout=120)
    finally:
        servers.stop()
    if completed.returncode != 0:
        click.echo(f"error: the example application failed (exit {completed.returncode})", err=True)
        sys.exit(2)
    store = open_store(dsn)
    rep = build_report(store, 0, catalogue=load_catalogue([catalogue_file]), integrity=integrity.check(store))
    click.echo()
    render(rep, Console(width=None if sys.stdout.isatty() else 120))
    shown = display_dsn(dsn)
    click.echo(f"\njournal: {shown}\nnext: mit-network-audit log --db {shown}   ·   "
               f"mit-network-audit serve --db {shown}")
    if open_dashboard:
        _open_dashboard(dsn, port)


def _open_dashboard(dsn: str, port: int) -> None:
    try:
        from ..web.demo import serve_demo
    except ImportError:
        click.echo("the dashboard needs the web extra: pip install 'mit-network-audit[web]'", err=True)
        sys.exit(2)
    serve_demo(dsn, port)
