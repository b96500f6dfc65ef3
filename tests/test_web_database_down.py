"""The journal's database locked by another process, or a PostgreSQL server that dropped the dashboard's
connection (restart, failover): a 503 that says so, and the dashboard works again once the database does.
It used to be a bare 500 — and on PostgreSQL every later request failed too, until the server process
was restarted, because the dashboard kept its one dead connection."""

from __future__ import annotations

import subprocess
import sys

import psycopg
import pytest
import requests

from mit_network_audit.interceptor.event import internal_event
from mit_network_audit.journal import open_store
from pg_support import PG_ADMIN, scratch_database
from web_live import LiveDashboard

HOLD_LOCK = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(120)
"""


def _journal(dsn: str) -> None:
    store = open_store(dsn)
    store.append([internal_event("x", direction="outbound", channel="requests", host="a.example")])
    store.close()


def test_sqlite_locked_by_another_process(tmp_path):
    path = tmp_path / "web.db"
    _journal(f"sqlite:///{path}")
    server = LiveDashboard(f"sqlite:///{path}")
    try:
        session = server.login("auditor")
        assert session.get(server.url + "/report").status_code == 200
        _journal(f"sqlite:///{path}")  # a new row: the next report must write the rollup
        holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(path)], stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout.readline().strip() == "locked"
            r = session.get(server.url + "/report")
            assert r.status_code == 503 and "database is locked" in r.json()["detail"], r.text[:300]
            assert r.headers["retry-after"] and r.headers["x-frame-options"] == "DENY"
        finally:
            holder.kill()
            holder.wait()
        assert session.get(server.url + "/report").status_code == 200
    finally:
        server.stop()


def test_postgres_connection_dropped_then_back():
    with scratch_database("mna_web") as dsn:
        if dsn is None:
            pytest.skip("no PostgreSQL on 127.0.0.1:5432")
        _journal(dsn)
        server = LiveDashboard(dsn)
        try:
            session = server.login("auditor")
            assert session.get(server.url + "/log").status_code == 200
            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:  # what a server restart does to it
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                              "AND pid <> pg_backend_pid()", (dsn.rsplit("/", 1)[1],))
            first = session.get(server.url + "/log")
            assert first.status_code == 503 and "unavailable" in first.json()["detail"], first.text[:300]
            for route in ("/log", "/report", "/api/rows", "/row/1"):
                assert session.get(server.url + route).status_code == 200, route
            r = requests.get(server.url + "/api/rows", headers={"Authorization": f"Bearer {server.tokens['auditor']}"})
            assert r.status_code == 200 and r.json()["rows"]
        finally:
            server.stop()


@pytest.mark.browser
def test_verify_says_when_it_cannot_run(tmp_path):
    """Verify opens the journal afresh; when it cannot (the file was moved away, the server is down)
    its background job died silently and the Verify page said "verifying…" forever."""
    from web_support import CHROMIUM, CHROMIUM_ARGS, PASSWORD, need_chromium

    need_chromium()
    sync_api = pytest.importorskip("playwright.sync_api")
    path = tmp_path / "web.db"
    _journal(f"sqlite:///{path}")
    server = LiveDashboard(f"sqlite:///{path}")
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(server.url + "/login")
            page.fill("input[name=username]", "auditor")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url("**/report")
            page.goto(server.url + "/verify")
            path.rename(tmp_path / "moved.db")
            page.click("#verify-button")
            page.locator("#verify-result.bad").wait_for(timeout=10_000)  # it said "verifying…" forever
            assert "verify could not run: FileNotFoundError" in page.text_content("#verify-result")
            browser.close()
    finally:
        server.stop()
