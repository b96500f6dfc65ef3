"""The proof's WSGI app (served by gunicorn, 4 prefork workers): every request makes one outbound
HTTP call to the loopback provider ($PROOF_PROVIDER) with ``requests``; ``/canary`` fans the canary
secrets out through every channel.  Wrapped in the auditor's WSGI middleware, which does nothing
when the process is not audited (the baseline run)."""

from __future__ import annotations

import os

import requests
from common import canary_fanout_sync, count_served

from mit_network_audit.interceptor.inbound.wsgi import AuditWSGIMiddleware

PROVIDER = os.environ.get("PROOF_PROVIDER", "http://127.0.0.1:9")
_session: dict = {}


def _http() -> requests.Session:
    pid = os.getpid()
    if pid not in _session:  # one keep-alive session per worker, made after the fork
        _session.clear()
        _session[pid] = requests.Session()
    return _session[pid]


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path.startswith("/canary"):
        environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        calls = canary_fanout_sync(PROVIDER)
        body = f"canary calls {calls}\n".encode()
    else:
        r = _http().get(f"{PROVIDER}/v1/quote", headers={"X-Worker": str(os.getpid())}, timeout=30)
        body = b"ok " + r.content[:32] + b"\n"
    count_served()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


app = AuditWSGIMiddleware(application, app_name="proof_wsgi")
