"""Inbound without a code change: `mit-network-audit run` wraps the app a known server loads
(uvicorn, gunicorn, werkzeug, wsgiref) in the WSGI/ASGI middleware.  Real servers on loopback, real
clients; one row per request, also when the app's author wrapped it too (the inner middleware only
names the row)."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests

import mit_network_audit
from mit_network_audit.interceptor import MemorySink
from mit_network_audit.journal import open_store
from mit_network_audit.journal.verify import verify

CLI = [sys.executable, "-m", "mit_network_audit.cli"]
BIN = os.path.dirname(sys.executable)

APP = '''
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    out = b"asgi " + scope["path"].encode() + b" " + str(len(body)).encode()
    await send({"type": "http.response.start", "status": 201, "headers": [(b"content-length", str(len(out)).encode())]})
    await send({"type": "http.response.body", "body": out})


def wsgi(environ, start_response):
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    out = b"wsgi " + environ["PATH_INFO"].encode() + b" " + str(len(body)).encode()
    start_response("202 Accepted", [("Content-Length", str(len(out)))])
    return [out]
'''

SCRIPT = '''
import sys, threading, urllib.request
from werkzeug.serving import make_server
from wsgiref.simple_server import WSGIRequestHandler, make_server as wsgiref_server
from mit_network_audit.interceptor.inbound import AuditWSGIMiddleware
from shopapp import wsgi

class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass

servers = [make_server("127.0.0.1", 0, wsgi, threaded=True),
           wsgiref_server("127.0.0.1", 0, wsgi, handler_class=Quiet),
           wsgiref_server("127.0.0.1", 0, AuditWSGIMiddleware(wsgi, app_name="shop_named"), handler_class=Quiet)]
for s in servers:
    threading.Thread(target=s.serve_forever, daemon=True).start()
for s, path in zip(servers, ("/werkzeug", "/wsgiref", "/named")):
    port = s.server_port
    assert urllib.request.urlopen(f"http://127.0.0.1:{port}{path}/alice@example.com?token=CANARY", data=b"abc").read() \\
        == f"wsgi {path}/alice@example.com 3".encode()
for s in servers:
    s.shutdown()
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_under_run(tmp_path, argv, port):
    (tmp_path / "shopapp.py").write_text(APP)
    dsn = f"sqlite:///{tmp_path}/inbound.db"
    proc = subprocess.Popen([*CLI, "run", "--db", dsn, "--", *argv], cwd=tmp_path, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            assert proc.poll() is None and time.time() < deadline, proc.stderr.read().decode()[-2000:]
            time.sleep(0.1)
    return proc, dsn


def stop(proc, sig) -> None:
    os.killpg(proc.pid, sig)
    proc.wait(30)


def inbound_rows(dsn):
    store = open_store(dsn)
    rows = [r.event for r in store.rows(limit=1000) if r.event.direction == "inbound"][::-1]
    assert verify(store).ok
    return rows


def test_uvicorn_app_audited_without_a_code_change(tmp_path):
    port = free_port()
    proc, dsn = serve_under_run(tmp_path, [sys.executable, "-m", "uvicorn", "shopapp:app", "--port", str(port),
                                           "--log-level", "warning"], port)
    try:
        got = [requests.post(f"http://127.0.0.1:{port}/orders/{i}", data=b"x" * (10 * i)) for i in range(1, 4)]
        assert [(r.status_code, r.text) for r in got] == [(201, f"asgi /orders/{i} {10 * i}") for i in range(1, 4)]
    finally:
        stop(proc, signal.SIGINT)
    rows = inbound_rows(dsn)
    assert [(e.channel, e.method, e.status, e.addon, e.req_bytes) for e in rows] == [
        ("asgi", "POST", 201, "shopapp", 10 * i) for i in range(1, 4)]
    assert all(e.src_ip == "127.0.0.1" and e.resp_bytes == len(f"asgi /orders/{i} {10 * i}")
               for i, e in enumerate(rows, 1))


def test_gunicorn_workers_audited_one_row_per_request(tmp_path):
    port = free_port()
    proc, dsn = serve_under_run(tmp_path, [os.path.join(BIN, "gunicorn"), "-w", "2", "-b", f"127.0.0.1:{port}",
                                           "--log-level", "warning", "shopapp:wsgi"], port)
    try:
        with requests.Session() as session:  # keep-alive is off in sync workers: each its own connection
            got = [session.post(f"http://127.0.0.1:{port}/u/alice@example.com?token=CANARY", data=b"hello")
                   for _ in range(6)]
        assert {(r.status_code, r.text) for r in got} == {(202, "wsgi /u/alice@example.com 5")}
    finally:
        stop(proc, signal.SIGTERM)
    rows = inbound_rows(dsn)
    # the readiness probe's bare connection (no request: nothing claimed it) is a socket row of its own
    probes = [e for e in rows if e.channel == "socket"]
    assert probes and all(e.req_bytes == 0 and e.dest_port == port for e in probes)
    rows = [e for e in rows if e.channel != "socket"]
    assert len(rows) == 6, ([(r.event.method, r.event.detail) for r in open_store(dsn).rows(limit=100)],
                            proc.stderr.read().decode()[-3000:])
    assert {(e.channel, e.method, e.status, e.addon, e.path, e.req_bytes) for e in rows} == {
        ("wsgi", "POST", 202, "shopapp", "/u/:email", 5)}
    assert {e.query_keys for e in rows} == {("token",)}
    assert len({e.pid for e in rows}) >= 1 and proc.pid not in {e.pid for e in rows}  # served by the workers
    with open(dsn[len("sqlite:///"):], "rb") as f:
        assert b"CANARY" not in f.read() and b"alice@example.com" not in f.read()


def test_werkzeug_and_wsgiref_servers_and_an_app_wrapped_twice(tmp_path):
    (tmp_path / "shopapp.py").write_text(APP)
    (tmp_path / "serve.py").write_text(SCRIPT)
    dsn = f"sqlite:///{tmp_path}/inbound.db"
    done = subprocess.run([*CLI, "run", "--db", dsn, "--", sys.executable, "serve.py"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    rows = inbound_rows(dsn)
    assert [(e.channel, e.path, e.status, e.addon, e.req_bytes) for e in rows] == [
        ("wsgi", "/werkzeug/:email", 202, "shopapp", 3),
        ("wsgi", "/wsgiref/:email", 202, "shopapp", 3),
        ("wsgi", "/named/:email", 202, "shop_named", 3),  # the author's wrap names it; still one row
    ]


def test_the_server_patches_are_symmetric_and_follow_disabled_channels():
    import wsgiref.simple_server

    import gunicorn.workers.base
    import uvicorn.config
    import werkzeug.serving

    originals = (uvicorn.config.Config.load, gunicorn.workers.base.Worker.load_wsgi,
                 werkzeug.serving.BaseWSGIServer.__init__, wsgiref.simple_server.WSGIServer.set_app)
    sink = MemorySink()
    mit_network_audit.install(sink=sink, disabled_channels=("wsgi",))
    try:
        assert wsgiref.simple_server.WSGIServer.set_app is not originals[3]
        def hello(environ, start_response):
            start_response("200 OK", [])
            return [b"ok"]

        server = wsgiref.simple_server.make_server("127.0.0.1", 0, hello)
        try:
            threading.Thread(target=server.handle_request, daemon=True).start()
            assert requests.get(f"http://127.0.0.1:{server.server_port}/").text == "ok"
        finally:
            server.server_close()
        # disabled: served, no request row (the socket backstop still sees the connection)
        assert not [e for e in sink.events if e.channel == "wsgi"]
    finally:
        mit_network_audit.uninstall()
    assert (uvicorn.config.Config.load, gunicorn.workers.base.Worker.load_wsgi,
            werkzeug.serving.BaseWSGIServer.__init__, wsgiref.simple_server.WSGIServer.set_app) == originals


@pytest.fixture(autouse=True)
def _no_leftover_install():
    yield
    mit_network_audit.uninstall()
