"""Audit Log, grouped: calls per addon, host or channel over a period, with the log's filters.

Reads the rollup (whole days from its daily level; never scans the journal), so it costs the same at 10M rows as at 10k;
each group links to the Audit Log filtered to it.
"""

from __future__ import annotations

import time
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse

from ...journal.schema import contains_pattern
from ...report import rollup
from ..app import LOG_FILTERS, PERIODS
from ..params import SEARCH
from ..registry import Context, NavItem, page_module

GROUP_BY = ("addon", "host", "channel")
# The log's filters, as conditions on rollup columns.
ROLLUP_FILTERS = {
    "all": ("direction <> 'internal'", ()),
    "vendor": ("vendor_bound = 1", ()),
    "outbound": ("direction = 'outbound'", ()),
    "inbound": ("direction = 'inbound'", ()),
    "errors": ("outcome = 'error'", ()),
}
MAX_GROUPS = 500


def grouped(store, by: str, kind: str, since: str, *, search: str | None = None) -> dict:
    if by not in GROUP_BY:
        raise HTTPException(400, f"by must be one of {', '.join(GROUP_BY)}")
    if kind not in ROLLUP_FILTERS:
        raise HTTPException(400, f"filter must be one of {', '.join(LOG_FILTERS)}")
    hours = PERIODS.get(since)
    if hours is None:
        raise HTTPException(400, f"period must be one of {', '.join(PERIODS)}")
    low_us = int((time.time() - hours * 3600) * 1_000_000)
    rollup.catch_up(store)
    source, period = rollup.period_rows(store, low_us, int(time.time() * 1_000_000) + 1)
    p = "%s" if getattr(store, "kind", "") == "postgres" else "?"
    cond, params = ROLLUP_FILTERS[kind]
    like = ""
    extra: tuple = ()
    if search:
        # LOWER(...) LIKE: case-insensitive on both backends; the rollup is small, a scan is cheap.
        like = f" AND LOWER({by}) LIKE {p} ESCAPE '\\'"
        extra = (contains_pattern(search.lower()),)
    rows = store.execute_raw(
        f"SELECT {by}, sum(n), sum(CASE WHEN outcome = 'error' THEN n ELSE 0 END), "
        f"sum(CASE WHEN vendor_bound = 1 THEN n ELSE 0 END), sum(req_bytes), sum(resp_bytes), max(last_us), "
        f"count(DISTINCT {'host' if by != 'host' else 'addon'}) "
        f"FROM {source} WHERE {cond}{like} GROUP BY {by} ORDER BY 2 DESC LIMIT {MAX_GROUPS + 1}",
        (*period, *params, *extra))
    groups = [{"value": r[0], "calls": int(r[1]), "errors": int(r[2]), "vendor_bound": int(r[3]),
               "req_bytes": int(r[4]), "resp_bytes": int(r[5]), "last_us": r[6], "distinct": int(r[7])}
              for r in rows[:MAX_GROUPS]]
    return {"by": by, "filter": kind, "since": since, "since_us": low_us, "groups": groups,
            "truncated": len(rows) > MAX_GROUPS}


@page_module("auditor", nav=NavItem("Groups", "/log/groups", "auditor"))
def groups_pages(ctx: Context) -> APIRouter:
    router = APIRouter()

    @router.get("/log/groups", response_class=HTMLResponse)
    def groups_page(request: Request, by: str = "addon", filter: str = "all", since: str = "24h",
                    q: str | None = SEARCH):
        data = grouped(ctx.store, by, filter, since, search=q or None)
        other = "host" if by != "host" else "addon"

        def log_link(value: str) -> str:
            params = {"filter": filter}
            # "" in the rollup means NULL in the journal: no exact filter exists for it, fall back to all.
            if value:
                params[by] = value
            return "/log?" + urlencode(params)

        return ctx.page(request, "groups.html", data=data, by=by, filter=filter, since=since, q=q or "",
                        group_by=GROUP_BY, filters=list(LOG_FILTERS), periods=PERIODS, other=other,
                        log_link=log_link)

    @router.get("/api/groups")
    def api_groups(by: str = "addon", filter: str = "all", since: str = "24h", q: str | None = SEARCH) -> dict:
        """Calls per addon, host or channel over a period (from the hourly rollup)."""
        return grouped(ctx.store, by, filter, since, search=q or None)

    return router
