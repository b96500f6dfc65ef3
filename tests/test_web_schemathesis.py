"""Schemathesis against the dashboard's own OpenAPI schema: no generated request gets a 5xx.

Every operation of the complete dashboard (JSON API and pages — they share the query parameters)
is fuzzed from its schema against a real uvicorn server, as an auditor (token) and as a viewer
(whose denials must be 403, never a crash).  Hostile rows are in the journal so rendering is fuzzed
over them too.
"""

from __future__ import annotations

import pytest
import requests

from mit_network_audit.interceptor.event import NetEvent, internal_event
from mit_network_audit.journal import open_store
from web_live import LiveDashboard, pg_database

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402

SKIP = {("POST", "/login"), ("POST", "/logout")}  # login throttling / ending the session are tested elsewhere


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def live(request, tmp_path_factory):
    with pg_database() as pg:
        if request.param == "postgres" and pg is None:
            pytest.skip("PostgreSQL not reachable on 127.0.0.1:5432")
        dsn = pg if request.param == "postgres" else f"sqlite:///{tmp_path_factory.mktemp('webfuzz')}/web.db"
        server = _serve(dsn)
        yield server
        server.stop()


def _serve(dsn: str) -> LiveDashboard:
    store = open_store(dsn)
    base = internal_event("x").as_dict()
    hostile = "<script>alert(1)</script>\u202e'\"%00\\"
    store.append([NetEvent.from_dict({**base, "event_id": f"{i:032x}", "direction": "outbound",
                                      "channel": "requests", "host": hostile if i % 2 else "api.openai.com",
                                      "addon": hostile, "dest_class": "provider"}) for i in range(30)])
    store.close()
    return LiveDashboard(dsn)


@pytest.mark.parametrize("role,examples", [("auditor", 25), ("viewer", 6)])
def test_no_server_errors(live, role, examples):
    if live.dsn.startswith("postgresql") and role == "viewer":
        pytest.skip("the viewer pass runs on SQLite only (keeps the suite short)")
    schema = schemathesis.openapi.from_dict(live.app.openapi())
    http = requests.Session()
    headers = {"Authorization": f"Bearer {live.tokens[role]}"}
    failures = []
    for result in schema.get_all_operations():
        op = result.ok()
        if (op.method.upper(), op.path) in SKIP:
            continue

        @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=op.as_strategy())
        def check(case):
            response = case.call(base_url=live.url, session=http, headers=headers, allow_redirects=False)
            if response.status_code >= 500:
                failures.append((case.operation.method, case.operation.path, case.path_parameters, case.query, response.status_code))
            assert response.status_code < 500

        try:
            check()
        except AssertionError:
            pass  # collected with its input; reported all together below
    first = {}
    for method, path, *example in failures:
        first.setdefault((method, path), example)
    assert not first, first


def test_nul_bytes_and_huge_numbers_are_client_errors(live):
    """Regressions found by the fuzzer: PostgreSQL refuses NUL in text, SQLite ints beyond 2**63."""
    headers = {"Authorization": f"Bearer {live.tokens['auditor']}"}
    for path in ("/api/rows?host=a%00b", "/api/rows?q=%00", "/log?addon=%00", "/api/groups?q=%00",
                 "/api/rows/99999999999999999999999", "/row/99999999999999999999999/proof",
                 "/api/rows?before=99999999999999999999999"):
        r = requests.get(live.url + path, headers=headers)
        assert r.status_code in (200, 400, 404, 422), (path, r.status_code)
