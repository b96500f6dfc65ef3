"""Socket backstop and audit hook: raw sockets, bypasses, unix sockets, refusals, fork."""

import _socket
import os
import socket
import threading

import pytest

import mit_network_audit as mna
from acme_connector import client
from net_support import close_listener


@pytest.fixture
def tcp_server():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)

    def serve():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            data = conn.recv(1024)
            conn.sendall(b"pong:" + data)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    yield srv.getsockname()[1]
    close_listener(srv)


def test_raw_socket_row_with_bytes_and_attribution(sink, tcp_server):
    data = client.with_socket("127.0.0.1", tcp_server)
    # (the loopback server runs in this process: the connection it accepted is an inbound row of its own)
    rows = [e for e in sink.events if e.channel == "socket" and e.direction == "outbound"]
    assert len(rows) == 1
    ev = rows[0]
    assert ev.addon == "acme_connector" and ev.protocol == "tcp"
    assert ev.req_bytes == len(b"GET /echo HTTP/1.0\r\n\r\n") and ev.resp_bytes == len(data)
    assert ev.dest_ip == "127.0.0.1" and ev.dest_port == tcp_server and ev.src_port


def test_raw_socket_with_a_row_can_still_go_to_a_worker(sink, tcp_server):
    # multiprocessing pickles a socket by its exact class (Queue.put, a worker's arguments): the
    # socket with a row of its own must still go through, and work on the other side.
    import multiprocessing
    import queue

    sock = socket.create_connection(("127.0.0.1", tcp_server))  # blocking: the rebuilt copy has no timeout
    q = multiprocessing.Queue()
    try:
        q.put(sock)
        try:
            other = q.get(timeout=10)
        except queue.Empty:
            pytest.fail("the socket never came through the queue (it could not be pickled)")
        other.sendall(b"ping")
        assert other.recv(100) == b"pong:ping"
        other.close()
    finally:
        q.close()
        q.join_thread()
        sock.close()
    assert [(e.channel, e.dest_port) for e in sink.events if e.direction == "outbound"] == [("socket", tcp_server)]


def test_underscore_socket_caught_by_audit_hook(sink, tcp_server):
    raw = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    raw.connect(("127.0.0.1", tcp_server))
    raw.close()
    rows = [e for e in sink.events if e.direction == "outbound"]
    assert [(e.channel, e.dest_port) for e in rows] == [("audit", tcp_server)]
    assert rows[0].addon == "test_backstop_socket"


def test_restored_original_connect_gives_tamper_and_connection_rows(sink, tcp_server):
    wrapper = socket.socket.connect
    socket.socket.connect = wrapper.__mna_original__
    try:
        s = socket.socket()
        s.connect(("127.0.0.1", tcp_server))
        s.close()
    finally:
        socket.socket.connect = wrapper
    tamper = [e for e in sink.events if e.direction == "internal" and e.method == "tamper"]
    conns = [e for e in sink.events if e.direction == "outbound"]
    assert len(tamper) == 1 and "socket.socket.connect" in tamper[0].detail
    assert [(e.channel, e.dest_port) for e in conns] == [("audit", tcp_server)]


def test_no_double_rows_for_http_over_socket(sink, http_server):
    client.with_http_client(http_server + "/echo")
    # the in-process server's side of it is an inbound row (test_backstop_inbound.py)
    assert [e.channel for e in sink.events if e.direction == "outbound"] == ["http.client"]


def test_unix_socket_counter_only(sink, tmp_path):
    path = str(tmp_path / "s.sock")
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(1)
    before = mna.stats().get("socket.unix", 0)
    c = socket.socket(socket.AF_UNIX)
    c.connect(path)
    conn, _ = srv.accept()
    conn.close()
    c.close()
    srv.close()
    assert sink.events == []
    assert mna.stats()["socket.unix"] == before + 2  # the connect and the accept


def test_refused_connect_and_connect_ex(sink):
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", 9), timeout=2)
    s = socket.socket()
    assert s.connect_ex(("127.0.0.1", 9)) != 0
    s.close()
    rows = [e for e in sink.events if e.channel == "socket"]
    assert [e.outcome for e in rows] == ["error", "error"]
    assert rows[0].error == "ConnectionRefusedError" and rows[1].error.startswith("OSError.ECONNREFUSED")


def test_fork_child_audits_its_own_calls(tmp_path, tcp_server):
    from mit_network_audit.journal import open_store
    from mit_network_audit.journal.sink import BatchingSink

    dsn = f"sqlite:///{tmp_path}/fork.db"
    sink = BatchingSink(dsn)
    mna.install(sink=sink)
    try:
        pid = os.fork()
        if pid == 0:
            try:
                client.with_socket("127.0.0.1", tcp_server)
                sink.flush()
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        client.with_socket("127.0.0.1", tcp_server)
        sink.flush()
    finally:
        mna.uninstall()
    rows = [r for r in open_store(dsn).rows(limit=10) if r.event.direction == "outbound"]
    assert sorted(r.event.pid for r in rows) == sorted([pid, os.getpid()])


def _tls_server(tmp_path):
    import ssl

    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)

    def serve():
        while True:
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            try:
                with server_ctx.wrap_socket(raw, server_side=True) as conn:
                    data = conn.recv(1024)
                    conn.sendall(b"tls-pong:" + data)
            except (OSError, ssl.SSLError):
                pass

    threading.Thread(target=serve, daemon=True).start()
    return listener, client_ctx


def test_raw_tls_row_counts_application_bytes(sink, tmp_path):
    import ssl

    listener, ctx = _tls_server(tmp_path)
    port = listener.getsockname()[1]
    with socket.create_connection(("127.0.0.1", port)) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"hello")
            assert tls.recv(100) == b"tls-pong:hello"
    bad = ssl.create_default_context()  # does not trust the test CA: handshake fails
    with pytest.raises(ssl.SSLCertVerificationError):
        with socket.create_connection(("127.0.0.1", port)) as raw:
            bad.wrap_socket(raw, server_hostname="localhost")
    close_listener(listener)
    rows = [e for e in sink.events if e.direction == "outbound"]
    assert [(e.channel, e.protocol, e.outcome) for e in rows] == [("socket", "tls", "ok"), ("socket", "tls", "error")]
    assert rows[0].req_bytes == 5 and rows[0].resp_bytes == len(b"tls-pong:hello")
    assert rows[1].error == "ssl.SSLCertVerificationError"


def test_https_owner_marked_tls(sink, tmp_path):
    import ssl
    import urllib.request
    from http.server import ThreadingHTTPServer

    from conftest import EchoHandler

    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    server.socket = server_ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    try:
        body = urllib.request.urlopen(f"https://127.0.0.1:{server.server_address[1]}/echo", context=client_ctx).read()
    finally:
        server.shutdown()
    rows = [e for e in sink.events if e.direction == "outbound"]
    assert body == b"response:-" and [(e.channel, e.protocol) for e in rows] == [("urllib", "https")]
