"""HTTP channels through the real libraries against a real loopback server (never a mock)."""

import asyncio
import http.client
import json
import threading
import urllib.request

import pytest
import requests
import urllib3

import mit_network_audit as mna
from acme_connector import client
from faults_support import Boom, BoomSink

CANARY = "CANARYx9Q7zK2mW4vB8nT6"  # token-like: must never reach an event


def _line(marker: str) -> int:
    with open(client.__file__) as fh:
        for number, text in enumerate(fh, 1):
            if marker in text:
                return number
    raise AssertionError(marker)


def outbound(sink):
    return [e for e in sink.events if e.direction == "outbound"]


@pytest.mark.parametrize("func,channel,marker", [
    (client.with_requests, "requests", "LINE_REQUESTS"),
    (client.with_urllib, "urllib", "LINE_URLLIB"),
    (client.with_urllib3, "urllib3", "LINE_URLLIB3"),
    (client.with_http_client, "http.client", "LINE_HTTP_CLIENT"),
])
def test_one_row_per_call_attributed_to_the_addon(sink, http_server, func, channel, marker):
    func(http_server + "/echo")
    rows = outbound(sink)
    assert len(rows) == 1, [(e.channel, e.path) for e in rows]
    ev = rows[0]
    assert ev.channel == channel
    assert ev.addon == "acme_connector"
    assert ev.call_site == f"acme_connector/client.py:{_line(marker)} in {func.__name__}"
    assert ev.status == 200 and ev.outcome == "ok"
    assert ev.dest_ip == "127.0.0.1" and ev.dest_port == int(http_server.rsplit(":", 1)[1])
    assert ev.resp_bytes == len(b"response:-")
    assert ev.dest_class == "local"


def test_requests_stack_one_row_with_via(sink, http_server):
    session = requests.Session()
    for _ in range(5):  # keep-alive reuse: still one row per call
        session.get(http_server + "/echo")
    rows = outbound(sink)
    assert [e.channel for e in rows] == ["requests"] * 5
    assert rows[0].via == ("requests", "urllib3", "http.client")
    assert len({e.src_port for e in rows}) == 1  # one connection carried all five


def test_redirects_one_row_per_hop(sink, http_server):
    response = requests.get(http_server + "/redirect/3")
    assert response.status_code == 200
    rows = outbound(sink)
    assert [e.status for e in rows] == [302, 302, 302, 200]
    assert [e.path for e in rows] == ["/redirect/3", "/redirect/2", "/redirect/1", "/echo"]


def test_urllib_redirects_one_row_per_hop_and_a_cross_host_hop_is_named(sink, http_server):
    """urllib follows redirects inside one urlopen: still one row per hop (as requests and httpx), so a
    redirect to another host is that host's row, not hidden under the first one."""
    with urllib.request.urlopen(http_server + "/redirect/2") as response:
        body = response.read()
    rows = outbound(sink)
    assert [(e.channel, e.path, e.status) for e in rows] == [
        ("urllib", "/redirect/2", 302), ("urllib", "/redirect/1", 302), ("urllib", "/echo", 200)]
    assert rows[-1].resp_bytes == len(body) and all(e.addon == "test_http_channels" for e in rows)
    sink.events.clear()
    port = int(http_server.rsplit(":", 1)[1])
    target = f"http://localhost:{port}/echo?copy=1"  # the same server under another name: another host

    class Hop(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, req, fp, code, msg, headers, newurl):
            return super().redirect_request(req, fp, code, msg, headers, target)

    opener = urllib.request.build_opener(Hop)
    assert opener.open(http_server + "/redirect/1").read() == body
    hosts = [(e.host, e.path, e.query_keys, e.status) for e in outbound(sink)]
    assert hosts == [("127.0.0.1", "/redirect/1", (), 302), ("localhost", "/echo", ("copy",), 200)]


def test_refused_connection_row_and_same_exception(sink):
    with pytest.raises(requests.ConnectionError):
        requests.get("http://127.0.0.1:9/", timeout=2)
    rows = outbound(sink)
    assert len(rows) == 1 and rows[0].outcome == "error"
    assert rows[0].error == "requests.exceptions.ConnectionError"


