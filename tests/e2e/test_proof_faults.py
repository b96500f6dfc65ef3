"""Faults under load: the app answers every request; what the journal misses is exactly what gap
rows (or the sink's raise count) say, never silent; the chain verifies."""

import os

import pytest

FAULT_SECONDS = 20 if os.environ.get("MNA_PROOF_FULL") == "1" else 7  # MNA_PROOF_FULL=1: the full-length runs


def answered_all(r):
    assert r["load"]["requests"] > 0
    assert r["load"]["non_2xx"] == 0 and r["load"]["socket_errors"] == 0, r["load"]


def intact(r):
    assert r["seq_gapless"] and r["verify_ok"], r["verify"]
    assert r["unexpected_outbound_rows"] == 0


@pytest.mark.postgres
def test_pg_connections_terminated_mid_load(h, pg, work):
    r = h.load_run("wsgi", pg, FAULT_SECONDS, work, fault=h.fault_terminate_backends())
    answered_all(r)
    intact(r)
    assert r["fault"]["terminated"] == 3
    assert r["exact"] and r["gap_rows"] == 0, r["processes"]  # inside the buffer bound: nothing lost


@pytest.mark.postgres
def test_pg_outage_beyond_buffer_gives_exact_gap_rows(h, pg, work):
    r = h.load_run(
        "wsgi", pg, FAULT_SECONDS, work, env={"PROOF_SINK_LIMIT": "50"}, fault=h.fault_outage(seconds=4)
    )
    answered_all(r)
    intact(r)
    assert r["accounted"], r["processes"]  # served + provider == rows + lost in gap rows, per process
    assert r["gap_rows"] >= 1 and r["lost_in_gaps"] > 0 and "database_unreachable" in r["gap_reasons"]


@pytest.mark.parametrize("free_after", [3.0, None], ids=["full_3s", "full_until_exit"])
def test_sqlite_disk_full(h, work, free_after):
    r = h.disk_full_run("asgi", FAULT_SECONDS, work, size="64m" if free_after else "16m", free_after=free_after)
    if r is None:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    answered_all(r)  # the app answers every request while the journal's disk is full
    assert r["fault"]["free_bytes_when_full"] < 65536
    intact(r)  # verify passes (it used to fail in its checkpoint step after ENOSPC)
    assert r["accounted"], r["processes"]  # every row missing is declared by a gap row: nothing silent
    assert r["lost_in_gaps"] > 0 and {"disk_full", "disk_io_error"} & set(r["gap_reasons"]), r["gap_reasons"]
    if free_after is None:  # the exit flush met the full disk: its gap row went through the reserve
        assert "unwritable_at_exit" in r["gap_reasons"], r["gap_reasons"]


def test_uvicorn_sigterm_writes_stop_row_and_loses_nothing(h, work):
    """uvicorn re-raises SIGTERM after its graceful shutdown (no atexit): the auditor's SIGTERM handler
    flushes and writes the stop row, and the process still dies by SIGTERM."""
    import signal

    r = h.load_run("asgi", "sqlite", 3, work, stop_signal=signal.SIGTERM, stop_app_only=True)
    intact(r)
    assert r["exact"], r["processes"]
    assert [p["stop_rows"] for p in r["processes"].values()] == [1], r["processes"]
    assert r["exit_status"] == -signal.SIGTERM, r["exit_status"]  # `run` became uvicorn: died by SIGTERM


@pytest.mark.postgres
def test_kill_9_of_a_worker(h, pg, work):
    r = h.load_run("wsgi", pg, FAULT_SECONDS, work, fault=h.fault_kill_worker())
    intact(r)
    killed = [str(p) for p in r["fault"]["killed"]]
    assert len(killed) == 1
    survivors = {pid: p for pid, p in r["processes"].items() if pid not in killed}
    for pid, p in survivors.items():  # every other worker (and the respawned one): exactly one row each
        assert (p["served"], p["provider"]) == (p["in_rows"], p["out_rows"]), (pid, p)
    # the killed worker can lose at most what its writer had not flushed; never more rows than calls
    k = r["processes"][killed[0]]
    assert k["in_rows"] <= k["served"] and k["out_rows"] <= k["provider"]
    # the loss is not silent: the master that reaped it wrote a stop row for it (killed_by_signal SIGKILL)
    assert k["stop_rows"] == 1, k
    # ... and a gap row with exactly what it owed: rows + declared lost = what it served and called
    # (a call in flight that the peer never saw is declared lost but was never served: at most that many over)
    declared = k["in_rows"] + k["out_rows"] + k["gap_lost"]
    assert declared - k["gap_in_flight"] <= k["served"] + k["provider"] <= declared, k
    assert r["accounted"], r["processes"]


def test_sink_that_raises(h, work):
    r = h.load_run("asgi", "sqlite", FAULT_SECONDS, work, env={"PROOF_SINK_RAISE_EVERY": "97"})
    answered_all(r)
    intact(r)
    assert r["sink_raised"] > 0
    assert r["accounted"], r["processes"]  # served + provider == rows + raised, per process
    assert r["dropped_counted"] >= r["sink_raised"]  # and stats() counted every one


def test_wall_clock_steps_back(h, work):
    import time

    step_at = time.time_ns() + 3_000_000_000
    r = h.load_run(
        "asgi",
        "sqlite",
        FAULT_SECONDS,
        work,
        env={"PROOF_CLOCK_STEP_AT_NS": str(step_at), "PROOF_CLOCK_STEP_S": "-3600"},
    )
    answered_all(r)
    intact(r)
    assert r["exact"] and r["gap_rows"] == 0, r["processes"]
    assert r["clock_backwards_steps"] >= 1  # the step really happened inside the audited process


def test_gunicorn_sigterm_unchanged(h, work):
    """gunicorn installs its own SIGTERM handlers (master and workers): the auditor's boot handler is
    replaced, and a SIGTERM still ends gunicorn gracefully with status 0, every row written."""
    import signal

    r = h.load_run("wsgi", "sqlite", 3, work, stop_signal=signal.SIGTERM, stop_app_only=True)
    intact(r)
    assert r["exact"], r["processes"]
    assert r["exit_status"] == 0, r["exit_status"]
    assert sum(p["stop_rows"] for p in r["processes"].values()) == 1  # the master's own stop row
