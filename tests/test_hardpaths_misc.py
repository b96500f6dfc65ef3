"""Hard paths: threads started before install, multiprocessing (fork, spawn, forkserver), Python children
under ``mit-network-audit run``, DNS, and evasion tricks (ctypes, C callers, UDP, pre-install sockets)."""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import socket
import struct
import subprocess
import sys
import threading

import pytest

import mail_support as ms
import mit_network_audit as mna
from net_support import close_listener, outbound_rows_of_script

CLI = [sys.executable, "-m", "mit_network_audit.cli"]


@pytest.fixture(scope="module")
def tcp_server():
    listener = socket.create_server(("127.0.0.1", 0), backlog=256)
    accepted = []

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(1)
            try:
                conn.sendall(b"pong:" + conn.recv(100))
            except OSError:
                pass
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[1], accepted
    close_listener(listener)


@pytest.fixture(scope="module")
def smtp_server(tmp_path_factory):
    certs = ms.make_certs(str(tmp_path_factory.mktemp("certs")))
    smtp = ms.start_smtp(certs)
    yield ms.smtp_port(smtp)
    smtp.stop()


def ping(port, payload=b"ping"):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(payload)
    data = sock.recv(100)
    sock.close()
    return data


def test_thread_started_before_install(tcp_server, smtp_server):
    import smtplib

    port, _ = tcp_server
    go = threading.Event()
    done = []

    def worker():
        go.wait(10)
        ping(port)
        with smtplib.SMTP("127.0.0.1", smtp_server, timeout=10) as s:
            s.noop()
        done.append(True)

    thread = threading.Thread(target=worker)
    thread.start()  # before install: patches are on classes and modules, not per thread
    sink = mna.MemorySink()
    mna.install(sink=sink)
    try:
        go.set()
        thread.join(20)
    finally:
        mna.uninstall()
    assert done == [True]
    rows = [e for e in sink.events if e.direction == "outbound"]
    assert sorted((e.channel, e.method) for e in rows) == [("smtp", "NOOP,QUIT"), ("socket", None)]
    assert all(e.call_site.endswith("in worker") or e.call_site.endswith("in ping") for e in rows)


def _fork_child(port):
    ping(port, b"from-fork-child")


def test_multiprocessing_fork_child_rows(tmp_path, tcp_server):
    from mit_network_audit.journal import open_store
    from mit_network_audit.journal.sink import BatchingSink

    port, _ = tcp_server
    dsn = f"sqlite:///{tmp_path}/fork.db"
    journal = BatchingSink(dsn)
    mna.install(sink=journal)
    try:
        ctx = multiprocessing.get_context("fork")
        children = [ctx.Process(target=_fork_child, args=(port,)) for _ in range(3)]
        for p in children:
            p.start()
        for p in children:
            p.join(30)
        ping(port)
        journal.flush()
    finally:
        mna.uninstall()
    rows = [r.event for r in open_store(dsn).rows(limit=100)
            if r.event.channel == "socket" and r.event.direction == "outbound"]
    assert sorted(e.pid for e in rows) == sorted([p.pid for p in children] + [os.getpid()])
    assert sorted(e.req_bytes for e in rows) == [4] + [len(b"from-fork-child")] * 3


PARENT = r'''
import multiprocessing, os, socket, subprocess, sys

def ping(port, payload):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(payload)
    s.recv(100)
    s.close()

def target(port, payload):
    ping(port, payload)

if __name__ == "__main__":
    port = int(sys.argv[1])
    child = sys.argv[2]
    ping(port, b"P" * 1)                                                         # the parent
    subprocess.run([sys.executable, child, str(port), "2"], check=True)          # inherits run's env
    subprocess.run([sys.executable, child, str(port), "3"], check=True,
                   env={"PATH": os.environ.get("PATH", "")})                     # explicit env: propagated
    subprocess.run([sys.executable, "-I", child, str(port), "9"], check=True)    # -I ignores PYTHONPATH: a gap
    for n, method in ((4, "spawn"), (5, "forkserver")):
        p = multiprocessing.get_context(method).Process(target=target, args=(port, b"P" * n))
        p.start()
        p.join(60)
        assert p.exitcode == 0, method
'''

CHILD = r'''
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port), timeout=10)
s.sendall(b"P" * n)
s.recv(100)
s.close()
'''


