"""WSGI and ASGI middleware against real servers and real clients."""

import asyncio
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


def test_asgi_http_and_websocket_under_uvicorn(sink):
    uvicorn = pytest.importorskip("uvicorn")
    port = _free_port()
    config = uvicorn.Config(AuditASGIMiddleware(asgi_app, app_name="api"), host="127.0.0.1", port=port,
                            log_level="error", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        asyncio.run(asyncio.sleep(0.02))
    try:
        r = httpx.post(f"http://127.0.0.1:{port}/ask?x=1", content=b"abc")
        assert r.text == "got abc"
        websockets = pytest.importorskip("websockets.sync.client")
        with websockets.connect(f"ws://127.0.0.1:{port}/ws") as ws:
            ws.send("hi")
            assert ws.recv() == "echo:hi"
    finally:
        server.should_exit = True
        thread.join(5)
    inbound = [e for e in sink.events if e.direction == "inbound"]
    assert [(e.channel, e.method, e.status) for e in inbound] == [("asgi", "POST", 200), ("asgi", "WEBSOCKET", 101)]
    assert inbound[0].req_bytes == 3 and inbound[0].resp_bytes == len(b"got abc") and inbound[0].addon == "api"
    assert inbound[1].req_bytes == 2 and inbound[1].resp_bytes == len("echo:hi")
