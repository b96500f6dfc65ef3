"""The `mit-network-audit` command line: one click group, one module per area of commands.

Each module in ``COMMAND_MODULES`` exposes ``register(group)``; the areas are kept apart so each
stays small (journal reads, running a program under audit, reports, trust anchors, web, settings).
"""

from __future__ import annotations

import importlib

import click

COMMAND_MODULES = (
    "journal_cmds",  # log, show, verify
    "run_cmd",  # run -- CMD...
    "report_cmds",  # report, rollup, demo
    "trust_cmds",  # keys, checkpoint, export, verify-bundle, prove, vacuum
    "web_cmds",  # serve, user
    "settings_cmds",  # settings get/set
    "forensic_cmds",  # forensic key init, list, read, purge
)


class _MainGroup(click.Group):
    def invoke(self, ctx: click.Context):
        from .common import database_errors, database_failed

        try:
            return super().invoke(ctx)
        except database_errors() as exc:
            database_failed(exc)


@click.group(cls=_MainGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="mit-network-audit")
def main() -> None:
    """MIT Network Audit: prove where a Python server's data goes.

    \b
    Typical first steps:
      mit-network-audit demo                 # audit real loopback traffic, print the Trust Report
      mit-network-audit run -- python app.py # audit an unmodified program
      mit-network-audit report               # the verdict over the last 24h
      mit-network-audit verify               # check the hash chain and checkpoints
      mit-network-audit serve                # the web dashboard on 127.0.0.1
    """


for _name in COMMAND_MODULES:
    try:
        _module = importlib.import_module(f"{__name__}.{_name}")
    except ModuleNotFoundError as exc:  # an area not built yet, or its extra not installed
        if exc.name and exc.name.endswith(_name):
            continue
        raise
    _module.register(main)
