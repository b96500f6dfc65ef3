"""SMTP, IMAP and POP3 sessions through the real stdlib clients against loopback servers: one row each."""

from __future__ import annotations

import gc
import imaplib
import json
import poplib
import smtplib
import threading
import time
from email.message import EmailMessage
from types import SimpleNamespace

import pytest

import mail_support as ms
import mit_network_audit as mna
from faults_support import install_hostile


@pytest.fixture(scope="module")
def mail(tmp_path_factory):
    certs = ms.make_certs(str(tmp_path_factory.mktemp("certs")))
    smtp = ms.start_smtp(certs)
    smtps = ms.start_smtp(certs, implicit_tls=True)
    servers = SimpleNamespace(
        certs=certs, ctx=certs.client_context, smtp=smtp, smtps=smtps,
        smtp_port=ms.smtp_port(smtp), smtps_port=ms.smtp_port(smtps),
        imap=ms.LineServer(ms.imap_handler, certs.server_context).start(),
        imaps=ms.LineServer(ms.imap_handler, certs.server_context, implicit_tls=True).start(),
        pop3=ms.LineServer(ms.pop3_handler, certs.server_context).start(),
        pop3s=ms.LineServer(ms.pop3_handler, certs.server_context, implicit_tls=True).start(),
    )
    yield servers
    smtp.stop()
    smtps.stop()
    for name in ("imap", "imaps", "pop3", "pop3s"):
        getattr(servers, name).stop()


def outbound(sink):
    return [e for e in sink.events if e.direction != "inbound"]


def message():
    msg = EmailMessage()
    msg["From"] = ms.SENDER
    msg["To"] = ms.RECIPIENT
    msg["Subject"] = "canary subject"
    msg.set_content("body text\n")
    return msg


# -- the sessions an addon would run (line numbers matter: call_site) ------------------------------
def send_with_starttls(port, ctx):
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:  # LINE_SMTP
        s.starttls(context=ctx)
        s.login(ms.USER, ms.PASSWORD)
        s.send_message(message())


def send_plain(port):
    s = smtplib.SMTP("127.0.0.1", port, timeout=10)
    s.ehlo()
    s.sendmail(ms.SENDER, [ms.RECIPIENT], message().as_bytes())
    s.quit()


def send_ssl(port, ctx):
    with smtplib.SMTP_SSL("127.0.0.1", port, context=ctx, timeout=10) as s:
        s.login(ms.USER, ms.PASSWORD)
        s.sendmail(ms.SENDER, [ms.RECIPIENT], message().as_bytes())


def imap_session(cls, port, ctx=None, starttls=False, authenticate=False):
    kwargs = {"ssl_context": ctx} if cls is imaplib.IMAP4_SSL else {}
    m = cls("127.0.0.1", port, timeout=10, **kwargs)
    if starttls:
        m.starttls(ssl_context=ctx)
    if authenticate:
        m.authenticate("PLAIN", lambda _: f"\0{ms.USER}\0{ms.PASSWORD}".encode())
    else:
        m.login(ms.USER, ms.PASSWORD)
    m.list()
    m.select(ms.MAILBOX)
    typ, data = m.search(None, "ALL")
    for num in data[0].split():
        m.fetch(num, "(RFC822)")
    m.logout()


def pop3_session(cls, port, ctx=None, stls=False):
    p = cls("127.0.0.1", port, timeout=10, **({"context": ctx} if cls is poplib.POP3_SSL else {}))
    if stls:
        p.stls(context=ctx)
    p.user(ms.USER)
    p.pass_(ms.PASSWORD)
    count, _ = p.stat()
    for i in range(count):
        p.retr(i + 1)
    p.quit()


