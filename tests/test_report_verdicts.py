"""Every verdict rule: a journal that triggers it and one that does not; rollup == journal."""

import json
import os
import subprocess
import sys
from dataclasses import replace

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mit_network_audit.interceptor.event import internal_event, new_event_id, now_us
from mit_network_audit.journal import open_store
from mit_network_audit.journal.verify import VerifyResult
from mit_network_audit.report import rollup
from mit_network_audit.report.catalogue import load_catalogue
from mit_network_audit.report.trust import build_report

ROOT = os.path.dirname(os.path.dirname(__file__))
SCHEMA = json.load(open(os.path.join(ROOT, "docs", "report-schema.json")))
CAT = load_catalogue()


def row(**kw):
    base = internal_event("x").as_dict()
    base.update(direction="outbound", channel="requests", method="GET", host="api.openai.com", addon="llm_assistant",
                dest_class="provider", component="openai", vendor_bound=False, req_bytes=100, detail=None)
    base.update(kw)
    base["event_id"] = new_event_id()
    from mit_network_audit.interceptor.event import NetEvent
    return NetEvent.from_dict(base)


LICENCE = dict(host="licence.mit-vendor.example", addon="mit_licence", vendor_bound=True, dest_class="vendor",
               component="mit-licence", method="POST", req_bytes=300)
CASES = {
    "vendor_endpoint_outside_catalogue": (
        [row(**{**LICENCE, "host": "upload.mit-vendor.example", "component": None})], [row(**LICENCE)]),
    "vendor_method_not_allowed": ([row(**{**LICENCE, "method": "PUT"})], [row(**LICENCE)]),
    "vendor_request_too_large": ([row(**{**LICENCE, "req_bytes": 50_000, "addon": "crm_export_plus"})],
                                 [row(**{**LICENCE, "req_bytes": 2048})]),
    "auditor_network_call": ([row(addon="mit_network_audit")], [internal_event("heartbeat")]),
    "events_lost": ([internal_event("gap", detail='{"lost": 7}')], [internal_event("heartbeat")]),
    "capture_bypassed": ([internal_event("tamper", detail='{"patch": "x"}')], [row()]),
    "bypassing_connections": ([row(channel="audit", host="127.0.0.1", dest_class="local")],
                              [row(channel="socket", host="127.0.0.1", dest_class="local")]),
    "unknown_destinations": ([row(host="tracker.example.net", dest_class="unknown", component=None)],
                             [row(host="10.1.1.1", dest_class="own", component="private-networks")]),
    "channels_disabled": ([internal_event("start", detail='{"channels": [], "disabled": ["smtp"]}')],
                          [internal_event("start", detail='{"channels": [], "disabled": []}')]),
    "process_went_silent": ([replace(internal_event("heartbeat", detail="{}"), logged_at_us=now_us() - 3600 * 10**6)],
                            [replace(internal_event("stop", detail="{}"), logged_at_us=now_us() - 3600 * 10**6)]),
}
ALARMS = {"vendor_endpoint_outside_catalogue", "vendor_method_not_allowed", "vendor_request_too_large",
          "auditor_network_call"}


def report_for(dsn, events, **kw):
    store = open_store(dsn)
    store.append([row(), *events])  # a normal provider call in every journal
    rep = build_report(store, now_us() - 24 * 3600 * 10**6, catalogue=CAT, **kw)
    jsonschema.validate(rep.as_dict(), SCHEMA)
    return rep


@pytest.mark.parametrize("rule", sorted(CASES))
def test_rule_triggers_and_does_not(tmp_path, rule):
    bad, good = CASES[rule]
    rep = report_for(f"sqlite:///{tmp_path}/bad.db", bad)
    line = next(x for x in rep.lines if x.rule == rule)
    assert rep.verdict == ("alarm" if rule in ALARMS else "review")
    assert line.level == ("alarm" if rule in ALARMS else "review")
    assert line.chain_seqs and all(s >= 2 for s in line.chain_seqs)  # evidence names the offending rows
    rep_ok = report_for(f"sqlite:///{tmp_path}/good.db", good)
    assert rule not in {x.rule for x in rep_ok.lines}


def test_all_clear_and_chain_failure(tmp_path):
    rep = report_for(f"sqlite:///{tmp_path}/ok.db", [row(**LICENCE)])
    assert rep.verdict == "all_clear" and rep.lines[0].rule == "all_clear"
    broken = VerifyResult(False, 5, 1, 9, 4, "hash_mismatch", "row 4 changed")
    rep = report_for(f"sqlite:///{tmp_path}/bad.db", [], verify_result=broken)
    assert rep.verdict == "alarm" and rep.lines[0].rule == "chain" and rep.lines[0].chain_seqs == [4]


