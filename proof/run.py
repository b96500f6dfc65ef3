"""The proof suite: load, faults and security end to end.  Run it with ``proof/run [--quick]``.

Writes proof/results/<mode>-<utc time>.json and prints one line per check.  --quick is the CI
sized subset (seconds of load, faults that only touch this suite's own PostgreSQL database);
the full run loads each server for 60 s and restarts the shared PostgreSQL cluster once.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from proof import harness as h  # noqa: E402


def lost_of(r: dict) -> str:
    missing = r["served"] + r["provider_calls"] - r["inbound_rows"] - r["outbound_rows"]
    return f"missing {missing} rows; gap rows say {r['lost_in_gaps']} lost; sink raised {r['sink_raised']}"


def line(name: str, r: dict) -> str:
    load = r.get("load", {})
    bits = [
        f"{name}: {load.get('requests', '?')} req ({load.get('rps', 0):.0f}/s) p50 {load.get('p50_ms', 0):.1f} ms "
        f"p99 {load.get('p99_ms', 0):.1f} ms non2xx {load.get('non_2xx', '?')} sockerr {load.get('socket_errors', '?')}"
    ]
    if "inbound_rows" in r:
        bits.append(
            f"served {r['served']} / in rows {r['inbound_rows']}; provider {r['provider_calls']} / out rows "
            f"{r['outbound_rows']}; exact {r['exact']} accounted {r['accounted']} verify {r['verify_ok']}; "
            + lost_of(r)
        )
    if r.get("fault"):
        bits.append(f"fault {r['fault']}")
    return " | ".join(bits)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="the CI-sized subset")
    ap.add_argument("--only", default="", help="comma list of parts: load,faults,security")
    ap.add_argument("--seconds", type=float, help="load seconds per run (default 60 full / 8 quick)")
    ap.add_argument(
        "--select",
        default="",
        help="comma list of run-name prefixes to run (e.g. "
        "fault.sqlite_disk_full,fault.prefork); default: every run of the chosen parts",
    )
    ap.add_argument(
        "--skip",
        default=os.environ.get("PROOF_SKIP", ""),
        help="comma list of run-name prefixes not to run, e.g. fault.pg_cluster_restart "
        "(restarts the shared PostgreSQL cluster); env PROOF_SKIP",
    )
    args = ap.parse_args(argv)
    select = [p for p in args.select.split(",") if p]
    skip = [p for p in args.skip.split(",") if p]

    def want(name: str) -> bool:
        if any(name.startswith(p) for p in skip):
            print(f"{name}: skipped (--skip)", flush=True)
            return False
        return not select or any(name.startswith(p) for p in select)

    quick = args.quick
    secs = args.seconds or (8 if quick else 60)
    fsecs = 8 if quick else 20
    parts = set((args.only or "load,faults,security").split(","))
    work = tempfile.mkdtemp(prefix="mna_h3_proof_")
    have_pg = h.pg_available()
    backends = ["postgres", "sqlite"] if have_pg else ["sqlite"]
    results: dict = {
        "mode": "quick" if quick else "full",
        "started": dt.datetime.now(dt.UTC).isoformat(),
        "host_cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
        "runs": {},
    }

    def record(name, r):
        results["runs"][name] = r
        print(
            line(name, r) if isinstance(r, dict) and "load" in r else f"{name}: {json.dumps(r)[:600]}",
            flush=True,
        )

    t0 = time.monotonic()
    if "load" in parts:
        combos = [(k, b) for k in ("wsgi", "asgi") for b in backends]
        if quick:
            combos = [("wsgi", backends[0]), ("asgi", "sqlite")]
        for kind, backend in combos:
            if not want(f"load.{kind}.{backend}"):
                continue
            # side by side: baseline, audited, baseline (ratios against the mean of the two baselines)
            base1 = h.load_run(kind, None, secs, work)
            audited = h.load_run(kind, backend, secs, work)
            base2 = h.load_run(kind, None, secs, work)
            for p in ("p50_ms", "p99_ms"):
                b = statistics.mean([base1["load"][p], base2["load"][p]])
                audited["load"][f"{p}_baseline"] = round(b, 2)
                audited["load"][f"{p}_ratio"] = round(audited["load"][p] / b, 2) if b else None
            audited["load"]["rps_baseline"] = round(
                statistics.mean([base1["load"]["rps"], base2["load"]["rps"]]), 1
            )
            record(f"load.{kind}.{backend}", audited)
    if "faults" in parts:
        if have_pg and want("fault.pg_terminate_backends"):
            record(
                "fault.pg_terminate_backends",
                h.load_run("wsgi", "postgres", fsecs, work, fault=h.fault_terminate_backends()),
            )
        if have_pg and want("fault.pg_outage_beyond_buffer"):
            record(
                "fault.pg_outage_beyond_buffer",
                h.load_run(
                    "wsgi",
                    "postgres",
                    fsecs,
                    work,
                    env={"PROOF_SINK_LIMIT": "50"},
                    fault=h.fault_outage(seconds=4),
                ),
            )
        if have_pg and not quick and want("fault.pg_cluster_restart"):
            record(
                "fault.pg_cluster_restart",
                h.load_run("wsgi", "postgres", 30, work, fault=h.fault_pg_restart(after=8)),
            )
        if want("fault.sqlite_disk_full_for_3s"):
            r = h.disk_full_run("asgi", fsecs, work)
            record(
                "fault.sqlite_disk_full_for_3s",
                r if r is not None else {"skipped": "tmpfs mount not allowed"},
            )
        if want("fault.sqlite_disk_full_until_exit"):
            r = h.disk_full_run("asgi", fsecs, work, size="16m", free_after=None)
            record(
                "fault.sqlite_disk_full_until_exit",
                r if r is not None else {"skipped": "tmpfs mount not allowed"},
            )
        if want("fault.kill9_worker"):
            record(
                "fault.kill9_worker",
                h.load_run("wsgi", backends[0], fsecs, work, fault=h.fault_kill_worker()),
            )
        if want("fault.sink_raises"):
            record(
                "fault.sink_raises",
                h.load_run("asgi", "sqlite", fsecs, work, env={"PROOF_SINK_RAISE_EVERY": "97"}),
            )
        step_at = time.time_ns() + 4_000_000_000  # ~2 s into the load (the server takes ~2 s to start)
        if want("fault.clock_steps_back_1h"):
            record(
                "fault.clock_steps_back_1h",
                h.load_run(
                    "asgi",
                    "sqlite",
                    fsecs,
                    work,
                    env={"PROOF_CLOCK_STEP_AT_NS": str(step_at), "PROOF_CLOCK_STEP_S": "-3600"},
                ),
            )
        # uvicorn stopped by SIGTERM (what systemd and docker send): does the last batch reach the journal?
        if want("fault.uvicorn_sigterm_stop"):
            runs = [
                h.load_run("asgi", "sqlite", 3, work, stop_signal=signal.SIGTERM)
                for _ in range(3 if quick else 10)
            ]
            record(
                f"fault.uvicorn_sigterm_stop_x{len(runs)}",
                {
                    "runs": len(runs),
                    "exact_runs": sum(r["exact"] for r in runs),
                    "rows_missing": [
                        r["served"] + r["provider_calls"] - r["inbound_rows"] - r["outbound_rows"]
                        for r in runs
                    ],
                    "stop_rows": [sum(p.get("stop_rows", 0) for p in r["processes"].values()) for r in runs],
                    "exit_by_sigterm": [r.get("exit_status") == -signal.SIGTERM for r in runs],
                    "verify_ok": all(r["verify_ok"] for r in runs),
                },
            )
        # gunicorn forking while the master's writer is inside SQLite (see docs/reliability.md)
        if not quick and want("fault.prefork_sqlite_start"):
            runs = [h.load_run("wsgi", "sqlite", 3, work) for _ in range(10)]
            silent = [
                pid for r in runs for pid, p in r["processes"].items() if p["served"] and not p["in_rows"]
            ]
            record(
                "fault.prefork_sqlite_start_x10",
                {
                    "runs": len(runs),
                    "exact_runs": sum(r["exact"] for r in runs),
                    "workers_with_all_rows_lost": len(silent),
                    "gap_rows": sum(r["gap_rows"] for r in runs),
                    "verify_ok": all(r["verify_ok"] for r in runs),
                },
            )
    if "security" in parts:
        for kind, backend in (("wsgi", backends[0]), ("asgi", "sqlite")):
            record(f"security.{kind}.{backend}", h.security_run(kind, backend, work))
    results["elapsed_s"] = round(time.monotonic() - t0, 1)
    results["loadavg_end"] = os.getloadavg()
    out_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    os.makedirs(out_dir, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = os.path.join(out_dir, f"{results['mode']}-{stamp}.json")
    with open(path, "w") as fh:
        json.dump(results, fh, indent=1, default=str)
    print(f"results: {path} ({results['elapsed_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
