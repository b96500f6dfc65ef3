"""uvloop: connections made by libuv reach neither the socket patches nor the audit hook; the uvloop
channel gives them rows (and enriches aiohttp rows running on uvloop)."""

from __future__ import annotations

import asyncio
import socket
import sys
import threading

import pytest

import mail_support as ms
from net_support import close_listener

uvloop = pytest.importorskip("uvloop")


@pytest.fixture(scope="module")
def echo(tmp_path_factory):
    certs = ms.make_certs(str(tmp_path_factory.mktemp("certs")))
    listeners = []

    def start(tls: bool):
        listener = socket.create_server(("127.0.0.1", 0), backlog=256)
        listeners.append(listener)

        def handle(conn):
            try:
                if tls:
                    conn = certs.server_context.wrap_socket(conn, server_side=True)
                data = conn.recv(100)
                conn.sendall(b"pong:" + data)
                conn.close()
            except OSError:
                pass

        def serve():
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                threading.Thread(target=handle, args=(conn,), daemon=True).start()

        threading.Thread(target=serve, daemon=True).start()
        return listener.getsockname()[1]

    yield start(False), start(True), certs
    for listener in listeners:
        close_listener(listener)


async def fetch(port, ssl=None):  # the "app": plain asyncio streams code
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ssl)
    writer.write(b"ping")
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    return data


def outbound(sink):
    return [e for e in sink.events if e.direction == "outbound"]


def test_uvloop_app_concurrent_connections_exact_rows(sink, echo):
    plain, _, _ = echo

    async def main():
        return await asyncio.gather(*(fetch(plain) for _ in range(40)))

    results = uvloop.run(main())
    assert results == [b"pong:ping"] * 40
    rows = outbound(sink)
    assert len(rows) == 40
    assert {(e.channel, e.protocol, e.dest_ip, e.dest_port, e.resp_bytes) for e in rows} == {
        ("socket", "tcp", "127.0.0.1", plain, 9)}
    assert len({e.src_port for e in rows}) == 40
    assert all("uvloop" in e.via and e.addon == "test_hardpaths_uvloop" and "in fetch" in e.call_site for e in rows)


def test_uvloop_tls_connection(sink, echo):
    _, tls, certs = echo
    assert uvloop.run(fetch(tls, ssl=certs.client_context)) == b"pong:ping"
    (ev,) = outbound(sink)
    assert (ev.channel, ev.protocol, ev.dest_port, ev.resp_bytes) == ("socket", "tls", tls, 9)


def test_uvloop_datagram_endpoint(sink):
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    port = receiver.getsockname()[1]

    async def main():
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                                           remote_addr=("127.0.0.1", port))
        transport.sendto(b"metric:1")
        await asyncio.sleep(0.05)
        transport.close()
        await asyncio.sleep(0)

    uvloop.run(main())
    assert receiver.recv(100) == b"metric:1"
    receiver.close()
    (ev,) = outbound(sink)
    assert (ev.channel, ev.protocol, ev.port) == ("socket", "udp", port)


def test_uvloop_subprocess_exec_and_shell(sink):
    async def main():
        proc = await asyncio.create_subprocess_exec("true", "https://cdn.example.net/x")
        await proc.wait()
        proc = await asyncio.create_subprocess_shell("exit 0")
        await proc.wait()

    uvloop.run(main())
    rows = [e for e in sink.events if e.channel == "subprocess"]
    assert [(e.method, e.path, e.host) for e in rows] == [("uvloop", "true", "cdn.example.net"), ("uvloop", "exit", None)]


def test_aiohttp_on_uvloop_one_row_enriched(sink, http_server):
    aiohttp = pytest.importorskip("aiohttp")

    async def main():
        async with aiohttp.ClientSession() as session:
            async with session.get(http_server + "/echo") as response:
                return await response.read()

    assert uvloop.run(main()).startswith(b"response:")
    rows = outbound(sink)
    assert [e.channel for e in rows] == ["aiohttp"], [(e.channel, e.via) for e in rows]
    assert rows[0].dest_ip == "127.0.0.1"


def test_standard_loop_for_comparison_caught_by_socket_layer(sink, echo):
    plain, _, _ = echo
    assert asyncio.run(fetch(plain)) == b"pong:ping"
    (ev,) = outbound(sink)
    assert (ev.channel, ev.dest_port) == ("socket", plain) and "uvloop" not in ev.via


def test_uninstall_restores_uvloop(sink):
    import mit_network_audit as mna

    assert "create_connection" in uvloop.Loop.__dict__
    mna.uninstall()
    assert "create_connection" not in uvloop.Loop.__dict__
    assert sys.modules["uvloop"].Loop.create_connection is uvloop.loop.Loop.create_connection


def test_standard_loop_tls_stream_caught_by_socket_layer(sink, echo):
    _, tls, certs = echo
    assert asyncio.run(fetch(tls, ssl=certs.client_context)) == b"pong:ping"
    (ev,) = outbound(sink)
    assert (ev.channel, ev.dest_port) == ("socket", tls)  # asyncio's TLS runs over wrap_bio: the row says tcp


def test_httpx_async_on_uvloop_one_row(sink, http_server):
    httpx = pytest.importorskip("httpx")

    async def main():
        async with httpx.AsyncClient() as client:
            return (await client.get(http_server + "/echo")).content

    assert uvloop.run(main()).startswith(b"response:")
    rows = outbound(sink)
    assert [e.channel for e in rows] == ["httpx"], [(e.channel, e.via) for e in rows]
