"""The sink across process boundaries: exit flushes, a forked child gets its own writer, counters add up."""

import subprocess
import sys

from mit_network_audit.journal import open_store
from mit_network_audit.journal.verify import verify

EXIT_WITHOUT_FLUSH = """
import sys
from mit_network_audit.interceptor.event import internal_event
from mit_network_audit.journal.sink import BatchingSink
sink = BatchingSink(sys.argv[1], flush_interval=60)  # the timer never fires: only atexit can write
for i in range(3000):
    sink.emit(internal_event("heartbeat", detail=str(i)))
"""

FORK = """
import os, sys
from mit_network_audit.interceptor.event import internal_event
from mit_network_audit.journal.sink import BatchingSink
sink = BatchingSink(sys.argv[1])
for i in range(500):
    sink.emit(internal_event("parent", detail=str(i)))
sink.flush()
pids = []
for child in range(3):
    pid = os.fork()
    if pid == 0:
        before = sink.counters["written"]  # reset at fork: the child counts only its own rows
        for i in range(700):
            sink.emit(internal_event("child", detail=f"{child}:{i}"))
        ok = sink.flush(20)
        os._exit(0 if ok and before == 0 and sink.counters["written"] == 700 else 3)
    pids.append(pid)
for i in range(400):
    sink.emit(internal_event("parent", detail=f"after:{i}"))
codes = [os.waitpid(p, 0)[1] for p in pids]
assert sink.flush(20)
print(codes, sink.counters["written"], flush=True)
"""


def test_exit_flushes_everything_queued(any_dsn):
    open_store(any_dsn).close()
    subprocess.run([sys.executable, "-c", EXIT_WITHOUT_FLUSH, any_dsn], check=True, timeout=60)
    store = open_store(any_dsn)
    assert store.count() == 3000 and verify(store).ok
    store.close()


def test_forked_children_write_through_their_own_writer(any_dsn):
    open_store(any_dsn).close()
    proc = subprocess.run([sys.executable, "-c", FORK, any_dsn], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["[0,", "0,", "0]", "900"]  # every child exited 0; the parent wrote its 900
    store = open_store(any_dsn)
    assert store.count() == 900 + 3 * 700
    assert store.max_seq() == store.count() and verify(store).ok  # gapless and chained across 4 processes
    store.close()
