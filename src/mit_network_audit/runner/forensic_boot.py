"""Forensic body capture inside an audited process: install the body tap only while it is switched on.

``start(dsn)`` reads the settings once (``forensic.enabled``, scope, size cap) and subscribes to live
changes (``runner.live_settings.on_change``) when that hook exists, so an officer's switch reaches a
running process without a restart.  While capture is off, ``capture.runtime.body_tap`` stays None:
the interceptor's hot path pays one attribute read and nothing else.  Everything here is fail-open
for the audited program: a failure is counted in ``capture.stats()`` and capture stays off.
"""

from __future__ import annotations

import os
import threading

from ..interceptor import capture

_state: dict = {"dsn": None, "tap": None, "writer": None, "pid": None, "subscribed": False}
_lock = threading.RLock()


def _read_settings(dsn: str) -> dict:
    from ..journal import forensic, open_store

    with capture.suppressed():
        store = open_store(dsn)
        try:
            return forensic.current_settings(store)
        finally:
            store.close()


def apply(settings: dict) -> None:
    """Switch the tap on, re-scope it, or switch it off, from a settings dict (``get_settings`` keys)."""
    with _lock:
        try:
            _apply(settings)
        except Exception:
            capture.counters["errors.forensic_boot"] += 1


def _apply(settings: dict) -> None:
    from ..interceptor.forensic_tap import BodyTap
    from ..journal import forensic

    scope = forensic.scope_from_settings(settings)
    tap = _state["tap"]
    if not scope.enabled:
        if tap is not None:
            capture.runtime.body_tap = None
            _state["tap"] = None
            writer, _state["writer"] = _state["writer"], None
            if writer is not None:
                writer.close()
        return
    if tap is not None and _state["pid"] == os.getpid():
        tap.configure(addons=scope.addons, hosts=scope.hosts, max_bytes=scope.max_bytes)
        if _state["writer"] is not None:
            _state["writer"].retention_days = scope.retention_days
        return
    key = forensic.load_key(required=False)
    if key is None:
        # Capture asked for, but no key outside the database: nothing is stored, and it is counted.
        capture.counters["errors.forensic_no_key"] += 1
        return
    writer = forensic.BodyWriter(_state["dsn"], key, retention_days=scope.retention_days)
    tap = BodyTap(writer.submit, addons=scope.addons, hosts=scope.hosts, max_bytes=scope.max_bytes)
    _state.update(tap=tap, writer=writer, pid=os.getpid())
    capture.runtime.body_tap = tap


def start(dsn: str) -> None:
    """Called by ``boot.start`` after the interceptor is installed.  Never raises."""
    _state["dsn"] = dsn
    try:
        apply(_read_settings(dsn))
    except Exception:
        capture.counters["errors.forensic_boot"] += 1
    if not _state["subscribed"]:
        try:
            from . import live_settings
        except ImportError:
            return
        try:
            live_settings.on_change(apply)
            _state["subscribed"] = True
        except Exception:
            capture.counters["errors.forensic_boot"] += 1


def stop() -> None:
    apply({"forensic.enabled": False})
