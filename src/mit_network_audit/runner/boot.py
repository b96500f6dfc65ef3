"""Start auditing this process from environment variables set by ``mit-network-audit run``.

    MNA_DB        journal DSN (required)
    MNA_DISABLE   comma list of channels not to record (e.g. ``socket,smtp``), on top of the
                  journal's live setting ``capture.disabled_channels`` (see runner/live_settings.py)
    MNA_HEARTBEAT seconds between heartbeat rows (default 60; 0 = off)
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import threading
import time

from .. import interceptor
from ..interceptor import capture
from ..interceptor.event import internal_event
from ..journal.sink import BatchingSink, flush_all
from . import children, forensic_boot, live_settings

_started = {"pid": None}


def classifier_or_none():
    try:
        from ..report.catalogue import default_classifier
    except ImportError:
        return None
    try:
        return default_classifier()
    except Exception:
        capture.counters["errors.classifier_load"] += 1
        return None


def start(dsn: str, disabled_channels=(), heartbeat_seconds: float = 60.0) -> BatchingSink:
    """Install the interceptor with a journal sink; emit a start row and heartbeats."""
    sink = BatchingSink(dsn)
    interceptor.install(sink=sink, classifier=classifier_or_none(), disabled_channels=disabled_channels)
    live_settings.start(dsn)  # the journal's settings: read now, then followed live (never raises)
    live_settings.follow_disabled_channels(disabled_channels)  # capture.disabled_channels, live
    forensic_boot.start(dsn)  # the body tap, only while forensic capture is switched on (never raises)
    _started["pid"] = os.getpid()
    capture.emit(internal_event("start", detail=_health_detail()))
    if heartbeat_seconds > 0:
        _start_heartbeat(heartbeat_seconds)
    atexit.register(_stop_row)  # runs before the sink's own at-exit flush (registered earlier)
    _install_sigterm_flush()
    children.install()  # a forked child killed by a signal (kill -9, OOM): its parent writes its stop row
    return sink


def _stop_row() -> None:
    if capture.runtime.active and _started["pid"] == os.getpid() and not _started.get("stopped"):
        _started["stopped"] = True
        capture.emit(internal_event("stop", detail=_health_detail()))


def _install_sigterm_flush() -> None:
    """A process killed by SIGTERM runs no ``atexit``: no stop row, and the rows still queued are
    lost.  Servers that handle SIGTERM themselves and then re-raise it with the previous handler
    restored (uvicorn does, after its graceful shutdown) end the same way.  So, only where SIGTERM
    is still at its default: a handler that writes the stop row and flushes the journal, then
    restores the default and re-raises the signal: the process still dies by SIGTERM, with the same
    exit status.  A program that installs its own SIGTERM handler (gunicorn's master and workers,
    Odoo) replaces this one and is not affected."""
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return
        signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):
        pass


def _on_sigterm(signum, frame) -> None:
    try:
        _stop_row()
        flush_all(timeout=5.0)
    except BaseException:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.raise_signal(signal.SIGTERM)


def _health_detail() -> str:
    return json.dumps({"channels": sorted(interceptor.installed_channels()),
                       "disabled": sorted(capture.runtime.disabled)}, sort_keys=True)


def _start_heartbeat(interval: float) -> None:
    def beat():
        capture.suppress_current_thread()
        while True:
            time.sleep(interval)
            if not capture.runtime.active:
                return
            capture.emit(internal_event("heartbeat", detail=_health_detail()))

    threading.Thread(target=beat, name="mna-heartbeat", daemon=True).start()

    def restart_in_child():
        threading.Thread(target=beat, name="mna-heartbeat", daemon=True).start()

    os.register_at_fork(after_in_child=restart_in_child)


def start_from_env() -> None:
    dsn = os.environ.get("MNA_DB")
    if not dsn or _started["pid"] == os.getpid():
        return
    disabled = [c for c in os.environ.get("MNA_DISABLE", "").split(",") if c.strip()]
    start(dsn, disabled, float(os.environ.get("MNA_HEARTBEAT", "60") or 0))
