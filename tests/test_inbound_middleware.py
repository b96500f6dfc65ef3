"""WSGI and ASGI middleware against real servers and real clients."""

import asyncio
import contextlib
import json
import socket
import threading
from wsgiref.simple_server import WSGIRequestHandler, make_server

import httpx
import pytest
import requests

from mit_network_audit.interceptor.inbound import AuditASGIMiddleware, AuditWSGIMiddleware

CANARY = "CANARYs3cr3tT0k3nValue99"


class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


def wsgi_app(environ, start_response):
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    if environ["PATH_INFO"] == "/boom":
        raise RuntimeError("app failed")
    out = [b"hello ", body]
    start_response("201 Created", [("Content-Type", "text/plain")])
    return out


def test_wsgi_rows(sink):
    server = make_server("127.0.0.1", 0, AuditWSGIMiddleware(wsgi_app, app_name="shop"), handler_class=Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_port
    try:
        r = requests.post(f"http://127.0.0.1:{port}/orders/{CANARY}?q={CANARY}", data=b"12345",
                          headers={"X-Secret": CANARY})
        assert r.status_code == 201 and r.content == b"hello 12345"
        assert requests.get(f"http://127.0.0.1:{port}/boom").status_code == 500
    finally:
        server.shutdown()
    inbound = [e for e in sink.events if e.direction == "inbound"]
    assert len(inbound) == 2
    ev = inbound[0]
    assert (ev.channel, ev.method, ev.status, ev.addon) == ("wsgi", "POST", 201, "shop")
    assert ev.path == "/orders/:token" and ev.query_keys == ("q",)
    assert ev.req_bytes == 5 and ev.resp_bytes == len(b"hello 12345") and ev.src_ip == "127.0.0.1"
    assert inbound[1].outcome == "error" and inbound[1].error == "RuntimeError"
    assert CANARY not in repr([e.as_dict() for e in sink.events])


async def asgi_app(scope, receive, send):
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        msg = await receive()
        await send({"type": "websocket.send", "text": "echo:" + msg.get("text", "")})
        await send({"type": "websocket.close"})
        return
    body = b""
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"got " + body})


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@contextlib.contextmanager
def _uvicorn_serving(**config):
    """The audited ASGI app under a real uvicorn on a free loopback port (yields the port)."""
    uvicorn = pytest.importorskip("uvicorn")
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(AuditASGIMiddleware(asgi_app, app_name="api"), host="127.0.0.1",
                                           port=port, log_level="error", lifespan="off", **config))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        asyncio.run(asyncio.sleep(0.02))
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(5)


def test_asgi_http_and_websocket_under_uvicorn(sink):
    with _uvicorn_serving() as port:
        r = httpx.post(f"http://127.0.0.1:{port}/ask?x=1", content=b"abc")
        assert r.text == "got abc"
        websockets = pytest.importorskip("websockets.sync.client")
        with websockets.connect(f"ws://127.0.0.1:{port}/ws") as ws:
            ws.send("hi")
            assert ws.recv() == "echo:hi"
    inbound = [e for e in sink.events if e.direction == "inbound"]
    assert [(e.channel, e.method, e.status) for e in inbound] == [("asgi", "POST", 200), ("asgi", "WEBSOCKET", 101)]
    assert inbound[0].req_bytes == 3 and inbound[0].resp_bytes == len(b"got abc") and inbound[0].addon == "api"
    assert inbound[1].req_bytes == 2 and inbound[1].resp_bytes == len("echo:hi")


