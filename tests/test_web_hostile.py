"""Journal rows are written by the audited program, so every field of every row is attacker-controlled —
including the ``detail`` of internal rows (heartbeats, settings changes, forensic reads) that the Trust
Report, the Settings page and the Forensic page parse.  A hostile row must not take any page down."""

from __future__ import annotations

import json

import pytest
import requests

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


def test_rows_with_missing_fields_do_not_stop_the_rollup(tmp_path):
    """The rollup's keys are NOT NULL: one row without a channel, direction, class, outcome, time or byte
    counts (or a heartbeat without pid and hostname, a gap whose detail is not JSON, two rows claiming
    2^62 bytes: sum() overflowed) used to make every catch-up fail, so the Trust Report, the Traffic
    Summary and the grouped log answered 500 from then on."""
    dsn = f"sqlite:///{tmp_path}/web.db"
    store = open_store(dsn)
    outbound = {"direction": "outbound", "channel": "requests", "host": "h.example"}
    store.append([internal_event("x", **{**outbound, **fields}) for fields in (
        {"channel": None}, {"direction": None}, {"dest_class": None}, {"outcome": None}, {"logged_at_us": None},
        {"req_bytes": None, "resp_bytes": None}, {"req_bytes": 2**62}, {"req_bytes": 2**62, "resp_bytes": -(2**62)})]
        + [internal_event("heartbeat", pid=None, hostname=None), internal_event("gap", detail="{not json"),
           internal_event("gap", detail='{"lost": 3}')])
    store.close()
    server = LiveDashboard(dsn)
    try:
        session = server.login("auditor")
        for route in ("/report", "/api/report", "/summary", "/log/groups", "/log/groups?by=channel", "/log"):
            r = session.get(server.url + route)
            assert r.status_code == 200, (route, r.status_code, r.text[:200])
        lost = [line for line in session.get(server.url + "/api/report").json()["lines"] if line["rule"] == "events_lost"]
        assert [line["count"] for line in lost] == [3]  # the well-formed gap row still counts
    finally:
        server.stop()


def test_gap_rows_that_are_not_json_on_postgres():
    """PostgreSQL parses a gap row's detail too (detail::json raised on '{not json' and stopped the rollup)."""
    from mit_network_audit.report import rollup
    from mit_network_audit.report.trust import build_report
    from pg_support import scratch_database

    with scratch_database("mna_web") as dsn:
        if dsn is None:
            pytest.skip("no PostgreSQL on 127.0.0.1:5432")
        store = open_store(dsn)
        try:
            store.append([internal_event("gap", detail=d) for d in (
                "{not json", '{"lost": "many"}', '{"lost": 1e300}', '{"lost": 3, "reasons": ["queue_full"]}',
                json.dumps({"in_doubt": 2, "lost": 4, "reasons": ["killed_by_signal"]}, sort_keys=True))]
                + [internal_event("heartbeat", pid=None, hostname=None),
                   internal_event("x", direction="outbound", channel=None, dest_class=None, outcome=None),
                   *[internal_event("x", direction="outbound", channel="requests", req_bytes=2**62) for _ in "ab"]])
            rollup.catch_up(store)
            lost = [line for line in build_report(store, 0).as_dict()["lines"] if line["rule"] == "events_lost"]
            assert [line["count"] for line in lost] == [7]
        finally:
            store.close()


def test_bidi_overrides_and_invisible_characters_are_shown(tmp_path):
    """A module name ending in U+202E read the rest of its Trust Report line backwards ("... 840,2 tsom"),
    and host ``evil.example`` + U+202E + ``elpmaxe.rodnev`` showed as ``evil.examplevendor.example``:
    table cells are bidi-isolated, but not the text inside them, the report's lines or the record's fields.
    Every page prints such characters as ⟨U+XXXX⟩; a form field that goes back (a setting) keeps its value."""
    from mit_network_audit.journal import settings as journal_settings

    dsn = f"sqlite:///{tmp_path}/web.db"
    store = open_store(dsn)
    store.append([internal_event("x", direction="outbound", channel="requests\u200b", method="POST",
                                 host="evil.example\u202eelpmaxe.rodnev", addon="crm_export_plus\u202e",
                                 path="/up\u2066load", vendor_bound=True, component="mit-licence", dest_class="vendor",
                                 req_bytes=90_000)])
    journal_settings.set_settings(store, {"forensic.hosts": "a.example\u200b"}, actor="x")
    store.close()
    server = LiveDashboard(dsn)
    try:
        session = server.login("officer")
        for route in ("/report", "/row/1", "/log", "/summary", "/log/groups?by=host", "/log/groups?by=addon",
                      "/log/groups?by=channel", "/settings"):
            html = session.get(server.url + route).text
            hidden = [c for c in ("\u202e", "\u2066", "\u200b") if c in html and route != "/settings"]
            assert not hidden, (route, hidden)
            assert "⟨U+202E⟩" in html or route in ("/log/groups?by=channel", "/settings"), route
        assert "crm_export_plus⟨U+202E⟩ sent requests of up to 90,000 bytes" in session.get(server.url + "/report").text
        assert "requests⟨U+200B⟩" in session.get(server.url + "/log/groups?by=channel").text
        # the settings form sends back the stored value, not its shown form (saving it changes nothing)
        settings = session.get(server.url + "/settings").text
        assert 'value="a.example\u200b"' in settings and "a.example⟨U+200B⟩" in settings  # field, changes table
    finally:
        server.stop()


