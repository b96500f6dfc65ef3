"""Markdown tables for docs/reliability.md from proof/results/*.json files (the newest if none given;\nseveral: their runs merged in order)."""

from __future__ import annotations

import glob
import json
import os
import sys


def fmt_load(name: str, r: dict) -> str:
    ld = r["load"]
    return (
        f"| {r['kind']} ({'gunicorn -w 4' if r['kind'] == 'wsgi' else 'uvicorn'}) → {r['backend']} | {r['seconds']:.0f} s, "
        f"{ld['requests']:,} req, {ld['rps']:.0f}/s (baseline {ld.get('rps_baseline', 0):.0f}/s) | "
        f"{ld['p50_ms']:.1f} / {ld.get('p50_ms_baseline', 0):.1f} ms (×{ld.get('p50_ms_ratio')}) | "
        f"{ld['p99_ms']:.1f} / {ld.get('p99_ms_baseline', 0):.1f} ms (×{ld.get('p99_ms_ratio')}) | "
        f"{r['served']:,} / {r['inbound_rows']:,} | {r['provider_calls']:,} / {r['outbound_rows']:,} | "
        f"{ld['non_2xx']} / {ld['socket_errors']} | {'yes' if r['verify_ok'] else 'NO'} | {r.get('_source', '')} |"
    )


def fmt_fault(name: str, r: dict) -> str:
    if "load" not in r:
        src = r.pop("_source", "")
        return f"| {name} | {src} | {json.dumps(r)} |"
    ld = r["load"]
    missing = r["served"] + r["provider_calls"] - r["inbound_rows"] - r["outbound_rows"]
    silent = missing - r["lost_in_gaps"] - r["sink_raised"]
    in_flight = r.get("in_flight_in_gaps", 0)
    # calls in flight at a kill are declared lost; one the peer never saw is declared, not missing
    unseen = min(in_flight, -silent) if silent < 0 else 0
    silent += unseen
    killed = [str(p) for p in (r.get("fault") or {}).get("killed", [])]
    killed_note = ""
    if killed:
        stops = sum(r["processes"].get(p, {}).get("stop_rows", 0) for p in killed)
        killed_note = f"; stop rows for the killed worker (by its master): {stops}"
    return (
        f"| {name} | {r.get('_source', '')}: {r['kind']} → {r['backend']}, {r['seconds']:.0f} s "
        f"| {ld['requests']:,} req, non-2xx "
        f"{ld['non_2xx']}, socket errors {ld['socket_errors']} | {r['served'] + r['provider_calls']:,} calls, "
        f"{missing:,} without a row; gap rows say {r['lost_in_gaps']:,} lost ({', '.join(r['gap_reasons']) or '-'}"
        f"{f'; {in_flight} of them calls in flight' if in_flight else ''}"
        f"{f', {unseen} never reached the peer' if unseen else ''}); "
        f"sink raised {r['sink_raised']}; **unrecorded {silent:,}**{killed_note} | "
        f"{'yes' if r['verify_ok'] else 'NO'} | {json.dumps(r.get('fault') or {})} |"
    )


def main(argv: list[str]) -> None:
    paths = argv or sorted(glob.glob(os.path.join(os.path.dirname(__file__), "results", "*.json")))[-1:]
    runs: dict = {}
    for path in paths:  # several files: their runs merged, a later file's run of the same name wins
        with open(path) as fh:
            res = json.load(fh)
        print(
            f"<!-- from {os.path.basename(path)}: mode {res['mode']}, {res['elapsed_s']} s, "
            f"loadavg {res['loadavg_start']} -> {res['loadavg_end']} -->"
        )
        for name, r in res["runs"].items():
            if isinstance(r, dict):
                r["_source"] = f"{res['mode']} {os.path.basename(path)[len(res['mode']) + 1 : -5]}"
            runs[name] = r
    print(
        "| server → journal | load | p50 audited / baseline | p99 audited / baseline | served / inbound rows "
        "| provider calls / outbound rows | non-2xx / socket errors | verify | run |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in runs.items():
        if name.startswith("load."):
            print(fmt_load(name, r))
    print()
    print("| fault | run | app answered | lost | verify | fault detail |")
    print("|---|---|---|---|---|---|")
    for name, r in runs.items():
        if name.startswith("fault."):
            print(fmt_fault(name, r))
    print()
    for name, r in runs.items():
        if name.startswith("security."):
            print(
                f"- {name}: leaks {r['leaks']}, foreign sockets {r['foreign_sockets']} ({r['ss_samples']} ss samples, "
                f"{r['sockets_seen']} sockets), on the wire (control) {r['control_on_wire']}, scanned "
                f"{r['scanned_bytes']:,} bytes, rows {r['rows']}, channels {r['channels']}, auditor rows "
                f"{r['auditor_rows']}, verify {r['verify_ok']}, export rc {r['export_rc']}, authz {r['authz']}"
            )


if __name__ == "__main__":
    main(sys.argv[1:])
