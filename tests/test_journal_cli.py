"""`log`, `show`, `verify` against real journals: filters, formats, exit codes, helpful errors."""

import json
import sqlite3

from click.testing import CliRunner

from mit_network_audit.cli import main
from mit_network_audit.interceptor.event import NetEvent, internal_event
from mit_network_audit.journal import open_store
from mit_network_audit.journal.schema import COLUMNS


def outbound(host, **kw):
    base = internal_event("x").as_dict()
    base.update(direction="outbound", channel="requests", protocol="https", method="GET", host=host, port=443,
                path="/v1/x", vendor_bound=kw.pop("vendor_bound", False), addon=kw.pop("addon", "shop"), **kw)
    return NetEvent(**base)


def filled(dsn):
    store = open_store(dsn)
    store.append([internal_event("start"), outbound("api.acme.example", vendor_bound=True, addon="acme_connector"),
                  outbound("api.openai.com", addon="llm_assistant", outcome="error", error="ConnectionError")])
    store.close()
    return dsn


def run(*args):
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_log_jsonl_has_every_column_and_filters_work(any_dsn):
    dsn = filled(any_dsn)
    code, out = run("log", "--db", dsn, "--format", "jsonl")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["chain_seq"] for r in rows] == [3, 2, 1]  # newest first
    assert all(set(COLUMNS) <= set(r) for r in rows)
    code, out = run("log", "--db", dsn, "--format", "jsonl", "--vendor-bound")
    assert [json.loads(line)["host"] for line in out.splitlines()] == ["api.acme.example"]
    code, out = run("log", "--db", dsn, "--format", "json", "--outcome", "error", "--direction", "outbound")
    assert [r["chain_seq"] for r in json.loads(out)] == [3]
    code, out = run("log", "--db", dsn, "--format", "jsonl", "--search", "openai", "--limit", "5")
    assert [json.loads(line)["addon"] for line in out.splitlines()] == ["llm_assistant"]
    code, out = run("log", "--db", dsn, "--format", "jsonl", "--addon", "acme_connector", "--not-vendor-bound")
    assert code == 0 and out.strip() == ""
    code, out = run("log", "--db", dsn)
    assert code == 0 and "api.acme.example" in out


def test_show_by_seq_and_event_id(sqlite_dsn):
    dsn = filled(sqlite_dsn)
    code, out = run("show", "--db", dsn, "2")
    row = json.loads(out)
    assert code == 0 and row["chain_seq"] == 2 and row["host"] == "api.acme.example"
    code, out = run("show", "--db", dsn, row["event_id"])
    assert code == 0 and json.loads(out)["chain_seq"] == 2
    code, out = run("show", "--db", dsn, "99")
    assert code == 2 and "no row" in out


def test_show_odd_refs_are_a_clear_error_never_a_traceback(any_dsn):
    dsn = filled(any_dsn)
    event_id = json.loads(run("show", "--db", dsn, "2")[1])["event_id"]
    code, out = run("show", "--db", dsn, event_id.upper())  # hex is hex, whatever its case
    assert code == 0 and json.loads(out)["chain_seq"] == 2
    code, out = run("show", "--db", dsn, " 2 ")
    assert code == 0 and json.loads(out)["chain_seq"] == 2
    for ref in ("99999999999999999999999", "0", "00000000000000000000000000000001"):  # past int64; a 32-digit id
        code, out = run("show", "--db", dsn, ref)
        assert code == 2 and "no row" in out, (ref, out)
    for ref in ("\u00b2", "\u0663", "-1", "abc", "2; DROP TABLE egress_log"):  # a superscript, an Arabic digit
        code, out = run("show", "--db", dsn, "--", ref)
        assert code == 2 and "neither a chain_seq" in out and "event_id" in out, (ref, out)


def test_verify_exit_codes(sqlite_dsn, tmp_path):
    dsn = filled(sqlite_dsn)
    code, out = run("verify", "--db", dsn)
    assert code == 0 and "intact" in out
    conn = sqlite3.connect(dsn[len("sqlite:///"):], isolation_level=None)
    conn.execute("DROP TRIGGER egress_log_no_update")
    conn.execute("UPDATE egress_log SET req_bytes = 1 WHERE chain_seq = 2")
    conn.close()
    code, out = run("verify", "--db", dsn, "--format", "json")
    report = json.loads(out)
    assert code == 1 and report["chain"]["first_bad_seq"] == 2 and report["chain"]["problem"] == "hash_mismatch"
    code, out = run("verify", "--db", dsn)
    assert code == 1 and "TAMPERED" in out


def test_missing_database_says_what_to_do(tmp_path):
    code, out = run("verify", "--db", str(tmp_path / "nope.db"))
    assert code == 2 and "mit-network-audit run" in out
    assert not (tmp_path / "nope.db").exists()  # reading never creates a journal
    code, out = run("log", "--db", "postgresql://postgres@127.0.0.1:1/none")
    assert code == 2 and "postgresql://" in out


def test_help_texts_name_the_dsn_forms():
    for cmd in ("log", "show", "verify"):
        code, out = run(cmd, "--help")
        assert code == 0 and "sqlite:///" in out and "postgresql://" in out


