"""Malformed input the fuzzers did not reach: each is a clear 4xx, never a 500 (or a 503 that blames the
database for the client's request)."""

from __future__ import annotations

import pytest
import requests

from mit_network_audit.interceptor.event import internal_event
from mit_network_audit.journal import open_store
from mit_network_audit.journal import settings as journal_settings
from web_live import LiveDashboard


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    dsn = f"sqlite:///{tmp_path_factory.mktemp('web-input')}/web.db"
    store = open_store(dsn)
    store.append([internal_event("x", direction="outbound", channel="requests", host="a.example")])
    store.close()
    server = LiveDashboard(dsn)
    yield server
    server.stop()


def test_a_search_term_too_long_for_like_is_a_422(live):
    """SQLite refuses a LIKE pattern over 50,000 bytes ("LIKE or GLOB pattern too complex"): a 500."""
    auth = {"Authorization": f"Bearer {live.tokens['auditor']}"}
    for route in ("/log", "/api/rows", "/log/groups", "/api/groups"):
        r = requests.get(live.url + route, params={"q": "a" * 60_000}, headers=auth)
        assert r.status_code == 422, (route, r.status_code, r.text[:200])
        assert requests.get(live.url + route, params={"q": "a" * 2000}, headers=auth).status_code == 200, route


def test_settings_api_json_nested_too_deep_is_a_400(live):
    """json.loads raises RecursionError, not ValueError, on deeply nested input: a 500."""
    auth = {"Authorization": f"Bearer {live.tokens['officer']}", "Content-Type": "application/json"}
    before = journal_settings.get_settings(open_store(live.dsn))
    for body in (b"[" * 100_000, b'{"verify.interval_s": ' + b"[" * 100_000):
        r = requests.post(live.url + "/api/settings", data=body, headers=auth)
        assert r.status_code == 400, (r.status_code, r.text[:200])
    assert journal_settings.get_settings(open_store(live.dsn)) == before