LONG = "A" * 3000
XSS = ["<script>window.__xss=1</script>", "\"><img src=x onerror=\"window.__xss=2\">", "javascript:window.__xss=3",
       "'><svg onload=window.__xss=4>", "</title><script>window.__xss=5</script>"]

# every element of a .split column either stays inside it or the column clips and scrolls it
OVERFLOW_JS = """() => {
  const bad = [];
  if (document.documentElement.scrollWidth > window.innerWidth + 1) bad.push('page scrolls sideways');
  for (const s of document.querySelectorAll('.split > section')) {
    const right = s.getBoundingClientRect().right;
    if (getComputedStyle(s).overflowX !== 'visible') continue;
    for (const el of s.querySelectorAll('*'))
      if (el.getBoundingClientRect().right > right + 1) { bad.push(el.tagName + ' runs over its column'); break; }
  }
  return bad;
}"""


@pytest.mark.browser
def test_hostile_rows_in_chromium_run_no_script_and_stay_in_their_columns(tmp_path):
    """In real Chromium: no page runs a script from a row, and a 3,000-character host or module no
    longer runs over the next column (it hid the record's hashes and links, and the Trust Report's
    Calls and Sent bytes columns behind the other table)."""
    from web_support import CHROMIUM, CHROMIUM_ARGS, PASSWORD, need_chromium

    need_chromium()
    sync_api = pytest.importorskip("playwright.sync_api")
    dsn = f"sqlite:///{tmp_path}/web.db"
    store = open_store(dsn)
    store.append([internal_event("x", direction="outbound", channel=value, method=value, host=value, addon=value,
                                 path="/" + value, query_keys=(value,), req_headers=(value,), call_site=value,
                                 error=value, via=(value,), hostname=value, component=value, vendor_bound=True,
                                 dest_class="vendor", req_bytes=90_000, outcome="error")
                  for value in [LONG, *XSS]])
    store.close()
    server = LiveDashboard(dsn)
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            dialogs = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(server.url + "/login")
            page.fill("input[name=username]", "officer")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url("**/report")
            for route in ("/report", "/summary", "/log", "/log/groups", "/log/groups?by=host",
                          "/log/groups?by=channel", "/verify", "/settings", "/forensic",
                          *[f"/row/{seq}" for seq in range(1, 2 + len(XSS))]):
                page.goto(server.url + route)
                assert page.evaluate("window.__xss") is None and not dialogs, route
                if route in ("/report", "/row/1"):
                    assert page.evaluate(OVERFLOW_JS) == [], route
            browser.close()
    finally:
        server.stop()


def test_jsonl_export_keeps_every_row_and_says_when_it_stops(tmp_path, monkeypatch):
    """/export.jsonl compared each row's time with the period's start: a row without a time (None) raised
    TypeError after the status line was sent, and the download ended cleanly (curl: exit 0) with the
    rows before it only.  Such a row is exported, and an export that fails part-way says so last."""
    import sqlite3

    dsn = f"sqlite:///{tmp_path}/web.db"
    store = open_store(dsn)
    out = {"direction": "outbound", "channel": "requests", "host": "a.example"}
    store.append([internal_event("x", **out), internal_event("x", **out, logged_at_us=None),
                  internal_event("x", **out)])
    store.close()
    server = LiveDashboard(dsn)
    try:
        auth = {"Authorization": f"Bearer {server.tokens['auditor']}"}
        lines = requests.get(server.url + "/export.jsonl", headers=auth).text.splitlines()
        assert [json.loads(line)["chain_seq"] for line in lines] == [1, 2, 3]
        real = server.app.state.store.iter_range

        def failing(*args, **kwargs):
            yield next(real(*args, **kwargs))
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(server.app.state.store, "iter_range", failing)
        lines = requests.get(server.url + "/export.jsonl", headers=auth).text.splitlines()
        assert len(lines) == 2 and json.loads(lines[-1]) == {"export_incomplete": "OperationalError: disk I/O error"}
    finally:
        server.stop()


def test_a_list_field_written_as_a_scalar_does_not_take_the_log_down(tmp_path):
    """A row whose list field (via, query_keys, headers) the program wrote as a scalar or None was read
    back with tuple(5) / tuple(None): TypeError on /log, /api/rows, the record and the Trust Report for
    everyone.  The row is shown (its one value) and verify still reports it."""
    dsn = f"sqlite:///{tmp_path}/web.db"
    store = open_store(dsn)
    out = {"direction": "outbound", "channel": "requests", "host": "a.example"}
    store.append([internal_event("x", **out, via=5), internal_event("x", **out, query_keys=None),
                  internal_event("x", **out, req_headers=True)])
    store.close()
    server = LiveDashboard(dsn)
    try:
        session = server.login("auditor")
        for route in ("/log", "/api/rows", "/report", "/api/report", "/row/1", "/row/2", "/row/3", "/api/rows/1"):
            r = session.get(server.url + route)
            assert r.status_code == 200, (route, r.status_code, r.text[:200])
        assert session.get(server.url + "/api/rows/1").json()["via"] == [5]
        assert session.get(server.url + "/row/1/proof").status_code == 409  # its hash was made over 5, not [5]
    finally:
        server.stop()
