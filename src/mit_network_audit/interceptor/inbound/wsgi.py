"""WSGI middleware: one ``inbound`` row per request — method, redacted path, status, sizes, timing,
client address.  Bodies are counted as they stream (never buffered); the response iterable's
``close()`` is preserved (PEP 3333) and the row is emitted when the server closes it."""

from __future__ import annotations

import inspect
import re

from .. import capture
from ..attribution import Owner
from ..channels.socket import claim_inbound
from ..counting import request_body_counter

NAME = "wsgi"
# The row of a request, in its environ (WSGI) or scope (ASGI): a middleware that finds one is an
# inner layer (a server the runner wrapped, around an app its author wrapped too): one row per
# request, which the inner layer only enriches with its explicit app_name.
OUTER_CALL = "mna.inbound_call"


def _owner_of(app, app_name: str | None) -> Owner:
    """The app's top-level module: ``app_name`` when given, else the module a function or class was
    defined in, else a framework object's own import name (Flask's ``import_name``), else the
    module of the object's class."""
    name = app_name
    if not name:
        target = getattr(app, "__self__", app) if inspect.ismethod(app) else app
        import_name = getattr(target, "import_name", None)
        if inspect.isfunction(target) or inspect.isclass(target):
            name = target.__module__
        elif isinstance(import_name, str):
            name = import_name
        else:
            name = type(target).__module__
    name = str(name or "app").split(".", 1)[0] or "app"
    return Owner(name, None, f"{name}:0 in {getattr(app, '__name__', type(app).__name__)}", ())


def app_name_of(target) -> str | None:
    """A server's import string ``"pkg.module:attr"`` -> ``"pkg"`` (an app_name); an app object ->
    None (``_owner_of`` names it)."""
    if not isinstance(target, str):
        return None
    return target.split(":", 1)[0].split(".", 1)[0] or None


_AUTHORITY_END = re.compile(r"[/?#\\]")
_PATH_QUOTE = str.maketrans({"?": "%3F", "#": "%23"})


def host_of(value) -> str | None:
    """The host name in a Host header (or a server name), without its port or IPv6 brackets.  The
    header is the client's: whatever follows a character that ends a URL's authority (``/ ? # \\``)
    is no host name, and must not move the request's path and query in the row's URL."""
    if not isinstance(value, str) or not value:
        return None
    value = _AUTHORITY_END.split(value, 1)[0].strip()
    if value.startswith("["):
        end = value.find("]")
        return (value[1:end] or None) if end > 0 else None
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value or None


def request_url(scheme: str, host: str | None, path: str, query: str | None) -> str:
    """The URL of an inbound request from its parts as the server decoded them: a ``?`` or ``#``
    in the path (sent as ``%3F``/``%23``) stays in the path, not the start of a query or fragment."""
    netloc = host or "localhost"
    if ":" in netloc:
        netloc = f"[{netloc}]"
    return f"{scheme}://{netloc}{path.translate(_PATH_QUOTE)}" + (f"?{query}" if query else "")


class _ClosingIterable:
    """Counts the response body and emits the row when the server closes the iterable."""

    __slots__ = ("_it", "_call")

    def __init__(self, iterable, call) -> None:
        self._it = iterable
        self._call = call

    def __iter__(self):
        call = self._call
        try:
            for chunk in self._it:
                call.resp_bytes += len(chunk)
                yield chunk
        except BaseException as exc:
            capture.fail(call, exc)
            raise

    def close(self):
        try:
            close = getattr(self._it, "close", None)
            if close is not None:
                close()
        finally:
            capture.release(self._call)


class _SizedClosingIterable(_ClosingIterable):
    """The same, for a response whose blocks can be counted (a list): servers ask ``len()`` of it —
    wsgiref sets ``Content-Length`` for a response of one block — and must get the same answer."""

    __slots__ = ()

    def __len__(self):
        return len(self._it)


class AuditWSGIMiddleware:
    def __init__(self, app, app_name: str | None = None) -> None:
        self.app = app
        self.owner = _owner_of(app, app_name)
        self.named = bool(app_name)

    def __call__(self, environ, start_response):
        outer = environ.get(OUTER_CALL)
        if outer is not None:
            if self.named:
                outer.owner = self.owner
            return self.app(environ, start_response)
        call = _begin(environ, self.owner)
        if call is None:
            return self.app(environ, start_response)
        try:
            environ[OUTER_CALL] = call
            if "wsgi.input" in environ:
                environ["wsgi.input"] = request_body_counter(environ["wsgi.input"], call)
        except Exception:
            capture.counters["errors.capture"] += 1

        def audited_start_response(status, headers, exc_info=None):
            try:
                call.status = int(status.split(" ", 1)[0])
                call.resp_headers = headers
            except Exception:
                capture.counters["errors.capture"] += 1
            return start_response(status, headers, exc_info) if exc_info is not None \
                else start_response(status, headers)

        try:
            result = self.app(environ, audited_start_response)
        except BaseException as exc:
            capture.end(call, exc)
            raise
        call.hold()
        capture.end(call)
        return (_SizedClosingIterable if hasattr(result, "__len__") else _ClosingIterable)(result, call)


def _begin(environ, owner):
    if not capture.runtime.active or capture.is_suppressed() or NAME in capture.runtime.disabled:
        return None
    try:
        call = capture.begin(NAME, "inbound", activate=False)
        if call is None:
            return None
        scheme = environ.get("wsgi.url_scheme", "http")
        call.protocol = scheme
        call.method = environ.get("REQUEST_METHOD")
        call.host = host_of(environ.get("HTTP_HOST")) or host_of(environ.get("SERVER_NAME"))
        try:
            call.port = int(environ.get("SERVER_PORT") or 0) or None
        except ValueError:
            pass
        path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        call.url = request_url(scheme, call.host, path, environ.get("QUERY_STRING"))
        call.src_ip = environ.get("REMOTE_ADDR")
        try:
            call.src_port = int(environ.get("REMOTE_PORT") or 0) or None
        except ValueError:
            pass
        call.req_headers = [(k[5:].replace("_", "-"), v) for k, v in environ.items() if k.startswith("HTTP_")]
        call.owner = owner
        claim_inbound(call.src_ip, call.src_port, call.port)  # the connection's row is this request's
        return call
    except Exception:
        capture.counters["errors.capture"] += 1
        return None
