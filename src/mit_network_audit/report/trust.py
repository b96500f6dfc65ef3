"""The Trust Report: a verdict over a period, every line with its evidence (DESIGN §5).

Reads the rollup (never scans the journal); the few evidence rows it names are fetched by index.

* alarm  — the chain/checkpoints do not verify; vendor-bound traffic that is not licence-shaped
           (endpoint outside the catalogue, method not allowed, request over max_request_bytes);
           any network row attributed to the auditor itself.
* review — capture incomplete (disabled channels, a process that went silent, lost events,
           patches removed), destinations of unknown class, forensic capture on, stale checkpoint.
* all_clear — none of the above.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from decimal import Decimal

from . import rollup
from .catalogue import Catalogue, load_catalogue

LEVELS = ("all_clear", "review", "alarm")
AUDITOR_NAMES = ("mit_network_audit", "mit-network-audit")
SILENT_AFTER_US = 3 * 60 * 1_000_000 * 5  # a process with no heartbeat for 15 min (3 beats of 5 min)


@dataclass
class Line:
    level: str  # alarm | review | info
    rule: str
    message: str
    count: int = 0
    chain_seqs: list[int] = field(default_factory=list)
    details: dict = field(default_factory=dict)


@dataclass
class Report:
    verdict: str
    since_us: int
    until_us: int
    vendor_name: str
    lines: list[Line]
    summary: dict
    # What this report re-checked of the record it reads: {"checked": bool, "ok": bool | None,
    # "rows_checked", "first_bad_seq", "checked_at_us"} (see report/integrity.py).
    chain: dict = field(default_factory=lambda: dict(_NOT_CHECKED))

    def as_dict(self) -> dict:
        return {
            "verdict": self.verdict,
            "period": {"since_us": self.since_us, "until_us": self.until_us},
            "vendor_name": self.vendor_name,
            "lines": [asdict(line) for line in self.lines],
            "summary": self.summary,
            "chain": dict(self.chain),
        }


_NOT_CHECKED = {"checked": False, "ok": None, "rows_checked": None, "first_bad_seq": None, "checked_at_us": None}


def _p(store) -> str:
    return "%s" if getattr(store, "kind", "") == "postgres" else "?"


def _groups(store, since_us: int, until_us: int, where: str = "", params: tuple = ()) -> list[dict]:
    """The rollup's keys over the period, merged across its buckets by the database.

    One row per key instead of one per key per hour: the verdict rules need only sums, maxima and
    the seq/time range of each key, so a 30-day report loads up to 720x fewer rows into Python, and
    reads whole days from the daily level (``rollup.period_rows``).  ``bucket_us`` is the start of
    the key's first bucket in the period (an hour at the edges, a day within); ``first_us`` is exact.
    """
    key = rollup.KEY[1:]
    with rollup.hash_aggregates(store):  # PostgreSQL: 10M-row journal, 30 days: 678 -> 158 ms
        source, period = rollup.period_rows(store, since_us, until_us)
        rows = store.execute_raw(
            f"SELECT min(bucket_us), {', '.join(key)}, {rollup.MERGED} FROM {source} "
            f"WHERE true {where} GROUP BY {', '.join(key)}",
            (*period, *params),
        )
    return [dict(zip(rollup.COLUMNS, (int(v) if isinstance(v, Decimal) else v for v in r), strict=True)) for r in rows]


def _evidence(store, where: str, params: tuple, limit: int = 20) -> list[int]:
    p = _p(store)
    rows = store.execute_raw(
        f"SELECT chain_seq FROM egress_log WHERE {where} ORDER BY chain_seq DESC LIMIT {p}", (*params, limit)
    )
    return [r[0] for r in rows]


def build_report(
    store,
    since_us: int,
    until_us: int | None = None,
    *,
    catalogue: Catalogue | None = None,
    verify_result=None,
    trust_checks=(),
    integrity=None,
    chain_pending: str | None = None,
    now_us: int | None = None,
    catch_up: bool = True,
) -> Report:
    """``integrity`` (``report.integrity.Integrity``): the chain re-check and further checks this
    report rests on; or the older pair ``verify_result`` / ``trust_checks``.  Without either the
    report says plainly that it did not re-check the chain (an info line and ``chain.checked``;
    ``chain_pending``: that line's text when a check is running)."""
    catalogue = catalogue or load_catalogue()
    checked_at_us = None
    if integrity is not None:
        verify_result, trust_checks, checked_at_us = integrity.chain, integrity.report_checks(), integrity.checked_at_us
    now_us = now_us or time.time_ns() // 1000
    until_us = until_us or now_us + 1
    if catch_up:
        rollup.catch_up(store)
    else:
        rollup.ensure_tables(store)
    p = _p(store)
    groups = _groups(store, since_us, until_us)
    lines: list[Line] = []

    # -- alarms ---------------------------------------------------------------------------------
    if verify_result is not None and not verify_result.ok:
        lines.append(
            Line(
                "alarm",
                "chain",
                f"the journal does not verify: {verify_result.message}",
                1,
                [verify_result.first_bad_seq] if verify_result.first_bad_seq else [],
            )
        )
    for check in trust_checks:
        # A failed check is an alarm; a passing one may still ask for review (e.g. checkpoint freshness).
        if not check.get("ok", True):
            lines.append(Line("alarm", check.get("name", "checkpoint"), check.get("message", "check failed")))
        elif check.get("level") == "review":
            lines.append(Line("review", check.get("name", "checkpoint"), check.get("message", "")))

    vendor = [g for g in groups if g["vendor_bound"] and g["direction"] == "outbound"]
    for g in vendor:
        comp = catalogue.component(g["component"] or None)
        problems = []
        if comp is None or comp.dest_class != "vendor":
            problems.append(
                (
                    "vendor_endpoint_outside_catalogue",
                    f"to {g['host']}, an endpoint of the vendor that is not in the catalogue",
                )
            )
        else:
            if comp.methods and g["method"].upper() not in comp.methods:
                problems.append(
                    (
                        "vendor_method_not_allowed",
                        f"{g['method']} to {comp.name}, which allows only {', '.join(comp.methods)}",
                    )
                )
            if comp.max_request_bytes is not None and g["max_req_bytes"] > comp.max_request_bytes:
                problems.append(
                    (
                        "vendor_request_too_large",
                        f"requests of up to {g['max_req_bytes']:,} bytes to {comp.name}, "
                        f"whose licence calls may carry at most {comp.max_request_bytes:,}",
                    )
                )
        for rule, text in problems:
            where = (
                f"vendor_bound = {p} AND chain_seq >= {p} AND chain_seq <= {p} AND coalesce(addon, '') = {p}"
                f" AND coalesce(host, '') = {p} AND coalesce(method, '') = {p}"
            )
            params = (True, g["first_seq"], g["last_seq"], g["addon"], g["host"], g["method"])
            if rule == "vendor_request_too_large":
                where += f" AND req_bytes > {p}"
                params += (comp.max_request_bytes,)
            lines.append(
                Line(
                    "alarm",
                    rule,
                    f"{catalogue.vendor_name}-bound traffic that is not licence-shaped: "
                    f"module {g['addon'] or '(unknown)'} sent {text}",
                    int(g["n"]),
                    _evidence(store, where, params),
                    {
                        "addon": g["addon"],
                        "host": g["host"],
                        "method": g["method"],
                        "req_bytes": int(g["req_bytes"]),
                        "max_req_bytes": int(g["max_req_bytes"]),
                    },
                )
            )

    own = [g for g in groups if g["direction"] != "internal" and g["addon"] in AUDITOR_NAMES]
    if own:
        n = sum(int(g["n"]) for g in own)
        lines.append(
            Line(
                "alarm",
                "auditor_network_call",
                f"{n} network call(s) attributed to the auditor itself (it must make none)",
                n,
                _evidence(
                    store,
                    f"direction <> 'internal' AND addon IN ({p}, {p}) AND logged_at_us >= {p}",
                    (*AUDITOR_NAMES, since_us),
                ),
            )
        )

    # -- review ---------------------------------------------------------------------------------
    internal = [g for g in groups if g["direction"] == "internal"]
    lost = sum(int(g["lost"]) for g in internal if g["method"] == "gap")
    if lost:
        lines.append(
            Line(
                "review",
                "events_lost",
                f"{lost:,} event(s) could not be recorded (see the gap rows)",
                lost,
                _evidence(
                    store, f"direction = 'internal' AND method = 'gap' AND logged_at_us >= {p}", (since_us,)
                ),
            )
        )
    tamper = sum(int(g["n"]) for g in internal if g["method"] == "tamper")
    if tamper:
        lines.append(
            Line(
                "review",
                "capture_bypassed",
                f"{tamper} time(s) a patch was removed or bypassed behind the auditor's back; "
                "those connections were still caught by the audit hook",
                tamper,
                _evidence(
                    store,
                    f"direction = 'internal' AND method = 'tamper' AND logged_at_us >= {p}",
                    (since_us,),
                ),
            )
        )
    audit_rows = sum(int(g["n"]) for g in groups if g["channel"] == "audit" and g["direction"] != "internal")
    if audit_rows:
        lines.append(
            Line(
                "review",
                "bypassing_connections",
                f"{audit_rows} connection(s) bypassed the socket layer (raw _socket or restored original);"
                " caught by the audit hook",
                audit_rows,
                _evidence(
                    store,
                    f"channel = 'audit' AND direction <> 'internal' AND logged_at_us >= {p}",
                    (since_us,),
                ),
            )
        )
    lines += _process_health(store, since_us, now_us, settings_changed=any(g["method"] == "settings" for g in internal))
    # a process spawned without any host in its arguments is not a network destination
    unknown = [
        g for g in groups if g["dest_class"] == "unknown" and g["direction"] == "outbound" and g["host"]
    ]
    if unknown:
        n = sum(int(g["n"]) for g in unknown)
        hosts = sorted({g["host"] for g in unknown})
        lines.append(
            Line(
                "review",
                "unknown_destinations",
                f"{n} call(s) to {len(hosts)} destination(s) of unknown class: {', '.join(hosts[:8])}"
                + (" …" if len(hosts) > 8 else "")
                + " — add them to the catalogue if they are expected",
                n,
                _evidence(
                    store,
                    f"dest_class = 'unknown' AND direction = 'outbound' AND host IS NOT NULL AND host <> '' AND logged_at_us >= {p}",
                    (since_us,),
                ),
                {"hosts": hosts[:50]},
            )
        )
    if not any(x.rule in ("checkpoint freshness", "checkpoint_stale", "checkpoint_missing") for x in lines):
        lines += _checkpoint_freshness(store, now_us)
    if (store.meta_get("setting.forensic.enabled") or "").lower() in ("1", "true", "on"):
        lines.append(Line("review", "forensic_capture_on", "forensic body capture is switched on"))

    levels = {x.level for x in lines}
    verdict = "alarm" if "alarm" in levels else "review" if "review" in levels else "all_clear"
    if verdict == "all_clear":
        lines.append(
            Line(
                "info",
                "all_clear",
                f"only licence-shaped metadata went to {catalogue.vendor_name}; "
                "every other destination is a provider, your own network or this machine",
            )
        )
    chain = _chain_status(verify_result, checked_at_us)
    if verify_result is None:
        lines.append(Line("info", "chain_not_checked", chain_pending or (
                          "the hash chain was not re-checked for this report: the verdict covers what the rows "
                          "say, not whether they were changed (`mit-network-audit verify`, or `report` without "
                          "--no-verify)")))
    elif verify_result.ok:
        lines.append(Line("info", "chain_intact",
                          f"hash chain intact: {verify_result.rows_checked:,} row(s) re-checked"
                          + (f" ({_when_us(checked_at_us)})" if checked_at_us else ""),
                          verify_result.rows_checked))
    return Report(verdict, since_us, until_us, catalogue.vendor_name, lines, _summary(groups), chain)


def _chain_status(result, checked_at_us: int | None) -> dict:
    if result is None:
        return dict(_NOT_CHECKED)
    return {"checked": True, "ok": bool(result.ok), "rows_checked": result.rows_checked,
            "first_bad_seq": result.first_bad_seq, "checked_at_us": checked_at_us}


def _when_us(us: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(us / 1e6))


def _never_signed(store, now_us: int, stale_after_us: int) -> list[Line]:
    low = store.min_seq()
    oldest = store.get(low) if low is not None else None
    # the program wrote that time: one that is no integer counts as old (the review stays)
    logged_us = oldest.event.logged_at_us if oldest is not None and isinstance(oldest.event.logged_at_us, int) else 0
    if oldest is None or now_us - logged_us <= stale_after_us:
        return []
    head = store.max_seq()
    hours = (now_us - logged_us) / 3_600_000_000
    return [
        Line(
            "review",
            "checkpoint_missing",
            f"no signed checkpoint anchors this journal: its {head - low + 1:,} row(s), the oldest {hours:.0f} h old, "
            "could be truncated or rewritten with recomputed hashes unnoticed — run `mit-network-audit keys init`, "
            "then `mit-network-audit checkpoint` (or `checkpoint --loop` to keep signing)",
            head - low + 1,
            [low],
            {"oldest_seq": low, "oldest_logged_at_us": oldest.event.logged_at_us, "head_seq": head},
        )
    ]


def _stale_after_us() -> int:
    """``$MNA_CHECKPOINT_STALE_S`` in microseconds; a value that is not a positive number of seconds
    (a typo, nan, -1) counts as the default 24 h instead of ending the report in a ValueError."""
    try:
        seconds = float(os.environ.get("MNA_CHECKPOINT_STALE_S", "86400"))
    except ValueError:
        seconds = 86400.0
    if not (0 < seconds < 10**9):  # nan and inf fail this too
        seconds = 86400.0
    return int(seconds * 1_000_000)


def _checkpoint_freshness(store, now_us: int, stale_after_us: int | None = None) -> list[Line]:
    """Review when the newest signed checkpoint is old and rows were written since.

    Reads one row of the checkpoint table (no Merkle recomputation: that is `verify`'s job).  A
    journal that was never signed is the stalest case: once its oldest row is older than the same
    threshold, nothing anchors it outside the database (a truncated tail or a rewrite with
    recomputed hashes would go unseen), so it is a Review too — with the same grace period, so a
    journal started today is not flagged before its operator had a chance to set up signing.
    """
    if stale_after_us is None:
        stale_after_us = _stale_after_us()
    pg = getattr(store, "kind", "") == "postgres"
    exists = store.execute_raw(
        "SELECT to_regclass('mna_checkpoints') IS NOT NULL"
        if pg
        else "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'mna_checkpoints'"
    )
    newest = (
        store.execute_raw("SELECT tree_size, signed_at_us FROM mna_checkpoints ORDER BY tree_size DESC LIMIT 1")
        if exists and exists[0][0]
        else None
    )
    if not newest:
        return _never_signed(store, now_us, stale_after_us)
    size, signed_at_us = int(newest[0][0]), int(newest[0][1])
    head = store.max_seq()
    if head <= size or now_us - signed_at_us <= stale_after_us:
        return []
    hours = (now_us - signed_at_us) / 3_600_000_000
    return [
        Line(
            "review",
            "checkpoint_stale",
            f"the newest signed checkpoint is {hours:.0f} h old and {head - size:,} newer row(s) are not yet "
            "covered by a signature — run `mit-network-audit checkpoint`",
            head - size,
            [size + 1] if size + 1 <= head else [],
            {"checkpoint_tree_size": size, "signed_at_us": signed_at_us, "head_seq": head},
        )
    ]


def _process_health(store, since_us: int, now_us: int, *, settings_changed: bool = False) -> list[Line]:
    p = _p(store)
    rows = store.execute_raw(
        f"SELECT hostname, pid, last_us, last_kind, detail, last_seq FROM mna_rollup_process WHERE last_us >= {p}",
        (since_us,),
    )
    lines = []
    silent, disabled = [], {}
    for hostname, pid, last_us, last_kind, detail, last_seq in rows:
        if last_kind != "stop" and now_us - last_us > SILENT_AFTER_US:
            silent.append((hostname, pid, last_seq))
        try:
            facts = json.loads(detail or "{}")
        except ValueError:
            facts = {}
        # any program can write a heartbeat: only a list of channel names is one
        channels = facts.get("disabled") if isinstance(facts, dict) else None
        for ch in channels if isinstance(channels, list) else ():
            if isinstance(ch, str):
                disabled.setdefault(ch, []).append(last_seq)
    if silent:
        lines.append(
            Line(
                "review",
                "process_went_silent",
                f"{len(silent)} audited process(es) stopped sending heartbeats without stopping: "
                + ", ".join(f"{h} pid {pid}" for h, pid, _ in silent[:5]),
                len(silent),
                [s for _, _, s in silent[:20]],
            )
        )
    lines += _disabled_channels(store, since_us, disabled, settings_changed)
    return lines


def _disabled_channels(store, since_us: int, by_process: dict, settings_changed: bool) -> list[Line]:
    """One ``channels_disabled`` line from every source that can say a channel was not captured:
    the processes' health rows (their channels disabled at their last row), the live setting
    ``capture.disabled_channels`` now, and the settings rows of the period that disabled or
    re-enabled one (the channel was off for part of the period)."""
    from ..journal import settings as journal_settings

    disabled = {ch: list(seqs) for ch, seqs in by_process.items()}
    now: list[str] = []
    try:
        now = list(journal_settings.get_settings(store).get("capture.disabled_channels") or ())
    except Exception:  # a journal without a meta table: nothing set
        now = []
    for ch in now:
        disabled.setdefault(ch, [])
    changed: list[str] = []
    if settings_changed:
        for change in journal_settings.changes_in(store, since_us, key="capture.disabled_channels"):
            for value in (change.get("old"), change.get("new")):
                for ch in (value or "").split(","):
                    if ch.strip():
                        disabled.setdefault(ch.strip(), []).append(change["seq"])
                        if ch.strip() not in changed:
                            changed.append(ch.strip())
    if not disabled:
        return []
    parts = [f"capture is incomplete: channel(s) {', '.join(sorted(disabled))} disabled"]
    if now:
        parts.append(f"now disabled by the setting capture.disabled_channels: {', '.join(now)}")
    elif changed:
        parts.append("during part of the period (capture.disabled_channels changed; see the settings rows)")
    return [
        Line(
            "review",
            "channels_disabled",
            "; ".join(parts),
            len(disabled),
            sorted({s for v in disabled.values() for s in v})[:20],
            {"now": sorted(now), "changed_in_period": sorted(changed)},
        )
    ]




def _summary(groups: list[dict]) -> dict:
    """The two buckets: what went to the vendor, and everything else — per module."""
    vendor: dict[str, dict] = {}
    other: dict[str, dict] = {}
    # requests: rows of an inbound HTTP layer; connections: TCP connections accepted with no HTTP layer's
    # request on them (the socket backstop), per module that opened the listener
    inbound = {"requests": 0, "connections": 0, "req_bytes": 0, "resp_bytes": 0, "listeners": {}}
    for g in groups:
        if g["direction"] == "inbound":
            if g["channel"] == "socket":
                inbound["connections"] += int(g["n"])
                owner = inbound["listeners"].setdefault(g["addon"] or "(unknown)", {"connections": 0, "req_bytes": 0})
                owner["connections"] += int(g["n"])
                owner["req_bytes"] += int(g["req_bytes"])
            else:
                inbound["requests"] += int(g["n"])
            inbound["req_bytes"] += int(g["req_bytes"])
            inbound["resp_bytes"] += int(g["resp_bytes"])
            continue
        if g["direction"] != "outbound":
            continue
        bucket = vendor if g["vendor_bound"] else other
        addon = bucket.setdefault(
            g["addon"] or "(unknown)", {"calls": 0, "req_bytes": 0, "resp_bytes": 0, "destinations": {}}
        )
        addon["calls"] += int(g["n"])
        addon["req_bytes"] += int(g["req_bytes"])
        addon["resp_bytes"] += int(g["resp_bytes"])
        dest = addon["destinations"].setdefault(
            g["host"] or "(none)",
            {
                "dest_class": g["dest_class"],
                "component": g["component"] or None,
                "calls": 0,
                "req_bytes": 0,
                "channels": [],
            },
        )
        dest["calls"] += int(g["n"])
        dest["req_bytes"] += int(g["req_bytes"])
        if g["channel"] not in dest["channels"]:
            dest["channels"].append(g["channel"])
    return {
        "vendor_bound": vendor,
        "other": other,
        "inbound": inbound,
        "totals": {
            "calls": sum(int(g["n"]) for g in groups if g["direction"] == "outbound"),
            "inbound": inbound["requests"] + inbound["connections"],
        },
    }
