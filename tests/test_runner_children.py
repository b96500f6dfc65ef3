"""kill -9 of a forked child (a gunicorn worker, a multiprocessing worker): the child cannot record
anything, its parent does, exactly: a ``stop`` row for the child's pid saying it was killed and how
many rows it still owed, and a ``gap`` row with that exact number (``lost``).  Real processes under
``mit-network-audit run``, real loopback HTTP calls; each child's journal writer is told to wait an
hour between flushes, so what it owes at the kill is deterministic."""

import json
import os
import socket
import subprocess
import sys

import pytest

from mit_network_audit.journal import open_store

CLI = os.path.join(os.path.dirname(sys.executable), "mit-network-audit")

PROGRAM = r"""
import json, multiprocessing, os, signal, sys, time, urllib.request
from mit_network_audit.interceptor import capture, process_counts

url, hang = sys.argv[1], sys.argv[2]
pids = {}


def calls(n):
    capture.runtime.sink.flush_interval = 3600  # this child's writer never flushes on its own
    for i in range(n):
        urllib.request.urlopen(f"{url}/echo?i={i}", timeout=10).read()


def child(n, ready_fd, then="sleep"):
    calls(n)
    if then == "hang":
        os.write(ready_fd, b"x")
        urllib.request.urlopen(f"http://{hang}/never-answered", timeout=60)  # in flight at the kill
    if then == "flush_and_exit":
        capture.runtime.sink.flush(20)
        os._exit(0)
    if then == "exit_unflushed":
        os._exit(0)                   # no atexit: the rows still queued are lost
    os.write(ready_fd, b"x")
    time.sleep(60)
    os._exit(0)


def fork_child(n, then="sleep"):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            child(n, w, then)
        finally:
            os._exit(1)
    os.close(w)
    if then in ("sleep", "hang"):
        assert os.read(r, 1) == b"x"
    os.close(r)
    return pid


pid = fork_child(7)                                   # 7 calls queued, then kill -9
os.kill(pid, signal.SIGKILL); os.waitpid(pid, 0); pids["kill_7"] = pid

pid = fork_child(3, "hang")                           # 3 queued + 1 in flight, then kill -9
time.sleep(0.5)
os.kill(pid, signal.SIGKILL); os.waitpid(pid, 0); pids["kill_3_in_flight_1"] = pid

pid = fork_child(5, "flush_and_exit")                 # clean: everything written, nothing to say
os.waitpid(pid, 0); pids["clean_5"] = pid

pid = fork_child(0, "sleep")                          # killed having captured nothing: owes 0
os.kill(pid, signal.SIGKILL); os.waitpid(pid, 0); pids["kill_0"] = pid

pid = fork_child(4, "exit_unflushed")                 # os._exit with 4 rows queued: a gap row, no stop row
os.waitpid(pid, 0); pids["exit_unflushed_4"] = pid

pid = fork_child(2)                                   # SIGTERM: its own handler flushes, nothing reported
os.kill(pid, signal.SIGTERM); os.waitpid(pid, 0); pids["sigterm_2"] = pid

pid = fork_child(6)                                   # a corrupted page: fail-open, "unknown"
process_counts._children[pid].q[process_counts.H_MAGIC] = 12345
os.kill(pid, signal.SIGKILL); os.waitpid(pid, 0); pids["corrupt"] = pid

pid = fork_child(6)                                   # a truncated/garbled page: fail-open, "unknown"
process_counts._children[pid].q[process_counts.H_RECORDS] = 10**9
os.kill(pid, signal.SIGKILL); os.waitpid(pid, 0); pids["garbled"] = pid

ctx = multiprocessing.get_context("fork")             # multiprocessing's kill(): exact too
r, w = os.pipe()
p = ctx.Process(target=child, args=(5, w))
p.start()
assert os.read(r, 1) == b"x"
p.kill()
p.join()
pids["mp_kill_5"] = p.pid
print(json.dumps(pids), flush=True)
"""


