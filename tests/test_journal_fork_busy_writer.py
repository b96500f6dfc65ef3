"""Fork while the journal writer thread is inside SQLite (what gunicorn's master does when it forks
workers right after writing its start row).  Before the fix a child could inherit SQLite's lock
state mid-transaction and block forever in BEGIN IMMEDIATE: its rows never reached the journal,
silently.  Now ``os.fork`` waits for the writer's write lock, and every child's rows land."""

import json
import os
import subprocess
import sys

from mit_network_audit.journal import open_store
from mit_network_audit.journal.verify import verify

FORKS = int(os.environ.get("MNA_FORK_TEST_FORKS", "60"))

SCRIPT = r"""
import os, sys, threading, time, signal
from mit_network_audit.interceptor.event import internal_event
from mit_network_audit.journal import sink as sink_mod
from mit_network_audit.journal.sink import BatchingSink

dsn, forks, per_child = sys.argv[1], int(sys.argv[2]), 30
if len(sys.argv) > 3 and sys.argv[3] == "no-fix":  # demonstrate the old behaviour (not used by the test)
    sink_mod._before_fork.__code__ = (lambda: None).__code__
sink = BatchingSink(dsn, batch_size=20, flush_interval=0.001)
stop = threading.Event()


def busy():  # keeps the parent's writer inside SQLite nearly all the time
    i = 0
    while not stop.is_set():
        sink.emit(internal_event("parent", detail=str(i)))
        i += 1
        if i % 20 == 0:
            time.sleep(0.0005)


threading.Thread(target=busy, daemon=True).start()
time.sleep(0.3)
children = []
for n in range(forks):
    pid = os.fork()
    if pid == 0:
        for i in range(per_child):
            sink.emit(internal_event("child", detail=f"{n}:{i}"))
        os._exit(0 if sink.flush(15) else 3)
    children.append(pid)
    time.sleep(0.01)
deadline = time.time() + 60
status = {}
while len(status) < len(children) and time.time() < deadline:
    for pid in children:
        if pid not in status:
            done, code = os.waitpid(pid, os.WNOHANG)
            if done:
                status[pid] = code
    time.sleep(0.05)
hung = [p for p in children if p not in status]
for pid in hung:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
stop.set()
sink.flush(30)
print(__import__("json").dumps({"children": children, "hung": hung,
                                 "bad_exit": [p for p, c in status.items() if c != 0]}), flush=True)
"""


def run(dsn, forks, *extra):
    done = subprocess.run([sys.executable, "-c", SCRIPT, dsn, str(forks), *extra], capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_children_forked_while_the_writer_is_busy_all_write(tmp_path):
    dsn = f"sqlite:///{tmp_path}/journal.db"
    out = run(dsn, FORKS)
    store = open_store(dsn)
    try:
        per_pid = dict(store.execute_raw("SELECT pid, count(*) FROM egress_log WHERE method = 'child' GROUP BY pid"))
        assert verify(store).ok
    finally:
        store.close()
    assert out["hung"] == [] and out["bad_exit"] == [], out
    missing = {pid: per_pid.get(pid, 0) for pid in out["children"] if per_pid.get(pid, 0) != 30}
    assert missing == {}, f"children whose rows did not all land: {missing}"
