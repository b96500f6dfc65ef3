"""The Settings page and API on a real dashboard (uvicorn on loopback): officers only (every role and
anonymous, page and API, GET and POST), CSRF on the form and the session API, bearer tokens, bad values
refused with nothing written, every change journaled; and an officer changes a setting in real headless
Chromium (Playwright)."""

from __future__ import annotations

import json
import os
import re

import pytest
import requests

from mit_network_audit.journal import open_store
from mit_network_audit.journal import settings as S
from mit_network_audit.journal.verify import verify
from trust_support import events
from web_live import PASSWORD, LiveDashboard
from web_support import SHOTS, chromium_browser, need_chromium

RANK = {"anonymous": -1, "viewer": 0, "auditor": 1, "officer": 2}
ROLES = ["anonymous", "viewer", "auditor", "officer"]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    dsn = f"sqlite:///{tmp_path_factory.mktemp('settings-web')}/web.db"
    store = open_store(dsn)
    store.append(events(5))
    store.close()
    server = LiveDashboard(dsn)
    yield server
    server.stop()


def _csrf(session: requests.Session, url: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', session.get(url + "/report").text)
    return found.group(1) if found else "none"


def _settings(dsn: str) -> dict:
    store = open_store(dsn)
    try:
        return S.get_settings(store)
    finally:
        store.close()


def _changes(dsn: str) -> list[dict]:
    store = open_store(dsn)
    try:
        return [json.loads(r.event.detail) for r in store.rows(limit=1000) if r.event.method == "settings"]
    finally:
        store.close()


@pytest.mark.parametrize("role", ROLES)
def test_authorization_matrix(live, role):
    """Page and API, read and write, session and token: only an officer gets through."""
    session = requests.Session() if role == "anonymous" else live.login(role)
    csrf = _csrf(session, live.url) if role != "anonymous" else "none"
    before = (_settings(live.dsn), len(_changes(live.dsn)))
    allowed = RANK[role] >= RANK["officer"]
    for method, path, kwargs in [
        ("GET", "/settings", {}),
        ("GET", "/api/settings", {}),
        ("POST", "/settings", {"data": {"csrf": csrf, "retention.days": "91"}}),
        ("POST", "/api/settings", {"json": {"retention.days": 92}, "headers": {"X-CSRF-Token": csrf}}),
    ]:
        r = session.request(method, live.url + path, allow_redirects=False, **kwargs)
        if allowed:
            assert r.status_code in (200, 303), (role, method, path, r.status_code, r.text[:200])
        elif role == "anonymous":
            assert r.status_code in (303, 401), (role, method, path, r.status_code)
            if r.status_code == 303:
                assert r.headers["location"] == "/login"
        else:
            assert r.status_code == 403, (role, method, path, r.status_code)
    # and with each role's API token
    if role != "anonymous":
        headers = {"Authorization": f"Bearer {live.tokens[role]}"}
        got = requests.get(live.url + "/api/settings", headers=headers)
        put = requests.post(live.url + "/api/settings", headers=headers, json={"rollup.interval_s": 61})
        assert (got.status_code, put.status_code) == ((200, 200) if allowed else (403, 403))
    nav = session.get(live.url + "/log/groups").text if role in ("auditor", "officer") else ""
    assert ('href="/settings"' in nav) == (role == "officer")
    if not allowed:
        assert (_settings(live.dsn), len(_changes(live.dsn))) == before  # nothing written by a refused request
    else:
        assert _settings(live.dsn)["retention.days"] == 92


def test_officer_form_api_csrf_and_bad_values(live):
    session = live.login("officer")
    csrf = _csrf(session, live.url)
    page = session.get(live.url + "/settings").text
    for key in S.SETTINGS:
        assert key in page
    n = len(_changes(live.dsn))
    # CSRF: the form without the token, and the session API without the header, change nothing
    assert session.post(live.url + "/settings", data={"csrf": "forged", "retention.days": "5"}).status_code == 403
    assert session.post(live.url + "/api/settings", json={"retention.days": 5}).status_code == 403
    assert len(_changes(live.dsn)) == n
    # a bad value: the page says why (400), nothing is written — not even the good field beside it
    bad = session.post(live.url + "/settings", data={"csrf": csrf, "rollup.interval_s": "15",
                                                     "capture.disabled_channels": "socket,telnet"})
    assert bad.status_code == 400 and "unknown channel(s) &#39;telnet&#39;" in bad.text
    assert 'id="settings-error"' in bad.text and len(_changes(live.dsn)) == n
    api_bad = session.post(live.url + "/api/settings", json={"nope": 1}, headers={"X-CSRF-Token": csrf})
    assert api_bad.status_code == 400 and "unknown setting" in api_bad.json()["detail"]
    assert session.post(live.url + "/api/settings", data="[1]", headers={"X-CSRF-Token": csrf}).status_code == 400
    # a good form: only the fields that differ are changes; each is journaled with who, old -> new
    form = {"csrf": csrf, **{k: S.as_text(v) for k, v in _settings(live.dsn).items()}}
    form["capture.disabled_channels"] = "smtp,socket"
    r = session.post(live.url + "/settings", data=form, allow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/settings?saved=1"
    changes = _changes(live.dsn)
    assert len(changes) == n + 1
    assert changes[0] == {"actor": "officer", "key": "capture.disabled_channels", "old": "", "new": "smtp,socket"}
    shown = session.get(live.url + "/settings?saved=1").text
    assert "Saved and journaled" in shown and "smtp,socket" in shown
    # the API, with the session's CSRF header
    r = session.post(live.url + "/api/settings", json={"capture.disabled_channels": [], "forensic.max_bytes": 1024},
                     headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200, r.text
    assert {c["key"] for c in r.json()["changed"]} == {"capture.disabled_channels", "forensic.max_bytes"}
    got = session.get(live.url + "/api/settings").json()
    assert got["settings"]["capture.disabled_channels"] == [] and got["settings"]["forensic.max_bytes"] == 1024
    assert [k["key"] for k in got["keys"]] == list(S.SETTINGS) and got["version"]
    report = session.get(live.url + "/api/report?since=24h").json()
    assert "channels_disabled" in {line["rule"] for line in report["lines"]}  # disabled during the period
    store = open_store(live.dsn)
    assert verify(store).ok
    store.close()


# -- in a real browser ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    need_chromium()
    yield from chromium_browser()


@pytest.mark.browser
def test_officer_changes_a_setting_in_the_browser(browser, live):
    page = browser.new_page(viewport={"width": 1360, "height": 1000})
    errors = []  # script errors and server errors (the 400 of the refused value is expected)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 500 else None)
    page.goto(live.url + "/settings")
    assert page.url.endswith("/login")
    page.fill("input[name=username]", "officer")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/report")
    page.goto(live.url + "/settings")
    before = len(_changes(live.dsn))
    page.fill("#f-capture-disabled_channels", "smtp")
    page.fill("#f-retention-days", "abc")  # refused: nothing is written, the page says why
    page.click("#settings-save")
    assert "not a whole number" in page.locator("#settings-error").inner_text()
    assert len(_changes(live.dsn)) == before
    page.fill("#f-capture-disabled_channels", "smtp")
    page.fill("#f-retention-days", "120")
    page.click("#settings-save")
    page.wait_for_url("**/settings?saved=1")
    assert page.locator("#settings-saved").is_visible()
    assert page.input_value("#f-capture-disabled_channels") == "smtp"
    page.screenshot(path=os.path.join(SHOTS, "settings.png"), full_page=True)
    got = _settings(live.dsn)
    assert got["capture.disabled_channels"] == ["smtp"] and got["retention.days"] == 120
    newest = _changes(live.dsn)[:2]
    assert {(c["key"], c["new"], c["actor"]) for c in newest} == {
        ("capture.disabled_channels", "smtp", "officer"), ("retention.days", "120", "officer")}
    assert "capture.disabled_channels" in page.locator("#changes").inner_text()
    assert not errors, errors
    page.close()
