"""The batching sink: nothing lost within the buffer bound, exact gap rows beyond it, crash safety."""

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time

from mit_network_audit.interceptor.event import internal_event
from mit_network_audit.journal import open_store
from mit_network_audit.journal.sink import BatchingSink
from mit_network_audit.journal.verify import verify

OUTAGE_S = float(os.environ.get("MNA_OUTAGE_SECONDS", "3"))  # 30 in the long run


def gaps(store):
    return [json.loads(r.event.detail)["lost"] for r in store.rows(limit=100_000) if r.event.method == "gap"]


def test_flush_writes_everything(sqlite_dsn):
    sink = BatchingSink(sqlite_dsn, batch_size=100)
    for i in range(2500):
        sink.emit(internal_event("heartbeat", detail=str(i)))
    assert sink.flush()
    store = open_store(sqlite_dsn)
    assert store.count() == 2500 and verify(store).ok
    sink.close()


def test_big_batches_go_through_the_staged_pipelined_insert_in_order(sqlite_dsn, monkeypatch):
    """A busy program: the writer takes 1,000 events at a time, which SQLite appends in 250-row chunks
    moved by a helper thread; every event lands once, in the order emitted, and the chain holds."""
    from mit_network_audit.journal import sqlite as sqlite_store

    movers = []

    class CountedMover(sqlite_store._Mover):
        def __init__(self, conn):
            movers.append(self)
            super().__init__(conn)

    monkeypatch.setattr(sqlite_store, "_Mover", CountedMover)
    sink = BatchingSink(sqlite_dsn, batch_size=1000, flush_interval=5.0)
    for i in range(3100):
        sink.emit(internal_event("heartbeat", detail=str(i)))
    assert sink.flush()
    store = open_store(sqlite_dsn)
    assert [r.event.detail for r in reversed(store.rows(limit=10_000))] == [str(i) for i in range(3100)]
    assert verify(store).ok and sink.counters["written"] == 3100 and sink.counters["lost"] == 0
    assert movers  # at least one batch was big enough to be moved in chunks
    sink.close()
    assert "mna-journal-mover" not in {t.name for t in threading.enumerate()}


def test_overflow_writes_exact_gap_row(sqlite_dsn):
    sink = BatchingSink(sqlite_dsn, queue_limit=100, flush_interval=60)
    sink._start = lambda: None  # the writer is not started: the queue must overflow
    for i in range(250):
        sink.emit(internal_event("heartbeat", detail=str(i)))
    del sink._start
    sink._thread = None
    assert sink.flush()
    store = open_store(sqlite_dsn)
    assert gaps(store) == [150]
    assert store.count() == 100 + 1 and verify(store).ok


def test_sqlite_locked_outage_loses_nothing(sqlite_dsn):
    sink = BatchingSink(sqlite_dsn, retry_interval=0.1)
    sink.emit(internal_event("start"))
    assert sink.flush()
    path = sqlite_dsn[len("sqlite:///"):]
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # holds the write lock: the writer's BEGIN IMMEDIATE waits/fails
    sink._store.conn.execute("PRAGMA busy_timeout=100")
    deadline = time.time() + OUTAGE_S
    n = 0
    while time.time() < deadline:
        sink.emit(internal_event("heartbeat", detail=str(n)))
        n += 1
        time.sleep(0.002)
    blocker.execute("ROLLBACK")
    blocker.close()
    assert sink.flush(30)
    store = open_store(sqlite_dsn)
    assert store.count() == n + 1 and gaps(store) == [] and verify(store).ok


class Proxy:
    """A loopback TCP proxy in front of PostgreSQL that can be cut and restored."""

    def __init__(self, target_port=5432):
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(50)
        self.port = self.listener.getsockname()[1]
        self.up = True
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            server = socket.create_connection(self.target)
            self.conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, a, b):
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass

    def cut(self):
        self.up = False
        for s in self.conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass
        self.conns = []

    def restore(self):
        self.up = True


def test_postgres_outage_behind_proxy_loses_nothing(pg_dsn):
    proxy = Proxy()
    dsn = pg_dsn.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    open_store(pg_dsn).close()
    sink = BatchingSink(dsn, retry_interval=0.2)
    sink.emit(internal_event("start"))
    assert sink.flush()
    proxy.cut()
    deadline = time.time() + OUTAGE_S
    n = 0
    while time.time() < deadline:
        sink.emit(internal_event("heartbeat", detail=str(n)))
        n += 1
        time.sleep(0.002)
    assert sink.counters["write_errors"] > 0
    proxy.restore()
    assert sink.flush(30)
    store = open_store(pg_dsn)
    assert store.count() == n + 1 and gaps(store) == [] and verify(store).ok
    sink.close()


WRITER = """
import sys
from mit_network_audit.interceptor.event import internal_event
from mit_network_audit.journal import open_store
store = open_store(sys.argv[1])
print("ready", flush=True)
while True:
    store.append([internal_event("heartbeat") for _ in range(500)])
"""


def test_kill_9_mid_batch_leaves_valid_journal(any_dsn):
    open_store(any_dsn).close()
    proc = subprocess.Popen([sys.executable, "-c", WRITER, any_dsn], stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"ready"
    time.sleep(1.0)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    store = open_store(any_dsn)
    count = store.count()
    assert count > 0 and count % 500 == 0  # whole batches only
    assert verify(store).ok
