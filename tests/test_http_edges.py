"""Unusual-but-legal HTTP usage, each through the real library against a loopback server: the row
must still be one per call, say what really went out, and the caller must get what it would get
without the auditor."""

import http.client
import socket
import sys
import threading
import urllib.request

import pytest

from net_support import close_listener, outbound_rows_of_script

CLI = [sys.executable, "-m", "mit_network_audit.cli"]


def outbound(sink):
    return [e for e in sink.events if e.direction == "outbound"]


def _line_of(marker):
    with open(__file__) as fh:
        return next(n for n, text in enumerate(fh, 1) if marker in text and "_line_of" not in text)


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
    rows = outbound_rows_of_script(tmp_path, "fire", (
        "import http.client\n"
        f"conn = http.client.HTTPConnection('127.0.0.1', {_port(http_server)}, timeout=10)\n"
        "conn.request('PUT', '/left', body=b'abc')\n"
        "KEEP = conn  # no getresponse, no close: the process just ends\n"))
    assert [(e.channel, e.method, e.path, e.req_bytes, e.call_site) for e in rows] == [
        ("http.client", "PUT", "/left", 3, "fire.py:3 in <module>")]


@pytest.fixture
def connect_proxy():
    """A loopback CONNECT proxy that answers the tunnelled request itself (one per connection)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    seen = []

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                f = conn.makefile("rb")
                seen.append(f.readline().decode().strip())
                while f.readline() not in (b"\r\n", b""):
                    pass
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                f.readline()  # the tunnelled request line and its headers
                while f.readline() not in (b"\r\n", b""):
                    pass
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], seen
    close_listener(listener)
    thread.join(5)


def test_http_client_through_a_connect_tunnel_names_the_far_end(sink, connect_proxy):
    # set_tunnel: the row's destination is the host the caller tunnels to; the proxy is its dest_ip/port.
    proxy_port, seen = connect_proxy
    conn = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=10)
    conn.set_tunnel("vendor.example", 8443)
    conn.request("GET", "/v1/licence")
    assert conn.getresponse().read() == b"ok"
    conn.close()
    assert [line.rsplit("/", 1)[0] for line in seen] == ["CONNECT vendor.example:8443 HTTP"]  # 1.0 or 1.1 (3.12+)
    rows = outbound(sink)
    assert [(e.channel, e.host, e.port, e.path, e.dest_ip, e.dest_port, e.status) for e in rows] == [
        ("http.client", "vendor.example", 8443, "/v1/licence", "127.0.0.1", proxy_port, 200)]


def test_httpx_response_read_by_its_transport_has_its_row_at_once(sink):
    # A transport that hands back a body in memory (MockTransport, a cache): httpx reads and closes the
    # response before the client returns it, so close() never comes again; the row must not wait for gc.
    import gc

    import httpx

    client = httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(200, content=b"hi")))
    gc.disable()
    try:
        response = client.get("http://mock.invalid/x")
        assert response.content == b"hi"
        rows = outbound(sink)
    finally:
        gc.enable()
    assert [(e.channel, e.host, e.status) for e in rows] == [("httpx", "mock.invalid", 200)]


def test_aiohttp_raise_for_status_row_keeps_the_status(sink, http_server):
    # raise_for_status=True: aiohttp raises inside the call, after the response came; the row still
    # says which status it was (and the caller gets aiohttp's own exception).
    import asyncio

    import aiohttp

    async def go():
        async with aiohttp.ClientSession(raise_for_status=True) as s:
            with pytest.raises(aiohttp.ClientResponseError) as caught:
                async with s.get(http_server + "/status/404"):
                    pass
            return caught.value.status

    assert asyncio.run(go()) == 404
    rows = outbound(sink)
    assert [(e.channel, e.status, e.outcome, e.error) for e in rows] == [
        ("aiohttp", 404, "error", "aiohttp.client_exceptions.ClientResponseError")]


def test_calls_from_a_thread_pool_are_not_the_auditors_own(sink, http_server):
    # A call handed to a pool or a thread as is (submit(requests.get, url)) has no owner frame on its
    # stack, only the library, the pool and our own wrapper: unknown owner, never "the auditor" —
    # that would be a false alarm (DESIGN §5: a row attributed to the auditor is an alarm).
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    import requests

    url = http_server + "/echo"
    with ThreadPoolExecutor(2) as pool:
        assert pool.submit(requests.get, url).result().content == b"response:-"
    thread = threading.Thread(target=urllib.request.urlopen, args=(url,))
    thread.start()
    thread.join()

    async def go():
        return await asyncio.to_thread(requests.get, url)

    assert asyncio.run(go()).status_code == 200
    rows = outbound(sink)
    assert [(e.channel, e.addon, e.call_site) for e in rows] == [
        ("requests", None, None), ("urllib", None, None), ("requests", None, None)]


def test_the_auditors_own_call_is_still_named(sink, http_server):
    # Code of the auditor outside the interceptor (here a stand-in module of its web part) that calls
    # out with no other owner on the stack: that row is the auditor's, the alarm the report raises.
    namespace = {"__name__": "mit_network_audit.web.stand_in_notifier"}
    exec(compile("import urllib.request\n"
                 "def notify(url):\n"
                 "    urllib.request.urlopen(url).read()\n", "stand_in_notifier.py", "exec"), namespace)
    thread = threading.Thread(target=namespace["notify"], args=(http_server + "/echo",))
    thread.start()
    thread.join()
    assert [(e.channel, e.addon) for e in outbound(sink)] == [("urllib", "mit_network_audit")]


def test_aiohttp_base_url_and_params_are_in_the_row(sink, http_server):
    # ClientSession(base_url=...) with a relative path, and params=: the row must name the destination
    # (it had no host at all: a vendor behind a base_url could not be classified) and the query keys.
    import asyncio
    import json

    import aiohttp

    async def go():
        async with aiohttp.ClientSession(base_url=http_server) as s:
            async with s.get("/echo", params={"api_key": "CANARYq3Lp8Zr5Tw1Xc7Vb", "page": "2"}) as r:
                return await r.read()

    assert asyncio.run(go()) == b"response:-"
    rows = outbound(sink)
    assert [(e.channel, e.host, e.port, e.path, e.query_keys, e.dest_class) for e in rows] == [
        ("aiohttp", "127.0.0.1", _port(http_server), "/echo", ("api_key", "page"), "local")]
    assert "CANARYq3Lp8Zr5Tw1Xc7Vb" not in json.dumps([e.as_dict() for e in sink.events])


def test_a_download_inside_an_upload_body_is_a_row_of_its_own(sink, http_server):
    # A relay: the upload's body generator downloads from another URL as the library pulls it.  The
    # generator is the caller's code, not the upload's library: the download is its own row, and its
    # bytes are not the upload's (it had no row at all, its bytes counted into the upload's row).
    import asyncio

    import aiohttp
    import httpx
    import requests

    def via_requests():
        with requests.get(http_server + "/chunked", stream=True) as src:
            yield from src.iter_content(4)

    def via_httpx():
        with httpx.stream("GET", http_server + "/chunked") as src:
            yield from src.iter_bytes()

    class Reader:  # a file-like body whose read() fetches
        done = False

        def read(self, size=-1):
            if self.done:
                return b""
            self.done = True
            return urllib.request.urlopen(http_server + "/chunked").read()

    assert httpx.post(http_server + "/echo", content=via_requests()).text == "response:response:-"
    assert requests.post(http_server + "/echo", data=via_httpx()).text == "response:response:-"
    assert requests.post(http_server + "/echo", data=Reader()).text == "response:response:-"

    async def via_aiohttp():
        async with aiohttp.ClientSession() as s:
            async def relay():
                async with s.get(http_server + "/chunked") as src:
                    async for chunk in src.content.iter_chunked(4):
                        yield chunk

            async with s.post(http_server + "/echo", data=relay()) as r:
                return await r.text()

    assert asyncio.run(via_aiohttp()) == "response:response:-"
    rows = outbound(sink)
    assert sorted((e.channel, e.method, e.path, e.req_bytes, e.resp_bytes) for e in rows) == sorted([
        ("requests", "GET", "/chunked", 0, 10), ("httpx", "POST", "/echo", 10, 19),
        ("httpx", "GET", "/chunked", 0, 10), ("requests", "POST", "/echo", 10, 19),
        ("urllib", "GET", "/chunked", 0, 10), ("requests", "POST", "/echo", 10, 19),
        ("aiohttp", "GET", "/chunked", 0, 10), ("aiohttp", "POST", "/echo", 10, 19)])


def test_a_text_file_body_goes_out_as_without_the_auditor(sink, http_server, tmp_path):
    # http.client (and urllib over it) encode a text file body as it is read (io.TextIOBase): the
    # counting proxy must pass for one, or the send breaks (TypeError: a bytes-like object is required).
    path = tmp_path / "body.txt"
    path.write_text("héllo text body", encoding="utf-8")
    conn = http.client.HTTPConnection("127.0.0.1", _port(http_server), timeout=10)
    with open(path, encoding="utf-8") as body:
        conn.request("POST", "/echo", body=body)
        assert conn.getresponse().read() == "response:héllo text body".encode("iso-8859-1")
    conn.close()
    with open(path, encoding="utf-8") as body:
        request = urllib.request.Request(http_server + "/echo", data=body, headers={"Content-Length": "15"})
        assert urllib.request.urlopen(request).read() == "response:héllo text body".encode("iso-8859-1")
    rows = outbound(sink)
    assert [(e.channel, e.outcome, e.req_bytes) for e in rows] == [("http.client", "ok", 15), ("urllib", "ok", 15)]


def test_calls_run_as_tasks_are_attributed_to_the_code_awaiting_them(sink, http_server):
    # gather(session.get(u) ...) / TaskGroup.create_task(client.get(u)): the library's coroutine is the
    # task's root, its frames end at the loop, and further out is only whoever runs the loop (__main__,
    # a server).  The call is the awaiting code's: the addon that gathers the tasks.
    import asyncio

    import aiohttp
    import httpx

    from acme_connector import async_clients

    def line(marker):
        with open(async_clients.__file__) as fh:
            return next(n for n, text in enumerate(fh, 1) if marker in text)

    async def go():
        async with aiohttp.ClientSession() as s:
            bodies = await async_clients.with_aiohttp_gather([http_server + "/echo"] * 2, s)
        async with httpx.AsyncClient() as c:
            contents = await async_clients.with_httpx_taskgroup([http_server + "/echo"] * 2, c)
        return bodies + contents

    assert asyncio.run(go()) == [b"response:-"] * 4
    client = httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0))  # nothing left to the dead loop
    assert asyncio.run(client.get(http_server + "/echo")).status_code == 200  # the loop runs it for us
    rows = outbound(sink)
    gather, group = line("LINE_AIOHTTP_GATHER"), line("LINE_HTTPX_TASKGROUP")
    assert [(e.channel, e.addon, e.call_site) for e in rows] == [
        ("aiohttp", "acme_connector", f"acme_connector/async_clients.py:{gather} in with_aiohttp_gather")] * 2 + [
        ("httpx", "acme_connector", f"acme_connector/async_clients.py:{group} in with_httpx_taskgroup")] * 2 + [
        ("httpx", "test_http_edges", f"test_http_edges.py:{_line_of('the loop runs it for us')} in "
                                     "test_calls_run_as_tasks_are_attributed_to_the_code_awaiting_them")]


def test_aiohttp_redirects_one_row_per_hop_and_a_cross_host_hop_is_named(sink, http_server):
    """aiohttp follows redirects inside one _request: still one row per hop (as requests and httpx), the
    last hop's row has the body; too many redirects: the last hop's row is the error."""
    import asyncio

    import aiohttp

    port = int(http_server.rsplit(":", 1)[1])

    async def go():
        async with aiohttp.ClientSession() as s:
            async with s.get(http_server + "/redirect/2") as r:
                body = await r.read()
            async with s.get(http_server + "/redirect/1", allow_redirects=False) as r:
                assert r.status == 302
            async with s.get(f"http://127.0.0.1:{port}/redirect/3", max_redirects=2) as r:
                pass
            return body

    async def go_too_many():
        async with aiohttp.ClientSession() as s:
            with pytest.raises(aiohttp.TooManyRedirects):
                async with s.get(http_server + "/redirect/3", max_redirects=1):
                    pass

    with pytest.raises(aiohttp.TooManyRedirects):
        asyncio.run(go())
    rows = outbound(sink)
    assert [(e.path, e.status, e.outcome) for e in rows] == [
        ("/redirect/2", 302, "ok"), ("/redirect/1", 302, "ok"), ("/echo", 200, "ok"),  # followed
        ("/redirect/1", 302, "ok"),  # allow_redirects=False
        ("/redirect/3", 302, "ok"), ("/redirect/2", 302, "error")]  # the second redirect is one too many
    assert rows[2].resp_bytes > 0 and rows[0].resp_bytes == 0
    assert all(e.channel == "aiohttp" and e.addon == "test_http_edges" for e in rows)
    sink.events.clear()
    asyncio.run(go_too_many())
    assert [(e.path, e.status, e.outcome, e.error) for e in outbound(sink)] == [
        ("/redirect/3", 302, "error", "aiohttp.client_exceptions.TooManyRedirects")]  # raised before a 2nd hop


def test_aiohttp_redirect_to_another_host_is_that_hosts_row(sink):
    import asyncio
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import aiohttp

    class Hop(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            if self.path == "/innocent":
                self.send_response(302)
                self.send_header("Location", f"http://localhost:{self.server.server_port}/collect?data=x")
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hop)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    async def go():
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{server.server_port}/innocent") as r:
            return await r.read()

    try:
        assert asyncio.run(go()) == b"ok"
    finally:
        server.shutdown()
        server.server_close()
    assert [(e.host, e.path, e.query_keys, e.status) for e in outbound(sink)] == [
        ("127.0.0.1", "/innocent", (), 302), ("localhost", "/collect", ("data",), 200)]


def test_urllib3_redirects_one_row_per_hop_retries_stay_in_one(sink, http_server):
    """urllib3 used directly follows redirects by calling urlopen again inside the call: one row per hop;
    a retry (after a retryable status) stays in its row, and so does a PoolManager handing the call to
    its pool.  Under requests nothing changes (requests follows redirects itself)."""
    import requests
    import urllib3

    port = int(http_server.rsplit(":", 1)[1])
    manager = urllib3.PoolManager()
    assert manager.request("GET", http_server + "/redirect/2").status == 200
    pool = urllib3.HTTPConnectionPool("127.0.0.1", port)
    assert pool.request("GET", "/redirect/1").status == 200
    retry = urllib3.Retry(2, status_forcelist=[503], backoff_factor=0, raise_on_status=False)
    assert manager.request("GET", http_server + "/status/503", retries=retry).status == 503
    rows = outbound(sink)
    assert [(e.channel, e.path, e.status) for e in rows] == [
        ("urllib3", "/redirect/2", 302), ("urllib3", "/redirect/1", 302), ("urllib3", "/echo", 200),
        ("urllib3", "/redirect/1", 302), ("urllib3", "/echo", 200),
        ("urllib3", "/status/503", 503)]  # three tries, one row
    assert rows[2].resp_bytes > 0 and rows[0].resp_bytes == 0
    sink.events.clear()
    assert requests.get(http_server + "/redirect/1").status_code == 200
    assert [(e.channel, e.path, e.status) for e in outbound(sink)] == [
        ("requests", "/redirect/1", 302), ("requests", "/echo", 200)]