# -- SMTP ----------------------------------------------------------------------------------------------
def test_smtp_starttls_auth_one_row(sink, mail):
    send_with_starttls(mail.smtp_port, mail.ctx)
    rows = outbound(sink)
    assert len(rows) == 1, [(e.channel, e.method) for e in rows]
    ev = rows[0]
    assert (ev.channel, ev.protocol, ev.direction) == ("smtp", "smtps", "outbound")
    assert ev.method == "EHLO,STARTTLS,AUTH,MAIL,RCPT,DATA,QUIT"
    assert ev.status == 221 and ev.outcome == "ok"
    assert (ev.host, ev.port, ev.dest_ip, ev.dest_port) == ("127.0.0.1", mail.smtp_port, "127.0.0.1", mail.smtp_port)
    assert ev.src_port and ev.dest_class == "local"
    assert ev.req_bytes > len(message().as_bytes()) and ev.resp_bytes > 100
    assert ev.addon == "test_mail_channels" and ev.call_site.endswith("in send_with_starttls")
    assert "smtplib" in ev.via
    _, rcpts, _ = mail.smtp.handler_record.messages[-1]
    assert rcpts == [ms.RECIPIENT]  # the canary really crossed the wire


def test_smtp_plain_and_ssl(sink, mail):
    send_plain(mail.smtp_port)
    send_ssl(mail.smtps_port, mail.ctx)
    rows = outbound(sink)
    assert [(e.channel, e.protocol, e.method, e.status) for e in rows] == [
        ("smtp", "smtp", "EHLO,MAIL,RCPT,DATA,QUIT", 221),
        ("smtp", "smtps", "EHLO,AUTH,MAIL,RCPT,DATA,QUIT", 221),
    ]
    assert rows[1].port == mail.smtps_port and rows[1].resp_bytes > 0


def test_smtp_refused_connection_and_refused_recipient(sink, mail):
    with pytest.raises(ConnectionRefusedError):
        smtplib.SMTP("127.0.0.1", 9, timeout=5)
    s = smtplib.SMTP("127.0.0.1", mail.smtp_port, timeout=10)
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        s.sendmail(ms.SENDER, ["reject-" + ms.RECIPIENT], b"Subject: x\r\n\r\nx\r\n")
    s.quit()
    refused, failed = outbound(sink)
    assert (refused.outcome, refused.error, refused.port, refused.method) == ("error", "ConnectionRefusedError", 9, None)
    # a refused recipient is the server's answer (the session went on), not a failed session
    assert failed.method == "EHLO,MAIL,RCPT,RSET,QUIT" and failed.status == 221 and failed.outcome == "ok"


def test_smtp_session_never_closed_gets_row_at_collection_and_uninstall(sink, mail):
    s = smtplib.SMTP("127.0.0.1", mail.smtp_port, timeout=10)
    s.noop()
    assert outbound(sink) == [] and mna.stats()["pending"] >= 1
    sock = s.sock
    del s
    gc.collect()
    rows = outbound(sink)
    assert [(e.method, e.status) for e in rows] == [("NOOP", 250)]
    sock.close()
    t = smtplib.SMTP("127.0.0.1", mail.smtp_port, timeout=10)
    t.ehlo()
    mna.uninstall()  # the process is stopping: a session still open is written now
    assert [e.method for e in outbound(sink)] == ["NOOP", "EHLO"]
    t.close()


def test_smtp_server_disconnect_is_error(sink, mail):
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve():
        conn, _ = listener.accept()
        conn.sendall(b"220 hi\r\n")
        conn.recv(100)
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    s = smtplib.SMTP("127.0.0.1", port, timeout=10)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        s.ehlo()
    listener.close()
    (ev,) = outbound(sink)
    assert ev.outcome == "error" and ev.error == "smtplib.SMTPServerDisconnected" and ev.method == "EHLO"
    assert ev.status == 220