def test_bodies_counted_generator_and_chunked(sink, http_server):
    def gen():
        yield b"a" * 100
        yield b"b" * 50
    requests.post(http_server + "/echo", data=gen())
    requests.post(http_server + "/echo", data=b"x" * 1000)
    r = requests.get(http_server + "/chunked")
    r2 = requests.get(http_server + "/nolength")
    rows = outbound(sink)
    assert rows[0].req_bytes == 150 and rows[1].req_bytes == 1000
    assert r.content == b"response:-" and rows[2].resp_bytes == len(r.content)  # the data, not the framing
    assert r2.content == b"response:-" and rows[3].resp_bytes == len(r2.content)


def test_streamed_body_row_after_consumption(sink, http_server):
    with requests.get(http_server + "/echo", stream=True) as r:
        assert outbound(sink) == []  # the row waits for the body
        assert r.raw.read() == b"response:-"
    rows = outbound(sink)
    assert len(rows) == 1 and rows[0].resp_bytes == len(b"response:-")


def test_canary_never_in_any_event(sink, http_server):
    requests.post(f"{http_server}/api/{CANARY}/items?key={CANARY}&page=1", data=CANARY.encode() * 3,
                  headers={"X-Api-Key": CANARY, "Authorization": f"Bearer {CANARY}"})
    urllib.request.urlopen(urllib.request.Request(f"{http_server}/u/{CANARY}?t={CANARY}",
                                                  headers={"X-Token": CANARY})).read()
    conn = http.client.HTTPConnection("127.0.0.1", int(http_server.rsplit(":", 1)[1]))
    conn.request("POST", f"/h/{CANARY}?s={CANARY}", body=CANARY, headers={"Cookie": CANARY})
    conn.getresponse().read()
    assert len(outbound(sink)) == 3
    dumped = json.dumps([e.as_dict() for e in sink.events])
    assert CANARY not in dumped
    assert "/api/:token/items" in dumped and '"key"' in dumped


@pytest.mark.parametrize("faulty", ["attributor", "redaction", "sink", "classifier"])
def test_faults_never_change_what_the_caller_gets(http_server, faulty):
    def calls():
        out = [requests.post(http_server + "/echo", data=b"payload-1").content,
               client.with_urllib(http_server + "/echo"),
               client.with_http_client(http_server + "/echo"),
               client.with_urllib3(http_server + "/echo").data]
        try:
            requests.get("http://127.0.0.1:9/", timeout=2)
        except Exception as exc:
            out.append(type(exc))
        return out

    expected = calls()
    kwargs = {"sink": mna.MemorySink()}
    kwargs["sink" if faulty == "sink" else faulty] = BoomSink() if faulty == "sink" else Boom()
    mna.install(**kwargs)
    try:
        before = dict(mna.stats())
        assert calls() == expected
        after = mna.stats()
        stage = {"attributor": "errors.attribution", "redaction": "errors.redaction",
                 "sink": "errors.sink", "classifier": "errors.classification"}[faulty]
        assert after.get(stage, 0) > before.get(stage, 0)
    finally:
        mna.uninstall()


