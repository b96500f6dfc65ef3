"""Load: every inbound request and every outbound call has exactly one row, per process, and the
chain verifies (proof/run --quick runs the same with a baseline for the latency ratios)."""

import os

import pytest

LOAD_SECONDS = 60 if os.environ.get("MNA_PROOF_FULL") == "1" else 5  # MNA_PROOF_FULL=1: the full-length runs


def check_exact(r):
    assert r["load"]["requests"] > 0
    assert r["load"]["non_2xx"] == 0 and r["load"]["socket_errors"] == 0, r["load"]
    assert r["exact"], r["processes"]  # per process: served == inbound rows, provider calls == outbound rows
    assert r["gap_rows"] == 0 and r["unexpected_outbound_rows"] == 0
    assert r["served"] == r["inbound_rows"] and r["provider_calls"] == r["outbound_rows"]
    assert r["seq_gapless"] and r["verify_ok"], r["verify"]


@pytest.mark.postgres
def test_gunicorn_4_workers_on_postgres(h, pg, work):
    r = h.load_run("wsgi", pg, LOAD_SECONDS, work)
    check_exact(r)
    assert len([p for p in r["processes"].values() if p["served"]]) == 4  # four prefork workers served


def test_uvicorn_on_sqlite(h, work):
    check_exact(h.load_run("asgi", "sqlite", LOAD_SECONDS, work))
