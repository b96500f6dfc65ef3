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
_skip_when_owned: set = set()
_state = {"hooked": False}


def _dispatch(event, args, _get=_handlers.get):
    handler = _get(event)
    if handler is not None:
        if event in _skip_when_owned and capture._active_get() is not None:
            return  # an outer layer owns what happens here (e.g. a connect under an HTTP call)
        try:
            handler(event, args)
        except Exception:
            capture.counters["errors.audit_events"] += 1


def register(events, handler, *, skip_when_owned: bool = False) -> None:
    """``skip_when_owned``: do not even call ``handler`` while a call is current (an outer layer
    owns it) — one Python call less on the hot path of a connect under an HTTP call."""
    for event in events:
        _handlers[event] = handler
        if skip_when_owned:
            _skip_when_owned.add(event)
        else:
            _skip_when_owned.discard(event)
    if not _state["hooked"]:
        sys.addaudithook(_dispatch)
        _state["hooked"] = True


def unregister(events) -> None:
    for event in events:
        _handlers.pop(event, None)
