"""Loopback test servers: closing a listener that a server thread is blocked in accept() on."""

from __future__ import annotations

import socket
import subprocess
import sys


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


def outbound_rows_of_script(tmp_path, name: str, source: str) -> list:
    """Run ``source`` as ``<name>.py`` under ``mit-network-audit run`` into a fresh SQLite journal and
    return its outbound rows (the run must exit 0)."""
    from mit_network_audit.journal import open_store

    script = tmp_path / f"{name}.py"
    script.write_text(source)
    dsn = f"sqlite:///{tmp_path}/{name}.db"
    done = subprocess.run([sys.executable, "-m", "mit_network_audit.cli", "run", "--db", dsn, "--", "python",
                           str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return [r.event for r in open_store(dsn).rows(limit=50) if r.event.direction == "outbound"]
