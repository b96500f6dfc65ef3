"""The dashboard: FastAPI + Jinja2, server-rendered, every asset local (works with no internet).

Roles (DESIGN §6) are enforced on every page and API route by one dependency, ``require(role)``:
viewer — Trust Report, Traffic Summary; auditor — + Audit Log, forensic record, verify, export.
Forms carry a CSRF token bound to the session; API scripts use Bearer tokens instead of cookies.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from datetime import UTC, datetime

from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from ..journal import open_store
from ..journal.store import RowFilter
from ..report import logsearch, rollup
from ..report.catalogue import load_catalogue
from ..report.trust import build_report
from . import charts
from .auth import Accounts, Principal, role_at_least, same_token
from .integrity_watch import IntegrityWatch
from .params import BEFORE, SEARCH, SEQ
from .visible import finalize

HERE = os.path.dirname(__file__)
SESSION_COOKIE = "mna_session"
LOGIN_CSRF_COOKIE = "mna_login_csrf"
PERIODS = {"24h": 24, "7d": 24 * 7, "30d": 24 * 30, "365d": 24 * 365}
LOG_FILTERS = {
    "all": {}, "vendor": {"vendor_bound": True}, "outbound": {"direction": "outbound"},
    "inbound": {"direction": "inbound"}, "errors": {"outcome": "error"},
}
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'")


class NeedLogin(Exception):
    pass


def fmt_us(us) -> str:
    if us is None:
        return "—"
    try:
        return datetime.fromtimestamp(us / 1e6, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (ValueError, OverflowError, OSError, TypeError):  # the audited program wrote the time: any integer
        return f"{us} µs (no date)"


def create_app(dsn: str, *, catalogue_paths=()) -> FastAPI:
    store = open_store(dsn)
    accounts = Accounts(store)
    catalogue = load_catalogue(catalogue_paths)
    templates = Jinja2Templates(directory=os.path.join(HERE, "templates"))
    templates.env.filters["us"] = fmt_us
    templates.env.finalize = finalize
    app = FastAPI(title="MIT Network Audit", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.store, app.state.accounts = store, accounts
    app.mount("/static", StaticFiles(directory=os.path.join(HERE, "static")), name="static")
    verify_jobs: dict[str, dict] = {}
    watch = app.state.integrity_watch = IntegrityWatch(dsn)

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.exception_handler(NeedLogin)
    async def to_login(request: Request, exc: NeedLogin):
        return RedirectResponse("/login", status_code=303)

    def principal(request: Request) -> Principal | None:
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return accounts.bearer(auth[7:].strip())
        return accounts.session(request.cookies.get(SESSION_COOKIE))

    def require(role: str):
        def dependency(request: Request) -> Principal:
            who = principal(request)
            if who is None:
                if request.url.path.startswith("/api/"):
                    raise HTTPException(401, "log in or send an API token (Authorization: Bearer ...)")
                raise NeedLogin()
            if not role_at_least(who.role, role):
                raise HTTPException(403, f"this needs the {role} role; you are {who.role}")
            return who
        return dependency

    def check_csrf(who: Principal, token: str) -> None:
        if not who.via_token and not same_token(who.csrf, token):
            raise HTTPException(403, "the form expired (CSRF check failed): reload the page and try again")

    def page(request, name, who, **ctx):
        return templates.TemplateResponse(request, name, {"who": who, "fmt_us": fmt_us, **ctx})

    def period_us(since: str) -> int:
        hours = PERIODS.get(since)
        if hours is None:
            raise HTTPException(400, f"period must be one of {', '.join(PERIODS)}")
        return int((time.time() - hours * 3600) * 1_000_000)

    def report_for(since: str):
        checked = watch.current(store)
        running = watch.progress
        pending = (f"the hash chain is being re-checked ({running['done']:,} of {running['total']:,} rows): "
                   "reload for the verdict on it") if checked is None and running else None
        return build_report(store, period_us(since), catalogue=catalogue, integrity=checked, chain_pending=pending)

    # -- login --------------------------------------------------------------------------------
    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request, error: str | None = None):
        token = secrets.token_urlsafe(24)
        response = templates.TemplateResponse(request, "login.html", {"csrf": token, "error": error, "who": None})
        response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https")
        return response

    @app.post("/login")
    def login(request: Request, username: str = Form(...), password: str = Form(...), csrf: str = Form("")):
        if not same_token(request.cookies.get(LOGIN_CSRF_COOKIE), csrf):
            return RedirectResponse("/login?error=expired", status_code=303)
        client = request.client.host if request.client else "?"
        if accounts.throttled(f"{username}|{client}"):
            return RedirectResponse("/login?error=throttled", status_code=303)
        result = accounts.login(username, password, client)
        if result is None:
            return RedirectResponse("/login?error=invalid", status_code=303)
        token, _ = result
        response = RedirectResponse("/report", status_code=303)
        response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https", max_age=8 * 3600)
        response.delete_cookie(LOGIN_CSRF_COOKIE)
        return response

    @app.post("/logout")
    def logout(request: Request, csrf: str = Form(""), who: Principal = Depends(require("viewer"))):
        check_csrf(who, csrf)
        accounts.logout(request.cookies.get(SESSION_COOKIE, ""))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    @app.get("/")
    def home(who: Principal = Depends(require("viewer"))):
        return RedirectResponse("/report", status_code=303)

    # -- pages --------------------------------------------------------------------------------
    @app.get("/report", response_class=HTMLResponse)
    def report_page(request: Request, since: str = "24h", who: Principal = Depends(require("viewer"))):
        rep = report_for(since)
        return page(request, "report.html", who, rep=rep, since=since, periods=PERIODS,
                    can_see_rows=role_at_least(who.role, "auditor"))

    @app.get("/summary", response_class=HTMLResponse)
    def summary_page(request: Request, since: str = "24h", who: Principal = Depends(require("viewer"))):
        low = period_us(since)
        rollup.catch_up(store)
        p = "%s" if getattr(store, "kind", "") == "postgres" else "?"
        rows = store.execute_raw(
            f"SELECT bucket_us, dest_class, direction, host, addon, n, req_bytes, resp_bytes FROM mna_rollup "
            f"WHERE bucket_us >= {p} AND direction <> 'internal'", ((low // rollup.HOUR_US) * rollup.HOUR_US,))
        series: dict[str, dict[int, int]] = {}
        hosts: dict[str, int] = {}
        addons: dict[str, int] = {}
        sent: dict[str, int] = {}
        for bucket, dest_class, direction, host, addon, n, req_b, _resp_b in rows:
            series.setdefault(dest_class, {})
            series[dest_class][bucket] = series[dest_class].get(bucket, 0) + n
            if direction == "outbound":
                hosts[host or "(none)"] = hosts.get(host or "(none)", 0) + n
                key = f"{addon or '(unknown)'} → {host or '(none)'}"
                addons[key] = addons.get(key, 0) + n
                sent[addon or "(unknown)"] = sent.get(addon or "(unknown)", 0) + req_b
        buckets = sorted({b for s in series.values() for b in s})
        top = lambda d: sorted(d.items(), key=lambda kv: -kv[1])[:12]  # noqa: E731
        return page(request, "summary.html", who, since=since, periods=PERIODS,
                    over_time=charts.stacked_series(buckets, series, label=lambda b: fmt_us(b)[:13] + "h"),
                    top_hosts=charts.bars(top(hosts)), per_addon=charts.bars(top(addons)),
                    bytes_sent=charts.bars(top(sent), unit=" B"))

    def log_filter(kind: str, q: str | None, addon: str | None, host: str | None, channel: str | None) -> RowFilter:
        if kind not in LOG_FILTERS:
            raise HTTPException(400, f"filter must be one of {', '.join(LOG_FILTERS)}")
        return RowFilter(**LOG_FILTERS[kind], text=q or None, addon=addon or None, host=host or None,
                         channel=channel or None)

    @app.get("/log", response_class=HTMLResponse)
    def log_page(request: Request, filter: str = "all", q: str | None = SEARCH, addon: str | None = None,
                 host: str | None = None, channel: str | None = None, before: int | None = BEFORE,
                 who: Principal = Depends(require("auditor"))):
        found = logsearch.search(store, log_filter(filter, q, addon, host, channel), before_seq=before, limit=50)
        return page(request, "log.html", who, rows=found.rows, filter=filter, q=q or "", addon=addon or "",
                    host=host or "", channel=channel or "", filters=list(LOG_FILTERS),
                    next_before=found.next_before, searched_to=found.searched_to)

    @app.get("/row/{seq}", response_class=HTMLResponse)
    def row_page(request: Request, seq: int = SEQ, who: Principal = Depends(require("auditor"))):
        row = store.get(seq)
        if row is None:
            raise HTTPException(404, f"no row {seq}")
        return page(request, "row.html", who, row=row, ev=row.event)

    @app.get("/verify", response_class=HTMLResponse)
    def verify_page(request: Request, who: Principal = Depends(require("auditor"))):
        return page(request, "verify.html", who, periods=PERIODS)

    # -- API ------------------------------------------------------------------------------------
    @app.get("/api/report")
    def api_report(since: str = "24h", who: Principal = Depends(require("viewer"))):
        return report_for(since).as_dict()

    @app.get("/api/rows")
    def api_rows(filter: str = "all", q: str | None = SEARCH, addon: str | None = None, host: str | None = None,
                 channel: str | None = None, before: int | None = BEFORE, limit: int = 100,
                 who: Principal = Depends(require("auditor"))):
        if not 1 <= limit <= 1000:
            raise HTTPException(400, "limit must be between 1 and 1000")
        found = logsearch.search(store, log_filter(filter, q, addon, host, channel), before_seq=before, limit=limit)
        # next_before is where to go on: a page the time budget cut short has fewer rows and still one
        return {"rows": [r.as_dict() for r in found.rows], "next_before": found.next_before}

    @app.get("/api/rows/{seq}")
    def api_row(seq: int = SEQ, who: Principal = Depends(require("auditor"))):
        row = store.get(seq)
        if row is None:
            raise HTTPException(404, f"no row {seq}")
        return row.as_dict()

    @app.post("/api/verify")
    def api_verify_start(request: Request, csrf: str = Form(""), who: Principal = Depends(require("auditor"))):
        check_csrf(who, csrf)
        job = secrets.token_hex(8)
        # every key from the start: the job's thread only updates values, so a status request never
        # serializes a dict that changes size under it (RuntimeError: a 500)
        verify_jobs[job] = {"done": 0, "total": store.max_seq(), "result": None, "error": None, "checks": None}

        def work():
            def progress(done, total):
                verify_jobs[job].update(done=done, total=total)
            # the Trust Report shows this result from now on
            try:
                checked = watch.check_now(progress)
            except Exception as exc:  # the journal cannot be opened: say so, or the page would poll forever
                verify_jobs[job]["error"] = f"{type(exc).__name__}: {exc}"
                return
            verify_jobs[job]["checks"] = list(checked.checks)
            verify_jobs[job]["result"] = checked.chain.as_dict()

        threading.Thread(target=work, daemon=True).start()
        return {"job": job}

    @app.get("/api/verify/{job}")
    def api_verify_status(job: str, who: Principal = Depends(require("auditor"))):
        if job not in verify_jobs:
            raise HTTPException(404, "no such verify job")
        return dict(verify_jobs[job])

    @app.get("/export.jsonl")
    def export_rows(since: str = "24h", who: Principal = Depends(require("auditor"))):
        flt = RowFilter(since_us=period_us(since))

        def lines():
            try:
                for r in store.iter_range(1):
                    at = r.event.logged_at_us
                    # a time that is no integer (the program wrote it) cannot be placed: such a row is kept
                    if not isinstance(at, int) or at >= flt.since_us:
                        yield json.dumps(r.as_dict(), sort_keys=True, ensure_ascii=False) + "\n"
            except Exception as exc:  # the status line is sent: say the file is incomplete rather than end it cleanly
                yield json.dumps({"export_incomplete": f"{type(exc).__name__}: {exc}"}) + "\n"

        return StreamingResponse(lines(), media_type="application/x-ndjson",
                                 headers={"Content-Disposition": f'attachment; filename="journal-{since}.jsonl"'})

    @app.get("/api/openapi.json")
    def openapi(who: Principal = Depends(require("viewer"))):
        return JSONResponse(app.openapi())

    @app.get("/healthz")
    def healthz():
        return Response("ok", media_type="text/plain")

    return app
