"""The registry pages in real headless Chromium (Debian's, via Playwright): group the Audit Log, drill
from a group into the filtered log, into a row, prove the row and download the proof; viewers are
refused; anonymous visitors land on the login page.  Screenshots go to docs/screenshots/."""

from __future__ import annotations

import json
import os

import pytest

from mit_network_audit.journal import checkpoint, merkle, open_store
from web_live import PASSWORD, LiveDashboard, signing_env
from web_support import SHOTS, chromium_browser, need_chromium, run_demo

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    need_chromium()
    directory = tmp_path_factory.mktemp("webdemo")
    dsn = f"sqlite:///{directory}/demo.db"
    run_demo(dsn)
    with signing_env(str(directory)):
        store = open_store(dsn)
        checkpoint.make_checkpoint(store)
        store.close()
        server = LiveDashboard(dsn)
        yield server
        server.stop()


@pytest.fixture(scope="module")
def browser():
    yield from chromium_browser()


def login(browser, server, role, start="/log/groups"):
    page = browser.new_page(viewport={"width": 1360, "height": 900}, accept_downloads=True)
    page.goto(server.url + start)
    assert page.url.endswith("/login")  # anonymous: every page sends you to log in
    page.fill("input[name=username]", role)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/report")
    return page


def test_auditor_groups_drills_down_and_proves_a_row(browser, demo, tmp_path):
    page = login(browser, demo, "auditor")
    errors = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(demo.url + "/log/groups")
    page.click("button[value=host]")
    page.wait_for_url("**by=host**")
    all_hosts = page.locator("table.groups tbody tr td.host a").count()
    assert all_hosts >= 3
    page.click("button[value=vendor]")  # the log's filters apply to groups too
    page.wait_for_url("**filter=vendor**")
    vendor_hosts = [page.locator("table.groups tbody tr td.host a").nth(i).inner_text()
                    for i in range(page.locator("table.groups tbody tr td.host a").count())]
    assert vendor_hosts and len(vendor_hosts) < all_hosts, vendor_hosts
    page.screenshot(path=os.path.join(SHOTS, "audit-log-groups.png"), full_page=True)

    page.locator("table.groups tbody tr td.host a").first.click()  # into the log, filtered to that host
    page.wait_for_url("**/log?**")
    cells = page.locator("table.log tbody td.host")
    assert cells.count() >= 1 and {cells.nth(i).inner_text() for i in range(cells.count())} == {vendor_hosts[0]}
    vendor_col = page.locator("table.log tbody tr td:nth-child(8)")
    assert {vendor_col.nth(i).inner_text() for i in range(vendor_col.count())} == {"yes"}
    page.locator("table.log tbody tr td:last-child a").first.click()  # the Seq link: the forensic record
    page.wait_for_url("**/row/*")
    seq = int(page.url.rsplit("/", 1)[1])
    assert "Row hash" in page.content()

    page.goto(demo.url + f"/row/{seq}/proof")
    assert "is leaf" in page.inner_text("#proof-ok")
    page.screenshot(path=os.path.join(SHOTS, "prove-row.png"), full_page=True)
    with page.expect_download() as download:
        page.click("#proof-download")
    assert download.value.suggested_filename == f"row-{seq}-proof.json"
    saved = tmp_path / "proof.json"
    download.value.save_as(saved)
    proof = json.loads(saved.read_text())
    path = [bytes.fromhex(h) for h in proof["inclusion_proof"]]
    assert merkle.verify_inclusion(seq - 1, proof["tree_size"], bytes.fromhex(proof["leaf_hash"]), path,
                                   bytes.fromhex(proof["root_hash"]))
    assert not errors, errors  # no CSP violations or script errors on the way
    page.close()


def test_auditor_downloads_a_signed_bundle(browser, demo, tmp_path):
    from mit_network_audit.journal import export
    from mit_network_audit.journal.keys import load_signing_key

    page = login(browser, demo, "auditor")
    page.goto(demo.url + "/export")
    assert "rows 1.." in page.inner_text("#newest-checkpoint")
    page.screenshot(path=os.path.join(SHOTS, "signed-export.png"), full_page=True)
    with page.expect_download() as download:
        page.click("#export-24h")
    assert download.value.suggested_filename == "bundle-last-24h.zip"
    saved = tmp_path / "bundle.zip"
    download.value.save_as(saved)
    result = export.verify_bundle(str(saved), load_signing_key().verifier.vkey)
    assert result.ok and result.rows >= 10, result.problems
    page.close()


def test_viewer_is_refused_groups_and_proofs(browser, demo):
    page = login(browser, demo, "viewer")
    for path in ("/log/groups", "/row/1/proof", "/export"):
        response = page.goto(demo.url + path)
        assert response.status == 403, path
    page.goto(demo.url + "/report")
    assert page.locator("nav a", has_text="Audit Log").count() == 0
    page.close()


def test_officer_sees_the_registry_navigation(browser, demo):
    page = login(browser, demo, "officer")
    page.goto(demo.url + "/log/groups")
    assert page.locator("nav[aria-label='more pages'] a", has_text="Groups").count() == 1
    page.goto(demo.url + "/row/999999/proof")
    assert "no row 999999" in page.inner_text("#proof-problem")
    page.close()
