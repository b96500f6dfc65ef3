"""The dashboard's re-check of the record its Trust Report reads (report/integrity.py).

Re-checking a big journal takes seconds (~5 s per million rows on 2 cores), too long for a page
view, so the dashboard keeps the newest result and re-checks in the background: first when the
Trust Report is first asked for (inline when the journal is small enough to answer at once), then
every ``verify.interval_s`` (a live setting), and at once when an auditor asks (``POST /api/verify``).
The page says when the result it shows was taken; while none exists yet it says the check is running.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from ..journal import open_store
from ..journal import settings as journal_settings
from ..report import integrity

INLINE_MAX_ROWS = 50_000  # a first check this small runs inside the first request (~0.3 s)


class IntegrityWatch:
    def __init__(self, dsn: str):
        self.dsn = dsn
        self.latest: integrity.Integrity | None = None
        self.progress: dict | None = None  # {"done", "total"} of the check running now
        self._check_lock = threading.Lock()  # one check at a time
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def current(self, store) -> integrity.Integrity | None:
        """The newest result; on the first call starts the background re-checks (and, for a small
        journal, waits for the first one)."""
        with self._start_lock:
            first = self._thread is None
            if first:
                self._thread = threading.Thread(target=self._loop, name="mna-integrity-watch", daemon=True)
        if first:
            try:
                rows = store.max_seq() or 0
                if rows <= INLINE_MAX_ROWS:
                    self.check_now()
                else:
                    self.progress = {"done": 0, "total": rows}  # the page says a check is under way
            except Exception:  # the page still answers (it says the chain was not checked)
                pass
            self._thread.start()
        return self.latest

    def check_now(self, progress: Callable[[int, int], None] | None = None) -> integrity.Integrity:
        """Re-check now (waits for a check already running, then makes a fresh one)."""
        with self._check_lock:
            store = open_store(self.dsn, create=False)
            try:
                def track(done: int, total: int) -> None:
                    self.progress = {"done": done, "total": total}
                    if progress is not None:
                        progress(done, total)

                self.progress = {"done": 0, "total": store.max_seq()}
                self.latest = integrity.check(store, track)
            finally:
                self.progress = None
                store.close()
            return self.latest

    def _interval_s(self) -> float:
        try:
            store = open_store(self.dsn, create=False)
            try:
                return float(journal_settings.get_settings(store)["verify.interval_s"])
            finally:
                store.close()
        except Exception:
            return float(journal_settings.SETTINGS["verify.interval_s"].default)

    def _loop(self) -> None:
        if self.latest is not None:  # the first check ran inline
            self._wake.wait(self._interval_s())
        while True:
            try:
                self.check_now()
            except Exception:  # a database that is down: the page keeps the last result and its time
                pass
            self._wake.wait(self._interval_s())
            self._wake.clear()
