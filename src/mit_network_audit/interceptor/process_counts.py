"""Counts a parent can read after its forked child died: how many rows the child still owed.

A child killed by SIGKILL (``kill -9``, the OOM killer, a crash) takes with it the rows its journal
writer had not written yet and its calls in flight; it can record nothing.  Its parent can, if it
knows how many.  So every process keeps a few monotonic counts in one page of memory that its
parent shares:

* per process: calls *begun* (``capture.begin`` returned a call) and calls *finished* (their row
  handed on by ``capture.finish``): the difference is the calls in flight;
* per journal sink (``journal.sink.BatchingSink``; one record each, up to ``MAX_RECORDS``): events
  *accepted* by ``emit`` (and, of those, the auditor's own ``internal`` rows) and events *resolved*
  — written as rows, or declared in a gap row that was written.

What the child owed at its death is exactly ``(begun - finished) + sum(accepted - resolved)``.

The page is an anonymous shared mapping (``mmap(-1, 4096)``, ``MAP_SHARED``) that the parent makes
just before ``os.fork`` (``prepare_fork``, called by ``runner.children``' fork wrapper) and keeps,
under the child's pid, after it (``adopt``); the child makes it its own in its at-fork hook
(``enter_child``).  Nothing is on disk: no file to go stale (a multiprocessing worker ends with
``os._exit``, no clean-up runs), no pid reuse to guard against, no directory permissions; the
parent reads the page after ``waitpid`` (``take``) and unmaps it.  The price: only a parent that
forked the child through the wrapper can read it (a child outliving its parent, a ``spawn`` child,
an exec'd program are not covered; ``take`` says "unknown" for an exec'd one).

Updates are one ``memoryview`` item read-modify-write (``q[i] += 1``): LOAD / BINARY_OP / STORE with
no call or backward jump in between, so no other thread runs in the middle under the GIL (the same
guarantee the sink's ``counters["queued"] += 1`` relied on; ``tests/test_process_counts.py`` checks it
with 8 threads and a 1 µs switch interval).  A resolved count is published with a single store: the
writer prepares the would-be totals in the record's inactive half, appends, then flips the selector
(``commit``).  A child killed during the append leaves the inactive half ahead of the active one:
that batch is *in doubt* (committed or not), named by one of its event ids so the parent can settle
it with one indexed lookup (``journal.sink`` does, when it writes the gap row).
"""

from __future__ import annotations

import mmap
import os
import threading
import zlib

