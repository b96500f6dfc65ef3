"""Forensic pages and API on a real dashboard (uvicorn on loopback): only officers switch capture or read
bodies; every read is journaled first; a read with the journal unwritable shows no body."""

from __future__ import annotations

import base64
import json
import os
import re
import sqlite3

import pytest
import requests

from mit_network_audit.journal import forensic, open_store
from test_forensic_capture import Canary, _stored_body
from web_live import LiveDashboard

RANK = {"anonymous": -1, "viewer": 0, "auditor": 1, "officer": 2}


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    key = os.urandom(32)
    saved = {k: os.environ.get(k) for k in (forensic.ENV_KEY, forensic.ENV_KEY_FILE)}
    os.environ[forensic.ENV_KEY] = base64.b64encode(key).decode()
    directory = tmp_path_factory.mktemp("forensic-web")
    os.environ[forensic.ENV_KEY_FILE] = str(directory / "unused.key")
    dsn = f"sqlite:///{directory}/web.db"
    canary = Canary("web")
    event_id, seq = _stored_body(dsn, key, canary.body)
    server = LiveDashboard(dsn)
    server.dsn, server.canary, server.event_id, server.seq, server.dbfile = (
        dsn,
        canary,
        event_id,
        seq,
        directory / "web.db",
    )
    server.officer_token = server.tokens["officer"]
    yield server
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _csrf(session: requests.Session, url: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', session.get(url + "/report").text)
    return found.group(1) if found else "none"


def _reads(dsn: str) -> list[dict]:
    store = open_store(dsn)
    try:
        return [
            json.loads(r.event.detail) for r in store.rows(limit=1000) if r.event.method == "forensic_read"
        ]
    finally:
        store.close()


def _enabled(dsn: str) -> bool:
    store = open_store(dsn)
    try:
        return forensic.scope_from_settings(forensic.current_settings(store)).enabled
    finally:
        store.close()


@pytest.mark.parametrize("role", ["anonymous", "viewer", "auditor"])
def test_only_officers_see_switch_or_read(live, role):
    session = requests.Session() if role == "anonymous" else live.login(role)
    csrf = _csrf(session, live.url) if role != "anonymous" else "x"
    reads_before = _reads(live.dsn)
    gets = ["/forensic", f"/forensic/body/{live.seq}", f"/forensic/body/{live.event_id}", "/api/forensic"]
    posts = [
        ("/forensic/capture", {"enabled": "true", "csrf": csrf}),
        (f"/forensic/body/{live.seq}", {"csrf": csrf}),
        (f"/api/forensic/bodies/{live.seq}/read", {"csrf": csrf}),
        (f"/api/forensic/bodies/{live.event_id}/read", {"csrf": csrf}),
    ]
    responses = [session.get(live.url + path, allow_redirects=False) for path in gets]
    responses += [session.post(live.url + path, data=data, allow_redirects=False) for path, data in posts]
    for r in responses:
        if role == "anonymous":
            assert r.status_code in (303, 401), (r.url, r.status_code)
            if r.status_code == 303:
                assert r.headers["location"] == "/login"
        else:
            assert r.status_code == 403, (r.url, r.status_code)
        assert not live.canary.found_in(r.content)
    # nor is a viewer's or auditor's API token
    for who in ("viewer", "auditor"):
        for path in ("/api/forensic", f"/api/forensic/bodies/{live.seq}/read"):
            r = requests.request(
                "GET" if path == "/api/forensic" else "POST",
                live.url + path,
                headers={"Authorization": f"Bearer {live.tokens[who]}"},
            )
            assert r.status_code == 403 and not live.canary.found_in(r.content)
    assert _reads(live.dsn) == reads_before and not _enabled(live.dsn)
    # and no Forensic entry in their navigation; no body link on the forensic record
    if role != "anonymous":
        assert "forensic-body-link" not in session.get(live.url + f"/row/{live.seq}").text
        if role == "auditor":
            assert 'href="/forensic"' not in session.get(live.url + "/log/groups").text


def test_officer_reads_body_journaled_first(live):
    session = live.login("officer")
    listing = session.get(live.url + "/forensic")
    assert (
        listing.status_code == 200
        and live.event_id in listing.text
        and not live.canary.found_in(listing.content)
    )
    assert "forensic-body-link" in session.get(live.url + f"/row/{live.seq}").text
    assert 'href="/forensic"' in session.get(live.url + "/log/groups").text
    before = len(_reads(live.dsn))
    page = session.get(live.url + f"/forensic/body/{live.seq}")  # a GET decrypts nothing, journals nothing
    assert (
        page.status_code == 200 and not live.canary.found_in(page.content) and len(_reads(live.dsn)) == before
    )
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    forged = session.post(live.url + f"/forensic/body/{live.seq}", data={"csrf": "forged"})
    assert forged.status_code == 403 and not live.canary.found_in(forged.content)
    assert len(_reads(live.dsn)) == before
    shown = session.post(live.url + f"/forensic/body/{live.seq}", data={"csrf": csrf})
    assert shown.status_code == 200 and live.canary.token.decode() in shown.text
    assert base64.b64encode(live.canary.body).decode() in shown.text
    assert shown.headers["cache-control"] == "no-store"
    reads = _reads(live.dsn)
    assert len(reads) == before + 1
    assert reads[0] == {
        "actor": "officer",
        "role": "officer",
        "via": "web",
        "event_id": live.event_id,
        "chain_seq": live.seq,
    }
    api = requests.post(
        live.url + f"/api/forensic/bodies/{live.event_id}/read",
        headers={"Authorization": f"Bearer {live.officer_token}"},
    )
    assert api.status_code == 200 and base64.b64decode(api.json()["body_b64"]) == live.canary.body
    assert api.json()["read_seq"] == open_store(live.dsn).head().chain_seq
    assert _reads(live.dsn)[0]["via"] == "api" and len(_reads(live.dsn)) == before + 2
    listing = session.get(live.url + "/forensic").text  # the reads, from the journal, on the page
    reads_table = listing.split('id="reads"')[1]
    assert reads_table.count("(officer)") == len(_reads(live.dsn)) and ">api<" in reads_table
    status = requests.get(
        live.url + "/api/forensic", headers={"Authorization": f"Bearer {live.officer_token}"}
    )
    assert status.json()["stored"] == 1 and status.json()["bodies"][0]["event_id"] == live.event_id
    assert not live.canary.found_in(status.content)


def test_officer_switches_capture_and_report_says_review(live):
    session = live.login("officer")
    csrf = _csrf(session, live.url)
    assert (
        session.post(live.url + "/forensic/capture", data={"enabled": "true", "csrf": "bad"}).status_code
        == 403
    )
    assert not _enabled(live.dsn)
    r = session.post(
        live.url + "/forensic/capture", data={"enabled": "true", "csrf": csrf}, allow_redirects=False
    )
    assert r.status_code == 303 and _enabled(live.dsn)
    assert ">ON<" in session.get(live.url + "/forensic").text
    report = session.get(live.url + "/api/report?since=24h").json()
    assert report["verdict"] in ("review", "alarm")
    assert "forensic_capture_on" in {line["rule"] for line in report["lines"]}
    r = session.post(
        live.url + "/forensic/capture", data={"enabled": "false", "csrf": csrf}, allow_redirects=False
    )
    assert r.status_code == 303 and not _enabled(live.dsn)
    report = session.get(live.url + "/api/report?since=24h").json()
    assert "forensic_capture_on" not in {line["rule"] for line in report["lines"]}
    store = open_store(live.dsn)
    changes = [json.loads(r.event.detail) for r in store.rows(limit=50) if r.event.method == "settings"]
    assert changes[0]["key"] == "forensic.enabled" and changes[0]["actor"] == "officer"


def test_read_refused_when_journal_unwritable(live):
    session = live.login("officer")
    csrf = _csrf(session, live.url)
    raw = sqlite3.connect(str(live.dbfile))
    raw.execute(
        "CREATE TRIGGER freeze BEFORE INSERT ON egress_log BEGIN SELECT RAISE(ABORT, 'journal frozen'); END"
    )
    raw.commit()
    try:
        before = len(_reads(live.dsn))
        page = session.post(live.url + f"/forensic/body/{live.seq}", data={"csrf": csrf})
        assert page.status_code == 503 and "refusing to show the body" in page.text
        assert (
            not live.canary.found_in(page.content) and base64.b64encode(live.canary.body) not in page.content
        )
        api = requests.post(
            live.url + f"/api/forensic/bodies/{live.seq}/read",
            headers={"Authorization": f"Bearer {live.officer_token}"},
        )
        assert api.status_code == 503 and not live.canary.found_in(api.content)
        assert len(_reads(live.dsn)) == before
    finally:
        raw.execute("DROP TRIGGER freeze")
        raw.commit()
        raw.close()
    again = session.post(live.url + f"/forensic/body/{live.seq}", data={"csrf": csrf})
    assert again.status_code == 200 and live.canary.token.decode() in again.text