# -- IMAP ------------------------------------------------------------------------------------------
def test_imap_plain_starttls_ssl_authenticate(sink, mail):
    imap_session(imaplib.IMAP4, mail.imap.port)
    imap_session(imaplib.IMAP4, mail.imap.port, ctx=mail.ctx, starttls=True)
    imap_session(imaplib.IMAP4_SSL, mail.imaps.port, ctx=mail.ctx)
    imap_session(imaplib.IMAP4, mail.imap.port, authenticate=True)
    rows = outbound(sink)
    assert [(e.channel, e.protocol, e.method) for e in rows] == [
        ("imap", "imap", "CAPABILITY,LOGIN,LIST,SELECT,SEARCH,FETCH,LOGOUT"),
        ("imap", "imaps", "CAPABILITY,STARTTLS,LOGIN,LIST,SELECT,SEARCH,FETCH,LOGOUT"),
        ("imap", "imaps", "CAPABILITY,LOGIN,LIST,SELECT,SEARCH,FETCH,LOGOUT"),
        ("imap", "imap", "CAPABILITY,AUTHENTICATE,LIST,SELECT,SEARCH,FETCH,LOGOUT"),
    ]
    for ev in rows:
        assert ev.outcome == "ok" and ev.status is None and ev.dest_ip == "127.0.0.1"
        assert ev.addon == "test_mail_channels" and ev.call_site.endswith("in imap_session")
        assert ev.resp_bytes > sum(map(len, ms.MESSAGES)) and ev.req_bytes > 0


def test_imap_bytes_exact_on_plain_session(sink, mail):
    before = len(mail.imap.received)
    imap_session(imaplib.IMAP4, mail.imap.port)
    (ev,) = outbound(sink)
    assert ev.req_bytes == sum(len(line) for line in mail.imap.received[before:])


def test_imap_refused(sink):
    with pytest.raises(ConnectionRefusedError):
        imaplib.IMAP4("127.0.0.1", 9, timeout=5)
    (ev,) = outbound(sink)
    assert (ev.channel, ev.outcome, ev.port) == ("imap", "error", 9)


# -- POP3 ------------------------------------------------------------------------------------------
def test_pop3_plain_stls_ssl(sink, mail):
    before = len(mail.pop3.received)
    pop3_session(poplib.POP3, mail.pop3.port)
    plain_bytes = sum(len(line) for line in mail.pop3.received[before:])
    pop3_session(poplib.POP3, mail.pop3.port, ctx=mail.ctx, stls=True)
    pop3_session(poplib.POP3_SSL, mail.pop3s.port, ctx=mail.ctx)
    rows = outbound(sink)
    assert [(e.channel, e.protocol, e.method) for e in rows] == [
        ("pop3", "pop3", "USER,PASS,STAT,RETR,QUIT"),
        ("pop3", "pop3s", "CAPA,STLS,USER,PASS,STAT,RETR,QUIT"),
        ("pop3", "pop3s", "USER,PASS,STAT,RETR,QUIT"),
    ]
    assert rows[0].req_bytes == plain_bytes
    for ev in rows:
        assert ev.outcome == "ok" and ev.resp_bytes > sum(map(len, ms.MESSAGES))
        assert ev.call_site.endswith("in pop3_session") and ev.dest_port in (mail.pop3.port, mail.pop3s.port)


def test_pop3_wrong_password_is_a_reply_not_a_failure(sink, mail):
    p = poplib.POP3("127.0.0.1", mail.pop3.port, timeout=10)
    p.user(ms.USER)
    with pytest.raises(poplib.error_proto):
        p.pass_("nope")
    p.quit()
    (ev,) = outbound(sink)
    assert ev.method == "USER,PASS,QUIT" and ev.outcome == "ok"