def test_threads_exact_counts_no_crosstalk(sink, http_server):
    session = requests.Session()  # one pool shared across threads

    def worker(i):
        for _ in range(200):
            session.get(f"{http_server}/echo?worker={i}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = outbound(sink)
    assert len(rows) == 1600
    assert {e.addon for e in rows} == {"test_http_channels"}
    assert all(e.status == 200 for e in rows)


def test_ipv6_and_idn_hosts(sink):
    from http.server import ThreadingHTTPServer

    from conftest import EchoHandler

    class V6(ThreadingHTTPServer):
        address_family = __import__("socket").AF_INET6

    try:
        server = V6(("::1", 0), EchoHandler)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert requests.get(f"http://[::1]:{server.server_address[1]}/echo").status_code == 200
    finally:
        server.shutdown()
    with pytest.raises(requests.ConnectionError):
        requests.get("http://bücher.invalid/", timeout=2)
    rows = outbound(sink)
    assert rows[0].host == "::1" and rows[0].dest_ip == "::1"
    assert rows[1].outcome == "error" and rows[1].host in ("bücher.invalid", "xn--bcher-kva.invalid")


def test_uninstall_restores_every_original(http_server):
    import socket

    originals = (requests.adapters.HTTPAdapter.send, http.client.HTTPConnection.putrequest,
                 urllib3.PoolManager.urlopen, socket.socket.connect, urllib.request.OpenerDirector.open)
    mna.install(sink=mna.MemorySink())
    assert requests.adapters.HTTPAdapter.send is not originals[0]
    mna.uninstall()
    assert (requests.adapters.HTTPAdapter.send, http.client.HTTPConnection.putrequest,
            urllib3.PoolManager.urlopen, socket.socket.connect, urllib.request.OpenerDirector.open) == originals


def test_asyncio_tasks_keep_their_own_calls(sink, http_server):
    async def one(i):
        return await asyncio.to_thread(requests.get, f"{http_server}/echo?task={i}")

    async def main():
        await asyncio.gather(*(one(i) for i in range(50)))

    asyncio.run(main())
    rows = outbound(sink)
    assert len(rows) == 50 and sorted(int(e.query_keys == ("task",)) for e in rows) == [1] * 50


def test_httpx_sync_async_and_redirect_hops(sink, http_server):
    import httpx

    assert httpx.get(http_server + "/redirect/2", follow_redirects=True).status_code == 200
    assert httpx.post(http_server + "/echo", content=b"abc").content == b"response:abc"

    async def go():
        async with httpx.AsyncClient(timeout=60) as c:
            return await asyncio.gather(*(c.get(f"{http_server}/echo?i={i}") for i in range(200)))

    responses = asyncio.run(go())
    assert all(r.status_code == 200 for r in responses)
    rows = outbound(sink)
    assert [e.status for e in rows[:3]] == [302, 302, 200] and rows[3].req_bytes == 3
    assert len(rows) == 204 and {e.channel for e in rows} == {"httpx"}
    assert all(e.resp_bytes == len(b"response:-") for e in rows[4:])
    assert {e.addon for e in rows} == {"test_http_channels"}


def test_aiohttp_rows_and_bytes(sink, http_server):
    import aiohttp

    async def go():
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:
            async with s.post(http_server + "/echo", data=b"12345") as r:
                assert await r.read() == b"response:12345"
            results = await asyncio.gather(*(s.get(f"{http_server}/echo?i={i}") for i in range(200)))
            return [await r.text() for r in results]

    texts = asyncio.run(go())
    assert texts == ["response:-"] * 200
    rows = outbound(sink)
    assert len(rows) == 201 and {e.channel for e in rows} == {"aiohttp"}
    assert rows[0].req_bytes == 5 and rows[0].resp_bytes == len(b"response:12345")
    assert all(e.resp_bytes == len(b"response:-") for e in rows[1:])


def test_httpx_refused(sink):
    import httpx

    with pytest.raises(httpx.ConnectError):
        httpx.get("http://127.0.0.1:9/")
    rows = outbound(sink)
    assert len(rows) == 1 and rows[0].error == "httpx.ConnectError"


def test_filtered_port_times_out_with_a_row(sink):
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)  # a full accept queue drops SYNs: to a client it looks filtered
    port = listener.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port))
    with pytest.raises(requests.exceptions.ConnectTimeout):
        requests.get(f"http://127.0.0.1:{port}/", timeout=0.5)
    filler.close()
    listener.close()
    rows = [e for e in outbound(sink) if e.channel == "requests"]
    assert len(rows) == 1 and rows[0].error == "requests.exceptions.ConnectTimeout"


def test_non_ascii_header_names(sink, http_server):
    # a str name http.client refuses (the caller gets the library's own error, unchanged) ...
    with pytest.raises(UnicodeEncodeError):
        requests.get(http_server + "/echo", headers={"X-Übung": "x"})
    # ... a latin-1 bytes name goes through and is recorded by name, value masked
    conn = http.client.HTTPConnection("127.0.0.1", int(http_server.rsplit(":", 1)[1]))
    conn.putrequest("GET", "/echo")
    conn.putheader(b"X-\xdcbung", CANARY.encode())
    conn.endheaders()
    assert conn.getresponse().read() == b"response:-"
    rows = outbound(sink)
    assert rows[0].outcome == "error" and rows[-1].channel == "http.client"
    assert "x-übung: ***" in rows[-1].req_headers and CANARY not in repr([e.as_dict() for e in rows])
