"""BatchingSink: the interceptor's Sink that writes to the journal from one background thread.

``emit`` only appends to a bounded deque (never blocks, never raises).  The writer flushes every
``batch_size`` rows or ``flush_interval`` seconds.  If the database is unreachable, batches stay
in memory up to ``buffer_limit`` rows and are retried; whatever cannot be kept (a full queue, or
a buffer past its bound) is counted, and an ``internal`` gap row with the exact number lost is
written as soon as writing works again: loss is never silent.

A full disk under a SQLite journal is an outage like any other (the batch stays buffered, the
store's transaction is rolled back).  If the process exits while the journal still cannot be
written, the exit flush writes one last gap row through the store's reserve (a small file kept
next to the journal and released for exactly this), and if even that fails it says so on stderr.

Fork safety: a fork taken while the writer thread is inside SQLite leaves the child with SQLite's
process-wide lock state (and possibly a mutex) of a transaction that will never end there; the
child's own writer then blocks forever in ``BEGIN IMMEDIATE``.  So ``os.fork`` waits for the
writer's write lock (held around every open/append/close of the store), the child gets a new lock
and drops the inherited connection without closing it through SQLite, and opens its own.

A process killed by SIGKILL can write nothing, so each sink keeps its counts where its parent can read
them (``interceptor.process_counts``): ``emit`` bumps *accepted* (one shared-memory increment), the
writer publishes *resolved* after each successful append (its rows plus the losses its gap row
declares).  The parent that reaps a dead child writes a gap row for what it still owed
(``record_child_loss``, called by ``runner.children``), settling in this writer a batch the child
died writing.
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import os
import sys
import threading
import time
import weakref
from collections import deque

from ..interceptor import capture
from ..interceptor import process_counts as _counts
from ..interceptor.event import NetEvent, PendingEvent, UnbuiltEvent, internal_event

_live_sinks: weakref.WeakSet = weakref.WeakSet()
# Bumped in every forked child (os.register_at_fork, below): ``emit`` notices a fork by comparing
# it, without a getpid() system call per captured call (emit 0.95 -> 0.30 µs on the 2-vCPU VM).
_fork_generation = 0


class BatchingSink:
    def __init__(self, store_or_dsn, *, batch_size: int = 1000, flush_interval: float = 0.1,
                 queue_limit: int = 100_000, buffer_limit: int = 200_000, retry_interval: float = 0.5) -> None:
        self._store = None if isinstance(store_or_dsn, str | None) else store_or_dsn
        self.dsn = store_or_dsn if isinstance(store_or_dsn, str | None) else getattr(store_or_dsn, "dsn", None)
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.queue_limit = queue_limit
        self.buffer_limit = buffer_limit
        self.retry_interval = retry_interval
        self.counters = {"queued": 0, "written": 0, "lost": 0, "write_errors": 0, "gap_rows": 0}
        self._init_process_state()
        _live_sinks.add(self)

    def _init_process_state(self) -> None:
        self._queue: deque[NetEvent] = deque()
        self._pending: list[NetEvent] = []  # taken from the queue, not yet written (outage buffer)
        self._lost = 0
        self._lost_reasons: set[str] = set()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._generation = _fork_generation
        self._start_lock = threading.Lock()
        # Re-entrant: a SIGTERM handler (runner/boot.py) may flush from the main thread while it holds them.
        self._write_lock = threading.RLock()  # held around the store's use; os.fork waits for it
        self._lost_lock = threading.RLock()  # the lost count is bumped by emitters and the writer
        self._lost_internal = 0  # of those lost, how many were the auditor's own internal rows
        self._unwritable = "database_unreachable"  # the reason of the last failed write
        # accepted / resolved counts in this process's shared page: what a parent reads if we die
        self._rec = _counts.claim(self.dsn)
        self._refused = 0  # accepted but refused at once (queue full): counted lost, not queued

    # -- the Sink protocol ---------------------------------------------------------------------
    def emit(self, event: NetEvent) -> None:
        if self._generation != _fork_generation:  # forked, and this sink not reset yet
            self._after_fork()
        rec = self._rec
        rec[2] += 1  # R_ACCEPTED, before the queue: a kill in between over-counts by one, never under
        if type(event) is not UnbuiltEvent and _internal(event):
            rec[3] += 1  # R_ACCEPTED_INT
        if len(self._queue) >= self.queue_limit:
            self._refused += 1
            self._count_lost(1, "queue_full", _internal(event))
            return
        self._queue.append(event)
        if self._thread is None:
            self._start()
        if len(self._queue) >= self.batch_size:
            self._wake.set()

    # -- control ------------------------------------------------------------------------------
    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything emitted so far is written (or ``timeout``)."""
        deadline = time.monotonic() + timeout
        while self._queue or self._pending or self._lost:
            if self._thread is None:
                self._start()
            self._idle.clear()
            self._wake.set()
            if not self._idle.wait(max(0.0, deadline - time.monotonic())) or time.monotonic() > deadline:
                return not (self._queue or self._pending or self._lost)
        return True

    def close(self, timeout: float = 10.0) -> None:
        if not self.flush(timeout):
            self._last_gap_row()
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._store is not None and self.dsn is not None:
            with self._write_lock:
                try:
                    self._store.close()
                except Exception:
                    pass
                self._store = None

    def _count_lost(self, n: int, reason: str, internal: bool | int = 0) -> None:
        with self._lost_lock:
            self._lost += n
            self._lost_internal += int(internal)
            self._lost_reasons.add(reason)

    def _take_lost(self) -> tuple[int, int, list[str]]:
        with self._lost_lock:
            out = (self._lost, self._lost_internal, sorted(self._lost_reasons))
            self._lost, self._lost_internal, self._lost_reasons = 0, 0, set()
        return out

    @staticmethod
    def _gap_event(lost: int, internal: int, reasons: list[str]) -> NetEvent:
        info = {"lost": lost, "reasons": reasons}
        if internal:
            info["lost_internal"] = internal  # of ``lost``, the auditor's own rows (start/stop/heartbeat)
        return internal_event("gap", detail=json.dumps(info, sort_keys=True))

    def _last_gap_row(self) -> None:
        """The exit flush could not write everything (journal unreachable, disk full): stop the
        writer, count everything still held as lost and write one gap row saying so, through the
        store's reserve if the disk is full.  If that fails too, say it on stderr: never silent."""
        if self._pid != os.getpid():
            return
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(2 * self.retry_interval + 2)
            if self._thread.is_alive():  # still inside a write (e.g. a long busy wait): leave it
                sys.stderr.write("mit-network-audit: journal writer still busy at exit; "
                                 f"{len(self._queue) + len(self._pending) + self._lost} events may be lost\n")
                return
        held = list(self._pending) + list(self._queue)
        self._pending.clear()
        self._queue.clear()
        if held:
            self._count_lost(len(held), "unwritable_at_exit", sum(map(_internal, held)))
        lost, internal, reasons = self._take_lost()
        if not lost:
            return
        gap = self._gap_event(lost, internal, reasons)
        error = None
        _counts.prepare(self._rec, lost, internal, gap.event_id)
        with self._write_lock, capture.suppressed():
            for use_reserve in (False, True):
                try:
                    # Free the reserve first, then (re)open: opening a WAL journal may itself need
                    # room (its -shm file).  The open connection is kept between the two tries.
                    if use_reserve and not _release_reserve(self.dsn, self._store):
                        break
                    self._open().append([gap])
                except Exception as exc:
                    error = exc
                    if _unwritable_reason(exc) == "database_unreachable":
                        self._store_broken()
                    continue
                _counts.commit(self._rec)
                self.counters["gap_rows"] += 1
                self.counters["lost"] += lost
                return
        self.counters["lost_unrecorded"] = self.counters.get("lost_unrecorded", 0) + lost
        sys.stderr.write(f"mit-network-audit: {lost} events could not be written to the journal "
                         f"({', '.join(reasons)}; last error: {type(error).__name__}: {error}); "
                         "no gap row could be written either\n")

    @property
    def store(self):
        return self._open()

    # -- internals ----------------------------------------------------------------------------
    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="mna-journal-writer", daemon=True)
                self._thread.start()

    def _after_fork(self) -> None:
        # The child must not share the parent's connection or thread: start afresh, lazily.  The
        # inherited connection is kept alive, never closed: closing it through SQLite in the child
        # would act on lock state that belongs to the parent.
        if self.dsn is not None:
            if self._store is not None:
                _inherited.append(self._store)
            self._store = None
        # The parent's counts are the parent's: the child reports only what it queued and wrote.
        self.counters = dict.fromkeys(self.counters, 0)
        self._init_process_state()

    def _open(self):
        if self._store is None:
            from . import open_store

            self._store = open_store(self.dsn)
        return self._store

    def _run(self) -> None:
        capture.suppress_current_thread()  # the writer's own database traffic is not audited
        while not self._stop:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            self._drain()
        self._drain()

    def _drain(self) -> None:
        while True:
            self._take_from_queue()
            if not self._pending and not self._lost:
                self._idle.set()
                return
            batch = self._pending[: self.batch_size]
            written = len(batch)
            gap = None
            if self._lost:
                gap = self._take_lost()
                batch = [self._gap_event(*gap), *batch]
            self._prepare_counts(batch, written, gap)
            settled = None
            with self._write_lock:
                try:
                    if _to_settle:
                        batch, settled = self._settle(batch)
                    self._open().append(batch)
                    failed = None
                except Exception as exc:
                    failed = exc
                    if _unwritable_reason(exc) != "disk_full":  # a full disk leaves the connection sound
                        self._store_broken()
            if failed is not None:
                self.counters["write_errors"] += 1
                self._unwritable = _unwritable_reason(failed)
                if gap is not None:  # not written: put the count back (new losses may have come meanwhile)
                    with self._lost_lock:
                        self._lost += gap[0]
                        self._lost_internal += gap[1]
                        self._lost_reasons.update(gap[2])
                time.sleep(self.retry_interval)
                return
            _counts.commit(self._rec)
            for event_id in settled or ():
                _to_settle.pop(event_id, None)
            self._unwritable = "database_unreachable"
            del self._pending[:written]
            self.counters["written"] += written
            if gap:
                self.counters["gap_rows"] += 1
                self.counters["lost"] += gap[0]

    def _prepare_counts(self, batch: list, written: int, gap) -> None:
        """Before an append: the would-be resolved totals (the batch's events, and the losses its gap
        row declares) in this process's page, so a parent knows what was in doubt if we die now."""
        rec = self._rec
        self.counters["queued"] = rec[_counts.R_ACCEPTED] - self._refused
        internal = 0
        if rec[_counts.R_ACCEPTED_INT] != _counts.resolved(rec)[1]:  # internal rows outstanding (rare)
            internal = sum(map(_internal, batch[len(batch) - written:]))
        if gap is not None:
            written, internal = written + gap[0], internal + gap[1]
        try:
            last_id = batch[-1].event_id if batch else None
        except Exception:
            last_id = None
        _counts.prepare(rec, written, internal, last_id)

    def _settle(self, batch: list) -> tuple[list, list]:
        """Rows a parent wrote for a dead child (``record_child_loss``) whose last batch was in doubt:
        look its event id up in this journal (one indexed read) and state the loss exactly."""
        out, ids = list(batch), []
        for i, event in enumerate(out):
            if type(event) is not NetEvent:
                continue
            settlement = _to_settle.get(event.event_id)
            if settlement is None:
                continue
            settlement.resolve(self)
            out[i] = dataclasses.replace(event, detail=settlement.detail(event.method))
            ids.append(event.event_id)
        return out, ids

    def _take_from_queue(self) -> None:
        queue, pending = self._queue, self._pending
        while queue and len(pending) < self.buffer_limit:
            pending.append(queue.popleft())
        if queue and len(pending) >= self.buffer_limit and len(queue) >= self.queue_limit:
            # Outage beyond the buffer bound: drop the oldest queued events, counted exactly.
            dropped = internal = 0
            while len(queue) > self.queue_limit // 2:
                internal += _internal(queue.popleft())
                dropped += 1
            self._count_lost(dropped, self._unwritable, internal)

    def _store_broken(self) -> None:
        if self.dsn is None:
            return
        try:
            if self._store is not None:
                self._store.close()
        except Exception:
            pass
        self._store = None