# -- the canary ------------------------------------------------------------------------------------
def test_canaries_never_in_any_event(sink, mail):
    send_with_starttls(mail.smtp_port, mail.ctx)
    send_ssl(mail.smtps_port, mail.ctx)
    send_plain(mail.smtp_port)
    imap_session(imaplib.IMAP4, mail.imap.port)
    imap_session(imaplib.IMAP4, mail.imap.port, authenticate=True)
    imap_session(imaplib.IMAP4_SSL, mail.imaps.port, ctx=mail.ctx)
    pop3_session(poplib.POP3, mail.pop3.port)
    s = smtplib.SMTP("127.0.0.1", mail.smtp_port, timeout=10)
    s.docmd(f"VRFY {ms.RECIPIENT}")
    s.docmd(f"XSECRET {ms.PASSWORD}")  # an unknown verb is recorded as OTHER, its text never
    s.quit()
    dump = json.dumps([e.as_dict() for e in sink.events])  # the servers' inbound rows included
    assert len([e for e in sink.events if e.direction == "outbound"]) == 8
    for canary in (ms.PASSWORD, ms.RECIPIENT, ms.MAILBOX, ms.USER, "canary subject", "7f3a9c",
                   ms.PASSWORD.encode().hex()):
        assert canary not in dump
    import base64

    for secret in (base64.b64encode(f"\0{ms.USER}\0{ms.PASSWORD}".encode()).decode(),
                   base64.b64encode(ms.PASSWORD.encode()).decode()):
        assert secret not in dump
    assert sink.events[-1].method == "VRFY,OTHER,QUIT"
    assert any(ms.PASSWORD.encode() in line for line in mail.imap.received)  # it did go over the wire


# -- concurrency -----------------------------------------------------------------------------------
def test_exact_counts_4_threads_x_50_sessions(sink, mail):
    errors = []

    def worker(i):
        try:
            for n in range(50):
                if n % 5 == 0:
                    imap_session(imaplib.IMAP4, mail.imap.port)
                elif n % 5 == 1:
                    pop3_session(poplib.POP3, mail.pop3.port)
                else:
                    send_plain(mail.smtp_port)
        except Exception as exc:  # pragma: no cover - shown in the assertion
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    rows = outbound(sink)
    assert len(rows) == 200
    by = {}
    for e in rows:
        by.setdefault((e.channel, e.method, e.status, e.outcome), []).append(e)
    assert {k: len(v) for k, v in by.items()} == {
        ("smtp", "EHLO,MAIL,RCPT,DATA,QUIT", 221, "ok"): 120,
        ("imap", "CAPABILITY,LOGIN,LIST,SELECT,SEARCH,FETCH,LOGOUT", None, "ok"): 40,
        ("pop3", "USER,PASS,STAT,RETR,QUIT", None, "ok"): 40,
    }
    assert len({e.event_id for e in rows}) == 200 and all(e.src_port and e.dest_ip for e in rows)
    smtp_bytes = {e.req_bytes for e in rows if e.channel == "smtp"}
    assert len(smtp_bytes) == 1  # identical sessions count identical bytes: no cross-thread mixing
    # nothing left pending once the loopback servers (in this process) have closed their side too: an
    # accepted connection's row waits for the server's close, which may come just after the client's QUIT
    deadline = time.monotonic() + 10
    while mna.stats().get("pending", 0) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert mna.stats().get("pending", 0) == 0


def test_fail_open_sessions_behave_the_same_when_every_collaborator_raises(mail):
    # The loopback servers run in this process; their accepted connections (the socket backstop's
    # inbound rows) would be rows too, and the count below is about the mail sessions.
    install_hostile(disabled_channels=("socket",))
    try:
        before = mna.stats().get("errors.sink", 0)
        send_with_starttls(mail.smtp_port, mail.ctx)
        imap_session(imaplib.IMAP4_SSL, mail.imaps.port, ctx=mail.ctx)
        pop3_session(poplib.POP3, mail.pop3.port, ctx=mail.ctx, stls=True)
        with pytest.raises(ConnectionRefusedError):
            smtplib.SMTP("127.0.0.1", 9, timeout=5)
        assert mna.stats()["errors.sink"] == before + 4  # four rows tried, none reached a sink
    finally:
        mna.uninstall()
