"""The inbound socket backstop: every TCP connection the process accepts is seen, owned by the code that
made the socket listen; a connection whose requests an inbound HTTP layer records is that layer's."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import wsgiref.simple_server

import pytest
import requests

import mit_network_audit as mna
from acme_connector import listener
from faults_support import install_hostile
from mit_network_audit.interceptor import capture
from mit_network_audit.interceptor.inbound.wsgi import AuditWSGIMiddleware
from net_support import close_listener


def line_of(module, marker: str) -> int:
    import inspect
    return next(i for i, text in enumerate(inspect.getsource(module).splitlines(), 1) if marker in text)


def inbound(sink, channel=None):
    return [e for e in sink.events if e.direction == "inbound" and (channel is None or e.channel == channel)]


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def ping(port, payload=b"hello", host="127.0.0.1"):
    with capture.suppressed(), socket.create_connection((host, port), timeout=10) as client:  # our side: not the subject
        client.sendall(payload)
        got = b""
        while chunk := client.recv(100):
            got += chunk
        return got, client.getsockname()[1]


def test_a_listener_a_module_opened_is_an_inbound_row_with_its_bytes(sink):
    sock = listener.open_listener()
    port = sock.getsockname()[1]
    server = threading.Thread(target=listener.serve_one, args=(sock,))
    server.start()
    got, client_port = ping(port)
    server.join(10)
    close_listener(sock)
    assert got == b"pong:hello"
    wait_for(lambda: inbound(sink))
    (ev,) = inbound(sink)
    assert (ev.channel, ev.protocol, ev.outcome) == ("socket", "tcp", "ok")
    assert ev.addon == "acme_connector"  # the module that made it listen, not the thread that accepted
    assert ev.call_site == f"acme_connector/listener.py:{line_of(listener, 'LINE_LISTEN')} in open_listener"
    assert (ev.src_ip, ev.src_port, ev.dest_ip, ev.dest_port) == ("127.0.0.1", client_port, "127.0.0.1", port)
    assert (ev.req_bytes, ev.resp_bytes) == (len(b"hello"), len(b"pong:hello"))  # received, then sent


def test_ipv6_and_a_bare_connection(sink):
    sock = listener.open_listener("::1")
    port = sock.getsockname()[1]
    accepted = []
    server = threading.Thread(target=lambda: accepted.append(sock.accept()[0].close()))
    server.start()
    with capture.suppressed():
        socket.create_connection(("::1", port), timeout=10).close()  # a probe: connects, sends nothing
    server.join(10)
    close_listener(sock)
    wait_for(lambda: inbound(sink))
    (ev,) = inbound(sink)
    assert (ev.src_ip, ev.dest_ip, ev.dest_port, ev.req_bytes, ev.resp_bytes) == ("::1", "::1", port, 0, 0)


def test_a_wildcard_listener_names_the_address_the_connection_reached(sink):
    sock = listener.open_listener("0.0.0.0")
    port = sock.getsockname()[1]
    server = threading.Thread(target=listener.serve_one, args=(sock,))
    server.start()
    ping(port)
    server.join(10)
    close_listener(sock)
    wait_for(lambda: inbound(sink))
    (ev,) = inbound(sink)
    assert (ev.dest_ip, ev.dest_port, ev.host) == ("127.0.0.1", port, "127.0.0.1")  # not 0.0.0.0


def test_an_asyncio_server_is_owned_by_the_module_that_started_it(sink):
    async def main():
        server = await listener.start_asyncio_listener()
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"hi")
        await writer.drain()
        got = await reader.read(100)
        writer.close()
        server.close()
        await server.wait_closed()
        return got, port

    got, port = asyncio.run(main())
    assert got == b"pong:hi"
    wait_for(lambda: inbound(sink))
    (ev,) = inbound(sink)
    assert ev.addon == "acme_connector" and ev.dest_port == port  # accepted in the event loop's frames
    assert (ev.req_bytes, ev.resp_bytes) == (2, len(b"pong:hi"))
    (out,) = [e for e in sink.events if e.direction == "outbound"]  # and the client's side, its own row
    assert out.dest_port == port and out.src_port == ev.src_port


def test_a_plain_http_server_request_is_one_connection_row(sink):
    import http.server

    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=server.handle_request).start()
    with capture.suppressed():
        assert requests.get(f"http://127.0.0.1:{server.server_port}/secret?token=CANARY-7f3a").text == "ok"
    wait_for(lambda: inbound(sink))
    server.server_close()
    (ev,) = inbound(sink)
    assert ev.channel == "socket" and ev.addon == "test_backstop_inbound" and ev.req_bytes > 0
    assert "CANARY" not in repr(ev.as_dict())  # a connection row carries no path, query or header


def _serve(server, n):
    thread = threading.Thread(target=lambda: [server.handle_request() for _ in range(n)])
    thread.start()
    return thread


def test_wsgi_requests_claim_their_connections_wsgiref_without_remote_port(sink):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    server = wsgiref.simple_server.make_server("127.0.0.1", 0, AuditWSGIMiddleware(app, app_name="shop"))
    server.RequestHandlerClass.log_message = lambda *a: None
    thread = _serve(server, 3)
    with capture.suppressed():
        got = [requests.get(f"http://127.0.0.1:{server.server_port}/x").text for _ in range(3)]
    thread.join(10)
    server.server_close()
    assert got == ["ok"] * 3
    wait_for(lambda: len(inbound(sink)) >= 3)
    time.sleep(0.1)
    assert [(e.channel, e.addon) for e in inbound(sink)] == [("wsgi", "shop")] * 3  # no connection rows


def test_keep_alive_werkzeug_requests_are_one_row_each_and_nothing_else(sink):
    from werkzeug.serving import make_server

    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    server = make_server("127.0.0.1", 0, app, threaded=True)  # the werkzeug channel wraps the app
    server.RequestHandlerClass.protocol_version = "HTTP/1.1"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with capture.suppressed(), requests.Session() as session:
            got = [session.get(f"http://127.0.0.1:{server.server_port}/k").text for _ in range(4)]
        assert got == ["ok"] * 4
        wait_for(lambda: len(inbound(sink)) >= 4)
    finally:
        server.shutdown()
        server.server_close()
    time.sleep(0.1)
    assert [e.channel for e in inbound(sink)] == ["wsgi"] * 4  # claimed by REMOTE_PORT


def test_uvicorn_on_asyncio_requests_claim_their_connections(sink):
    import uvicorn

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, loop="asyncio", log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run)
    thread.start()
    try:
        wait_for(lambda: server.started)
        with capture.suppressed(), requests.Session() as session:
            got = [session.get(f"http://127.0.0.1:{port}/a").text for _ in range(3)]
        assert got == ["ok"] * 3
    finally:
        server.should_exit = True
        thread.join(10)
    rows = inbound(sink)
    assert [e.channel for e in rows] == ["asgi"] * 3
    assert len({e.src_port for e in rows}) == 1  # one kept-alive connection, claimed by its first request


def test_tls_server_connection_row(sink, tmp_path):
    import mail_support

    certs = mail_support.make_certs(str(tmp_path))
    raw = listener.open_listener()
    port = raw.getsockname()[1]
    tls = certs.server_context.wrap_socket(raw, server_side=True)

    def serve():
        conn, _ = tls.accept()
        with conn:
            conn.sendall(b"pong:" + conn.recv(100))

    thread = threading.Thread(target=serve)
    thread.start()
    with capture.suppressed(), socket.create_connection(("127.0.0.1", port), timeout=10) as plain:
        with certs.client_context.wrap_socket(plain, server_hostname="localhost") as client:
            client.sendall(b"tls!")
            assert client.recv(100) == b"pong:tls!"
    thread.join(10)
    close_listener(tls)
    wait_for(lambda: inbound(sink))
    (ev,) = inbound(sink)
    assert (ev.protocol, ev.req_bytes, ev.resp_bytes) == ("tls", 4, len(b"pong:tls!"))  # application bytes


def test_sockets_dropped_without_close_finish_their_rows_and_close_their_fds(sink):
    """A raw or accepted socket nobody closes: collected, its row comes and its fd is closed (the
    counting class's finalizer runs _socket's own, which closes a forgotten fd)."""
    import gc
    import os
    import warnings

    srv = listener.open_listener()
    address = srv.getsockname()
    fds = len(os.listdir("/proc/self/fd"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        for _ in range(50):
            client = socket.create_connection(address)
            conn, _ = srv.accept()
            del client, conn  # never closed
        gc.collect()
    srv.close()
    assert len(os.listdir("/proc/self/fd")) <= fds - 1  # every fd closed, the listener's too
    assert len(inbound(sink)) == 50 and len([e for e in sink.events if e.direction == "outbound"]) == 50


def test_fail_open_when_every_collaborator_raises():
    install_hostile()
    try:
        sock = listener.open_listener()
        server = threading.Thread(target=listener.serve_one, args=(sock,))
        server.start()
        got, _ = ping(sock.getsockname()[1])
        server.join(10)
        close_listener(sock)
        assert got == b"pong:hello"  # served exactly as without us
    finally:
        mna.uninstall()


def test_disabled_at_run_time_and_symmetric_uninstall():
    accept, has_listen = socket.socket.accept, "listen" in socket.socket.__dict__
    sink = mna.MemorySink()
    mna.install(sink=sink, disabled_channels=("socket",))
    try:
        assert socket.socket.accept is not accept
        sock = listener.open_listener()
        server = threading.Thread(target=listener.serve_one, args=(sock,))
        server.start()
        ping(sock.getsockname()[1])
        server.join(10)
        close_listener(sock)
        assert inbound(sink) == []
    finally:
        mna.uninstall()
    assert socket.socket.accept is accept and ("listen" in socket.socket.__dict__) == has_listen


@pytest.fixture(autouse=True)
def _no_leftover_install():
    yield
    mna.uninstall()