def test_forensic_capture_on_is_review(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/f.db")
    store.meta_set("setting.forensic.enabled", "true")
    store.close()
    rep = report_for(f"sqlite:///{tmp_path}/f.db", [])
    assert [x.rule for x in rep.lines if x.level != "info"] == ["forensic_capture_on"]


def test_postgres_report(pg_dsn):
    rep = report_for(pg_dsn, CASES["vendor_request_too_large"][0] + CASES["events_lost"][0])
    assert rep.verdict == "alarm"
    assert {x.rule for x in rep.lines if x.level != "info"} == {"vendor_request_too_large", "events_lost"}


journal_rows = st.lists(st.builds(
    lambda d, ch, host, addon, vb, out, rb, age: row(direction=d, channel=ch, host=host, addon=addon, vendor_bound=vb,
                                                    outcome=out, req_bytes=rb, logged_at_us=now_us() - age),
    st.sampled_from(["inbound", "outbound", "internal"]), st.sampled_from(["requests", "smtp", "socket"]),
    st.sampled_from(["a.example", "b.example", None]), st.sampled_from(["m1", "m2", None]), st.booleans(),
    st.sampled_from(["ok", "error"]), st.integers(0, 10**6), st.integers(0, 72 * 3600 * 10**6)),
    min_size=1, max_size=60)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(batches=st.lists(journal_rows, min_size=1, max_size=4))
def test_rollup_equals_journal(tmp_path_factory, batches):
    store = open_store(f"sqlite:///{tmp_path_factory.mktemp('r')}/r.db")
    for batch in batches:  # incremental catch-up between batches
        store.append(batch)
        rollup.catch_up(store, chunk=7)
    check = rollup.consistency(store)
    assert check["ok"], check
    total = store.execute_raw("SELECT sum(n), sum(req_bytes) FROM mna_rollup")[0]
    journal = store.execute_raw("SELECT count(*), sum(req_bytes) FROM egress_log")[0]
    assert tuple(total) == tuple(journal)
    before = store.execute_raw("SELECT * FROM mna_rollup ORDER BY 1,2,3,4,5,6,7,8,9,10")
    rollup.rebuild(store)
    assert store.execute_raw("SELECT * FROM mna_rollup ORDER BY 1,2,3,4,5,6,7,8,9,10") == before


def test_demo_end_to_end_raises_the_alarm(tmp_path):
    dsn = f"sqlite:///{tmp_path}/demo.db"
    exe = [sys.executable, "-m", "mit_network_audit.cli"]
    out = subprocess.run([*exe, "demo", "--db", dsn], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    assert "ALARM" in out.stdout and "crm_export_plus" in out.stdout
    rep = subprocess.run([*exe, "report", "--db", dsn, "--since", "1h", "--format", "json"], capture_output=True,
                         text=True, timeout=60)
    assert rep.returncode == 2
    data = json.loads(rep.stdout)
    jsonschema.validate(data, SCHEMA)
    alarm = next(x for x in data["lines"] if x["rule"] == "vendor_request_too_large")
    assert alarm["details"]["addon"] == "crm_export_plus"
    store = open_store(dsn)
    evidence = store.get(alarm["chain_seqs"][0]).event
    assert evidence.addon == "crm_export_plus" and evidence.vendor_bound and evidence.req_bytes > 2048
    addons = {r.event.addon for r in store.rows(limit=1000)}
    assert {"mit_licence", "llm_assistant", "acme_mail_sync", "crm_export_plus", "demo_shop"} <= addons


def test_inbound_connections_are_counted_apart_from_requests(tmp_path):
    """The socket backstop's inbound rows (a listener no HTTP layer covers) are connections, per module that
    opened the listener; they raise no rule of their own and are said in the rendered report."""
    from rich.console import Console

    from mit_network_audit.report.render import render

    served = row(direction="inbound", channel="wsgi", method="GET", host="shop.example", addon="shop",
                 dest_class="local", component=None, req_bytes=10, resp_bytes=2000)
    accepted = [row(direction="inbound", channel="socket", method=None, protocol="tcp", host="127.0.0.1",
                    addon="acme_connector", dest_class="local", component=None, req_bytes=40, resp_bytes=7)
                for _ in range(3)]
    # a module name is the program's text: markup in it is shown, never read ("[/b]" ended the report)
    accepted.append(row(direction="inbound", channel="socket", method=None, protocol="tcp", host="127.0.0.1",
                        addon="[/b]evil", dest_class="local", component=None, req_bytes=1, resp_bytes=0))
    rep = report_for(f"sqlite:///{tmp_path}/in.db", [served, *accepted])
    inbound = rep.summary["inbound"]
    assert (inbound["requests"], inbound["connections"]) == (1, 4)
    assert inbound["listeners"] == {"acme_connector": {"connections": 3, "req_bytes": 120},
                                    "[/b]evil": {"connections": 1, "req_bytes": 1}}
    assert rep.summary["totals"]["inbound"] == 5 and rep.verdict == "all_clear"
    console = Console(record=True, width=200)
    render(rep, console)
    text = console.export_text()
    assert "Inbound: 1 request(s) served." in text
    assert ("4 TCP connection(s) accepted outside any HTTP layer, on listeners opened by [/b]evil (1), "
            "acme_connector (3)") in text


@pytest.mark.parametrize("content, says", [
    ("not [toml", "TOMLDecodeError"),
    ('[[component]]\nclass = "vendor"\n', "missing key 'name'"),
    ('[[component]]\nname = "x"\ncidrs = ["999.1.1.1/8"]\n', "does not appear to be an IPv4 or IPv6 network"),
])
def test_report_with_a_bad_catalogue_is_one_line_and_exit_2(tmp_path, content, says):
    from click.testing import CliRunner

    from mit_network_audit.cli import main

    dsn = f"sqlite:///{tmp_path}/j.db"
    open_store(dsn).append([internal_event("start")])
    bad = tmp_path / "mine.toml"
    bad.write_text(content)
    for args, env in ((["--catalogue", str(bad)], {}), ([], {"MNA_CATALOGUE": str(tmp_path / "absent.toml")})):
        result = CliRunner().invoke(main, ["report", "--db", dsn, *args], env=env)
        assert result.exit_code == 2, result.output
        assert result.output.startswith("error: catalogue ") and "Traceback" not in result.output, result.output
        assert not isinstance(result.exception, ValueError | OSError)
    result = CliRunner().invoke(main, ["report", "--db", dsn, "--catalogue", str(bad)])
    assert str(bad) in result.output and says in result.output


@pytest.mark.parametrize("value", ["abc", "nan", "-1", "inf", ""])
def test_a_bad_checkpoint_stale_setting_counts_as_the_default(tmp_path, monkeypatch, value):
    """$MNA_CHECKPOINT_STALE_S that is not a positive number of seconds ended every report in a
    ValueError; it counts as 24 h: a journal two days old and never signed is still flagged."""
    monkeypatch.setenv("MNA_CHECKPOINT_STALE_S", value)
    store = open_store(f"sqlite:///{tmp_path}/j.db")
    store.append([replace(row(), logged_at_us=now_us() - 2 * 86_400 * 10**6), row()])
    rep = build_report(store, now_us() - 3 * 86_400 * 10**6, catalogue=CAT)
    assert "checkpoint_missing" in {line.rule for line in rep.lines}, rep.lines


def test_events_lost_sums_the_gap_rows(any_dsn):
    store = open_store(any_dsn)
    store.append([row(), internal_event("gap", detail='{"lost": 7, "reasons": ["queue_full"]}'),
                  internal_event("gap", detail='{"in_flight": 1, "lost": 4, "lost_internal": 2, "reasons": ["x"]}')])
    rep = build_report(store, now_us() - 3600 * 10**6, catalogue=CAT)
    assert [line.count for line in rep.lines if line.rule == "events_lost"] == [11]


def test_a_gap_row_edited_into_bad_json_is_an_alarm_not_an_error(any_dsn):
    from click.testing import CliRunner

    from mit_network_audit.cli import main

    store = open_store(any_dsn)
    store.append([row(), internal_event("gap", detail='{"lost": 7, "reasons": ["queue_full"]}'),
                  internal_event("gap", detail='{"in_flight": 1, "lost": 4, "lost_internal": 2, "reasons": ["x"]}')])
    store.close()
    if any_dsn.startswith("postgresql"):
        import psycopg

        conn = psycopg.connect(any_dsn, autocommit=True)
        conn.execute("ALTER TABLE egress_log DISABLE TRIGGER ALL")
        p = "%s"
    else:
        import sqlite3

        conn = sqlite3.connect(any_dsn[len("sqlite:///"):], isolation_level=None)
        conn.execute("DROP TRIGGER egress_log_no_update")
        p = "?"
    conn.execute(f"UPDATE egress_log SET detail = '{{' WHERE chain_seq = {p}", (2,))  # not JSON any more
    conn.close()  # edited before any rollup read the row
    result = CliRunner().invoke(main, ["report", "--db", any_dsn, "--format", "json", "--since", "1h"])
    assert result.exit_code == 2, result.output  # it failed in the rollup: 'malformed JSON'
    report = json.loads(result.output)
    assert report["verdict"] == "alarm" and any(line["rule"] == "chain" for line in report["lines"]), report


def test_a_health_row_edited_into_a_json_array_is_an_alarm_not_a_traceback(tmp_path):
    import sqlite3

    from click.testing import CliRunner

    from mit_network_audit.cli import main

    dsn = f"sqlite:///{tmp_path}/j.db"
    open_store(dsn).append([internal_event("start", detail='{"channels": []}'), internal_event("heartbeat", detail="{}")])
    conn = sqlite3.connect(dsn[len("sqlite:///"):], isolation_level=None)
    conn.execute("DROP TRIGGER egress_log_no_update")
    conn.execute("UPDATE egress_log SET detail = '[1]' WHERE chain_seq = 2")  # AttributeError: 'list' ... 'get'
    conn.close()
    result = CliRunner().invoke(main, ["report", "--db", dsn, "--format", "json"])
    assert result.exit_code == 2 and json.loads(result.output)["verdict"] == "alarm", result.output
