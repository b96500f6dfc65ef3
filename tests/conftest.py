"""Shared fixtures: real loopback servers, an installed auditor with a MemorySink, fresh journals."""

from __future__ import annotations

import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # the throwaway third-party package acme_connector

import mit_network_audit as mna  # noqa: E402
from pg_support import PG_ADMIN, scratch_database  # noqa: E402,F401  (PG_ADMIN: re-exported for tests)


class EchoHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive server: /echo, /redirect/N, /chunked, /nolength, /status/N."""

    protocol_version = "HTTP/1.1"
    bodies: list[bytes] = []

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self):
        body = self._body()
        EchoHandler.bodies.append(body)
        path = self.path.split("?", 1)[0]
        if path.startswith("/redirect/"):
            n = int(path.rsplit("/", 1)[1])
            self.send_response(302)
            self.send_header("Location", f"/redirect/{n - 1}" if n > 1 else "/echo")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if path.startswith("/status/"):
            code = int(path.rsplit("/", 1)[1])
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        payload = b"response:" + (body or b"-") * 1
        if path == "/nolength":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(payload)
            self.close_connection = True
            return
        if path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (payload[:5], payload[5:]):
                if part:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_HEAD = _handle

    def log_message(self, *args):
        pass


class LoopbackServer(ThreadingHTTPServer):
    request_queue_size = 1024  # 200 concurrent clients must not overflow the accept backlog
    daemon_threads = True


@pytest.fixture(scope="session")
def http_server():
    server = LoopbackServer(("127.0.0.1", 0), EchoHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def sink():
    s = mna.MemorySink()
    mna.install(sink=s, salt=b"test-salt" * 4)
    yield s
    mna.uninstall()


@pytest.fixture
def sqlite_dsn(tmp_path):
    return f"sqlite:///{tmp_path}/journal.db"


@pytest.fixture
def pg_dsn():
    with scratch_database() as dsn:
        if dsn is None:
            pytest.skip("PostgreSQL (or psycopg) not available on 127.0.0.1:5432")
        yield dsn


@pytest.fixture(params=["sqlite", "postgres"])
def any_dsn(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/journal.db"
    return request.getfixturevalue("pg_dsn")
