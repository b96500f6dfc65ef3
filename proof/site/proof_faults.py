"""Fault injection for the proof suite, imported by proof/site/sitecustomize.py, which the auditor's own
sitecustomize chains to (the runner puts its site dir first on PYTHONPATH and then imports the next
sitecustomize it finds: ours).

Every knob is off unless its environment variable is set, so the same file is harmless in the
baseline runs.  These are *in-process* faults and the proof says so:

    PROOF_SINK_LIMIT=N           shrink the journal sink's buffer bound (queue and outage buffer) to N
                                 rows, so a short database outage goes beyond it
    PROOF_SINK_RAISE_EVERY=N     every N-th event handed to the sink raises instead (a sink that raises)
    PROOF_CLOCK_STEP_AT_NS=T     from wall-clock time T (ns) on, this process's wall clock reads
    PROOF_CLOCK_STEP_S=-3600     that many seconds off: time.time, time.time_ns and the capture core's
                                 reference to time.time_ns are patched (the kernel clock is shared
                                 with other users of the machine, so it is not stepped for real;
                                 time.monotonic is left alone, as an NTP step would leave it)
    PROOF_COUNT_DIR=dir          at exit (write_stats()), write this process's capture stats to dir/stats-<pid>.json
"""

import atexit
import json
import os
import time


def _setup():
    try:
        from mit_network_audit.interceptor import capture
    except Exception:
        return None
    sink = capture.runtime.sink
    limit = os.environ.get("PROOF_SINK_LIMIT")
    if sink is not None and limit:
        sink.queue_limit = sink.buffer_limit = int(limit)
    every = int(os.environ.get("PROOF_SINK_RAISE_EVERY") or 0)
    if sink is not None and every:
        capture.runtime.sink = RaisingSink(sink, every)
    step_at = int(os.environ.get("PROOF_CLOCK_STEP_AT_NS") or 0)
    if step_at:
        offset = int(float(os.environ.get("PROOF_CLOCK_STEP_S") or "-3600") * 1e9)
        real_ns = time.time_ns

        def stepped_ns():
            now = real_ns()
            return now + offset if now >= step_at else now

        time.time_ns = stepped_ns
        time.time = lambda: stepped_ns() / 1e9
        capture._time_ns = stepped_ns
    return capture


class RaisingSink:
    """Hands events on to the real sink, except every ``every``-th, where it raises."""

    def __init__(self, inner, every: int) -> None:
        self.inner, self.every, self.n, self.raised = inner, every, 0, 0

    def emit(self, event):
        self.n += 1
        if self.n % self.every == 0:
            self.raised += 1
            raise RuntimeError("proof: this sink raises")
        self.inner.emit(event)

    def __getattr__(self, name):
        return getattr(self.inner, name)


_capture = _setup()


def write_stats():
    directory = os.environ.get("PROOF_COUNT_DIR")
    if not directory or _capture is None:
        return
    try:
        stats = dict(_capture.stats())
    except Exception:
        stats = {}
    sink = _capture.runtime.sink
    stats["raised_by_proof_sink"] = getattr(sink, "raised", 0)
    inner = getattr(sink, "inner", sink)
    try:  # the journal sink's own counters, as they stand before its at-exit flush
        stats["sink"] = dict(
            inner.counters,
            queue=len(inner._queue),
            pending=len(inner._pending),
            lost_uncounted=inner._lost,
            thread=inner._thread is not None,
        )
    except Exception as exc:
        stats["sink"] = repr(exc)
    with open(os.path.join(directory, f"stats-{os.getpid()}.json"), "w") as fh:
        json.dump(stats, fh, default=str)


if os.environ.get("PROOF_COUNT_DIR"):
    import faulthandler
    import signal

    atexit.register(
        write_stats
    )  # gunicorn workers; uvicorn re-raises SIGTERM (no atexit): the app's lifespan shutdown calls it
    faulthandler.register(signal.SIGRTMIN, all_threads=True)  # diagnostics: kill -SIGRTMIN dumps stacks
