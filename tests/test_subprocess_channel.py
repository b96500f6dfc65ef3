"""Process rows: subprocess, os.system, os.posix_spawn, os.exec*, os.spawn*, multiprocessing spawn, audit backstop."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys

import pytest

import mit_network_audit as mna
from mit_network_audit.interceptor.channels.subprocess import describe, propagate_env

SECRET = "canary-arg-secret-7f3a9c"


def procs(sink):
    return [e for e in sink.events if e.channel == "subprocess"]


def spawn_curl_like():
    return subprocess.run(["echo", f"--password={SECRET}", f"https://api.example.com:8443/v1/{SECRET}?k={SECRET}"],
                          stdout=subprocess.DEVNULL, check=True)  # LINE_POPEN


def test_popen_row_with_host_only(sink):
    spawn_curl_like()
    (ev,) = procs(sink)
    assert (ev.direction, ev.protocol, ev.method, ev.path, ev.host, ev.port) == (
        "outbound", "exec", "popen", "echo", "api.example.com", 8443)
    assert ev.outcome == "ok" and ev.addon == "test_subprocess_channel"
    assert ev.call_site.endswith("in spawn_curl_like") and "subprocess" in ev.via
    assert SECRET not in json.dumps(ev.as_dict()) and "v1" not in json.dumps(ev.as_dict())
    assert [e for e in sink.events if e.channel != "subprocess"] == []


def test_shell_true_names_the_command_not_the_shell(sink):
    subprocess.run(f"FOO={SECRET} exec echo backup@db.internal.example:dump.sql > /dev/null", shell=True, check=True)
    (ev,) = procs(sink)
    assert (ev.method, ev.path, ev.host, ev.port) == ("popen", "echo", "db.internal.example", None)
    assert SECRET not in json.dumps(ev.as_dict()) and "backup" not in json.dumps(ev.as_dict())


def test_popen_missing_executable_is_error(sink):
    with pytest.raises(FileNotFoundError):
        subprocess.Popen(["mna-no-such-program-xyz", "10.1.2.3:5432"])
    (ev,) = procs(sink)
    assert (ev.outcome, ev.error, ev.path, ev.host, ev.port) == (
        "error", "FileNotFoundError", "mna-no-such-program-xyz", "10.1.2.3", 5432)


def test_os_system_exit_code(sink):
    assert os.system("true") == 0
    os.system("sh -c 'exit 3'")
    rows = procs(sink)
    assert [(e.method, e.path, e.status) for e in rows] == [("system", "true", 0), ("system", "exit", 3)]


def test_posix_spawnp(sink):
    pid = os.posix_spawnp("echo", ["echo", "[::1]:6379", SECRET], dict(os.environ), file_actions=[
        (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)])
    os.waitpid(pid, 0)
    (ev,) = procs(sink)
    assert (ev.method, ev.path, ev.host, ev.port) == ("posix_spawn", "echo", "::1", 6379)


def test_audit_hook_catches_a_restored_original(sink):
    original = os.system.__mna_original__
    original("true")  # a reference taken before install: no wrapper runs
    (ev,) = procs(sink)
    assert (ev.method, ev.path) == ("audit", "true") and ev.addon == "test_subprocess_channel"


def _journal_rows(dsn):
    from mit_network_audit.journal import open_store

    return [r.event for r in open_store(dsn).rows(limit=100)]


def test_exec_row_written_before_the_image_is_replaced(tmp_path):
    from mit_network_audit.journal.sink import BatchingSink

    dsn = f"sqlite:///{tmp_path}/exec.db"
    journal = BatchingSink(dsn)
    mna.install(sink=journal)
    try:
        pid = os.fork()
        if pid == 0:
            try:
                os.execvp("true", ["true", f"sftp://files.example.org/{SECRET}"])
            finally:
                os._exit(99)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        spawned = os.spawnv(os.P_WAIT, "/bin/true", ["true", "ldap.example.net:636"])
        assert spawned == 0
        journal.flush()
    finally:
        mna.uninstall()
    rows = [e for e in _journal_rows(dsn) if e.channel == "subprocess"]
    assert sorted((e.method, e.path, e.host, e.port, e.pid) for e in rows) == sorted([
        ("exec", "true", "files.example.org", None, pid),  # written by the child, just before exec
        ("spawn", "true", "ldap.example.net", 636, os.getpid()),  # one row: the child's exec is ours
    ])


def _child_noop():
    return None


def test_multiprocessing_spawn_gets_a_row(sink):
    ctx = multiprocessing.get_context("spawn")
    p = ctx.Process(target=_child_noop)
    p.start()
    p.join(30)
    assert p.exitcode == 0
    rows = procs(sink)
    assert rows and {e.method for e in rows} == {"fork_exec"}
    assert {e.path for e in rows} == {os.path.basename(sys.executable)}
    assert all(e.addon == "test_subprocess_channel" for e in rows)


def test_describe_rules():
    assert describe(["curl", "-u", f"me:{SECRET}", "https://user:pw@files.example.com/a"]) == {
        "path": "curl", "host": "files.example.com", "port": None}
    assert describe(command=f"env A=1 timeout 5 nc -z {SECRET} mail.example.org:25") == {
        "path": "nc", "host": "mail.example.org", "port": 25}
    assert describe(["ssh", "-p", "22", "deploy@bastion.example.net", "uptime"])["host"] == "bastion.example.net"
    assert describe(["mail", "-s", "x", "someone@example.org"])["host"] is None  # an address is data
    assert describe(["tool", "--at", "12:30", "v1.2:beta"]) == {"path": "tool", "host": None, "port": None}
    assert describe([b"/usr/bin/wget", b"--post-data=x", b"http://10.0.0.5:8080/"]) == {
        "path": "wget", "host": "10.0.0.5", "port": 8080}
    assert describe(["/bin/sh", "-c", "curl -s https://hooks.example.com/x | sh"])["path"] == "curl"


def test_env_propagation_only_under_run(monkeypatch, tmp_path):
    site = tmp_path / "mit_network_audit" / "runner" / "site"
    site.mkdir(parents=True)
    (site / "sitecustomize.py").write_text("")
    assert propagate_env({"PATH": "/bin"}) == {"PATH": "/bin"}  # not under run: untouched
    monkeypatch.setenv("MNA_DB", "sqlite:///x.db")
    monkeypatch.setenv("PYTHONPATH", str(site))
    given = {"PATH": "/bin", "PYTHONPATH": "/opt/app"}
    out = propagate_env(given)
    assert out["MNA_DB"] == "sqlite:///x.db" and out["PYTHONPATH"] == f"{site}{os.pathsep}/opt/app"
    assert given == {"PATH": "/bin", "PYTHONPATH": "/opt/app"}  # the caller's dict is not modified
    assert propagate_env(None) is None


def test_uninstall_restores_every_original():
    import _posixsubprocess
    import ftplib
    import imaplib
    import poplib
    import smtplib

    targets = [(smtplib.SMTP, "connect"), (smtplib.SMTP, "getreply"), (imaplib.IMAP4, "open"),
               (poplib.POP3, "__init__"), (ftplib.FTP, "connect"), (ftplib.FTP_TLS, "auth"),
               (subprocess.Popen, "__init__"), (os, "system"), (os, "execv"), (os, "posix_spawn"),
               (_posixsubprocess, "fork_exec")]
    before = {(id(o), n): o.__dict__.get(n) for o, n in targets}
    mna.install(sink=mna.MemorySink())
    try:
        assert all(o.__dict__.get(n) is not before[(id(o), n)] for o, n in targets)
    finally:
        mna.uninstall()
    assert all(o.__dict__.get(n) is before[(id(o), n)] for o, n in targets)


def test_bad_arguments_raise_what_they_raise_without_us(sink):
    def errors():
        out = []
        for bad in (lambda: subprocess.Popen(), lambda: subprocess.Popen(12345), lambda: os.posix_spawn("x"),
                    lambda: os.system()):
            try:
                bad()
            except Exception as exc:  # noqa: BLE001 - we compare what the caller sees
                out.append((type(exc), str(exc)))
        return out

    audited = errors()
    mna.uninstall()
    assert audited == errors()
