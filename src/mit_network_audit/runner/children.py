"""A forked child killed by a signal says nothing: SIGKILL (an OOM kill, ``kill -9``) or a crash ends
it before any flush, so the rows its journal writer had not written yet and its calls in flight are
lost, and nothing in the child can record that.

Its parent can, and exactly.  Under ``mit-network-audit run`` the parent notes the pid of every child
it forks (``os.fork``: gunicorn's and Odoo's masters, multiprocessing's ``fork`` start method; the
``forkserver``'s server process forks and reaps its workers the same way, not tested) and gives it one page of shared memory where the child keeps its counts (calls begun and
finished, events accepted and resolved by each journal sink: ``interceptor.process_counts``).  When it
reaps the child (``os.waitpid`` / ``os.wait``) it reads that page and:

* if the child died by a signal other than SIGTERM/SIGINT, writes an ``internal`` ``stop`` row **for
  the child** (``pid`` = the child's) with ``detail``::

      {"killed_by_signal": "SIGKILL", "reaped_by": <parent pid>, "unflushed_rows": N}

* whenever N > 0 (a kill, or any exit that left rows unwritten), writes a ``gap`` row for the child::

      {"lost": N, "reasons": ["killed_by_signal"], "reaped_by": ..., "lost_internal": ..., "in_flight": ...}

N counts the events the child had accepted but not written (nor declared in a written gap row), and
its calls begun with no row yet.  If the child died while appending a batch, that batch is settled
(committed or not) by the parent's writer with one lookup of the batch's last event id, in the same
journal; in another journal it stays ``in_doubt`` (a separate count, not in ``lost``).  A page that
cannot be trusted (corrupt, an exec'd child, no page) gives ``unflushed_rows: "unknown"`` and the
reason, as before — fail-open, never an exception in the reaper.

SIGTERM and SIGINT are not reported as kills: the child's own handlers flush before dying by them
(``boot._on_sigterm``; SIGINT unwinds through ``atexit``); if they could not, the gap row says so.
Children that are not Python programs audited by us are never forked through ``os.fork``
(``subprocess`` uses ``fork_exec``); a child that calls ``os.execv``/``os.execve`` is marked exec'd.
"""

from __future__ import annotations

import functools
import os
import signal

from ..interceptor import capture, process_counts
from ..journal import sink as _sink

_forked: set[int] = set()
_original: dict = {}
NOT_REPORTED = {signal.SIGTERM, signal.SIGINT}


def install() -> None:
    if _original:
        return
    _original.update(fork=os.fork, waitpid=os.waitpid, wait=os.wait)

    @functools.wraps(_original["fork"])
    def fork():
        process_counts.prepare_fork()  # the child's page, shared, made before the fork
        try:
            pid = _original["fork"]()
        except BaseException:
            process_counts.adopt(-1)
            raise
        if pid > 0:
            process_counts.adopt(pid)
            _forked.add(pid)
        elif pid == 0:
            _forked.clear()  # the parent's children are not this child's
            process_counts.enter_child()  # (the at-fork hooks usually did it already)
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
    for name in ("execv", "execve"):  # os.execl/execlp/execvp/... all end in one of these
        original = getattr(os, name, None)
        if original is not None:
            _original[name] = original
            setattr(os, name, _exec_marking(original))


def _exec_marking(original):
    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        try:
            process_counts.mark_exec()  # the new image's counts are not this page's
        except Exception:
            pass
        try:
            return original(*args, **kwargs)
        except BaseException:
            try:
                process_counts.unmark_exec()
            except Exception:
                pass
            raise

    return wrapper


def _reaped(pid: int, status: int) -> None:
    if pid <= 0 or pid not in _forked:
        return
    try:
        if not (os.WIFSIGNALED(status) or os.WIFEXITED(status)):
            return  # stopped or continued (WUNTRACED / WCONTINUED): not reaped
    except Exception:
        pass
    _forked.discard(pid)
    try:
        owed, unknown = None, None
        try:
            owed = process_counts.take(pid)
        except process_counts.Unknown as exc:
            unknown = str(exc) or "unknown"
        if not capture.runtime.active:
            return
        stop = None
        if os.WIFSIGNALED(status) and os.WTERMSIG(status) not in NOT_REPORTED:
            sig = os.WTERMSIG(status)
            try:
                name = signal.Signals(sig).name
            except ValueError:
                name = f"signal {sig}"
            stop = {"killed_by_signal": name, "reaped_by": os.getpid()}
            reason = "killed_by_signal"
        else:
            reason = "exited_unflushed"
        if stop is None and owed is None:
            return  # a normal exit whose page cannot be read: nothing to say that we know
        _sink.record_child_loss(pid, owed, unknown_reason=unknown, stop=stop, reason=reason)
    except Exception:
        capture.counters["errors.child_reaped"] += 1
