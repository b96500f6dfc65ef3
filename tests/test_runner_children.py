"""kill -9 of a forked child (a gunicorn worker, a multiprocessing worker): the child cannot record
anything, its parent does: a ``stop`` row for the child's pid saying it was killed by SIGKILL and that
its unflushed rows (count unknown) may be lost.  Real processes under ``mit-network-audit run``."""

import json
import os
import subprocess
import sys

from mit_network_audit.journal import open_store

CLI = os.path.join(os.path.dirname(sys.executable), "mit-network-audit")

PROGRAM = r"""
import json, multiprocessing, os, signal, sys, time

def child_sleeps():
    time.sleep(60)

pids = {}
pid = os.fork()                      # killed by SIGKILL: reported
if pid == 0:
    time.sleep(60)
    os._exit(0)
time.sleep(0.3)
os.kill(pid, signal.SIGKILL)
os.waitpid(pid, 0)
pids["fork_sigkill"] = pid

pid = os.fork()                      # exits normally: not reported
if pid == 0:
    os._exit(0)
os.waitpid(pid, 0)
pids["fork_exit"] = pid

pid = os.fork()                      # SIGTERM: flushed by the child's own handler, not reported
if pid == 0:
    time.sleep(60)
    os._exit(0)
time.sleep(0.3)
os.kill(pid, signal.SIGTERM)
os.waitpid(pid, 0)
pids["fork_sigterm"] = pid

ctx = multiprocessing.get_context("fork")
p = ctx.Process(target=child_sleeps)  # multiprocessing's kill(): reported
p.start()
time.sleep(0.3)
p.kill()
p.join()
pids["mp_kill"] = p.pid
print(json.dumps(pids), flush=True)
"""


def test_parent_writes_stop_row_for_child_killed_by_signal(tmp_path):
    dsn = f"sqlite:///{tmp_path}/journal.db"
    script = tmp_path / "prog.py"
    script.write_text(PROGRAM)
    done = subprocess.run([CLI, "run", "--db", dsn, "--", sys.executable, str(script)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "MNA_HEARTBEAT": "0"})
    assert done.returncode == 0, done.stderr[-2000:]
    pids = json.loads(done.stdout.strip().splitlines()[-1])
    store = open_store(dsn)
    try:
        rows = store.execute_raw("SELECT pid, detail FROM egress_log WHERE method = 'stop'")
    finally:
        store.close()
    killed = {pid: json.loads(detail) for pid, detail in rows if "killed_by_signal" in (detail or "")}
    assert set(killed) == {pids["fork_sigkill"], pids["mp_kill"]}, (killed, pids)
    for info in killed.values():
        assert info["killed_by_signal"] == "SIGKILL" and info["unflushed_rows"] == "unknown"
        assert info["reaped_by"] not in (pids["fork_sigkill"], pids["mp_kill"])
