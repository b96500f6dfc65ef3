"""One PEP 578 audit hook shared by the channels that listen to audit events (processes, ctypes).

An audit hook is called for *every* audit event of the process (file opens, imports, compiles...):
one hook doing one dict lookup costs less than one hook per channel.  Hooks cannot be removed, so
the hook stays and a channel's ``unregister`` makes it inert for that channel's events.  A handler
must never raise: an exception in an audit hook aborts the audited operation.
"""

from __future__ import annotations

import sys

from .. import capture

_handlers: dict = {}
_state = {"hooked": False}


def _dispatch(event, args):
    handler = _handlers.get(event)
    if handler is not None:
        try:
            handler(event, args)
        except Exception:
            capture.counters["errors.audit_events"] += 1


def register(events, handler) -> None:
    for event in events:
        _handlers[event] = handler
    if not _state["hooked"]:
        sys.addaudithook(_dispatch)
        _state["hooked"] = True


def unregister(events) -> None:
    for event in events:
        _handlers.pop(event, None)