def _raw_request(port, request: bytes) -> bytes:
    """What a hostile client sends, byte for byte (no client library would send these)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.split(b"\r\n", 1)[0]


HOSTILE = [  # (request line + Host header, the path the row must say)
    (b"GET /admin/delete-all HTTP/1.0\r\nHost: [::1]\r\n", "/admin/delete-all"),
    (b"GET /admin/delete-all HTTP/1.0\r\nHost: x?a=\r\n", "/admin/delete-all"),
    (b"GET /admin/delete-all HTTP/1.0\r\nHost: x#\r\n", "/admin/delete-all"),
    (b"GET /%23/admin/delete-all?k=v HTTP/1.0\r\nHost: h\r\n", "/%23/admin/delete-all"),
]


def test_wsgi_hostile_host_and_path_cannot_hide_the_path(sink):
    # The Host header and the (decoded) PATH_INFO are the client's: a '?', '#' or '[::1]' in them must
    # not cut the path out of the row's URL (it used to read '/' or nothing at all).
    server = make_server("127.0.0.1", 0, AuditWSGIMiddleware(wsgi_app, app_name="shop"), handler_class=Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for request, _ in HOSTILE:
            assert _raw_request(server.server_port, request + b"\r\n") == b"HTTP/1.0 201 Created"
    finally:
        server.shutdown()
        server.server_close()
    inbound = [e for e in sink.events if e.direction == "inbound"]
    assert [e.path for e in inbound] == [path for _, path in HOSTILE]
    assert [e.host for e in inbound] == ["::1", "x", "x", "h"] and inbound[0].dest_class == "local"
    assert inbound[3].query_keys == ("k",)


def test_asgi_root_path_once_and_hostile_host(sink):
    # uvicorn --root-path: scope["path"] already includes root_path (the ASGI spec); the row must not
    # say it twice.  A hostile Host header must not cut the path out.
    with _uvicorn_serving(root_path="/api") as port:
        assert httpx.get(f"http://127.0.0.1:{port}/users?page=2").text == "got "
        assert _raw_request(port, b"GET /%23/admin HTTP/1.1\r\nHost: x#\r\nConnection: close\r\n\r\n") == \
            b"HTTP/1.1 200 OK"
    inbound = [e for e in sink.events if e.direction == "inbound"]
    assert [(e.host, e.path, e.query_keys) for e in inbound] == [
        ("127.0.0.1", "/api/users", ("page",)), ("x", "/api/%23/admin", ())]


def test_wsgi_response_headers_are_the_same_as_without_the_auditor(sink):
    # wsgiref sets Content-Length for a response of one block, asking len() of what the app returned:
    # the middleware's wrapper must answer it, or the client gets other headers than without us.
    def one_block(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello world"]

    server = make_server("127.0.0.1", 0, AuditWSGIMiddleware(one_block), handler_class=Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        r = requests.get(f"http://127.0.0.1:{server.server_port}/")
    finally:
        server.shutdown()
        server.server_close()
    assert r.headers.get("Content-Length") == "11" and r.content == b"hello world"
    assert [(e.channel, e.status, e.resp_bytes) for e in sink.events if e.direction == "inbound"] == [
        ("wsgi", 200, 11)]


def test_wsgi_upload_read_by_werkzeug_is_counted(sink):
    # Flask/werkzeug read the request body through readinto() when wsgi.input has one (LimitedStream):
    # those bytes are the upload too.  gunicorn's input has no readinto: the counter must not add one.
    from werkzeug.serving import make_server as werkzeug_server
    from werkzeug.wrappers import Request, Response

    @Request.application
    def upload(request):
        return Response(b"got %d" % len(request.get_data()))

    server = werkzeug_server("127.0.0.1", 0, AuditWSGIMiddleware(upload, app_name="shop"))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert requests.post(f"http://127.0.0.1:{server.port}/up", data=b"x" * 100_000).text == "got 100000"
    finally:
        server.shutdown()
        server.server_close()
    assert [(e.channel, e.req_bytes) for e in sink.events if e.direction == "inbound"] == [("wsgi", 100_000)]

    from mit_network_audit.interceptor.counting import request_body_counter

    class NoReadinto:  # like gunicorn's Body: read, readline, readlines, iteration
        def read(self, size=-1):
            return b""

    assert not hasattr(request_body_counter(NoReadinto(), None), "readinto")


def test_hostile_long_paths_and_header_names_are_not_kept_in_memos(sink):
    # Every request of a hostile client may bring a new 20 KB path segment, Host and header name: the
    # redaction and classification memos (kept for the life of the process) must not keep them, only the short ones.
    from mit_network_audit.interceptor import capture

    server = make_server("127.0.0.1", 0, AuditWSGIMiddleware(wsgi_app), handler_class=Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for i in range(40):
            junk = f"{i:04d}" + "x" * 20_000
            request = f"GET /{junk}/tail HTTP/1.0\r\nHost: h{junk}\r\nX-{junk}: 1\r\n\r\n".encode()
            assert _raw_request(server.server_port, request) == b"HTTP/1.0 201 Created"
    finally:
        server.shutdown()
        server.server_close()
    inbound = [e for e in sink.events if e.direction == "inbound"]
    assert len(inbound) == 40 and all(e.path == "/:token/tail" for e in inbound)
    # and a row keeps at most a DNS name's worth of Host, and header names cut at 128 characters
    assert all(len(e.host) == 253 + 1 and e.host.endswith("…") for e in inbound)
    assert all(len(h) <= 128 + 1 + len(": ***") for e in inbound for h in e.req_headers)
    assert all(len(json.dumps(e.as_dict())) < 2_000 for e in inbound)
    policy = capture.runtime.redaction
    memos = (policy._url_cache, policy._segment_cache, policy._header_cache, policy._host_cache,
             policy._safe_value_cache, capture.runtime.classifier._cache)
    kept = sum(len(str(key)) for memo in memos for key in memo)
    assert kept < 40 * 2_000, kept  # the short keys only (it was 40 x 60 KB)


def test_a_hostile_request_cannot_make_its_row_large(sink):
    """A path of many short segments, thousands of query keys: the row is cut and says so (…)."""
    server = make_server("127.0.0.1", 0, AuditWSGIMiddleware(wsgi_app), handler_class=Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        path = "/a" * 4_000
        query = "&".join(f"k{i}=v" for i in range(3_000))
        request = f"GET {path}?{query} HTTP/1.0\r\nHost: shop\r\n\r\n".encode()
        assert _raw_request(server.server_port, request) == b"HTTP/1.0 201 Created"
    finally:
        server.shutdown()
        server.server_close()
    (ev,) = [e for e in sink.events if e.direction == "inbound"]
    assert len(ev.path) == 2048 + 1 and ev.path.startswith("/a/a/") and ev.path.endswith("…")
    assert len(ev.query_keys) == 64 + 1 and ev.query_keys[-1] == "…"
