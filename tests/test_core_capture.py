"""The capture core without any library: scopes, ownership, fail-open, suppression, contexts."""

import asyncio
import os
import sys
import threading

import pytest

import mit_network_audit as mna
from faults_support import install_hostile
from mit_network_audit.interceptor import capture
from mit_network_audit.interceptor.redaction import DefaultRedaction


@pytest.fixture
def sink():
    s = mna.MemorySink()
    mna.install(sink=s, salt=b"s" * 32)
    yield s
    mna.uninstall()


def fake_call(channel="fake", url="http://example.test/a", inner=None):
    call = capture.begin(channel, method="GET", url=url)
    if call is None:
        return None
    try:
        if inner:
            inner()
    finally:
        capture.end(call)
    return call


def test_one_row_per_call_outermost_owns(sink):
    seen = []

    def inner():
        seen.append(capture.begin("inner", url="http://x/"))
        capture.current().enrich(dest_ip="127.0.0.1", host="ignored-because-set-later")

    fake_call(inner=inner)
    assert seen == [None]
    assert len(sink.events) == 1
    ev = sink.events[0]
    assert ev.channel == "fake" and ev.dest_ip == "127.0.0.1"
    assert ev.host == "ignored-because-set-later" or ev.host == "example.test"


def test_attribution_names_this_test_module(sink):
    fake_call()
    ev = sink.events[0]
    assert ev.addon == "test_core_capture"
    assert ev.call_site.startswith("test_core_capture.py:") and ev.call_site.endswith("in fake_call")


def test_caller_frame_without_getframe_events_and_its_fallbacks(sink, monkeypatch):
    # begin() finds its caller's frame through a generator (capture._resumers), not sys._getframe,
    # whose audit event would call every audit hook of the process on every audited call
    events, listening = [], [True]  # a hook cannot be removed: it goes quiet after this test
    sys.addaudithook(lambda e, a: events.append(e) if e == "sys._getframe" and listening else None)
    events.clear()
    fake_call()
    assert events == [] and sink.events[-1].call_site.endswith("in fake_call")

    # the generator already running (another thread resuming it): sys._getframe, same answer
    def running():
        fake_call()
        yield

    busy = running()
    monkeypatch.setattr(capture, "_resumer", busy)
    next(busy, None)
    assert events == ["sys._getframe"] and sink.events[-1].call_site.endswith("in fake_call")
    monkeypatch.undo()

    # a forked child gets a fresh one (the parent may have forked while a thread was resuming it)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            fake_call()
            os.write(write, (sink.events[-1].call_site + "|" + str(len(events))).encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    site, n = os.read(read, 4096).decode().split("|")
    listening.clear()
    assert site.endswith("in fake_call") and n == "1" and capture._resumer is not busy


def test_error_outcome_keeps_class_not_message(sink):
    call = capture.begin("fake", url="http://example.test/")
    capture.end(call, ConnectionRefusedError("secret-message"))
    ev = sink.events[0]
    assert ev.outcome == "error" and ev.error == "ConnectionRefusedError"
    assert "secret-message" not in repr(ev.as_dict())


def test_fail_open_when_every_collaborator_raises():
    install_hostile()
    try:
        before = dict(mna.stats())
        call = fake_call()
        assert call is not None
        after = mna.stats()
        for key in ("errors.attribution", "errors.redaction", "errors.classification", "errors.sink"):
            assert after.get(key, 0) == before.get(key, 0) + 1, key
    finally:
        mna.uninstall()


def test_suppressed_and_disabled(sink):
    with mna.suppressed():
        assert fake_call() is None
    mna.set_disabled_channels(["fake"])
    assert fake_call() is None
    mna.set_disabled_channels([])
    assert fake_call() is not None
    assert len(sink.events) == 1


def test_threads_and_tasks_never_mix(sink):
    def worker(i):
        for _ in range(50):
            fake_call(url=f"http://host{i}.test/")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    async def task(i):
        call = capture.begin("fake", url=f"http://task{i}.test/")
        await asyncio.sleep(0)
        assert capture.current() is call
        capture.end(call)

    async def main():
        await asyncio.gather(*(task(i) for i in range(200)))

    asyncio.run(main())
    assert len(sink.events) == 8 * 50 + 200
    assert len({e.event_id for e in sink.events}) == len(sink.events)


def test_redaction_masks_secrets():
    policy = DefaultRedaction(b"k" * 32)
    assert policy.path("/v1/users/jane.doe@example.com/orders/1234567") == "/v1/users/:email/orders/:num"
    assert policy.path("/api/keys/sk_live_4eC39HqLyjWDarjtT1zdp7dc") == "/api/keys/:token"
    assert policy.path("/api/customers/export") == "/api/customers/export"
    # free text is content, not a route: any white space, however it is encoded
    assert policy.path("/search/Jane%20Doe%20Smith/page") == "/search/:text/page"
    assert policy.path("/q/a%09b") == "/q/:text" and policy.path("/q/a%E2%80%83b") == "/q/:text"
    assert policy.path("/q/a+b") == "/q/a+b"  # '+' is a literal plus in a path
    assert policy.query_keys("b=1&a=secret&a=2") == ("a", "b")
    assert policy.headers([("Authorization", "Bearer x"), ("Content-Type", "text/plain")]) == (
        "authorization: ***", "content-type: text/plain")
    # allow-listed values are memoised, never across types that compare equal (1 == True == 1.0)
    # nor for masked headers; asked twice, the answers stay the same
    odd = [("Content-Length", 1), ("Content-Length", True), ("Content-Length", 1.0), ("Content-Length", b"2"),
           ("Authorization", "Bearer x"), ("Accept", ["a"])]
    for _ in range(2):
        assert policy.headers(odd) == ("content-length: 1", "content-length: True", "content-length: 1.0",
                                       "content-length: 2", "authorization: ***", "accept: ['a']")
    assert not any("Bearer" in str(key) for key in policy._safe_value_cache)


def test_install_uninstall_idempotent(sink):
    mna.install(sink=sink)
    mna.uninstall()
    mna.uninstall()
    assert fake_call() is None
