"""The Trust Report rests on a checked record: `report` re-checks the chain, the checkpoints and the
rollup it reads before it gives a verdict, and says so when told not to (DESIGN §5: Alarm when the
chain or a checkpoint does not verify)."""

import json
import os
import re
import sqlite3
import time

import jsonschema
import pytest
import requests
from click.testing import CliRunner

from mit_network_audit.cli import main
from mit_network_audit.interceptor.event import NetEvent, internal_event
from mit_network_audit.journal import open_store
from mit_network_audit.report import integrity
from mit_network_audit.report.trust import build_report
from web_live import LiveDashboard

SCHEMA = json.load(open(os.path.join(os.path.dirname(os.path.dirname(__file__)), "docs", "report-schema.json")))


def provider_call(**kw):
    base = internal_event("x").as_dict()
    base.update(direction="outbound", channel="requests", protocol="https", method="POST", host="api.openai.com",
                port=443, path="/v1/chat", addon="llm_assistant", dest_class="provider", component="openai",
                vendor_bound=False, req_bytes=800)
    base.update(kw)
    return NetEvent(**base)


def report(dsn, *extra):
    result = CliRunner().invoke(main, ["report", "--db", dsn, "--since", "1h", "--format", "json", *extra])
    data = json.loads(result.output)
    jsonschema.validate(data, SCHEMA)
    return result.exit_code, data


def raw(dsn):
    """A connection that can do what the journal's owner could: DDL included."""
    if dsn.startswith("sqlite:///"):
        conn = sqlite3.connect(dsn[len("sqlite:///"):], isolation_level=None)
        conn.execute("DROP TRIGGER egress_log_no_update")
        return conn
    import psycopg

    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute("ALTER TABLE egress_log DISABLE TRIGGER ALL")
    return conn


def test_report_checks_the_chain_by_default_and_says_so_when_told_not_to(any_dsn):
    store = open_store(any_dsn)
    store.append([internal_event("start"), *(provider_call() for _ in range(5))])
    store.close()
    code, data = report(any_dsn)
    assert code == 0 and data["verdict"] == "all_clear"
    assert data["chain"]["checked"] and data["chain"]["ok"] and data["chain"]["rows_checked"] == 6
    assert "chain_intact" in {x["rule"] for x in data["lines"]}

    conn = raw(any_dsn)
    conn.execute("UPDATE egress_log SET req_bytes = 80 WHERE chain_seq = 4")  # make an upload look small
    conn.close()
    code, data = report(any_dsn)
    assert code == 2 and data["verdict"] == "alarm"
    chain = next(x for x in data["lines"] if x["rule"] == "chain")
    assert chain["level"] == "alarm" and chain["chain_seqs"] == [4]
    assert data["chain"] == {**data["chain"], "checked": True, "ok": False, "first_bad_seq": 4}

    code, data = report(any_dsn, "--no-verify")  # the old default: the rows' word for it
    assert code == 0 and data["verdict"] == "all_clear"
    assert data["chain"]["checked"] is False and data["chain"]["ok"] is None
    assert "chain_not_checked" in {x["rule"] for x in data["lines"]}


def test_a_doctored_rollup_is_an_alarm_not_a_quieter_report(sqlite_dsn):
    """The report reads the rollup, which is not hash-chained: deleting the customer-list upload's
    rollup key would hide it from every rule.  The totals check catches that."""
    store = open_store(sqlite_dsn)
    store.append([provider_call(), provider_call(host="upload.mit-vendor.example", vendor_bound=True,
                                                 dest_class="vendor", component=None, addon="crm_export_plus",
                                                 req_bytes=40_000)])
    store.close()
    code, data = report(sqlite_dsn)
    assert code == 2 and "vendor_endpoint_outside_catalogue" in {x["rule"] for x in data["lines"]}
    conn = sqlite3.connect(sqlite_dsn[len("sqlite:///"):], isolation_level=None)
    conn.execute("DELETE FROM mna_rollup WHERE addon = 'crm_export_plus'")
    conn.execute("DELETE FROM mna_rollup_day WHERE addon = 'crm_export_plus'")
    conn.close()
    code, data = report(sqlite_dsn)
    rules = {x["rule"]: x for x in data["lines"]}
    assert code == 2 and "vendor_endpoint_outside_catalogue" not in rules  # the rules were fooled...
    assert rules["rollup"]["level"] == "alarm"  # ...the verdict was not
    assert CliRunner().invoke(main, ["verify", "--db", sqlite_dsn]).exit_code == 1