def _internal(event) -> bool:
    """An ``internal`` row (start/stop/heartbeat/gap)?  Captured calls arrive as PendingEvents,
    never internal: they are not built just to be counted as lost."""
    return not isinstance(event, PendingEvent) and getattr(event, "direction", None) == "internal"


def _unwritable_reason(exc: BaseException) -> str:
    """Why a write failed, as a gap row's reason: ``disk_full`` (SQLITE_FULL, ENOSPC, EDQUOT),
    ``disk_io_error`` (SQLITE_IOERR*), else ``database_unreachable``."""
    import errno
    import sqlite3

    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "disk_full"
    code = getattr(exc, "sqlite_errorcode", None) if isinstance(exc, sqlite3.Error) else None
    if code is not None and code & 0xFF == sqlite3.SQLITE_FULL:
        return "disk_full"
    if code is not None and code & 0xFF == sqlite3.SQLITE_IOERR:
        return "disk_io_error"
    return "database_unreachable"


def _release_reserve(dsn: str | None, store) -> bool:
    release = getattr(store, "release_reserve", None)
    if release is not None:
        return release()
    from . import is_postgres

    if not dsn or is_postgres(dsn):
        return False
    from .sqlite import path_from_dsn, release_reserve

    return release_reserve(path_from_dsn(dsn))