MAGIC = 0x314E_5443_414E_4D  # "MNACTN1"
PAGE = 4096
HEADER = 8  # int64 slots
H_MAGIC, H_PID, H_EXEC, H_RECORDS, H_OVERFLOW, H_BEGUN, H_FINISHED = range(7)
RECORD = 16  # int64 slots per sink record
R_USED, R_DSN, R_ACCEPTED, R_ACCEPTED_INT, R_SELECT, R_DONE0, R_DONE_INT0, R_DONE1, R_DONE_INT1, R_ID_LEN = range(10)
R_ID = 10  # first slot of the event id bytes (6 slots: 48 bytes)
ID_BYTES = (RECORD - R_ID) * 8
MAX_RECORDS = (PAGE // 8 - HEADER) // RECORD  # 31 sinks per process
MAX_CHILDREN = 8192  # pages held for children not reaped yet (each one mapping): beyond, "unknown"


class Region:
    """One page of int64 slots: the header, then the sinks' records."""

    __slots__ = ("buf", "q", "shared")

    def __init__(self, shared: bool) -> None:
        self.shared = shared
        self.buf = mmap.mmap(-1, PAGE) if shared else bytearray(PAGE)
        self.q = memoryview(self.buf).cast("q")

    def close(self) -> None:
        try:
            self.q.release()
            if self.shared:
                self.buf.close()
        except Exception:  # a record view still held somewhere: the mapping goes with the process
            pass


_state: dict = {"pid": None, "region": None}
_lock = threading.Lock()
_tls = threading.local()  # the page made for the fork under way, in the forking thread
_children: dict[int, Region] = {}


def current() -> Region:
    """This process's page (a private one where no parent shares it)."""
    region = _state["region"]
    if _state["pid"] != os.getpid() or region is None:
        enter_child()
        region = _state["region"]
    return region


def header() -> memoryview:
    """The header slots of this process's page (``capture`` keeps it in a global)."""
    return current().q[:HEADER]


def claim(dsn: str | None) -> memoryview:
    """A record for one sink in this process's page (``journal.sink``).  Past ``MAX_RECORDS`` the
    page is marked overflowed (its parent then says "unknown") and a private record is returned."""
    with _lock:
        region = current()
        q = region.q
        n = q[H_RECORDS]
        if n >= MAX_RECORDS:
            q[H_OVERFLOW] = 1
            return memoryview(bytearray(RECORD * 8)).cast("q")
        q[H_RECORDS] = n + 1
        base = HEADER + n * RECORD
        rec = q[base: base + RECORD]
        rec[R_DSN] = dsn_key(dsn)
        rec[R_USED] = 1
        return rec


def dsn_key(dsn: str | None) -> int:
    return zlib.crc32((dsn or "").encode("utf-8", "replace")) + 1 if dsn else 0


def prepare(rec: memoryview, n: int, n_internal: int, event_id: str | None) -> None:
    """Before appending a batch of ``n`` events (``n_internal`` internal) to the journal: the
    would-be resolved totals go to the inactive half, the event id names the batch."""
    active = R_DONE0 if rec[R_SELECT] == 0 else R_DONE1
    other = R_DONE1 if active == R_DONE0 else R_DONE0
    raw = event_id.encode("ascii", "replace") if isinstance(event_id, str) else b""
    if len(raw) > ID_BYTES:
        raw = b""
    rec[R_ID_LEN] = 0
    rec.cast("B")[R_ID * 8: R_ID * 8 + len(raw)] = raw
    rec[R_ID_LEN] = len(raw)
    rec[other + 1] = rec[active + 1] + n_internal
    rec[other] = rec[active] + n  # last: the inactive half now runs ahead (the batch is in doubt)


def resolved(rec: memoryview) -> tuple[int, int]:
    """(resolved, resolved internal) as last published."""
    active = R_DONE0 if rec[R_SELECT] == 0 else R_DONE1
    return rec[active], rec[active + 1]


def commit(rec: memoryview) -> None:
    """The batch prepared is written: publish its totals with one store."""
    rec[R_SELECT] = 1 - rec[R_SELECT]


# -- the parent's side ---------------------------------------------------------------------------
def prepare_fork() -> None:
    """Just before ``os.fork``: a shared page for the child, kept in this thread until ``adopt``."""
    try:
        region = None
        if len(_children) < MAX_CHILDREN:
            region = Region(shared=True)
            region.q[H_MAGIC] = MAGIC
        _tls.next = region
    except Exception:
        _tls.next = None


def adopt(pid: int) -> None:
    """After ``os.fork`` in the parent (``pid`` > 0), or after it failed (``pid`` <= 0)."""
    region = getattr(_tls, "next", None)
    _tls.next = None
    if region is None:
        return
    if pid > 0:
        old = _children.pop(pid, None)
        if old is not None:
            old.close()
        _children[pid] = region
    else:
        region.close()


def enter_child() -> None:
    """In the child, first thing after the fork (the first at-fork hook that asks; once per
    process): its page is the one its parent made (if any); the parent's children are not its own."""
    if _state["pid"] == os.getpid() and _state["region"] is not None:
        return
    region = getattr(_tls, "next", None)
    _tls.next = None
    for old in _children.values():
        old.close()
    _children.clear()
    if region is None:
        region = Region(shared=False)
        region.q[H_MAGIC] = MAGIC
    region.q[H_PID] = os.getpid()
    _state.update(pid=os.getpid(), region=region)


def mark_exec() -> None:
    """The process image is about to be replaced: its counts stop meaning anything."""
    current().q[H_EXEC] = 1


def unmark_exec() -> None:
    current().q[H_EXEC] = 0


class Owed:
    """What a dead child owed the journal, read from its page."""

    __slots__ = ("lost", "lost_internal", "in_flight", "doubts")

    def __init__(self) -> None:
        self.lost = 0  # never written, certainly (includes in_flight)
        self.lost_internal = 0  # of ``lost``, the auditor's own internal rows
        self.in_flight = 0  # calls begun, no row handed on yet
        self.doubts: list[tuple[int, int, str, int]] = []  # (n, n_internal, event_id, dsn_key) in a write


class Unknown(Exception):
    """The page cannot be trusted (or there is none): the count is unknown."""


def take(pid: int) -> Owed:
    """Read and release the page of the dead child ``pid``; ``Unknown`` when it cannot be trusted."""
    region = _children.pop(pid, None)
    if region is None:
        raise Unknown("no_page")
    try:
        return _read(region, pid)
    except Unknown:
        raise
    except Exception as exc:
        raise Unknown("corrupt") from exc
    finally:
        region.close()


def forget(pid: int) -> None:
    region = _children.pop(pid, None)
    if region is not None:
        region.close()


def _read(region: Region, pid: int) -> Owed:
    q = region.q
    if q[H_MAGIC] != MAGIC:
        raise Unknown("corrupt")
    if q[H_PID] != pid:
        raise Unknown("not_entered" if q[H_PID] == 0 else "corrupt")
    if q[H_EXEC]:
        raise Unknown("exec")
    if q[H_OVERFLOW]:
        raise Unknown("too_many_sinks")
    n = q[H_RECORDS]
    if not 0 <= n <= MAX_RECORDS:
        raise Unknown("corrupt")
    owed = Owed()
    begun, finished = q[H_BEGUN], q[H_FINISHED]
    if begun < 0 or finished < 0:
        raise Unknown("corrupt")
    owed.in_flight = max(0, begun - finished)  # < 0: a call begun before the fork ended in the child
    owed.lost = owed.in_flight
    for i in range(n):
        base = HEADER + i * RECORD
        rec = q[base: base + RECORD]
        if rec[R_USED] != 1 or rec[R_SELECT] not in (0, 1):
            raise Unknown("corrupt")
        active = R_DONE0 if rec[R_SELECT] == 0 else R_DONE1
        other = R_DONE1 if active == R_DONE0 else R_DONE0
        acc, acc_int, done, done_int = rec[R_ACCEPTED], rec[R_ACCEPTED_INT], rec[active], rec[active + 1]
        if not (0 <= done <= acc and 0 <= done_int <= acc_int <= acc and done_int <= done):
            raise Unknown("corrupt")
        owed.lost += acc - done
        owed.lost_internal += acc_int - done_int
        ahead, ahead_int = rec[other] - done, rec[other + 1] - done_int
        if ahead > 0:  # a write was under way: committed or not?
            id_len = rec[R_ID_LEN]
            if not (ahead <= acc - done and 0 <= ahead_int <= min(ahead, acc_int - done_int)
                    and 0 <= id_len <= ID_BYTES):
                raise Unknown("corrupt")
            start = (base + R_ID) * 8
            event_id = bytes(region.buf[start: start + id_len]).decode("ascii", "replace")
            owed.doubts.append((ahead, ahead_int, event_id, rec[R_DSN]))
    return owed
