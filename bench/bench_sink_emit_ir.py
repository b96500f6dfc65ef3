"""BatchingSink.emit in CPU instructions per call (callgrind), calling thread only.

    .venv/bin/python bench/bench_sink_emit_ir.py            # this tree
    PYTHONPATH=/path/to/other/src .venv/bin/python bench/bench_sink_emit_ir.py   # another tree

Emits N unbuilt PendingEvents into a sink whose writer waits an hour (nothing is written while
measuring), under ``valgrind --tool=callgrind --separate-threads=yes``, for N = 1,000 and 3,000:
(Ir(3000) - Ir(1000)) / 2000 on the main thread.  Includes building the event objects (the same in
every tree), so compare trees, not absolute values.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import tempfile

WORKER = r"""
import os, sys
n = int(sys.argv[1])
from mit_network_audit.interceptor.event import UnbuiltEvent
from mit_network_audit.journal.sink import BatchingSink
sink = BatchingSink("sqlite:///" + sys.argv[2], batch_size=10**9, flush_interval=3600, queue_limit=10**9)
events = [object.__new__(UnbuiltEvent) for _ in range(n)]
emit = sink.emit
emit(events[0])  # starts the writer thread, which then waits
for e in events[1:]:
    emit(e)
os._exit(0)
"""


def main() -> None:
    totals = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (1000, 3000):
            prefix = os.path.join(tmp, f"emit.{n}")
            subprocess.run(
                ["valgrind", "--tool=callgrind", "--separate-threads=yes", f"--callgrind-out-file={prefix}.%p",
                 sys.executable, "-c", WORKER, str(n), os.path.join(tmp, "j.db")],
                capture_output=True, check=True, env={**os.environ, "PYTHONHASHSEED": "0"},
            )
            (main_file,) = glob.glob(prefix + ".*-01")
            with open(main_file) as fh:
                totals.append(next(int(line.split()[1]) for line in fh if line.startswith("totals:")))
    print(f"BatchingSink.emit (+ building the event): {(totals[1] - totals[0]) / 2000:,.0f} instructions per call")


if __name__ == "__main__":
    main()
