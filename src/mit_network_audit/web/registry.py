"""A role-checked router registry: the extension point for pages added after the core dashboard.

A page module registers a *factory* with the least role its routes need::

    @page_module("officer", nav=NavItem("Settings", "/settings", "officer"))
    def settings_pages(ctx: Context) -> APIRouter: ...

``install(app)`` builds every registered router and mounts it with the role dependency attached
to the router itself, so a route cannot be mounted without an authorization check — a route that
needs more than its module's role adds ``Depends(ctx.require("officer"))`` on top.  The checks are
the same as the core pages' (app.py): no principal -> 401 on /api/*, a redirect to /login on
pages; a principal below the role -> 403.  Forms check CSRF with ``ctx.check_csrf``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.templating import Jinja2Templates

from .app import HERE, NeedLogin, fmt_us
from .auth import ROLES, Principal, role_at_least, same_token
from .visible import finalize

SESSION_COOKIE = "mna_session"


@dataclass(frozen=True)
class NavItem:
    label: str
    href: str
    role: str


@dataclass
class Context:
    """What a page module gets: the journal, the accounts, templates and the auth helpers."""

    app: FastAPI
    dsn: str
    templates: Jinja2Templates
    nav: list[NavItem] = field(default_factory=list)

    @property
    def store(self):
        return self.app.state.store

    @property
    def accounts(self):
        return self.app.state.accounts

    def principal(self, request: Request) -> Principal | None:
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return self.accounts.bearer(auth[7:].strip())
        return self.accounts.session(request.cookies.get(SESSION_COOKIE))

    def require(self, role: str) -> Callable[[Request], Principal]:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")

        def dependency(request: Request) -> Principal:
            who = self.principal(request)
            if who is None:
                if request.url.path.startswith("/api/"):
                    raise HTTPException(401, "log in or send an API token (Authorization: Bearer ...)")
                raise NeedLogin()
            if not role_at_least(who.role, role):
                raise HTTPException(403, f"this needs the {role} role; you are {who.role}")
            request.state.principal = who
            return who

        dependency.__name__ = f"require_{role}"
        return dependency

    @staticmethod
    def who(request: Request) -> Principal:
        """The principal the router's role check stored (always set inside a registered router)."""
        return request.state.principal

    @staticmethod
    def check_csrf(who: Principal, token: str) -> None:
        if not who.via_token and not same_token(who.csrf, token):
            raise HTTPException(403, "the form expired (CSRF check failed): reload the page and try again")

    def page(self, request: Request, name: str, **ctx):
        who = self.who(request)
        nav = [n for n in self.nav if role_at_least(who.role, n.role)]
        return self.templates.TemplateResponse(request, name, {"who": who, "fmt_us": fmt_us, "ext_nav": nav,
                                                               **ctx})


@dataclass(frozen=True)
class PageModule:
    role: str
    factory: Callable[[Context], APIRouter]
    nav: tuple[NavItem, ...] = ()


REGISTRY: list[PageModule] = []


def page_module(role: str, *, nav: NavItem | tuple[NavItem, ...] = ()):
    """Decorator: register a router factory whose every route needs at least ``role``."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    items = (nav,) if isinstance(nav, NavItem) else tuple(nav)

    def deco(factory: Callable[[Context], APIRouter]):
        if not any(m.factory is factory for m in REGISTRY):
            REGISTRY.append(PageModule(role, factory, items))
        return factory

    return deco


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=os.path.join(HERE, "templates"))
    templates.env.filters["us"] = fmt_us
    templates.env.finalize = finalize
    templates.env.filters["num"] = lambda n: f"{int(n or 0):,}"
    return templates


def install(app: FastAPI, dsn: str, modules: list[PageModule] | None = None) -> Context:
    """Mount every registered page module on ``app``, each behind its role check."""
    ctx = Context(app, dsn, make_templates())
    for module in modules if modules is not None else REGISTRY:
        ctx.nav.extend(module.nav)
        router = module.factory(ctx)
        app.include_router(router, dependencies=[Depends(ctx.require(module.role))])
    app.state.ext = ctx
    return ctx
