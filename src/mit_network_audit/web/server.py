"""The complete dashboard: the core pages (app.py) plus every page module in the registry.

``create_dashboard(dsn)`` is what ``serve``, the demo and the tests should run: ``create_app``
builds the core pages, then ``registry.install`` mounts the registered page modules (pages/),
each behind its role check.  A ``Server-Timing`` header reports the server's own time per
request (what bench/bench_web.py measures), so it can be read in the browser's devtools too.
"""

from __future__ import annotations

import contextlib
import sqlite3
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


# SQLite primary result codes that mean "locked, busy, unreadable or unwritable now", not a bad statement:
# BUSY, LOCKED, IOERR, FULL, CANTOPEN, PROTOCOL
SQLITE_UNAVAILABLE = frozenset({5, 6, 10, 13, 14, 15})


def database_down(app: FastAPI):
    """The journal's database is locked by another process, down or dropped the connection: a 503 that
    says so (it was a bare 500), and a dropped PostgreSQL connection is replaced for the next request."""

    def handler(request: Request, exc: Exception):
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None and code & 0xFF not in SQLITE_UNAVAILABLE:
            raise exc  # not the database being away (SQL the app got wrong): a 500, with its traceback logged
        with contextlib.suppress(Exception):
            reconnect = getattr(app.state.store, "reconnect_if_broken", None)
            if reconnect is not None:
                reconnect()
        first_line = (str(exc).strip().splitlines() or [""])[0]
        return JSONResponse({"detail": f"the journal database is unavailable ({type(exc).__name__}: {first_line}): "
                                       "try again in a moment"},
                            status_code=503, headers={"Retry-After": "5"})

    return handler


def create_dashboard(dsn: str, *, catalogue_paths=()) -> FastAPI:
    app = create_app(dsn, catalogue_paths=catalogue_paths)
    install(app, dsn)
    app.add_middleware(ServerTiming)
    app.add_exception_handler(OverflowError, out_of_range)
    app.add_exception_handler(sqlite3.OperationalError, database_down(app))
    try:
        import psycopg
    except ImportError:  # the postgres extra is optional
        return app
    app.add_exception_handler(psycopg.OperationalError, database_down(app))
    app.add_exception_handler(psycopg.InterfaceError, database_down(app))
    # Invalid input for PostgreSQL (a NUL byte in a search term, a number beyond BIGINT) is the
    # client's error, not the server's: schemathesis found both answering 500.
    app.add_exception_handler(psycopg.DataError, bad_value)
    return app
