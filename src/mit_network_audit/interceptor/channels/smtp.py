"""smtplib: ``SMTP``, ``SMTP_SSL``, ``starttls`` (and ``LMTP`` over TCP) — one row per session.

Row: ``method`` = the verbs used, in order, without repeats (``EHLO,STARTTLS,AUTH,MAIL,RCPT,DATA,QUIT``);
``status`` = the last reply code; ``protocol`` = ``smtps`` once the session is TLS-protected
(SMTP_SSL, or a successful STARTTLS — the verbs tell which), else ``smtp``; bytes = every
command, the message data and every reply, counted before encryption.  Sender, recipients,
message and credentials are arguments: never stored (AUTH continuation lines are not even
looked at as verbs).
"""

from __future__ import annotations

from .. import capture
from ..counting import ResponseCounter
from . import _session

NAME = "smtp"
TARGET = "smtplib"

VERBS = frozenset(
    "HELO EHLO STARTTLS AUTH MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY EXPN HELP ETRN TURN ATRN LHLO".split()
)


def install(patches) -> None:
    import smtplib
    import ssl

    SMTP = smtplib.SMTP
    SMTP_SSL = getattr(smtplib, "SMTP_SSL", None)

    def make_connect(original):
        def connect(self, host="localhost", port=0, source_address=None):
            if not capture.runtime.active:
                return original(self, host, port, source_address)
            name, number = _session.split_host_port(host, port, getattr(self, "default_port", 25))
            tls = SMTP_SSL is not None and isinstance(self, SMTP_SSL)
            session = _session.open_session(self, NAME, "smtps" if tls else "smtp", name, number)
            try:
                return _session.run(session, original, self, host, port, source_address, scoped=True)
            finally:
                _session.enrich_peer(session, getattr(self, "sock", None))
                if session is not None and getattr(self, "sock", None) is None:
                    _session.closed(self, session)  # never connected: nothing will close it
        return connect

    def make_send(original):
        def send(self, s):
            session = _session.get(self)
            if session is None:
                return original(self, s)
            result = _session.run(session, original, self, s)
            try:
                session.call.req_bytes += len(s) if isinstance(s, bytes | bytearray) else \
                    len(str(s).encode(getattr(self, "command_encoding", "ascii"), "replace"))
            except Exception:
                capture.counters["errors.capture"] += 1
            return result
        return send

    def make_getreply(original):
        def getreply(self):
            session = _session.get(self)
            if session is None:
                return original(self)
            if self.__dict__.get("file") is None and getattr(self, "sock", None) is not None:
                try:
                    self.file = ResponseCounter(self.sock.makefile("rb"), session.call)
                except Exception:
                    capture.counters["errors.capture"] += 1
            result = _session.run(session, original, self)
            try:
                code = result[0]
                if isinstance(code, int) and code > 0:
                    session.call.status = code
            except Exception:
                capture.counters["errors.capture"] += 1
            return result
        return getreply

    def make_auth(original):
        def auth(self, mechanism, authobject, *args, **kwargs):
            session = _session.get(self)
            if session is None:
                return original(self, mechanism, authobject, *args, **kwargs)
            _session.add_verb(session, "AUTH", VERBS)
            session.quiet += 1  # the exchange that follows is credentials, not verbs
            try:
                return original(self, mechanism, authobject, *args, **kwargs)
            finally:
                session.quiet -= 1
        return auth

    patches.wrap(SMTP, "connect", make_connect)
    patches.wrap(SMTP, "send", make_send)
    patches.wrap(SMTP, "putcmd", _session.wrap_verbs(VERBS))
    patches.wrap(SMTP, "getreply", make_getreply)
    patches.wrap(SMTP, "auth", make_auth)
    patches.wrap(SMTP, "starttls", _session.wrap_tls_upgrade(
        "smtps", lambda client: isinstance(getattr(client, "sock", None), ssl.SSLSocket)))
    patches.wrap(SMTP, "close", _session.wrap_close())