def test_python_children_audited_under_run(tmp_path, tcp_server):
    from mit_network_audit.journal import open_store

    port, _ = tcp_server
    (tmp_path / "parent.py").write_text(PARENT)
    (tmp_path / "child.py").write_text(CHILD)
    dsn = f"sqlite:///{tmp_path}/run.db"
    done = subprocess.run([*CLI, "run", "--db", dsn, "--", "python", str(tmp_path / "parent.py"), str(port),
                           str(tmp_path / "child.py")], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    events = [r.event for r in open_store(dsn).rows(limit=500)]
    sockets = [e for e in events if e.channel == "socket"]
    by_size = {e.req_bytes: e for e in sockets}
    assert sorted(by_size) == [1, 2, 3, 4, 5], [(e.req_bytes, e.pid) for e in sockets]  # 9 (-I) is the gap
    assert len({e.pid for e in sockets}) == 5  # five processes, each auditing itself
    parent_pid = by_size[1].pid
    spawned = [e for e in events if e.channel == "subprocess" and e.pid == parent_pid]
    assert sum(1 for e in spawned if e.method == "popen") == 3
    assert any(e.method == "fork_exec" for e in spawned)  # multiprocessing's spawn/forkserver start
    starts = {e.pid for e in events if e.direction == "internal" and e.method == "start"}
    # each started its own auditor, except the forkserver's worker: a fork of the (audited) forkserver
    assert {e.pid for e in sockets} - starts == {by_size[5].pid}


def test_dns_lookups_are_not_rows_connects_are(sink, tcp_server):
    port, _ = tcp_server
    socket.getaddrinfo("localhost", port)
    socket.gethostbyname("localhost")
    assert sink.events == []  # decision: a lookup alone is not a row (docs/coverage.md, "DNS")
    sock = socket.create_connection(("localhost", port), timeout=10)
    sock.close()
    (ev,) = [e for e in sink.events if e.direction == "outbound"]  # (the server's side: inbound)
    assert ev.channel == "socket" and ev.dest_ip in ("127.0.0.1", "::1") and ev.dest_port == port


def test_udp_sendto_row(sink):
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.sendto(b"dns-ish-query", receiver.getsockname())
    sender.close()
    assert receiver.recv(100) == b"dns-ish-query"
    receiver.close()
    (ev,) = sink.events
    assert (ev.channel, ev.protocol, ev.req_bytes) == ("socket", "udp", len(b"dns-ish-query"))


def test_create_connection_called_from_c(sink, tcp_server):
    port, _ = tcp_server
    call = ctypes.pythonapi.PyObject_CallObject
    call.restype = ctypes.py_object
    call.argtypes = [ctypes.py_object, ctypes.py_object]
    sock = call(socket.create_connection, (("127.0.0.1", port), 10))  # C calling the Python function
    sock.close()
    (ev,) = [e for e in sink.events if e.direction == "outbound"]
    assert ev.channel == "socket" and ev.dest_port == port


def test_ctypes_libc_connect_flagged_by_symbol_lookup(sink, tcp_server):
    port, accepted = tcp_server
    before = len(accepted)
    libc = ctypes.CDLL(None, use_errno=True)
    c_socket, c_connect, c_close = libc.socket, libc.connect, libc.close  # LINE_CTYPES
    fd = c_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    addr = struct.pack("!HH4s8x", socket.AF_INET, port, socket.inet_aton("127.0.0.1"))
    addr = struct.pack("=H", socket.AF_INET) + addr[2:]  # sa_family is host order
    assert c_connect(fd, addr, len(addr)) == 0
    c_close(fd)
    for _ in range(100):
        if len(accepted) > before:
            break
        threading.Event().wait(0.02)
    assert len(accepted) >= before + 1  # the connection really happened, under every socket patch
    rows = [e for e in sink.events if e.direction == "outbound"]
    assert [(e.channel, e.method, e.path) for e in rows] == [("audit", "ctypes", "connect")]
    assert rows[0].addon == "test_hardpaths_misc"


def test_socket_connected_before_install_is_not_seen(tcp_server):
    """A documented gap: a connection opened before install() has no row (its later bytes are not counted)."""
    port, _ = tcp_server
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sink = mna.MemorySink()
    mna.install(sink=sink)
    try:
        sock.sendall(b"late")
        sock.recv(100)
        sock.close()
    finally:
        mna.uninstall()
    assert [e for e in sink.events if e.direction == "outbound"] == []


def test_mail_evasions_fall_back_to_the_socket_backstop(sink, smtp_server):
    """A fresh copy of smtplib (never patched), or SMTP.connect restored behind our back: the session
    loses its verbs, but the connection is still a row — a raw ``socket`` row with its bytes."""
    import importlib.util
    import smtplib

    spec = importlib.util.find_spec("smtplib")
    fresh = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fresh)
    s = fresh.SMTP("127.0.0.1", smtp_server, timeout=10)
    s.noop()
    s.quit()
    wrapper = smtplib.SMTP.connect
    smtplib.SMTP.connect = wrapper.__mna_original__
    try:
        t = smtplib.SMTP("127.0.0.1", smtp_server, timeout=10)
        t.noop()
        t.quit()
    finally:
        smtplib.SMTP.connect = wrapper
    rows = [e for e in sink.events if e.direction == "outbound"]
    assert [(e.channel, e.protocol, e.dest_port) for e in rows] == [("socket", "tcp", smtp_server)] * 2
    assert all(e.req_bytes > 0 and e.resp_bytes > 0 for e in rows)


def test_session_left_open_at_exit_gets_its_row(tmp_path, smtp_server):
    rows = outbound_rows_of_script(tmp_path, "leaky", (
        "import smtplib, sys\n"
        f"s = smtplib.SMTP('127.0.0.1', {smtp_server}, timeout=10)\n"
        "s.ehlo()\n"
        "KEEP = s  # never closed: the process just ends\n"))
    assert [(e.channel, e.method, e.status, e.call_site) for e in rows] == [("smtp", "EHLO", 250, "leaky.py:2 in <module>")]
