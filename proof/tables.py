"""Markdown tables for docs/reliability.md from a proof/results/*.json file (the newest if none given)."""

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
        f"{ld['non_2xx']} / {ld['socket_errors']} | {'yes' if r['verify_ok'] else 'NO'} |"
    )


def fmt_fault(name: str, r: dict) -> str:
    if "load" not in r:
        return f"| {name} | {json.dumps(r)} |"
    ld = r["load"]
    missing = r["served"] + r["provider_calls"] - r["inbound_rows"] - r["outbound_rows"]
    return (
        f"| {name} | {r['kind']} → {r['backend']}, {r['seconds']:.0f} s | {ld['requests']:,} req, non-2xx "
        f"{ld['non_2xx']}, socket errors {ld['socket_errors']} | {r['served'] + r['provider_calls']:,} calls, "
        f"{missing:,} without a row; gap rows say {r['lost_in_gaps']:,} lost; sink raised {r['sink_raised']} | "
        f"{'yes' if r['verify_ok'] else 'NO'} | {json.dumps(r.get('fault') or {})} |"
    )


def main(argv: list[str]) -> None:
    path = (
        argv[0]
        if argv
        else sorted(glob.glob(os.path.join(os.path.dirname(__file__), "results", "*.json")))[-1]
    )
    with open(path) as fh:
        res = json.load(fh)
    print(
        f"<!-- from {os.path.basename(path)}: mode {res['mode']}, {res['elapsed_s']} s, "
        f"loadavg {res['loadavg_start']} -> {res['loadavg_end']} -->"
    )
    runs = res["runs"]
    print(
        "| server → journal | load | p50 audited / baseline | p99 audited / baseline | served / inbound rows "
        "| provider calls / outbound rows | non-2xx / socket errors | verify |"
    )
    print("|---|---|---|---|---|---|---|---|")
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
