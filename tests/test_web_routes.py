"""Every route of the complete dashboard (core + registry pages) x every role, by cookie and by token.

The route table below must list exactly the operations the app serves (checked against its OpenAPI
schema), so a page added later cannot go live without someone deciding which role it needs.  Also:
grouped Audit Log totals equal the journal's, "prove this row" proofs verify offline, and hostile
values render inert on the registry pages.
"""

from __future__ import annotations

import re

import pytest
import requests

from mit_network_audit.interceptor.event import NetEvent, internal_event
from mit_network_audit.journal import RowFilter, checkpoint, export, merkle, open_store
from mit_network_audit.journal.canonical import leaf_hash
from web_live import LiveDashboard, signing_env

HOSTILE = "<script>alert(1)</script>\"'><img src=x onerror=alert(2)>\u202egnp.exe"
N_ROWS = 150

# (method, path) -> least role, or "public"
ROUTES = {
    ("GET", "/login"): "public", ("POST", "/login"): "public", ("GET", "/healthz"): "public",
    ("GET", "/"): "viewer", ("GET", "/report"): "viewer", ("GET", "/summary"): "viewer",
    ("GET", "/api/report"): "viewer", ("GET", "/api/openapi.json"): "viewer", ("POST", "/logout"): "viewer",
    ("GET", "/log"): "auditor", ("GET", "/log/groups"): "auditor", ("GET", "/api/groups"): "auditor",
    ("GET", "/row/{seq}"): "auditor", ("GET", "/row/{seq}/proof"): "auditor",
    ("GET", "/api/rows"): "auditor", ("GET", "/api/rows/{seq}"): "auditor",
    ("GET", "/api/rows/{seq}/proof"): "auditor", ("GET", "/verify"): "auditor",
    ("POST", "/api/verify"): "auditor", ("GET", "/api/verify/{job}"): "auditor",
    ("GET", "/export.jsonl"): "auditor", ("GET", "/export"): "auditor", ("POST", "/export/bundle"): "auditor",
    ("GET", "/forensic"): "officer", ("POST", "/forensic/capture"): "officer", ("GET", "/api/forensic"): "officer",
    ("GET", "/forensic/body/{ref}"): "officer", ("POST", "/forensic/body/{ref}"): "officer",
    ("POST", "/api/forensic/bodies/{ref}/read"): "officer",
    ("GET", "/settings"): "officer", ("POST", "/settings"): "officer",
    ("GET", "/api/settings"): "officer", ("POST", "/api/settings"): "officer",
}
RANK = {"anonymous": -1, "viewer": 0, "auditor": 1, "officer": 2}
SAMPLE = {"{seq}": "3", "{job}": "no-such-job"}


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    directory = tmp_path_factory.mktemp("webroutes")
    dsn = f"sqlite:///{directory}/web.db"
    with signing_env(str(directory)):
        store = open_store(dsn)
        base = internal_event("x").as_dict()
        rows = []
        for i in range(N_ROWS):
            hostile = i in (7, 8, 9, 11)
            rows.append({**base, "event_id": f"{i:032x}", "direction": "inbound" if i % 5 == 4 else "outbound",
                         "channel": HOSTILE if i == 11 else "requests", "method": "POST",
                         "host": HOSTILE if i == 7 else ("licence.mit-vendor.example" if i % 3 == 0 else "api.openai.com"),
                         "addon": HOSTILE if i == 8 else "crm_export_plus", "path": "/" + HOSTILE if i == 9 else "/v1",
                         "vendor_bound": i % 3 == 0 and not hostile, "dest_class": "vendor" if i % 3 == 0 else "provider",
                         "component": "mit-licence" if i % 3 == 0 else "openai", "req_bytes": 100 + i,
                         "outcome": "error" if i % 10 == 0 else "ok"})
        store.append([NetEvent.from_dict(r) for r in rows[:-10]])
        checkpoint.make_checkpoint(store)  # rows 1..140 are provable; the last 10 are newer
        store.append([NetEvent.from_dict(r) for r in rows[-10:]])
        store.close()
        server = LiveDashboard(dsn)
        yield server
        server.stop()


