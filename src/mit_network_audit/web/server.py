"""The complete dashboard: the core pages (app.py) plus every page module in the registry.

``create_dashboard(dsn)`` is what ``serve``, the demo and the tests should run: ``create_app``
builds the core pages, then ``registry.install`` mounts the registered page modules (pages/),
each behind its role check.  A ``Server-Timing`` header reports the server's own time per
request (what bench/bench_web.py measures), so it can be read in the browser's devtools too.
"""

from __future__ import annotations

import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.middleware.base import BaseHTTPMiddleware

from . import pages  # noqa: F401  (registers the page modules)
from .app import create_app
from .registry import install


class ServerTiming(BaseHTTPMiddleware):
    async def dispatch(self, request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
        return response


async def out_of_range(request: Request, exc: OverflowError):
    """A number too large for the database (schemathesis found ``/row/<huge>`` answering 500)."""
    return JSONResponse({"detail": "a number in the request is out of range"}, status_code=400)


async def bad_value(request: Request, exc: Exception):
    return JSONResponse({"detail": f"the database refused a value in the request: {exc}"}, status_code=400)


def create_dashboard(dsn: str, *, catalogue_paths=()) -> FastAPI:
    app = create_app(dsn, catalogue_paths=catalogue_paths)
    install(app, dsn)
    app.add_middleware(ServerTiming)
    app.add_exception_handler(OverflowError, out_of_range)
    try:
        import psycopg
    except ImportError:  # the postgres extra is optional
        return app
    # Invalid input for PostgreSQL (a NUL byte in a search term, a number beyond BIGINT) is the
    # client's error, not the server's: schemathesis found both answering 500.
    app.add_exception_handler(psycopg.DataError, bad_value)
    return app
