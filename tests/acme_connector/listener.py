"""A module that opens a port of its own (a "remote support" listener): the inbound backstop's subject."""

import asyncio
import socket


def open_listener(host="127.0.0.1"):
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.bind((host, 0))
    sock.listen(8)  # LINE_LISTEN
    return sock


def serve_one(sock):
    """Answer one connection: b"pong:" + what it sent."""
    conn, _ = sock.accept()
    with conn:
        conn.sendall(b"pong:" + conn.recv(100))


async def start_asyncio_listener():
    async def handle(reader, writer):
        data = await reader.read(100)
        writer.write(b"pong:" + data)
        await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)  # LINE_ASYNC_LISTEN