@pytest.fixture
def never_answers():
    """A listening socket that accepts connections (backlog) and never answers: a call in flight."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    yield f"127.0.0.1:{s.getsockname()[1]}"
    s.close()


def _rows(dsn):
    store = open_store(dsn)
    try:
        return store.execute_raw("SELECT pid, direction, method, detail FROM egress_log ORDER BY chain_seq")
    finally:
        store.close()


def _run(tmp_path, dsn, http_server, never_answers):
    script = tmp_path / "prog.py"
    script.write_text(PROGRAM)
    done = subprocess.run([CLI, "run", "--db", dsn, "--", sys.executable, str(script), http_server, never_answers],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "MNA_HEARTBEAT": "0"})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_parent_records_exactly_what_a_killed_child_owed(tmp_path, http_server, never_answers, backend, request):
    dsn = f"sqlite:///{tmp_path}/journal.db" if backend == "sqlite" else request.getfixturevalue("pg_dsn")
    pids = _run(tmp_path, dsn, http_server, never_answers)
    rows = _rows(dsn)
    by_pid: dict = {}
    for pid, direction, method, detail in rows:
        by_pid.setdefault(pid, []).append((direction, method, json.loads(detail) if detail else None))

    def kinds(name):
        return [(d, m) for d, m, _ in by_pid.get(pids[name], [])]

    def one(name, method):
        found = [info for d, m, info in by_pid.get(pids[name], []) if d == "internal" and m == method]
        assert len(found) == 1, (name, method, by_pid.get(pids[name]))
        return found[0]

    parent = {p for p, d, m, _ in rows if m == "start"}
    assert len(parent) == 1
    for name, n in (("kill_7", 7), ("kill_3_in_flight_1", 4), ("mp_kill_5", 5)):
        assert kinds(name) == [("internal", "stop"), ("internal", "gap")], (name, by_pid.get(pids[name]))
        stop, gap = one(name, "stop"), one(name, "gap")
        assert stop["killed_by_signal"] == "SIGKILL" and stop["unflushed_rows"] == n, stop
        assert stop["reaped_by"] in parent and gap["reaped_by"] in parent
        assert gap["lost"] == n and gap["reasons"] == ["killed_by_signal"] and "lost_internal" not in gap, gap
        assert "in_doubt" not in gap
    assert one("kill_3_in_flight_1", "gap")["in_flight"] == 1
    assert "in_flight" not in one("kill_7", "gap")
    # clean exit: its 5 rows, no stop row, no gap row (no false loss)
    assert kinds("clean_5") == [("outbound", "GET")] * 5
    # killed having captured nothing: a stop row that says 0, no gap row
    assert kinds("kill_0") == [("internal", "stop")] and one("kill_0", "stop")["unflushed_rows"] == 0
    # os._exit with rows queued (lost, silently, before): a gap row, exact, no stop row
    assert kinds("exit_unflushed_4") == [("internal", "gap")]
    assert one("exit_unflushed_4", "gap")["lost"] == 4
    assert one("exit_unflushed_4", "gap")["reasons"] == ["exited_unflushed"]
    # SIGTERM: the child's own handler flushed, nothing to report
    assert kinds("sigterm_2") == [("outbound", "GET")] * 2
    # a page that cannot be trusted: the reaper does not crash, the stop row says unknown, no gap row
    for name in ("corrupt", "garbled"):
        assert kinds(name) == [("internal", "stop")], (name, by_pid.get(pids[name]))
        stop = one(name, "stop")
        assert stop["unflushed_rows"] == "unknown" and stop["unflushed_unknown_because"] == "corrupt", stop
    # the journal's trust report counts the exact losses (gap rows): 7 + 4 + 4 + 5
    lost = sum(json.loads(d)["lost"] for _p, _dir, m, d in rows if m == "gap")
    assert lost == 20


IN_WRITE = r"""
import json, os, signal, sys, time, urllib.request
from mit_network_audit.interceptor import capture

url, mode = sys.argv[1], sys.argv[2]


def child(ready_fd):
    sink = capture.runtime.sink
    sink.flush_interval = 3600
    store = sink.store
    original = store.append

    def append(batch):                # the child dies inside its writer's append
        if mode == "committed":
            original(batch)           # ... after the commit, before the sink could publish it
        os.write(ready_fd, b"x")
        time.sleep(60)

    store.append = append
    for i in range(6):
        urllib.request.urlopen(f"{url}/echo?i={i}", timeout=10).read()
    sink._wake.set()                  # write now
    time.sleep(60)


r, w = os.pipe()
pid = os.fork()
if pid == 0:
    try:
        child(w)
    finally:
        os._exit(1)
assert os.read(r, 1) == b"x"
os.kill(pid, signal.SIGKILL)
os.waitpid(pid, 0)
print(json.dumps(pid), flush=True)
"""


@pytest.mark.parametrize("mode", ["committed", "not_committed"])
def test_a_batch_in_write_at_the_kill_is_settled_by_the_parent(tmp_path, http_server, mode):
    dsn = f"sqlite:///{tmp_path}/journal.db"
    script = tmp_path / "prog.py"
    script.write_text(IN_WRITE)
    done = subprocess.run([CLI, "run", "--db", dsn, "--", sys.executable, str(script), http_server, mode],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "MNA_HEARTBEAT": "0"})
    assert done.returncode == 0, done.stderr[-3000:]
    pid = json.loads(done.stdout.strip().splitlines()[-1])
    rows = [(d, m, json.loads(x) if x else None) for p, d, m, x in _rows(dsn) if p == pid]
    outbound = [r for r in rows if r[0] == "outbound"]
    stop = [x for d, m, x in rows if m == "stop"]
    gap = [x for d, m, x in rows if m == "gap"]
    assert len(stop) == 1 and len(gap) == 1, rows
    if mode == "committed":  # the 6 rows are in the journal: nothing lost, and the row says why
        assert len(outbound) == 6
        assert gap[0]["lost"] == 0 and gap[0]["in_write_committed"] == 6 and stop[0]["unflushed_rows"] == 0
    else:
        assert outbound == []
        assert gap[0]["lost"] == 6 and gap[0]["in_write_lost"] == 6 and stop[0]["unflushed_rows"] == 6
    assert "in_doubt" not in gap[0] and "in_doubt" not in stop[0]