_inherited: list = []  # stores inherited across fork: never closed in the child (see _after_fork)
_held_at_fork: list = []
FORK_WAIT_S = 30.0  # longer than SQLite's busy timeout: a writer waiting for another process's lock


def _before_fork() -> None:
    """Let no fork happen while a writer is inside its store (the child would inherit SQLite's
    lock state mid-transaction).  Bounded: a writer stuck longer than FORK_WAIT_S is not waited for."""
    for sink in list(_live_sinks):
        try:
            if sink._pid == os.getpid() and _sqlite(sink) and sink._write_lock.acquire(timeout=FORK_WAIT_S):
                _held_at_fork.append(sink)
        except Exception:
            pass


def _sqlite(sink) -> bool:
    """Only SQLite keeps process-wide lock state a child inherits; a PostgreSQL writer may sit in a
    long connect during an outage, and a fork must not wait for that."""
    from . import is_postgres

    store = sink._store
    if store is not None:
        return getattr(store, "kind", "") == "sqlite"
    return bool(sink.dsn) and not is_postgres(sink.dsn)


def _after_fork_in_parent() -> None:
    while _held_at_fork:
        try:
            _held_at_fork.pop()._write_lock.release()
        except Exception:
            pass


def _reset_in_child() -> None:
    global _fork_generation
    _fork_generation += 1
    _held_at_fork.clear()  # _after_fork gives every sink a fresh (unlocked) write lock
    for sink in list(_live_sinks):
        try:
            sink._after_fork()
        except Exception:
            pass


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_reset_in_child)


