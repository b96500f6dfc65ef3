"""Settings (officer only): the settings stored with the journal, and the journaled changes.

* ``GET /settings`` — every key with its value, default and help, a form to change them, and the
  recent ``settings`` rows of the journal (who changed what, old -> new).
* ``POST /settings`` — the form (CSRF-checked).  Only the fields that differ from the current value
  are changes; every key and value is validated before the first one is written; each change is
  journaled before it is stored.  A refused value re-renders the page (400) and changes nothing.
* ``GET /api/settings`` — the same as JSON: ``{"settings": {...}, "keys": [...], "version": ...}``.
* ``POST /api/settings`` — a JSON object ``{"key": value, ...}`` (or form fields); with a session it
  needs the CSRF token in the ``X-CSRF-Token`` header (or a ``csrf`` field), with an API token
  (``Authorization: Bearer``) it does not.

Running audited processes apply a change within their live-settings poll period
(``$MNA_SETTINGS_POLL_S``, default 2 s; runner/live_settings.py).
"""

from __future__ import annotations

import json

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from ...journal import settings as journal_settings
from ..registry import Context, NavItem, page_module


def _rows(store) -> list[dict]:
    values = journal_settings.get_settings(store)
    out = []
    for key, s in journal_settings.SETTINGS.items():
        out.append(
            {
                "key": key,
                "type": s.type,
                "value": values[key],
                "text": journal_settings.as_text(values[key]),
                "default": journal_settings.as_text(s.default),
                "is_default": journal_settings.is_default(key, values[key]),
                "help": s.help,
                "unit": s.unit,
            }
        )
    return out


def _apply(ctx: Context, request: Request, submitted: dict) -> list[dict]:
    who = ctx.who(request)
    store = ctx.store
    try:
        return journal_settings.set_settings(store, submitted, actor=who.name)
    except journal_settings.SettingRefused as exc:
        raise HTTPException(400, f"{exc} (nothing was changed)") from None
    except Exception as exc:
        raise HTTPException(
            503, f"the change could not be journaled ({type(exc).__name__}); nothing was changed"
        ) from None


@page_module("officer", nav=NavItem("Settings", "/settings", "officer"))
def settings_pages(ctx: Context) -> APIRouter:
    router = APIRouter()

    def render(request: Request, *, status: int = 200, error: str | None = None, made=None, form=None):
        store = ctx.store
        response = ctx.page(
            request,
            "settings.html",
            rows=_rows(store),
            changes=journal_settings.changes_in(store, 0, limit=50),
            error=error,
            made=made or [],
            form=form or {},
        )
        response.status_code = status
        return response

    @router.get("/settings", response_class=HTMLResponse)
    def settings_page(request: Request, saved: int = 0):
        return render(request, made=[{"key": "saved"}] if saved else None)

    @router.post("/settings", response_class=HTMLResponse)
    async def settings_post(request: Request):
        form = await request.form()
        who = ctx.who(request)
        ctx.check_csrf(who, str(form.get("csrf", "")))
        current = journal_settings.get_text(ctx.store)
        submitted = {}
        for key in journal_settings.SETTINGS:
            if key in form:
                raw = str(form.get(key, ""))
                try:
                    new = journal_settings.as_text(journal_settings.known(key).parse(raw))
                except journal_settings.SettingRefused:
                    new = None  # refused below, with the message
                if new is None or new != current[key]:
                    submitted[key] = raw
        unknown = [k for k in form if k != "csrf" and k not in journal_settings.SETTINGS]
        if unknown:
            return render(request, status=400, error=f"unknown setting(s): {', '.join(unknown)}", form=dict(form))
        if not submitted:
            return render(request, error=None, made=[])
        try:
            _apply(ctx, request, submitted)
        except HTTPException as exc:
            return render(request, status=exc.status_code, error=exc.detail, form=dict(form))
        return RedirectResponse("/settings?saved=1", status_code=303)

    @router.get("/api/settings")
    def api_get() -> dict:
        """Every setting with its value (or default), the keys' descriptions, the version token."""
        store = ctx.store
        rows = _rows(store)
        return {
            "settings": {r["key"]: r["value"] for r in rows},
            "keys": [{k: r[k] for k in ("key", "type", "default", "help", "unit", "is_default")} for r in rows],
            "version": journal_settings.version(store),
        }

    @router.post("/api/settings")
    async def api_set(request: Request):
        """Change settings: a JSON object ``{"key": value}`` (or form fields); all validated first,
        each change journaled.  With a session: the CSRF token in ``X-CSRF-Token`` (or a ``csrf`` field)."""
        who = ctx.who(request)
        token = request.headers.get("x-csrf-token", "")
        ctype = request.headers.get("content-type", "")
        body: object
        if ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            token = token or str(form.get("csrf", ""))
            body = {k: str(v) for k, v in form.items() if k != "csrf"}
        else:
            raw = await request.body()
            try:
                body = json.loads(raw) if raw else None
            except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
                body = "not json"
        ctx.check_csrf(who, token)
        if not isinstance(body, dict) or not body:
            raise HTTPException(400, "send a JSON object {\"key\": value, ...} with at least one key")
        made = _apply(ctx, request, body)
        return JSONResponse({"changed": made, "settings": journal_settings.get_settings(ctx.store)})

    return router
