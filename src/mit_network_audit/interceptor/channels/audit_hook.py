"""Audit-hook backstop (PEP 578): connects that bypass every patch still raise an audit event.

A ``_socket.socket`` used directly, or ``socket.socket.connect`` restored to the original behind
our back, reach ``socket.connect`` without passing our wrapper: each gets an ``audit`` row, and a
removed patch also an ``internal`` tamper row (once per patch).  Audit hooks cannot be removed,
so the hook is installed once and goes inert on ``uninstall``.  It must never raise: an exception
in an audit hook aborts the audited operation.
"""

from __future__ import annotations

import json
import socket

from .. import capture
from ..event import internal_event
from . import _audit_events
from . import socket as socket_channel

NAME = "audit"
TARGET = None
_EVENTS = frozenset({"socket.connect"})
_state = {"enabled": False, "hooked": False, "tamper_reported": set()}


def _hook(event, args):
    if not _state["enabled"]:
        return
    try:
        if capture._active_get() is not None:
            return  # an outer layer owns this call (e.g. a library over _socket directly)
        if getattr(socket_channel.in_wrapper, "active", False) or capture._suppressed_get():
            return
        sock, address = args
        if getattr(sock, "family", None) == getattr(socket, "AF_UNIX", None):
            return  # not network traffic (the socket wrapper counts unix connects)
        _report_tamper()
        call = socket_channel.start_raw_row(sock, address, channel=NAME)
        if call is not None:
            capture.end(call)  # no byte counts: the bypassing socket is not ours to wrap
    except Exception:
        capture.counters["errors.audit_hook"] += 1


def _report_tamper() -> None:
    wrapper = socket.socket.__dict__.get("connect")
    if (
        getattr(wrapper, "__mna_original__", None) is None
        and "connect" not in _state["tamper_reported"]
        and "socket" in _installed_channels()
    ):
        _state["tamper_reported"].add("connect")
        capture.emit(
            internal_event(
                "tamper",
                detail=json.dumps(
                    {
                        "patch": "socket.socket.connect",
                        "what": "restored or replaced behind the auditor's back",
                    }
                ),
            )
        )


def _installed_channels():
    from .. import installed_channels

    return installed_channels()


def install(patches) -> None:
    # Through the one shared hook (channels/_audit_events.py): every audit event of the process
    # then costs one Python call and a dict lookup, not one call per listening channel.
    _audit_events.register(_EVENTS, _hook, skip_when_owned=True)
    _state["enabled"] = True
    _state["tamper_reported"].clear()


def uninstall() -> None:
    _state["enabled"] = False
    _audit_events.unregister(_EVENTS)