def test_a_new_journal_without_signing_keys_is_not_flagged_twice(sqlite_dsn):
    """verify_trust says "no key configured" from the first row; the report's own checkpoint rule
    waits a day (a new install's grace period), so the integrity checks do not override it."""
    store = open_store(sqlite_dsn)
    store.append([provider_call()])
    checked = integrity.check(store)
    assert any(c["name"] == "checkpoints" and c["level"] == "review" for c in checked.checks)
    assert checked.report_checks() == []
    rep = build_report(store, 0, integrity=checked)
    assert rep.verdict == "all_clear" and rep.chain["checked"] and rep.chain["checked_at_us"] == checked.checked_at_us


@pytest.mark.parametrize("tamper", ["chain", "checkpoint"])
def test_integrity_failures_become_alarm_lines_with_evidence(sqlite_dsn, tamper):
    store = open_store(sqlite_dsn)
    store.append([provider_call() for _ in range(3)])
    checked = integrity.check(store)
    if tamper == "chain":
        checked = integrity.Integrity(
            integrity.VerifyResult(False, 1, 1, 3, 2, "link_broken", "row 2: prev_hash does not match"),
            checked.checks, checked.checked_at_us)
    else:
        checked = integrity.Integrity(checked.chain, (*checked.checks, {
            "name": "journal vs checkpoint", "ok": False, "level": "alarm", "message": "tail truncated"}),
            checked.checked_at_us)
    rep = build_report(store, 0, integrity=checked)
    assert rep.verdict == "alarm"
    line = next(x for x in rep.lines if x.level == "alarm")
    assert (line.rule, line.chain_seqs) == (("chain", [2]) if tamper == "chain" else ("journal vs checkpoint", []))


def test_the_dashboard_shows_the_newest_check_and_an_auditor_re_checks_at_once(tmp_path):
    """Real uvicorn + requests: the Trust Report carries the chain check it rests on; a change made
    behind the dashboard's back turns it into an alarm as soon as an auditor re-checks (and, without
    one, at the next background check: ``verify.interval_s``)."""
    dsn = f"sqlite:///{tmp_path}/web.db"
    store = open_store(dsn)
    store.append([provider_call() for _ in range(4)])
    store.close()
    server = LiveDashboard(dsn)
    try:
        viewer = {"Authorization": f"Bearer {server.tokens['viewer']}"}
        first = requests.get(server.url + "/api/report", params={"since": "24h"}, headers=viewer).json()
        jsonschema.validate(first, SCHEMA)
        assert first["verdict"] == "all_clear" and first["chain"]["checked"] and first["chain"]["ok"]
        page = requests.get(server.url + "/report", headers=viewer).text
        assert 'data-rule="chain_intact"' in page

        conn = raw(dsn)
        conn.execute("UPDATE egress_log SET host = 'elsewhere.example' WHERE chain_seq = 3")
        conn.close()
        again = requests.get(server.url + "/api/report", params={"since": "24h"}, headers=viewer).json()
        assert again["chain"]["checked_at_us"] == first["chain"]["checked_at_us"]  # the same, dated result

        auditor = server.login("auditor")
        csrf = re.search(r'name="csrf" value="([^"]*)"', auditor.get(server.url + "/verify").text).group(1)
        job = auditor.post(server.url + "/api/verify", data={"csrf": csrf}).json()["job"]
        deadline = time.time() + 30
        while (status := auditor.get(server.url + f"/api/verify/{job}").json())["result"] is None:
            assert time.time() < deadline
            time.sleep(0.05)
        assert status["result"]["first_bad_seq"] == 3
        after = requests.get(server.url + "/api/report", params={"since": "24h"}, headers=viewer).json()
        assert after["verdict"] == "alarm" and after["chain"] == {**after["chain"], "ok": False, "first_bad_seq": 3}
        assert after["chain"]["checked_at_us"] > first["chain"]["checked_at_us"]
        page = requests.get(server.url + "/report", headers=viewer).text
        assert 'class="verdict alarm"' in page and 'data-rule="chain"' in page
    finally:
        server.stop()


def test_a_big_journal_is_re_checked_when_asked_and_the_report_says_so(sqlite_dsn, monkeypatch):
    """By default `report` re-checks journals of up to AUTO_ROWS rows (about a second); above it
    the verdict comes at rollup speed, and says the chain was not re-checked and how to."""
    store = open_store(sqlite_dsn)
    store.append([provider_call() for _ in range(6)])
    store.close()
    monkeypatch.setattr(integrity, "AUTO_ROWS", 5)
    code, data = report(sqlite_dsn)
    line = next(x for x in data["lines"] if x["rule"] == "chain_not_checked")
    assert code == 0 and data["chain"]["checked"] is False and "report --verify" in line["message"]
    code, data = report(sqlite_dsn, "--verify")
    assert data["chain"]["checked"] and data["chain"]["rows_checked"] == 6
