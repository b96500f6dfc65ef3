"""Socket backstop edge cases: IPv6 loopback, filtered (silent) ports, suppression, a fail-open audit hook."""

import _socket
import socket
import threading

import pytest

import mit_network_audit as mna
from mit_network_audit.interceptor import capture
from net_support import close_listener


def _echo_listener(family=socket.AF_INET, host="127.0.0.1"):
    srv = socket.socket(family)
    srv.bind((host, 0))
    srv.listen(16)

    def serve():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            conn.sendall(b"pong:" + conn.recv(1024))
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return srv


def _outbound(sink):
    return [e for e in sink.events if e.direction == "outbound"]


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6 in this kernel")
def test_ipv6_loopback_raw_row(sink):
    try:
        srv = _echo_listener(socket.AF_INET6, "::1")
    except OSError:
        pytest.skip("::1 not configured")
    port = srv.getsockname()[1]
    c = socket.socket(socket.AF_INET6)
    c.connect(("::1", port))
    c.sendall(b"hi")
    assert c.recv(100) == b"pong:hi"
    c.close()
    close_listener(srv)
    rows = _outbound(sink)
    assert [(e.channel, e.host, e.dest_ip, e.dest_port) for e in rows] == [("socket", "::1", "::1", port)]
    assert rows[0].src_ip == "::1" and rows[0].req_bytes == 2 and rows[0].resp_bytes == len(b"pong:hi")


def test_filtered_port_times_out_with_error_row(sink):
    # A listener that never accepts, its backlog filled: Linux drops further SYNs like a firewall would.
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    port = srv.getsockname()[1]
    fillers = []
    with capture.suppressed():  # the fillers are not the subject of this test
        for _ in range(8):
            f = socket.socket()
            f.setblocking(False)
            f.connect_ex(("127.0.0.1", port))
            fillers.append(f)
    probe = socket.socket()
    probe.settimeout(0.3)
    try:
        with pytest.raises(TimeoutError):
            probe.connect(("127.0.0.1", port))
    finally:
        probe.close()
        for f in fillers:
            f.close()
        srv.close()
    rows = _outbound(sink)
    assert [(e.channel, e.outcome, e.error, e.dest_port) for e in rows] == [("socket", "error", "TimeoutError", port)]


def test_connect_ex_returns_the_same_errno_as_without_auditor(sink):
    s = socket.socket()
    audited = s.connect_ex(("127.0.0.1", 9))
    s.close()
    s = socket.socket()
    plain = socket.socket.connect_ex.__mna_original__(s, ("127.0.0.1", 9))
    s.close()
    assert audited == plain != 0


def test_suppressed_traffic_is_never_a_row(sink):
    srv = _echo_listener()
    port = srv.getsockname()[1]
    with capture.suppressed():
        c = socket.socket()
        c.connect(("127.0.0.1", port))
        c.sendall(b"x")
        c.recv(100)
        c.close()
        raw = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)  # the audit hook honours it too
        raw.connect(("127.0.0.1", port))
        raw.close()
    close_listener(srv)
    assert _outbound(sink) == []


def test_audit_hook_fail_open_when_every_collaborator_raises(sink):
    class Broken:
        def attribute(self, frame):
            raise RuntimeError("attributor down")

        def emit(self, event):
            raise RuntimeError("sink down")

    srv = _echo_listener()
    port = srv.getsockname()[1]
    before = mna.stats().get("errors.attribution", 0)
    mna.install(sink=Broken(), attributor=Broken())
    try:
        raw = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
        raw.connect(("127.0.0.1", port))  # must not raise: an exception in a hook aborts the call
        raw.send(b"ok")
        assert raw.recv(100) == b"pong:ok"
        raw.close()
        c = socket.socket()
        c.connect(("127.0.0.1", port))
        c.close()
    finally:
        close_listener(srv)
    assert mna.stats().get("errors.attribution", 0) >= before + 2


def test_audit_hook_inert_after_uninstall(sink):
    srv = _echo_listener()
    port = srv.getsockname()[1]
    mna.uninstall()
    raw = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    raw.connect(("127.0.0.1", port))
    raw.close()
    close_listener(srv)
    assert _outbound(sink) == []


def test_refused_non_blocking_connect_is_an_error_row(sink):
    # asyncio connects without blocking (connect raises BlockingIOError, the outcome is read later as
    # SO_ERROR): a refused connection must be an error row, as a blocking connect's is (it said "ok").
    import asyncio

    async def go():
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", 9)

    asyncio.run(go())
    rows = [e for e in sink.events if e.direction == "outbound"]
    assert [(e.channel, e.dest_port, e.outcome, e.error) for e in rows] == [
        ("socket", 9, "error", "ConnectionRefusedError")]


def test_non_blocking_connect_row_has_its_local_address(sink):
    # The connect completes after connect() returned (asyncio): the local address is read when the
    # outcome is (SO_ERROR 0), as a blocking connect's row has it.
    import asyncio

    srv = _echo_listener()

    async def go():
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.getsockname()[1])
        writer.write(b"ping")
        data = await reader.read(100)
        local = writer.get_extra_info("sockname")
        writer.close()
        await writer.wait_closed()
        return data, local

    try:
        data, local = asyncio.run(go())
    finally:
        close_listener(srv)
    assert data == b"pong:ping"
    rows = [e for e in sink.events if e.direction == "outbound"]
    assert [(e.channel, e.outcome, e.src_ip, e.src_port, e.req_bytes) for e in rows] == [
        ("socket", "ok", local[0], local[1], 4)]


def test_udp_socket_connected_to_another_peer_closes_its_first_row(sink):
    # connect() again on a UDP socket (a resolver trying its next server): one row per peer, the first
    # complete at the second connect — not left open until exit — also when the socket is just dropped.
    import gc

    peers = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    for peer in peers:
        peer.bind(("127.0.0.1", 0))
    ports = [peer.getsockname()[1] for peer in peers]
    try:
        for close in (True, False):
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.connect(("127.0.0.1", ports[0]))
            udp.send(b"one")
            udp.connect(("127.0.0.1", ports[1]))
            udp.send(b"twotwo")
            assert [(e.dest_port, e.req_bytes) for e in _outbound(sink)][-1:] == [(ports[0], 3)]
            if close:
                udp.close()
            else:
                del udp
                gc.collect()
            assert [(e.dest_port, e.req_bytes) for e in _outbound(sink)][-2:] == [(ports[0], 3), (ports[1], 6)]
    finally:
        for peer in peers:
            peer.close()
    assert len(_outbound(sink)) == 4
