"""Journal rows are written by the audited program, so every field of every row is attacker-controlled —
including the ``detail`` of internal rows (heartbeats, settings changes, forensic reads) that the Trust
Report, the Settings page and the Forensic page parse.  A hostile row must not take any page down."""

from __future__ import annotations

import json

import pytest

from mit_network_audit.interceptor.event import internal_event
from mit_network_audit.journal import open_store
from web_live import LiveDashboard

# details that are valid JSON but not the object the readers expect, or an object of the wrong shapes
DETAILS = ["[]", '"text"', "null", "7", '{"disabled": 5}', '{"disabled": [["a"], 3, {"x": 1}, "ssl"]}',
           json.dumps({"key": "capture.disabled_channels", "old": 5, "new": ["a"], "actor": {"x": 1}}),
           json.dumps({"actor": ["a"], "role": 3, "via": None, "event_id": [1], "chain_seq": "<b>1</b>"})]
KINDS = ["heartbeat", "start", "stop", "settings", "forensic_read"]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    dsn = f"sqlite:///{tmp_path_factory.mktemp('web-hostile')}/web.db"
    store = open_store(dsn)
    store.append([internal_event(kind, detail=detail, pid=1000 + i)
                  for kind in KINDS for i, detail in enumerate(DETAILS)])
    store.close()
    server = LiveDashboard(dsn)
    yield server
    server.stop()


def test_hostile_internal_row_details_do_not_break_pages(live):
    session = live.login("officer")
    for route in ("/report", "/report?since=365d", "/api/report", "/summary", "/settings", "/forensic",
                  "/api/settings", "/api/forensic"):
        r = session.get(live.url + route)
        assert r.status_code == 200, (route, r.status_code, r.text[:200])
    # the rows are still shown for what they are
    assert "ssl" in session.get(live.url + "/api/report").text  # the one well-formed channel name
    assert "&lt;b&gt;1&lt;/b&gt;" not in session.get(live.url + "/forensic").text  # no link to a row "<b>1</b>"


def test_times_beyond_any_date_render(tmp_path):
    """A row's times are integers the program chose: one far beyond year 9999 (or before year 1) once
    made /log and /summary answer 500 for everyone, and its forensic record too."""
    dsn = f"sqlite:///{tmp_path}/web.db"
    store = open_store(dsn)
    now = internal_event("x").logged_at_us
    store.append([internal_event("x", direction="outbound", channel="requests", host="far.example",
                                 logged_at_us=at, started_at_us=at) for at in (2**62, -(2**62), now)])
    store.close()
    server = LiveDashboard(dsn)
    try:
        session = server.login("auditor")
        for route in ("/log", "/summary", "/summary?since=365d", "/report", "/row/1", "/row/2", "/log/groups"):
            r = session.get(server.url + route)
            assert r.status_code == 200, (route, r.status_code, r.text[:200])
        assert f"{2**62} µs (no date)" in session.get(server.url + "/row/1").text
    finally:
        server.stop()
