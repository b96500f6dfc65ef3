"""Process health rows for Odoo processes: ``start`` when a process begins auditing (and in every
forked worker), a ``heartbeat`` every few minutes, ``stop`` at a clean exit (Odoo workers leave
through ``sys.exit``, so recycled workers stop cleanly; a killed one goes silent, which the Trust
Report reports).  Each row's detail names the installed and the disabled channels, as the package's
``runner.boot`` does, so the Trust Report sees an incomplete capture.

The disabled channels are the package's setting ``capture.disabled_channels``, which the glue follows
live (``runner.live_settings``, see ``glue.start_settings``); ``start(read_disabled=...)`` still takes
a reader called at start and at each heartbeat, for callers that keep them elsewhere.  The rows go
where the routing sink sends rows of a thread without ``dbname``: the single ``--database``; a server
with several databases writes no health rows (their journals would each need them) and that is
documented.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import time

DEFAULT_INTERVAL = 300.0  # the Trust Report calls a process silent after 3 missed beats of 5 min
_state: dict = {
    "pid": None,
    "interval": DEFAULT_INTERVAL,
    "read_disabled": None,
    "registered": False,
    "on": False,
}


def parse_channels(raw) -> list[str]:
    return sorted({c.strip() for c in str(raw or "").split(",") if c.strip()})


def detail() -> str:
    from mit_network_audit import interceptor
    from mit_network_audit.interceptor import capture

    return json.dumps(
        {"channels": sorted(interceptor.installed_channels()), "disabled": sorted(capture.runtime.disabled)},
        sort_keys=True,
    )


def apply_disabled() -> None:
    """Re-read the disabled channels (when a reader was given) and apply them to this process."""
    reader = _state.get("read_disabled")
    if reader is None:
        return
    try:
        channels = reader()
    except Exception:
        return
    if channels is None:
        return
    from mit_network_audit import interceptor

    interceptor.set_disabled_channels(parse_channels(channels))


def emit(kind: str) -> None:
    from mit_network_audit.interceptor import capture
    from mit_network_audit.interceptor.event import internal_event

    if capture.runtime.active:
        capture.emit(internal_event(kind, detail=detail()))


def _beat() -> None:
    from mit_network_audit.interceptor import capture

    capture.suppress_current_thread()
    pid = os.getpid()
    while True:
        time.sleep(_state["interval"])
        if not _state["on"] or _state["pid"] != pid or not capture.runtime.active:
            return
        apply_disabled()
        emit("heartbeat")


def _begin() -> None:
    if not _state["on"]:
        return
    _state["pid"] = os.getpid()
    apply_disabled()
    emit("start")
    if _state["interval"] > 0:
        threading.Thread(target=_beat, name="mna-odoo-heartbeat", daemon=True).start()


def _stop() -> None:
    if _state["pid"] == os.getpid():
        emit("stop")
        _state["pid"] = None


def start(read_disabled=None, interval: float | None = None) -> bool:
    """Begin health rows in this process and in every process forked from it.  Idempotent per pid."""
    if _state["pid"] == os.getpid():
        return False
    _state["on"] = True
    _state["read_disabled"] = read_disabled
    env = os.environ.get("MNA_HEARTBEAT")
    _state["interval"] = float(interval if interval is not None else (env or DEFAULT_INTERVAL))
    if not _state["registered"]:
        import mit_network_audit.journal.sink  # noqa: F401  (its at-exit flush must run after our stop row)

        os.register_at_fork(after_in_child=_begin)
        atexit.register(_stop)  # after the sink's own at-exit flush is registered: runs before it
        _state["registered"] = True
    _begin()
    return True


def stop() -> None:
    """No more health rows from this process nor from processes forked from it later."""
    _stop()
    _state.update(on=False, pid=None, read_disabled=None)


def patch_prefork_stop() -> bool:
    """Odoo's prefork master ends the gevent process with SIGKILL (``PreforkServer.stop``), so that
    process never writes its own ``stop`` row.  The master, which did it, writes one for it: pid of
    the gevent process, detail ``{"killed_by": <master pid>, ...}``.  Idempotent (marker)."""
    try:
        from odoo.service import server
    except Exception:
        return False
    from .marker import wrap_call_once

    def make_wrapper(original):
        def stop(self, *args, **kwargs):
            gevent_pid = getattr(self, "long_polling_pid", None)
            try:
                return original(self, *args, **kwargs)
            finally:
                if gevent_pid and _state["on"]:
                    emit_for(gevent_pid, "stop", killed_by=os.getpid())

        return stop

    return wrap_call_once(
        server.PreforkServer, make_wrapper, name="stop", marker="_mit_network_audit_stop_patched"
    )


def emit_for(pid: int, kind: str, **facts) -> None:
    """A health row on behalf of another process of this server (the master for its gevent child)."""
    from mit_network_audit.interceptor import capture
    from mit_network_audit.interceptor.event import internal_event

    if capture.runtime.active:
        info = json.loads(detail())
        info.update(facts)
        capture.emit(internal_event(kind, detail=json.dumps(info, sort_keys=True), pid=int(pid)))
