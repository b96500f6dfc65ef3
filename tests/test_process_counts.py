"""The shared page of counts a parent reads after its child died (interceptor.process_counts)."""

import sys
import threading

import pytest

from mit_network_audit.interceptor import process_counts as pc


def test_increments_from_many_threads_are_exact():
    """``q[i] += 1`` on the page is what emit/begin/finish do from every thread: no update lost,
    even with the GIL handed over every microsecond."""
    region = pc.Region(shared=True)
    q = region.q
    per_thread, threads = 50_000, 8
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        def work():
            for _ in range(per_thread):
                q[2] += 1

        ts = [threading.Thread(target=work) for _ in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert q[2] == per_thread * threads
    region.close()


def _child_page(pid):
    region = pc.Region(shared=True)
    region.q[pc.H_MAGIC] = pc.MAGIC
    region.q[pc.H_PID] = pid
    region.q[pc.H_RECORDS] = 1
    rec = region.q[pc.HEADER: pc.HEADER + pc.RECORD]
    rec[pc.R_USED] = 1
    rec[pc.R_DSN] = pc.dsn_key("sqlite:///x.db")
    pc._children[pid] = region
    return region, rec


def test_owed_counts_queued_in_flight_and_in_doubt():
    region, rec = _child_page(4242)
    rec[pc.R_ACCEPTED] = 10
    rec[pc.R_ACCEPTED_INT] = 1
    pc.prepare(rec, 4, 0, "a" * 32)
    pc.commit(rec)  # 4 written
    pc.prepare(rec, 3, 1, "b" * 32)  # 3 in a write when it died
    region.q[pc.H_BEGUN], region.q[pc.H_FINISHED] = 12, 10
    del rec
    owed = pc.take(4242)
    assert (owed.lost, owed.lost_internal, owed.in_flight) == (6 + 2, 1, 2)
    assert owed.doubts == [(3, 1, "b" * 32, pc.dsn_key("sqlite:///x.db"))]
    assert 4242 not in pc._children


@pytest.mark.parametrize("damage", ["magic", "pid", "records", "select", "resolved_ahead", "exec", "overflow"])
def test_a_page_that_cannot_be_trusted_is_unknown_never_an_exception(damage):
    region, rec = _child_page(4343)
    rec[pc.R_ACCEPTED] = 5
    if damage == "magic":
        region.q[pc.H_MAGIC] = 0
    elif damage == "pid":
        region.q[pc.H_PID] = 1
    elif damage == "records":
        region.q[pc.H_RECORDS] = -3
    elif damage == "select":
        rec[pc.R_SELECT] = 7
    elif damage == "resolved_ahead":
        rec[pc.R_DONE0] = 99
    elif damage == "exec":
        region.q[pc.H_EXEC] = 1
    elif damage == "overflow":
        region.q[pc.H_OVERFLOW] = 1
    del rec
    with pytest.raises(pc.Unknown):
        pc.take(4343)
    assert 4343 not in pc._children


def test_no_page_is_unknown():
    with pytest.raises(pc.Unknown):
        pc.take(999_999_999)
