"""What a Trust Report's verdict rests on: the journal's hash chain and its signed checkpoints.

DESIGN §5 raises an Alarm when "the chain or a checkpoint does not verify", so a report that did not
look cannot say "all clear" about them.  Every surface (``report``, ``demo``, the dashboard) gets
an ``Integrity`` here and hands it to ``build_report``, which states what was checked and when.

``checks`` are the same further checks ``mit-network-audit verify`` prints (checkpoints, witness,
retention anchor, rollup totals).  The report keeps their alarms and the reviews it has no rule of
its own for; the reviews it has its own rule for (no key or no checkpoint yet, a stale checkpoint)
come from that rule, with its grace period for a journal started today.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ..journal.verify import VerifyResult, verify

# `report` re-checks a journal this small by default: about a second at ~200k rows/s on 2 cores.
# The rules themselves cost the same at 10M rows (they read the rollup): a bigger journal is
# re-checked when asked (`report --verify`, `verify`), or by the dashboard in the background.
AUTO_ROWS = 200_000

# verify_trust's review-level checks the report's own checkpoint rules already cover.
_COVERED_BY_REPORT = frozenset({"checkpoints", "journal vs checkpoint", "checkpoint freshness"})


@dataclass(frozen=True)
class Integrity:
    chain: VerifyResult
    checks: tuple[dict, ...]  # every further check, as `verify` prints them
    checked_at_us: int

    @property
    def ok(self) -> bool:
        return self.chain.ok and all(c.get("ok", True) for c in self.checks)

    def report_checks(self) -> list[dict]:
        """The checks a Trust Report shows as lines (see the module docstring)."""
        return [c for c in self.checks
                if not c.get("ok", True)
                or (c.get("level") == "review" and c.get("name") not in _COVERED_BY_REPORT)]


def further_checks(store, *, witness_path: str | None = None, key_path: str | None = None) -> list[dict]:
    """Checks beyond the chain: the signed checkpoints and witness (``journal.checkpoint``; the paths
    default as for `verify`), and the rollup's totals against the journal when a rollup exists (the
    report reads the rollup).  Never raises: a check that cannot run is a failed check."""
    from ..journal import checkpoint
    from . import rollup

    try:
        checks = list(checkpoint.verify_trust(store, witness_path=witness_path, key_path=key_path))
    except Exception as exc:  # a broken witness or table must show up as a failed check, not a crash
        checks = [{"name": "checkpoints", "ok": False, "level": "alarm",
                   "message": f"checkpoint verification failed: {type(exc).__name__}: {exc}"}]
    if store.meta_get(rollup.WATERMARK) is not None:
        try:
            checks.append(rollup.consistency(store))
        except Exception as exc:
            checks.append({"name": "rollup", "ok": False, "level": "alarm",
                           "message": f"rollup check failed: {type(exc).__name__}"})
    return checks


def check(store, progress: Callable[[int, int], None] | None = None, **paths) -> Integrity:
    """Re-check every row and link (``journal.verify``), then the further checks (``paths``:
    ``witness_path`` / ``key_path`` for them)."""
    started = time.time_ns() // 1000
    chain = verify(store, progress)
    return Integrity(chain, tuple(further_checks(store, **paths)), started)


def not_checked_message(rows: int, how: str) -> str:
    """The report's line when the chain was left for later because the journal is big."""
    return (f"the hash chain was not re-checked for this report: {rows:,} rows is over the {AUTO_ROWS:,} "
            f"re-checked by default (~{max(1, rows // 200_000)} s more on 2 cores); the verdict covers what "
            f"the rows say, not whether they were changed — {how}")