def _csrf(session: requests.Session, url: str) -> str:
    html = session.get(url + "/verify").text
    m = re.search(r'name="csrf" value="([^"]*)"', html)
    return m.group(1) if m else ""


def test_route_table_covers_every_operation(live):
    schema = requests.get(live.url + "/api/openapi.json",
                          headers={"Authorization": f"Bearer {live.tokens['viewer']}"}).json()
    served = {(method.upper(), path) for path, ops in schema["paths"].items() for method in ops}
    assert served == set(ROUTES), f"new or removed routes: decide their role in ROUTES: {served ^ set(ROUTES)}"


@pytest.mark.parametrize("via", ["cookie", "token"])
@pytest.mark.parametrize("role", ["anonymous", "viewer", "auditor", "officer"])
def test_authorization_matrix_every_route(live, role, via):
    if role == "anonymous":
        session = requests.Session()
    elif via == "cookie":
        session = live.login(role)
    else:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {live.tokens[role]}"
    csrf = _csrf(session, live.url) if role in ("auditor", "officer") and via == "cookie" else ""
    for (method, path), least in ROUTES.items():
        if path in ("/login", "/logout"):
            continue  # login is public by design; logout is exercised below
        url = live.url + path.replace("{seq}", SAMPLE["{seq}"]).replace("{job}", SAMPLE["{job}"])
        if method == "POST":
            r = session.post(url, data={"csrf": csrf}, allow_redirects=False)
        else:
            r = session.get(url, allow_redirects=False)
        label = (role, via, method, path, r.status_code)
        if least == "public" or RANK[role] >= RANK[least]:
            assert r.status_code not in (401, 403) and r.status_code < 500, label
            assert not (r.status_code == 303 and r.headers.get("location") == "/login"), label
        elif role == "anonymous":
            expected = 401 if path.startswith("/api/") else 303
            assert r.status_code == expected, label
            if expected == 303:
                assert r.headers["location"] == "/login", label
        else:
            assert r.status_code == 403, label


