"""ftplib: ``FTP`` and ``FTP_TLS`` — one row per session (connect to close), data connections included.

Row: ``method`` = the FTP commands used, in order, without repeats (``USER,PASS,TYPE,PASV,RETR,
QUIT``); ``status`` = the last reply code; ``protocol`` = ``ftps`` once the control connection is
TLS-protected (``FTP_TLS.auth``, also done by ``FTP_TLS.login``), else ``ftp``; bytes = control
commands and replies (as text lines + CRLF) plus the payload of every data connection
(RETR/LIST/NLST/MLSD downloads, STOR/APPE uploads), before encryption.  The data connections
are part of the session's row (the socket layer only enriches it).  File and directory names,
user names and passwords are arguments: never stored.  A 4xx/5xx reply is a protocol answer
(it is in ``status``), not a failure of the session; a broken connection is.
"""

from __future__ import annotations

from ..counting import RequestBodyCounter
from . import _session

NAME = "ftp"
TARGET = "ftplib"

VERBS = frozenset(
    "USER PASS ACCT CWD CDUP SMNT REIN QUIT PORT PASV EPRT EPSV LPRT LPSV TYPE STRU MODE RETR STOR STOU APPE "
    "ALLO REST RNFR RNTO ABOR DELE RMD MKD PWD LIST NLST SITE SYST STAT HELP NOOP FEAT OPTS AUTH PBSZ PROT CCC "
    "MLSD MLST SIZE MDTM LANG HOST XPWD XCWD XMKD XRMD".split()
)


def install(patches) -> None:
    import ftplib

    FTP = ftplib.FTP
    FTP_TLS = getattr(ftplib, "FTP_TLS", None)

    def _reply_error(exc) -> bool:
        return isinstance(exc, ftplib.Error)

    def make_getmultiline(original):
        def getmultiline(self):
            session = _session.get(self)
            resp = original(self)
            if session is not None:
                code = resp[:3]
                if code.isdigit():
                    session.call.status = int(code)
            return resp
        return getmultiline

    def make_scoped(original):  # data connections (and their TLS) belong to the session's row
        def scoped(self, *args, **kwargs):
            return _session.run(_session.get(self), original, self, *args, scoped=True, error_filter=_reply_error,
                                **kwargs)
        return scoped

    def make_abort(original):
        def abort(self, *args, **kwargs):
            _session.add_verb(_session.get(self), "ABOR", VERBS)
            return original(self, *args, **kwargs)
        return abort

    def make_retr(original, binary: bool):
        def retr(self, cmd, callback=None, *args, **kwargs):
            session = _session.get(self)
            if session is None:
                return original(self, cmd, callback, *args, **kwargs)
            call = session.call
            if binary:
                def counted(data, _cb=callback):
                    call.resp_bytes += len(data)
                    return _cb(data)
            else:
                target = callback if callback is not None else ftplib.print_line

                def counted(line, _cb=target):
                    call.resp_bytes += _encoded_len(self, line) + 2
                    return _cb(line)
            return original(self, cmd, counted, *args, **kwargs)
        return retr

    def make_stor(original):
        def stor(self, cmd, fp, *args, **kwargs):
            session = _session.get(self)
            if session is not None and fp is not None:
                fp = RequestBodyCounter(fp, session.call)
            return original(self, cmd, fp, *args, **kwargs)
        return stor

    patches.wrap(FTP, "connect", _session.wrap_open(NAME, lambda _client: "ftp", _reply_error))
    patches.wrap(FTP, "putcmd", _session.wrap_verbs(VERBS))
    patches.wrap(FTP, "putline", _session.wrap_counted("req_bytes", lambda c, args, _r: _encoded_len(c, args[0]) + 2))
    patches.wrap(FTP, "getline", _session.wrap_counted("resp_bytes", lambda c, _a, line: _encoded_len(c, line) + 2,
                                                       _reply_error))
    patches.wrap(FTP, "getmultiline", make_getmultiline)
    patches.wrap(FTP, "ntransfercmd", make_scoped)
    patches.wrap(FTP, "abort", make_abort)
    patches.wrap(FTP, "retrbinary", lambda o: make_retr(o, True))
    patches.wrap(FTP, "retrlines", lambda o: make_retr(o, False))
    patches.wrap(FTP, "storbinary", make_stor)
    patches.wrap(FTP, "storlines", make_stor)
    patches.wrap(FTP, "close", _session.wrap_close())
    if FTP_TLS is not None:
        patches.wrap(FTP_TLS, "ntransfercmd", make_scoped)
        patches.wrap(FTP_TLS, "abort", make_abort)

        patches.wrap(FTP_TLS, "auth", _session.wrap_tls_upgrade("ftps", lambda _client: True, _reply_error))


def _encoded_len(client, line) -> int:
    try:
        return len(line.encode(getattr(client, "encoding", "utf-8"), "replace"))
    except Exception:
        return len(line)
