"""BatchingSink: the interceptor's Sink that writes to the journal from one background thread.

``emit`` only appends to a bounded deque (never blocks, never raises).  The writer flushes every
``batch_size`` rows or ``flush_interval`` seconds.  If the database is unreachable, batches stay
in memory up to ``buffer_limit`` rows and are retried; whatever cannot be kept (a full queue, or
a buffer past its bound) is counted, and an ``internal`` gap row with the exact number lost is
written as soon as writing works again: loss is never silent.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import time
import weakref
from collections import deque

from ..interceptor import capture
from ..interceptor.event import NetEvent, internal_event

_live_sinks: weakref.WeakSet = weakref.WeakSet()


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
        self._start_lock = threading.Lock()

    # -- the Sink protocol ---------------------------------------------------------------------
    def emit(self, event: NetEvent) -> None:
        if self._pid != os.getpid():
            self._after_fork()
        if len(self._queue) >= self.queue_limit:
            self._lost += 1  # racy by design (GIL-atomic enough); counted, reported as a gap row
            self._lost_reasons.add("queue_full")
            return
        self._queue.append(event)
        self.counters["queued"] += 1
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
        self.flush(timeout)
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._store is not None and self.dsn is not None:
            try:
                self._store.close()
            except Exception:
                pass
            self._store = None

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
        # The child must not share the parent's connection or thread: start afresh, lazily.
        if self.dsn is not None:
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
            gap = None
            if self._lost:
                lost, self._lost = self._lost, 0
                reasons, self._lost_reasons = sorted(self._lost_reasons), set()
                gap = (lost, reasons)
                batch = [internal_event("gap", detail=json.dumps({"lost": lost, "reasons": reasons},
                                                                 sort_keys=True)), *batch]
            try:
                self._open().append(batch)
            except Exception:
                self.counters["write_errors"] += 1
                if gap is not None:
                    self._lost += gap[0]
                    self._lost_reasons.update(gap[1])
                self._store_broken()
                time.sleep(self.retry_interval)
                if self._stop and self._pid == os.getpid():
                    pass
                return
            written = len(batch) - (1 if gap else 0)
            del self._pending[:written]
            self.counters["written"] += written
            if gap:
                self.counters["gap_rows"] += 1
                self.counters["lost"] += gap[0]

    def _take_from_queue(self) -> None:
        queue, pending = self._queue, self._pending
        while queue and len(pending) < self.buffer_limit:
            pending.append(queue.popleft())
        if queue and len(pending) >= self.buffer_limit and len(queue) >= self.queue_limit:
            # Outage beyond the buffer bound: drop the oldest queued events, counted exactly.
            while len(queue) > self.queue_limit // 2:
                queue.popleft()
                self._lost += 1
            self._lost_reasons.add("database_unreachable")

    def _store_broken(self) -> None:
        if self.dsn is None:
            return
        try:
            if self._store is not None:
                self._store.close()
        except Exception:
            pass
        self._store = None


def _reset_in_child() -> None:
    for sink in list(_live_sinks):
        try:
            sink._after_fork()
        except Exception:
            pass


os.register_at_fork(after_in_child=_reset_in_child)


@atexit.register
def _flush_all_at_exit() -> None:
    capture.finish_pending()
    for sink in list(_live_sinks):
        try:
            if sink._pid == os.getpid():
                sink.flush(timeout=5.0)
        except Exception:
            pass
