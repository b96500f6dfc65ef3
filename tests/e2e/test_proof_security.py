"""Security end to end: canaries through every channel never reach the database files, WAL, exports
or logs; the audited process opens no socket beyond the test's peers and its journal (sampled
from outside with ss); the authorization matrix holds on a live `mit-network-audit serve`."""

import pytest

SENT = {"header", "query", "body", "path", "mail_password"}


def check(r):
    assert SENT <= set(r["control_on_wire"]), r["control_on_wire"]  # control: they really were sent
    assert r["leaks"] == [], r["leaks"]
    assert r["ss_samples"] > 5 and r["sockets_seen"] > 0
    assert r["foreign_sockets"] == [], r["foreign_sockets"]
    assert r["auditor_rows"] == 0 and r["verify_ok"] and r["export_rc"] == 0
    assert {"requests", "urllib", "httpx", "smtp", "imap"} <= set(r["channels"]), r["channels"]
    assert r["authz"]["checked"] >= 40 and r["authz"]["wrong"] == [], r["authz"]


@pytest.mark.postgres
def test_canaries_gunicorn_postgres(h, pg, work):
    check(h.security_run("wsgi", pg, work, requests_n=8))


def test_canaries_uvicorn_sqlite(h, work):
    check(h.security_run("asgi", "sqlite", work, requests_n=8))