# -- a dead child's loss, written by the parent that reaped it (runner.children) -------------------
_to_settle: dict[str, _Settlement] = {}  # event_id of a row still to settle -> its settlement
_SETTLE_LIMIT = 1024


class _Settlement:
    """What a dead child owed (``process_counts.Owed``, or None: unknown), for its stop and gap rows.
    A batch the child was writing when it died is settled by the writer that writes these rows:
    one ``get_by_event_id`` in its journal, if it is the child's journal (same DSN)."""

    def __init__(self, pid: int, owed, unknown_reason: str | None, stop: dict | None, reason: str) -> None:
        self.pid, self.owed, self.unknown_reason, self.stop, self.reason = pid, owed, unknown_reason, stop, reason
        self.lost = self.lost_internal = self.in_doubt = self.in_doubt_internal = 0
        self.in_write_committed = self.in_write_lost = 0
        if owed is not None:
            self.lost, self.lost_internal = owed.lost, owed.lost_internal
            for n, n_int, _event_id, _key in owed.doubts:  # until settled: not counted as lost
                self.lost -= n
                self.lost_internal -= n_int
                self.in_doubt += n
                self.in_doubt_internal += n_int
        self.settled = not self.in_doubt

    def resolve(self, sink) -> None:
        if self.settled:
            return
        key = _counts.dsn_key(sink.dsn)
        for n, n_int, event_id, dsn_key in self.owed.doubts:
            if not key or dsn_key != key or not event_id:
                continue  # another journal: the batch stays in doubt
            committed = sink._open().get_by_event_id(event_id) is not None  # raises: retried with the batch
            self.in_doubt -= n
            self.in_doubt_internal -= n_int
            if committed:
                self.in_write_committed += n
            else:
                self.in_write_lost += n
                self.lost += n
                self.lost_internal += n_int
        self.settled = True

    def detail(self, kind: str) -> str:
        if kind == "gap":
            info: dict = {"lost": self.lost, "reasons": [self.reason], "reaped_by": os.getpid()}
            if self.lost_internal:
                info["lost_internal"] = self.lost_internal
            if self.owed is not None and self.owed.in_flight:
                info["in_flight"] = self.owed.in_flight  # of ``lost``: calls begun, no row handed on yet
        else:
            info = dict(self.stop or {})
            info["unflushed_rows"] = "unknown" if self.owed is None else self.lost
            if self.owed is None:
                info["unflushed_unknown_because"] = self.unknown_reason
        if self.in_doubt:
            info["in_doubt"] = self.in_doubt  # a batch the child was writing, not settled: maybe written
        if self.in_write_committed:
            info["in_write_committed"] = self.in_write_committed
        if self.in_write_lost:
            info["in_write_lost"] = self.in_write_lost
        return json.dumps(info, sort_keys=True)


