"""ftplib FTP and FTP_TLS sessions against pyftpdlib on loopback: one row per session, data connections included."""

from __future__ import annotations

import ftplib
import io
import json

import pytest

import mail_support as ms

FILE_NAME = "canary-report-7f3a9c.csv"
PAYLOAD = b"id,amount\n" + b"1,100\n" * 2000


@pytest.fixture(scope="module")
def ftp_servers(tmp_path_factory):
    home = tmp_path_factory.mktemp("ftphome")
    (home / "existing.bin").write_bytes(b"x" * 5000)
    plain = ms.start_ftp(str(home))
    try:
        import OpenSSL  # noqa: F401  (pyftpdlib's TLS handler needs pyOpenSSL)

        certs = ms.make_certs(str(tmp_path_factory.mktemp("certs")))
        tls = ms.start_ftp(str(home), certs)
    except ImportError:
        certs = tls = None
    yield plain, tls, certs, home
    plain.close_all()
    if tls is not None:
        tls.close_all()


def upload_and_download(ftp):
    ftp.login(ms.USER, ms.PASSWORD)
    ftp.storbinary(f"STOR {FILE_NAME}", io.BytesIO(PAYLOAD))
    names = ftp.nlst()
    chunks = []
    ftp.retrbinary(f"RETR {FILE_NAME}", chunks.append)
    ftp.delete(FILE_NAME)
    ftp.quit()
    return names, b"".join(chunks)


def test_ftp_session_one_row_with_data_bytes(sink, ftp_servers):
    plain = ftp_servers[0]
    names, data = upload_and_download(_connect(plain))
    assert FILE_NAME in names and data == PAYLOAD
    rows = [e for e in sink.events if e.direction == "outbound"]
    assert len(rows) == 1, [(e.channel, e.method) for e in rows]
    ev = rows[0]
    assert (ev.channel, ev.protocol, ev.status, ev.outcome) == ("ftp", "ftp", 221, "ok")
    assert ev.method == "USER,PASS,TYPE,PASV,STOR,NLST,RETR,DELE,QUIT"
    assert (ev.host, ev.port, ev.dest_port) == ("127.0.0.1", ms.ftp_port(plain), ms.ftp_port(plain))
    assert ev.req_bytes > len(PAYLOAD) and ev.resp_bytes > len(PAYLOAD)
    assert ev.req_bytes < len(PAYLOAD) + 400  # commands only besides the upload
    assert ev.addon == "test_ftp_channel" and ev.call_site.endswith("in _connect")
    dump = json.dumps([e.as_dict() for e in sink.events])
    for canary in (FILE_NAME, "7f3a9c", ms.USER, ms.PASSWORD):
        assert canary not in dump


def _connect(server):
    ftp = ftplib.FTP()
    ftp.connect("127.0.0.1", ms.ftp_port(server), timeout=10)
    return ftp


def test_ftp_error_reply_is_status_not_failure_and_refused_is(sink, ftp_servers):
    ftp = _connect(ftp_servers[0])
    ftp.login(ms.USER, ms.PASSWORD)
    with pytest.raises(ftplib.error_perm):
        ftp.retrbinary("RETR missing-file", lambda b: None)
    ftp.close()  # no QUIT: the last reply is the 550
    with pytest.raises(ConnectionRefusedError):
        ftplib.FTP().connect("127.0.0.1", 9, timeout=5)
    first, refused = [e for e in sink.events if e.direction == "outbound"]
    assert first.status == 550 and first.outcome == "ok" and first.method == "USER,PASS,TYPE,PASV,RETR"
    assert (refused.outcome, refused.error, refused.port) == ("error", "ConnectionRefusedError", 9)


def test_ftp_tls_prot_p(sink, ftp_servers):
    plain, tls, certs, _ = ftp_servers
    if tls is None:
        pytest.skip("pyOpenSSL not installed: pyftpdlib has no TLS handler")
    ftp = ftplib.FTP_TLS(context=certs.client_context)
    ftp.connect("127.0.0.1", ms.ftp_port(tls), timeout=10)
    ftp.login(ms.USER, ms.PASSWORD)
    ftp.prot_p()
    names, data = upload_and_download_logged_in(ftp)
    assert data == PAYLOAD
    (ev,) = [e for e in sink.events if e.direction == "outbound"]
    assert (ev.channel, ev.protocol, ev.status) == ("ftp", "ftps", 221)
    assert ev.method == "AUTH,USER,PASS,PBSZ,PROT,TYPE,PASV,STOR,NLST,RETR,DELE,QUIT"
    assert ev.req_bytes > len(PAYLOAD) and ev.resp_bytes > len(PAYLOAD)


def upload_and_download_logged_in(ftp):
    ftp.storbinary(f"STOR {FILE_NAME}", io.BytesIO(PAYLOAD))
    names = ftp.nlst()
    chunks = []
    ftp.retrbinary(f"RETR {FILE_NAME}", chunks.append)
    ftp.delete(FILE_NAME)
    ftp.quit()
    return names, b"".join(chunks)


def test_ftp_retrlines_and_storlines_counted(sink, ftp_servers):
    ftp = _connect(ftp_servers[0])
    ftp.login(ms.USER, ms.PASSWORD)
    ftp.storlines("STOR lines.txt", io.BytesIO(b"alpha\nbeta\n"))
    lines = []
    ftp.retrlines("RETR lines.txt", lines.append)
    ftp.delete("lines.txt")
    ftp.quit()
    assert lines == ["alpha", "beta"]
    (ev,) = [e for e in sink.events if e.direction == "outbound"]
    assert ev.method == "USER,PASS,TYPE,PASV,STOR,RETR,DELE,QUIT"
