"""Collaborators that raise on every use: the fail-open tests install them to prove the audited call is unchanged."""

from __future__ import annotations

import mit_network_audit as mna


class Boom:
    """An attributor, redaction policy or classifier whose every attribute raises."""

    def __getattr__(self, name):
        raise RuntimeError("boom")


class BoomSink:
    def emit(self, event):
        raise RuntimeError("sink down")


def install_hostile(**kwargs) -> None:
    """``install()`` with every collaborator raising (sink, attributor, redaction, classifier)."""
    mna.install(sink=BoomSink(), attributor=Boom(), redaction=Boom(), classifier=Boom(), **kwargs)
