"""Loopback test servers: closing a listener that a server thread is blocked in accept() on."""

from __future__ import annotations

import socket


def close_listener(sock: socket.socket) -> None:
    """Shut the listening socket down, then close it.

    close() alone does not wake a thread blocked in accept() on Linux: the thread stays parked in
    the kernel on the old fd *number*, and when any signal interrupts and restarts that accept(),
    the kernel looks the number up again — by then often another test's listener (the session
    ``http_server``), whose connections the stale thread then steals and answers.
    shutdown(SHUT_RDWR) makes the blocked accept() fail (EINVAL), so the server thread ends first.
    """
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