def test_forged_and_removed_tokens_are_refused(live):
    for token in ("mna_forged", "", live.tokens["auditor"] + "x"):
        r = requests.get(live.url + "/api/groups", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401


def test_groups_totals_equal_the_journal(live):
    auth = {"Authorization": f"Bearer {live.tokens['auditor']}"}
    store = open_store(live.dsn)
    expected = {
        "all": store.count(RowFilter()) - store.count(RowFilter(direction="internal")),
        "vendor": store.count(RowFilter(vendor_bound=True)), "outbound": store.count(RowFilter(direction="outbound")),
        "inbound": store.count(RowFilter(direction="inbound")), "errors": store.count(RowFilter(outcome="error")),
    }
    for kind, count in expected.items():
        for by in ("addon", "host", "channel"):
            data = requests.get(live.url + "/api/groups", params={"by": by, "filter": kind, "since": "24h"},
                                headers=auth).json()
            assert sum(g["calls"] for g in data["groups"]) == count, (kind, by)
    errors = requests.get(live.url + "/api/groups", params={"by": "host", "filter": "errors", "q": "OPENAI"},
                          headers=auth).json()["groups"]
    assert [g["value"] for g in errors] == ["api.openai.com"]
    bad = requests.get(live.url + "/api/groups", params={"by": "path"}, headers=auth)
    assert bad.status_code == 400


def test_group_links_open_the_filtered_log(live):
    session = live.login("auditor")
    html = session.get(live.url + "/log/groups?by=host&filter=vendor").text
    link = re.search(r'href="(/log\?filter=vendor&amp;host=licence[^"]+)"', html).group(1).replace("&amp;", "&")
    log = session.get(live.url + link).text
    assert "licence.mit-vendor.example" in log and "api.openai.com" not in log


def test_prove_this_row_verifies_offline(live):
    r = requests.get(live.url + "/api/rows/5/proof?download=true",
                     headers={"Authorization": f"Bearer {live.tokens['auditor']}"})
    assert r.status_code == 200 and r.headers["content-disposition"] == 'attachment; filename="row-5-proof.json"'
    proof = r.json()
    # 1. the leaf is the row's canonical bytes
    assert leaf_hash(proof["canonical"].encode()).hex() == proof["leaf_hash"] == proof["row"]["leaf_hash"]
    # 2. the path leads to the root, 3. the root is the one signed in the checkpoint
    path = [bytes.fromhex(h) for h in proof["inclusion_proof"]]
    assert merkle.verify_inclusion(4, proof["tree_size"], bytes.fromhex(proof["leaf_hash"]), path,
                                   bytes.fromhex(proof["root_hash"]))
    from mit_network_audit.journal.keys import Verifier

    verifier = Verifier.parse(proof["public_key"])
    cp = checkpoint.open_note(proof["checkpoint"], verifier)
    assert export.verify_proof(proof, verifier)  # the same document `mit-network-audit prove` writes
    assert cp.root.hex() == proof["root_hash"] and cp.size == proof["tree_size"] >= N_ROWS - 10
    # a forged leaf does not verify
    assert not merkle.verify_inclusion(4, proof["tree_size"], bytes(32), path, cp.root)


def test_prove_explains_what_it_cannot_prove(live):
    store = open_store(live.dsn)
    fresh = store.append([internal_event("heartbeat")])[0].chain_seq  # newer than any checkpoint
    store.close()
    session = live.login("auditor")
    newer = session.get(live.url + f"/row/{fresh}/proof")
    assert newer.status_code == 409 and "newer than the newest checkpoint" in newer.text
    assert session.get(live.url + "/row/999999/proof").status_code == 404
    assert session.get(live.url + f"/api/rows/{fresh}/proof").status_code == 409


def test_hostile_values_inert_on_registry_pages(live):
    session = live.login("auditor")
    for route in ("/log/groups?by=host", "/log/groups?by=addon", "/log/groups?by=channel", "/row/8/proof",
                  "/row/9/proof", "/row/12/proof", "/log/groups?by=host&q=%3Cscript%3E"):
        html = session.get(live.url + route).text
        assert "<script>alert" not in html and "<img src=x" not in html, route
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in session.get(live.url + "/log/groups?by=addon").text


def test_registry_pages_send_security_headers(live):
    session = live.login("auditor")
    r = session.get(live.url + "/log/groups")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer" and r.headers["server-timing"].startswith("app;dur=")


def test_signed_bundle_download_verifies_offline(live, tmp_path):
    from mit_network_audit.journal.keys import load_signing_key

    auth = {"Authorization": f"Bearer {live.tokens['auditor']}"}
    r = requests.post(live.url + "/export/bundle", data={"since": "24h"}, headers=auth)
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip", r.text[:300]
    assert r.headers["content-disposition"].startswith('attachment; filename="bundle-last-24h.zip"')
    bundle = tmp_path / "b.zip"
    bundle.write_bytes(r.content)
    result = export.verify_bundle(str(bundle), load_signing_key().verifier.vkey)
    assert result.ok and result.rows >= N_ROWS and result.rows == int(r.headers["x-bundle-rows"]), result.problems
    # tampering with one byte of the rows is caught
    import zipfile

    files = export.read_bundle(str(bundle))
    files["rows.jsonl"] = files["rows.jsonl"].replace(b"api.openai.com", b"api.openai.org", 1)
    forged = tmp_path / "forged.zip"
    with zipfile.ZipFile(forged, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    assert not export.verify_bundle(str(forged), load_signing_key().verifier.vkey).ok


def test_bundle_form_needs_csrf_and_a_sane_period(live):
    session = live.login("auditor")
    assert session.post(live.url + "/export/bundle", data={"since": "24h", "csrf": "forged"}).status_code == 403
    csrf = _csrf(session, live.url)
    assert session.post(live.url + "/export/bundle", data={"since": "2h", "csrf": csrf}).status_code == 400
    assert session.post(live.url + "/export/bundle", data={"start": "2026-13-01", "csrf": csrf}).status_code == 400
    empty = session.post(live.url + "/export/bundle", data={"start": "2001-01-01", "end": "2001-01-02",
                                                             "csrf": csrf})
    assert empty.status_code == 409 and "no rows in that period" in empty.text
    page = session.get(live.url + "/export").text
    assert "Newest checkpoint" in page and "rows 1.." in page
