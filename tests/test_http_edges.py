"""Unusual-but-legal HTTP usage, each through the real library against a loopback server: the row
must still be one per call, say what really went out, and the caller must get what it would get
without the auditor."""

import http.client
import subprocess
import sys
import urllib.request

import pytest

CLI = [sys.executable, "-m", "mit_network_audit.cli"]


def outbound(sink):
    return [e for e in sink.events if e.direction == "outbound"]


def _port(http_server):
    return int(http_server.rsplit(":", 1)[1])


def test_urllib_request_given_data_by_urlopen_is_a_post(sink, http_server):
    # urlopen(Request(url), data=...) sends a POST: open() sets the data before asking the method.
    with urllib.request.urlopen(urllib.request.Request(http_server + "/echo"), data=b"abc") as r:
        assert r.read() == b"response:abc"
    rows = outbound(sink)
    assert [(e.channel, e.method, e.req_bytes) for e in rows] == [("urllib", "POST", 3)]


def test_http_client_request_never_answered_has_its_row_at_close(sink, http_server):
    # The request goes out, the caller closes the connection without getresponse(): one row.
    conn = http.client.HTTPConnection("127.0.0.1", _port(http_server), timeout=10)
    conn.request("POST", "/fire-and-forget", body=b"hello")
    conn.close()
    rows = outbound(sink)
    assert [(e.channel, e.method, e.path, e.req_bytes, e.status) for e in rows] == [
        ("http.client", "POST", "/fire-and-forget", 5, None)]
    # the connection is reusable as before, and its next call is a row of its own
    conn.request("GET", "/echo")
    assert conn.getresponse().read() == b"response:-"
    conn.close()
    assert [e.path for e in outbound(sink)] == ["/fire-and-forget", "/echo"]


def test_http_client_busy_connection_keeps_the_first_call(sink, http_server):
    # A second request on a connection still waiting for its response fails (CannotSendRequest):
    # that failure is its own row, and the first call still gets its response and its row.
    conn = http.client.HTTPConnection("127.0.0.1", _port(http_server), timeout=10)
    conn.request("GET", "/echo")
    with pytest.raises(http.client.CannotSendRequest):
        conn.request("GET", "/second")
    assert conn.getresponse().read() == b"response:-"
    conn.close()
    rows = sorted(outbound(sink), key=lambda e: e.path)
    assert [(e.path, e.status, e.outcome, e.error, e.resp_bytes) for e in rows] == [
        ("/echo", 200, "ok", None, 10), ("/second", None, "error", "http.client.CannotSendRequest", 0)]


def test_http_client_request_never_answered_has_its_row_at_exit(tmp_path, http_server):
    from mit_network_audit.journal import open_store

    script = tmp_path / "fire.py"
    script.write_text("import http.client\n"
                      f"conn = http.client.HTTPConnection('127.0.0.1', {_port(http_server)}, timeout=10)\n"
                      "conn.request('PUT', '/left', body=b'abc')\n"
                      "KEEP = conn  # no getresponse, no close: the process just ends\n")
    dsn = f"sqlite:///{tmp_path}/fire.db"
    done = subprocess.run([*CLI, "run", "--db", dsn, "--", "python", str(script)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [r.event for r in open_store(dsn).rows(limit=50) if r.event.direction == "outbound"]
    assert [(e.channel, e.method, e.path, e.req_bytes, e.call_site) for e in rows] == [
        ("http.client", "PUT", "/left", 3, "fire.py:3 in <module>")]