def test_follow_prints_in_order_and_skips_nothing_however_fast_rows_come(sqlite_dsn):
    """`log --follow` reads like tail -f: the last rows oldest first, then every new row in chain
    order — also when more rows arrive between two polls than one query returns."""
    import subprocess
    import sys
    import time

    dsn = filled(sqlite_dsn)
    proc = subprocess.Popen([sys.executable, "-m", "mit_network_audit.cli", "log", "--db", dsn, "--follow",
                             "--format", "jsonl", "--limit", "2"], stdout=subprocess.PIPE, text=True)
    try:
        seen = [json.loads(proc.stdout.readline())["chain_seq"] for _ in range(2)]
        store = open_store(dsn)
        for _ in range(3):  # 2,400 rows between polls: more than one window of 1,000
            store.append([outbound("api.acme.example") for _ in range(800)])
        store.close()
        deadline = time.time() + 60
        while len(seen) < 2 + 2400:
            assert time.time() < deadline, len(seen)
            seen.append(json.loads(proc.stdout.readline())["chain_seq"])
    finally:
        proc.kill()
        proc.wait()
    assert seen == list(range(2, 4 + 2400))  # filled() wrote 1..3: the last two, then 4..2403


def test_a_duration_further_back_than_1970_means_the_beginning(any_dsn):
    dsn = filled(any_dsn)
    for since in ("99999999999d", "9" * 60 + "w"):  # past SQLite's/PostgreSQL's 64-bit integers
        code, out = run("log", "--db", dsn, "--format", "jsonl", "--since", since)
        assert code == 0 and [json.loads(line)["chain_seq"] for line in out.splitlines()] == [3, 2, 1], out
        code, out = run("report", "--db", dsn, "--format", "json", "--since", since)
        assert code in (0, 1, 2) and json.loads(out)["period"]["since_us"] in (0, None), out
    code, out = run("log", "--db", dsn, "--format", "jsonl", "--until", "99999999999d")
    assert code == 0 and out.strip() == ""


def test_prove_a_seq_past_64_bits_is_a_usage_error(sqlite_dsn):
    dsn = filled(sqlite_dsn)
    code, out = run("prove", "--db", dsn, "99999999999999999999")
    assert code == 2 and "not in the range" in out


def test_verify_an_empty_journal(any_dsn):
    open_store(any_dsn).close()  # made (as `run` makes it), nothing written yet
    code, out = run("verify", "--db", any_dsn)
    assert code == 0 and "chain intact: the journal has no rows yet" in out and "None" not in out, out


def test_log_host_is_matched_as_the_journal_keeps_hosts(sqlite_dsn):
    dsn = filled(sqlite_dsn)
    store = open_store(dsn)
    store.append([outbound("::1"), outbound("bücher.example")])
    store.close()
    for given, seq in (("API.Acme.Example", 2), ("api.acme.example.", 2), ("[::1]", 4), ("::1", 4),
                       ("BÜCHER.example", 5)):
        code, out = run("log", "--db", dsn, "--format", "jsonl", "--host", given)
        assert code == 0 and [json.loads(line)["chain_seq"] for line in out.splitlines()] == [seq], (given, out)


def test_a_period_that_ends_before_it_begins_is_a_usage_error(sqlite_dsn, tmp_path):
    dsn = filled(sqlite_dsn)
    for command in (["log"], ["report"], ["export", "--out", str(tmp_path / "b")]):
        for since, until in (("1h", "2d"), ("2026-12-01", "2026-11-01")):
            code, out = run(*command, "--db", dsn, "--since", since, "--until", until)
            assert code == 2 and f"--since {since} is after --until {until}" in out, (command, out)  # report: all clear
        code, out = run(*command, "--db", dsn, "--until", "yesterday")
        assert code == 2 and "Invalid value for '--until'" in out, (command, out)
    assert not (tmp_path / "b").exists()


HOSTILE = {"method": "[/bold]G\x1b[2J\x1b]0;pwned\x07T", "host": "[/b]x.example", "addon": "[link=http://evil/]shop[/link]"}


def test_log_and_report_show_hostile_text_as_text(sqlite_dsn):
    """A client's request method, a Host header, a module name: never rich markup (an unmatched
    closing tag ended log and report in a MarkupError traceback) nor terminal control sequences."""
    dsn = filled(sqlite_dsn)
    store = open_store(dsn)
    hostile = outbound(HOSTILE["host"], addon=HOSTILE["addon"]).as_dict()
    store.append([NetEvent.from_dict({**hostile, "method": HOSTILE["method"]})])
    store.close()
    code, out = run("log", "--db", dsn)
    assert code == 0 and "[/b]x.example" in out and "[link=http://evil/]" in out, out
    assert "\x1b" not in out and "\x07" not in out and "\\x1b[2J" in out
    code, out = run("report", "--db", dsn)
    assert code in (0, 1, 2) and "[/b]x.example" in out and "Traceback" not in out, out
    assert "\x1b" not in out
    code, out = run("log", "--db", dsn, "--format", "jsonl")  # the data itself is untouched
    assert json.loads(out.splitlines()[0])["method"] == HOSTILE["method"]


def test_follow_with_one_json_document_is_a_usage_error(sqlite_dsn):
    """--follow never ends, so --format json (one array) would print an array per poll: refused, jsonl named."""
    open_store(sqlite_dsn).append([internal_event("start")])
    result = CliRunner().invoke(main, ["log", "--db", sqlite_dsn, "--follow", "--format", "json"])
    assert result.exit_code == 2 and "--format jsonl" in result.output, result.output
