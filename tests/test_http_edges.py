"""Unusual-but-legal HTTP usage, each through the real library against a loopback server: the row
must still be one per call, say what really went out, and the caller must get what it would get
without the auditor."""

import urllib.request


def outbound(sink):
    return [e for e in sink.events if e.direction == "outbound"]


def test_urllib_request_given_data_by_urlopen_is_a_post(sink, http_server):
    # urlopen(Request(url), data=...) sends a POST: open() sets the data before asking the method.
    with urllib.request.urlopen(urllib.request.Request(http_server + "/echo"), data=b"abc") as r:
        assert r.read() == b"response:abc"
    rows = outbound(sink)
    assert [(e.channel, e.method, e.req_bytes) for e in rows] == [("urllib", "POST", 3)]
