"""The Trust Report change measured in bench/bench_web.py and now adopted in report/trust.py (merge the
rollup's hours in SQL before the verdict rules run) gives the same verdict, rules, per-rule counts and summary as today's
per-hour groups — only one line per key instead of one per key per hour.  One count differs by
design of today's rule: a "request too large" line counts every call of its group, so merging hours
counts the key's calls over the whole period, not only in the hours with an oversized request (the
precise figure — rows over the limit — would come from the evidence query)."""

from __future__ import annotations

import os
import random
import sys
import time
from collections import Counter

from mit_network_audit.journal import open_store
from mit_network_audit.report import trust

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench"))
import bench_web  # noqa: E402


def test_merged_hours_same_verdict_rules_counts_and_summary(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/j.db")
    t0 = time.time_ns() // 1000 - 3 * 86_400_000_000
    store.append(bench_web._events(0, 6000, t0, 3 * 86_400_000_000 / 6000, random.Random(1)))
    since = t0 - 1
    merged = trust.build_report(store, since)  # trust._groups merges the hours in SQL (adopted)
    original = trust._groups
    try:
        trust._groups = bench_web.hourly_groups  # the former per-hour groups, as reference
        hourly = trust.build_report(store, since)
        trust._groups = bench_web.aggregated_groups  # the bench's copy must stay what trust does
        assert trust.build_report(store, since).lines == merged.lines
    finally:
        trust._groups = original
    assert hourly.verdict == merged.verdict == "alarm"

    def per_rule(report):
        counts = Counter()
        for line in report.lines:
            counts[line.rule] += line.count
        return counts

    a, b = per_rule(hourly), per_rule(merged)
    assert b.pop("vendor_request_too_large", 0) >= a.pop("vendor_request_too_large", 0)
    assert a == b
    assert hourly.summary == merged.summary
    assert len(merged.lines) < len(hourly.lines)  # the point: fewer, merged lines
