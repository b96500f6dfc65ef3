"""A full disk under the SQLite journal (a real, small tmpfs; needs root to mount, else skipped).

The writer keeps its batch buffered within the bound, counts every event it drops, and writes an
exact gap row as soon as it can write again; if the process exits while the disk is still full,
the exit flush writes the gap row through the store's reserve.  ``verify`` works on a full disk.
"""

import contextlib
import json
import os
import subprocess
import sys
import tempfile

import pytest

from mit_network_audit.journal import open_store
from mit_network_audit.journal.verify import verify

CLI = os.path.join(os.path.dirname(sys.executable), "mit-network-audit")

WRITER = r"""
import os, sys, time
from mit_network_audit.interceptor.event import internal_event
from mit_network_audit.journal.sink import BatchingSink

dsn, mount, mode = sys.argv[1:4]
sink = BatchingSink(dsn, batch_size=200, buffer_limit=300, queue_limit=300, retry_interval=0.05)
n = 0


def burst(k, pause=0.0):
    global n
    for _ in range(k):
        sink.emit(internal_event("probe", detail="x" * 400))
        n += 1
        if pause:
            time.sleep(pause)


burst(1000)
assert sink.flush(30)
filler = os.path.join(mount, "filler")
try:
    with open(filler, "wb") as fh:
        while True:
            fh.write(b"\0" * 65536)
            fh.flush()
except OSError:
    pass
burst(4000, pause=0.0003)  # the disk is full: the writer fails, buffers 300, drops the rest (counted)
print("emitted", n, "write_errors", sink.counters["write_errors"], flush=True)
if mode == "free":
    os.unlink(filler)
    assert sink.flush(30), "flush after the disk was freed"
    print("flushed", flush=True)
# mode "hold": exit with the disk still full; atexit must still leave an exact gap row
"""


@contextlib.contextmanager
def small_tmpfs(size="6m"):
    path = tempfile.mkdtemp(prefix="mna_diskfull_")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path], capture_output=True)
    if done.returncode != 0:
        os.rmdir(path)
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", path], capture_output=True)
        with contextlib.suppress(OSError):
            os.rmdir(path)


def fill(path):
    with contextlib.suppress(OSError), open(path, "wb") as fh:
        while True:
            fh.write(b"\0" * 4096)
            fh.flush()


def run_writer(dsn, mount, mode):
    done = subprocess.run([sys.executable, "-c", WRITER, dsn, mount, mode], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    emitted = int(done.stdout.split()[1])
    assert int(done.stdout.split()[3]) > 0, done.stdout  # the disk really was full for the writer
    return emitted, done


def account(dsn):
    store = open_store(dsn, create=False)  # a reader: works on the full disk too
    try:
        rows = store.execute_raw("SELECT method, detail FROM egress_log ORDER BY chain_seq")
        assert verify(store).ok
    finally:
        store.close()
    gaps = [json.loads(d) for m, d in rows if m == "gap"]
    probes = sum(1 for m, _ in rows if m == "probe")
    return probes, gaps


@pytest.mark.parametrize("mode", ["free", "hold"])
def test_disk_full_loss_is_exactly_declared(mode):
    with small_tmpfs() as mount:
        dsn = f"sqlite:///{mount}/journal.db"
        emitted, done = run_writer(dsn, mount, mode)
        if mode == "hold":
            fill(os.path.join(mount, "filler2"))  # what the exit's gap row left of the freed reserve
            assert os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize < 65536  # still full now
            # verify must work on a full disk (it used to fail: "cannot rollback - no transaction is active")
            ver = subprocess.run([CLI, "verify", "--db", dsn], capture_output=True, text=True, timeout=120)
            assert ver.returncode == 0, ver.stdout + ver.stderr
        probes, gaps = account(dsn)
        lost = sum(g["lost"] for g in gaps)
        assert gaps and lost > 0, (probes, gaps, done.stderr)
        assert probes + lost == emitted, (probes, lost, emitted, gaps, done.stderr)  # exact, nothing silent
        reasons = {r for g in gaps for r in g["reasons"]}
        assert "disk_full" in reasons or "disk_io_error" in reasons, gaps
        if mode == "hold":
            assert "unwritable_at_exit" in reasons, gaps
            assert "no gap row could be written" not in done.stderr
        else:
            assert os.path.exists(mount + "/journal.db.mna-reserve")  # made again once space came back
