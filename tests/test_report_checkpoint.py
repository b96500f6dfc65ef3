"""Review line for a stale newest checkpoint (DESIGN §5), read from the checkpoint table only."""

import json
import os

import jsonschema

from mit_network_audit.interceptor.event import internal_event, now_us
from mit_network_audit.journal import checkpoint, open_store
from mit_network_audit.report.catalogue import load_catalogue
from mit_network_audit.report.trust import build_report

SCHEMA = json.load(open(os.path.join(os.path.dirname(os.path.dirname(__file__)), "docs", "report-schema.json")))
HOUR = 3600 * 10**6


def journal(tmp_path, checkpoint_age_us=None, rows_after=3, first_row_age_us=0):
    store = open_store(f"sqlite:///{tmp_path}/c.db")
    then = now_us() - first_row_age_us
    store.append([internal_event("start", detail='{"channels": [], "disabled": []}',
                                 logged_at_us=then, started_at_us=then)])
    if checkpoint_age_us is not None:
        checkpoint.ensure_tables(store)
        store.execute_raw("INSERT INTO mna_checkpoints (tree_size, root_hash, head_hash, signed_at_us, note, "
                          "prev_size, consistency) VALUES (?, 'r', 'h', ?, 'note', NULL, '[]')",
                          (1, now_us() - checkpoint_age_us))
    store.append([internal_event("stop", detail="{}") for _ in range(rows_after)])
    return store


def rules(store, **kw):
    rep = build_report(store, now_us() - 24 * HOUR, catalogue=load_catalogue(), **kw)
    jsonschema.validate(rep.as_dict(), SCHEMA)
    return rep, {x.rule: x for x in rep.lines}


def test_stale_checkpoint_is_review_with_the_first_uncovered_row(tmp_path):
    rep, lines = rules(journal(tmp_path, checkpoint_age_us=48 * HOUR))
    assert rep.verdict == "review"
    line = lines["checkpoint_stale"]
    assert line.level == "review" and line.count == 3 and line.chain_seqs == [2]


def test_fresh_checkpoint_missing_table_or_nothing_newer_is_not_flagged(tmp_path):
    for sub, kw in (("fresh", {"checkpoint_age_us": HOUR}), ("none", {}),
                    ("covered", {"checkpoint_age_us": 48 * HOUR, "rows_after": 0})):
        (tmp_path / sub).mkdir()
        rep, lines = rules(journal(tmp_path / sub, **kw))
        assert "checkpoint_stale" not in lines and rep.verdict == "all_clear", (sub, lines)


def test_review_level_trust_check_is_a_review_line(tmp_path):
    store = journal(tmp_path)
    check = {"name": "checkpoint freshness", "ok": True, "level": "review", "message": "newest checkpoint is old"}
    rep, lines = rules(store, trust_checks=[check])
    assert rep.verdict == "review" and lines["checkpoint freshness"].level == "review"
    assert "checkpoint_stale" not in lines  # not reported twice
    rep, _ = rules(store, trust_checks=[{**check, "ok": False, "level": "alarm"}])
    assert rep.verdict == "alarm"


def test_never_signed_journal_is_review_once_its_oldest_row_is_past_the_threshold(tmp_path):
    rep, lines = rules(journal(tmp_path, first_row_age_us=48 * HOUR))
    assert rep.verdict == "review", lines
    line = lines["checkpoint_missing"]
    assert line.level == "review" and line.count == 4 and line.chain_seqs == [1]
    assert "keys init" in line.message and "checkpoint" in line.message


def test_never_signed_young_journal_and_signed_old_journal_are_not_flagged(tmp_path):
    (tmp_path / "young").mkdir()
    rep, lines = rules(journal(tmp_path / "young", first_row_age_us=HOUR))
    assert "checkpoint_missing" not in lines and rep.verdict == "all_clear", lines
    (tmp_path / "signed").mkdir()  # an old journal with a fresh checkpoint over all of it
    store = journal(tmp_path / "signed", first_row_age_us=48 * HOUR, rows_after=0)
    checkpoint.ensure_tables(store)
    store.execute_raw("INSERT INTO mna_checkpoints (tree_size, root_hash, head_hash, signed_at_us, note, "
                      "prev_size, consistency) VALUES (?, 'r', 'h', ?, 'note', NULL, '[]')", (1, now_us()))
    rep, lines = rules(store)
    assert not {"checkpoint_missing", "checkpoint_stale"} & set(lines) and rep.verdict == "all_clear", lines
