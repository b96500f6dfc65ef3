"""A forked child killed by a signal says nothing: SIGKILL (an OOM kill, ``kill -9``) or a crash ends
it before any flush, so the rows its journal writer had not written yet (at most one flush interval,
100 ms, of rows) and its calls in flight are lost, and nothing in the child can record that.

Its parent can.  Under ``mit-network-audit run`` the parent notes the pid of every child it forks
(``os.fork``: gunicorn's and Odoo's masters, multiprocessing's fork start method) and, when it reaps
one (``os.waitpid`` / ``os.wait``) that died by a signal, writes an ``internal`` ``stop`` row **for the
child** (``pid`` = the child's) with ``detail``::

    {"killed_by_signal": "SIGKILL", "reaped_by": <parent pid>,
     "unflushed_rows": "unknown", "unflushed_bound": "..."}

The number lost is unknown (the child's memory is gone): the row says a loss may have happened, where
and when.  SIGTERM and SIGINT are not reported: the child's own handlers flush before dying by them
(``boot._on_sigterm``; SIGINT unwinds through ``atexit``).  Children that are not Python programs
audited by us are never forked through ``os.fork`` (``subprocess`` uses ``fork_exec``).
"""

from __future__ import annotations

import functools
import json
import os
import signal

from ..interceptor import capture
from ..interceptor.event import internal_event

_forked: set[int] = set()
_original: dict = {}
NOT_REPORTED = {signal.SIGTERM, signal.SIGINT}
BOUND = "rows not yet flushed by the child's journal writer (at most one flush interval, 100 ms) and its calls in flight"


def install() -> None:
    if _original:
        return
    _original.update(fork=os.fork, waitpid=os.waitpid, wait=os.wait)

    @functools.wraps(_original["fork"])
    def fork():
        pid = _original["fork"]()
        if pid > 0:
            _forked.add(pid)
        elif pid == 0:
            _forked.clear()  # the parent's children are not this child's
        return pid

    @functools.wraps(_original["waitpid"])
    def waitpid(pid, options, /):
        wpid, status = _original["waitpid"](pid, options)
        _reaped(wpid, status)
        return wpid, status

    @functools.wraps(_original["wait"])
    def wait():
        wpid, status = _original["wait"]()
        _reaped(wpid, status)
        return wpid, status

    os.fork, os.waitpid, os.wait = fork, waitpid, wait


def _reaped(pid: int, status: int) -> None:
    if pid <= 0 or pid not in _forked:
        return
    _forked.discard(pid)
    try:
        if not os.WIFSIGNALED(status) or os.WTERMSIG(status) in NOT_REPORTED or not capture.runtime.active:
            return
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        detail = {"killed_by_signal": name, "reaped_by": os.getpid(), "unflushed_rows": "unknown",
                  "unflushed_bound": BOUND}
        capture.emit(internal_event("stop", detail=json.dumps(detail, sort_keys=True), pid=int(pid)))
    except Exception:
        capture.counters["errors.child_reaped"] += 1
