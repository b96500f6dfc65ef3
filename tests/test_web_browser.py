"""The dashboard in real headless Chromium (Debian's, driven by Playwright): every page and role."""

import os

import pytest

from web_support import PASSWORD, SHOTS, LiveServer, chromium_browser, need_chromium, run_demo

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory):
    need_chromium()
    dsn = f"sqlite:///{tmp_path_factory.mktemp('demo')}/demo.db"
    run_demo(dsn)
    server = LiveServer(dsn)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    yield from chromium_browser()


def login(browser, server, role):
    page = browser.new_page(viewport={"width": 1360, "height": 900})
    page.goto(server.url + "/report")
    assert page.url.endswith("/login")
    page.fill("input[name=username]", role)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/report")
    return page


def test_auditor_walks_every_page(browser, demo_server):
    page = login(browser, demo_server, "auditor")
    assert page.inner_text("#verdict").startswith("ALARM")
    assert "crm_export_plus" in page.inner_text("li.alarm")
    page.screenshot(path=os.path.join(SHOTS, "trust-report.png"), full_page=True)
    page.click("li.alarm .evidence a")  # drill into the evidence row
    page.wait_for_url("**/row/*")
    assert page.inner_text("#addon") == "crm_export_plus"
    assert "Row hash" in page.content()
    page.screenshot(path=os.path.join(SHOTS, "forensic-record.png"), full_page=True)
    page.goto(demo_server.url + "/log")
    page.click("button[value=vendor]")
    rows = page.locator("table.log tbody tr")
    assert rows.count() >= 2 and all("yes" in rows.nth(i).inner_text() for i in range(rows.count()))
    page.screenshot(path=os.path.join(SHOTS, "audit-log.png"), full_page=True)
    page.goto(demo_server.url + "/summary")
    assert page.locator("svg.chart").count() >= 3
    page.screenshot(path=os.path.join(SHOTS, "traffic-summary.png"), full_page=True)
    page.goto(demo_server.url + "/verify")
    page.click("#verify-button")
    page.wait_for_selector("#verify-result.ok", timeout=20_000)
    assert "chain intact" in page.inner_text("#verify-result")
    with page.expect_download() as download:
        page.click("text=last 24h")
    assert download.value.suggested_filename == "journal-24h.jsonl"
    page.screenshot(path=os.path.join(SHOTS, "verify-export.png"), full_page=True)
    page.close()


def test_viewer_sees_reports_not_rows(browser, demo_server):
    page = login(browser, demo_server, "viewer")
    assert page.locator("nav a", has_text="Audit Log").count() == 0
    assert page.locator("li.alarm .evidence a").count() == 0  # seqs shown, not links
    response = page.goto(demo_server.url + "/log")
    assert response.status == 403
    page.goto(demo_server.url + "/summary")
    assert page.locator("svg.chart").count() >= 3
    page.close()


def test_officer_logs_out(browser, demo_server):
    page = login(browser, demo_server, "officer")
    page.click("header form.logout button")
    page.wait_for_url("**/login")
    page.goto(demo_server.url + "/report")
    assert page.url.endswith("/login")
    page.close()
