"""Export: download a signed proof bundle (journal.export) for a period, as a .zip.

The bundle is what an external auditor checks offline (``mit-network-audit verify-bundle`` or
docs/verify_bundle_standalone.py): the rows, the signed checkpoint that covers them, the Merkle range
proof and a signed manifest.  Making one may sign a fresh checkpoint when this server holds the
signing key, so it is a POST behind the CSRF check.  Large periods belong to the CLI: the web export
stops at ``MAX_ROWS`` rows and says so.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse
from starlette.background import BackgroundTask

from ...journal import checkpoint as ckpt
from ...journal import export
from ...journal.keys import KeyProblem, load_signing_key, load_verifier
from ..app import PERIODS
from ..registry import Context, NavItem, page_module

MAX_ROWS = 1_000_000


def _period(since: str, start: str, end: str) -> tuple[int, int | None, str]:
    """(since_us, until_us, label) from a preset or a from/to pair of dates (UTC, end inclusive)."""
    if start or end:
        try:
            low = datetime.strptime(start, "%Y-%m-%d").replace(tzinfo=UTC) if start else None
            high = datetime.strptime(end, "%Y-%m-%d").replace(tzinfo=UTC) + timedelta(days=1) if end else None
        except ValueError:
            raise HTTPException(400, "dates look like 2026-11-01") from None
        if low is None:
            raise HTTPException(400, "give the first day of the period")
        if high is not None and high <= low:
            raise HTTPException(400, "the period ends before it starts")
        label = f"{start}_{end or 'now'}"
        return int(low.timestamp() * 1e6), int(high.timestamp() * 1e6) if high else None, label
    hours = PERIODS.get(since)
    if hours is None:
        raise HTTPException(400, f"period must be one of {', '.join(PERIODS)}, or from/to dates")
    return int((time.time() - hours * 3600) * 1_000_000), None, f"last-{since}"


def _key_status(store) -> dict:
    try:
        key = load_signing_key()
    except KeyProblem as exc:
        return {"can_sign": False, "verifier": None, "problem": str(exc)}
    try:
        verifier = key.verifier if key else load_verifier()
    except KeyProblem as exc:
        return {"can_sign": False, "verifier": None, "problem": str(exc)}
    newest = None
    if verifier is not None:
        ckpt.ensure_tables(store)
        newest = ckpt.latest_checkpoint(store, verifier)
    return {"can_sign": key is not None, "verifier": verifier.vkey if verifier else None, "problem": None,
            "newest_size": newest.size if newest else None, "newest_time": newest.time_s if newest else None,
            "head": store.max_seq()}


@page_module("auditor", nav=NavItem("Signed export", "/export", "auditor"))
def bundle_pages(ctx: Context) -> APIRouter:
    router = APIRouter()

    def render(request: Request, *, error: str | None = None, status: int = 200):
        response = ctx.page(request, "export.html", periods=PERIODS, keys=_key_status(ctx.store), error=error,
                            max_rows=MAX_ROWS, today=datetime.now(UTC).strftime("%Y-%m-%d"))
        response.status_code = status
        return response

    @router.get("/export", response_class=HTMLResponse)
    def export_page(request: Request):
        return render(request)

    @router.post("/export/bundle")
    def export_bundle(request: Request, csrf: str = Form(""), since: str = Form("24h"), start: str = Form(""),
                      end: str = Form("")):
        """A signed proof bundle (.zip) of the rows logged in the period; may sign a fresh checkpoint."""
        who = ctx.who(request)
        ctx.check_csrf(who, csrf)
        since_us, until_us, label = _period(since, start, end)
        store = ctx.store
        span = export._seq_range(store, since_us, until_us)
        if span is not None and span[1] - span[0] + 1 > MAX_ROWS:
            raise HTTPException(413, f"{span[1] - span[0] + 1:,} rows: the web export stops at {MAX_ROWS:,}; use "
                                     "`mit-network-audit export` for large periods")
        workdir = tempfile.mkdtemp(prefix="mna-bundle-")
        out = os.path.join(workdir, f"bundle-{label}.zip")
        try:
            result = export.export_bundle(store, out, since_us=since_us, until_us=until_us)
        except (export.BundleError, ckpt.TamperDetected, KeyProblem) as exc:
            shutil.rmtree(workdir, ignore_errors=True)
            if request.headers.get("authorization"):
                raise HTTPException(409, str(exc)) from None
            return render(request, error=str(exc), status=409)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        headers = {"X-Bundle-Rows": str(result["rows"]), "X-Bundle-First-Seq": str(result["first_seq"]),
                   "X-Bundle-Last-Seq": str(result["last_seq"]), "X-Bundle-Tree-Size": str(result["tree_size"])}
        if result.get("note"):
            headers["X-Bundle-Note"] = result["note"].encode("ascii", "replace").decode()
        return FileResponse(out, media_type="application/zip", filename=os.path.basename(out), headers=headers,
                            background=BackgroundTask(shutil.rmtree, workdir, ignore_errors=True))

    return router
