"""Forensic bodies (officer only): capture status and switch, the stored bodies, and journaled reads.

* ``GET /forensic`` — on/off, scope, the stored bodies (metadata only) and a form to switch capture.
* ``POST /forensic/capture`` — switch capture on or off (CSRF-checked; the change is journaled).
* ``GET /forensic/body/{ref}`` — what is stored for one row (no decryption) and a "Read" button.
* ``POST /forensic/body/{ref}`` — the read: appends a ``forensic_read`` row, *then* decrypts; if the
  row cannot be written the page says so and shows no body (503).
* ``GET /api/forensic`` and ``POST /api/forensic/bodies/{ref}/read`` — the same for programs.

A read is a POST: it has a side effect (the journal row) and must not be triggered by a link,
a prefetch or a cross-site image.  Responses that carry a body are ``Cache-Control: no-store``.
"""

from __future__ import annotations

import base64

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse

from ...journal import forensic
from ..registry import Context, NavItem, page_module

MAX_PREVIEW = 64 * 1024


def _status(store) -> dict:
    scope = forensic.scope_from_settings(forensic.current_settings(store))
    return {
        "enabled": scope.enabled,
        "addons": list(scope.addons),
        "hosts": list(scope.hosts),
        "max_bytes": scope.max_bytes,
        "retention_days": scope.retention_days,
        "stored": forensic.count_bodies(store),
    }


def _stored(store, event_id: str) -> forensic.BodyInfo | None:
    for info in forensic.list_bodies_for(store, event_id):
        return info
    return None


def _read(ctx: Context, request: Request, ref: str, via: str) -> forensic.BodyRead:
    who = ctx.who(request)
    try:
        return forensic.read_body(ctx.store, ref, actor=who.name, role=who.role, via=via)
    except forensic.ForensicProblem as exc:
        raise HTTPException(exc.status, str(exc)) from None


def _no_store(response):
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


@page_module("officer", nav=NavItem("Forensic", "/forensic", "officer"))
def forensic_pages(ctx: Context) -> APIRouter:
    router = APIRouter()

    @router.get("/forensic", response_class=HTMLResponse)
    def forensic_page(request: Request):
        store = ctx.store
        return ctx.page(
            request,
            "forensic.html",
            status=_status(store),
            bodies=forensic.list_bodies(store, limit=200),
            reads=forensic.recent_reads(store, limit=50),
        )

    @router.post("/forensic/capture")
    def switch(request: Request, enabled: str = Form(...), csrf: str = Form("")):
        who = ctx.who(request)
        ctx.check_csrf(who, csrf)
        if enabled not in ("true", "false"):
            raise HTTPException(400, "enabled must be true or false")
        forensic.change_setting(ctx.store, "forensic.enabled", enabled, actor=who.name)
        from fastapi.responses import RedirectResponse

        return RedirectResponse("/forensic", status_code=303)

    @router.get("/forensic/body/{ref}", response_class=HTMLResponse)
    def body_page(request: Request, ref: str):
        try:
            event_id, seq = forensic.resolve(ctx.store, ref)
        except forensic.NoSuchBody as exc:
            raise HTTPException(404, str(exc)) from None
        return ctx.page(
            request,
            "forensic_body.html",
            ref=ref,
            event_id=event_id,
            seq=seq,
            stored=_stored(ctx.store, event_id),
            read=None,
            problem=None,
        )

    @router.post("/forensic/body/{ref}", response_class=HTMLResponse)
    def body_read(request: Request, ref: str, csrf: str = Form("")):
        ctx.check_csrf(ctx.who(request), csrf)
        try:
            got, problem, status = _read(ctx, request, ref, "web"), None, 200
        except HTTPException as exc:
            got, problem, status = None, exc.detail, exc.status_code
        text = None
        if got is not None:
            text = got.body[:MAX_PREVIEW].decode("utf-8", "replace")
        response = ctx.page(
            request,
            "forensic_body.html",
            ref=ref,
            event_id=got.info.event_id if got else ref,
            seq=got.info.chain_seq if got else None,
            stored=got.info if got else None,
            read=got,
            text=text,
            b64=base64.b64encode(got.body).decode() if got else None,
            problem=problem,
        )
        response.status_code = status
        return _no_store(response)

    @router.get("/api/forensic")
    def api_status(limit: int = 100) -> dict:
        """Capture status and the stored bodies (metadata only; nothing is decrypted)."""
        store = ctx.store
        return {
            **_status(store),
            "bodies": [b.as_dict() for b in forensic.list_bodies(store, limit=max(1, min(limit, 1000)))],
        }

    @router.post("/api/forensic/bodies/{ref}/read")
    def api_read(request: Request, ref: str, csrf: str = Form("")):
        """Read one body: journaled first (``forensic_read`` row), refused (503) if that fails."""
        ctx.check_csrf(ctx.who(request), csrf)
        got = _read(ctx, request, ref, "api")
        return _no_store(
            JSONResponse(
                {
                    **got.info.as_dict(),
                    "read_seq": got.read_seq,
                    "body_b64": base64.b64encode(got.body).decode(),
                }
            )
        )

    return router
