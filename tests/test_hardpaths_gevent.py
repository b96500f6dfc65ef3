"""gevent: a pywsgi worker whose requests send mail, call HTTP, spawn processes and use raw sockets —
with ``monkey.patch_all()`` before and after ``install()``.  Runs in a child interpreter (monkey
patching cannot be undone) that prints its events as JSON lines."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections import Counter

import pytest

import mail_support as ms
from net_support import close_listener

pytest.importorskip("gevent")

N = 8

WORKER = r'''
import json, sys
mode, smtp_port, http_url, tcp_port = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
if mode == "before":
    from gevent import monkey; monkey.patch_all()
import mit_network_audit as mna
sink = mna.MemorySink()
mna.install(sink=sink, salt=b"s" * 32)
if mode == "after":
    from gevent import monkey; monkey.patch_all()
import smtplib, socket, subprocess, urllib.request
import gevent
from gevent.pywsgi import WSGIServer

def app(environ, start_response):          # the audited application: a gevent worker's request
    with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as s:
        s.sendmail("a@example.net", ["b@example.org"], b"Subject: x\r\n\r\nbody\r\n")
    body = urllib.request.urlopen(http_url + "/echo", timeout=10).read()
    subprocess.run(["true", "hooks.example.com:443"], check=True)
    raw = socket.create_connection(("127.0.0.1", tcp_port), timeout=10)
    raw.sendall(b"ping")
    raw.recv(100)
    raw.close()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]

server = WSGIServer(("127.0.0.1", 0), app, log=None)
server.start()
port = server.server_port

def client(i):
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/r{i}", timeout=20).read()

jobs = [gevent.spawn(client, i) for i in range(int(sys.argv[5]))]
gevent.joinall(jobs, raise_error=True)
server.stop()
mna.uninstall()
import socket as s2
print(json.dumps({"socket_class": s2.socket.__module__, "stats": {k: v for k, v in mna.stats().items()}}))
for e in sink.events:
    print(json.dumps(e.as_dict()))
'''


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    certs = ms.make_certs(str(tmp_path_factory.mktemp("certs")))
    smtp = ms.start_smtp(certs)
    listener = socket.create_server(("127.0.0.1", 0), backlog=128)

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.sendall(b"pong:" + conn.recv(100))
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    yield ms.smtp_port(smtp), listener.getsockname()[1]
    smtp.stop()
    close_listener(listener)


def run_worker(tmp_path, mode, servers, http_server):
    script = tmp_path / "gevent_worker.py"
    script.write_text(WORKER)
    smtp_port, tcp_port = servers
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    out = subprocess.run([sys.executable, str(script), mode, str(smtp_port), http_server, str(tcp_port), str(N)],
                         capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    return json.loads(lines[0]), [json.loads(line) for line in lines[1:]]


@pytest.mark.parametrize("mode", ["before", "after"])
def test_gevent_worker_rows(tmp_path, servers, http_server, mode):
    meta, events = run_worker(tmp_path, mode, servers, http_server)
    assert meta["socket_class"].startswith("gevent"), meta  # the worker really ran on gevent sockets
    outbound = [e for e in events if e["direction"] == "outbound"]
    counts = Counter((e["channel"], e["protocol"]) for e in outbound)
    assert counts == {
        ("urllib", "http"): 2 * N,  # the clients' requests to the worker and the app's own call
        ("smtp", "smtp"): N,
        ("subprocess", "exec"): N,
        ("socket", "tcp"): N,
    }, counts
    assert [e for e in events if e["direction"] == "internal"] == []  # no tamper alarm
    smtp_rows = [e for e in outbound if e["channel"] == "smtp"]
    assert {e["method"] for e in smtp_rows} == {"EHLO,MAIL,RCPT,DATA,QUIT"} and {e["status"] for e in smtp_rows} == {221}
    raw = [e for e in outbound if e["channel"] == "socket"]
    assert {(e["req_bytes"], e["resp_bytes"]) for e in raw} == {(4, 9)}  # bytes counted on gevent's socket
    procs = [e for e in outbound if e["channel"] == "subprocess"]
    assert {(e["path"], e["host"], e["port"]) for e in procs} == {("true", "hooks.example.com", 443)}
    app_rows = [e for e in outbound if e["call_site"] and "in app" in e["call_site"]]
    assert len(app_rows) == 4 * N  # attributed to the application function, greenlet by greenlet
    assert {e["addon"] for e in outbound} == {"__main__"}
    assert not any(k.startswith("errors.") for k in meta["stats"]), meta["stats"]