def record_child_loss(pid: int, owed, *, unknown_reason: str | None = None, stop: dict | None = None,
                      reason: str = "killed_by_signal") -> None:
    """For the dead child ``pid`` (rows with its pid): a ``stop`` row with ``stop``'s detail when it
    was killed, and a ``gap`` row with the exact number it owed (``owed``: a ``process_counts.Owed``;
    None: unknown) when that is not zero.  Through ``capture.emit``; never raises."""
    try:
        settlement = _Settlement(pid, owed, unknown_reason, stop, reason)
        events = []
        if stop is not None:
            events.append(internal_event("stop", detail=settlement.detail("stop"), pid=int(pid)))
        if owed is not None and (settlement.lost or settlement.in_doubt):
            events.append(internal_event("gap", detail=settlement.detail("gap"), pid=int(pid)))
        if not settlement.settled:
            while len(_to_settle) >= _SETTLE_LIMIT:
                _to_settle.pop(next(iter(_to_settle)))
            for event in events:
                _to_settle[event.event_id] = settlement
        for event in events:
            capture.emit(event)
    except Exception:
        capture.counters["errors.child_loss"] += 1


def flush_all(timeout: float = 5.0) -> None:
    """Finish pending calls and write everything this process's sinks hold (at exit, or before the
    process dies by a signal); whatever cannot be written ends as an exact gap row (or on stderr)."""
    capture.finish_pending()
    for sink in list(_live_sinks):
        try:
            if sink._pid == os.getpid() and not sink.flush(timeout=timeout):
                sink._last_gap_row()
        except Exception as exc:
            sys.stderr.write(f"mit-network-audit: final journal flush failed: {type(exc).__name__}: {exc}\n")


@atexit.register
def _flush_all_at_exit() -> None:
    flush_all(5.0)
