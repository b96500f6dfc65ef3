"""poplib: ``POP3``, ``POP3_SSL``, ``stls`` — one row per session (connect to close).

Row: ``method`` = the commands used, in order, without repeats (``CAPA,STLS,USER,PASS,STAT,RETR,
QUIT``); ``protocol`` = ``pop3s`` once the session is TLS-protected (POP3_SSL or a successful
STLS), else ``pop3``; bytes = the protocol stream before encryption.  POP3 replies are ``+OK`` /
``-ERR``, with no numeric code: ``status`` stays null; a broken connection sets ``outcome`` =
``error`` (an ``-ERR`` reply is a protocol answer, not a failure of the session).  User names,
passwords and message numbers are arguments: never stored.
"""

from __future__ import annotations

from .. import capture
from . import _session

NAME = "pop3"
TARGET = "poplib"

VERBS = frozenset("USER PASS APOP RPOP STAT LIST RETR DELE NOOP RSET QUIT TOP UIDL UTF8 CAPA STLS AUTH".split())


def install(patches) -> None:
    import poplib

    POP3 = poplib.POP3
    POP3_SSL = getattr(poplib, "POP3_SSL", None)

    def _reply_error(exc) -> bool:
        return isinstance(exc, poplib.error_proto) and not str(exc).startswith("-ERR EOF") \
            and "line too long" not in str(exc)

    def make_init(original):
        def __init__(self, *args, **kwargs):
            if not capture.runtime.active:
                return original(self, *args, **kwargs)
            tls = POP3_SSL is not None and isinstance(self, POP3_SSL)
            session = _session.open_session(self, NAME, "pop3s" if tls else "pop3")
            try:
                return _session.run(session, original, self, *args, scoped=True, **kwargs)
            finally:
                if session is not None:
                    port = self.__dict__.get("port")
                    session.call.enrich(host=self.__dict__.get("host") or None,
                                        port=port if isinstance(port, int) else None)
                    _session.enrich_peer(session, self.__dict__.get("sock"))
                    if self.__dict__.get("sock") is None:  # never connected: nothing will close it
                        _session.closed(self, session)
        return __init__

    def make_putcmd(original):
        def _putcmd(self, line):
            _session.add_verb(_session.get(self), line, VERBS)
            return original(self, line)
        return _putcmd

    def make_putline(original):
        def _putline(self, line):
            session = _session.get(self)
            result = _session.run(session, original, self, line)
            if session is not None:
                session.call.req_bytes += len(line) + 2
            return result
        return _putline

    def make_getline(original):
        def _getline(self):
            session = _session.get(self)
            result = _session.run(session, original, self)
            if session is not None:
                session.call.resp_bytes += result[1]
            return result
        return _getline

    def make_getresp(original):
        def _getresp(self):
            return _session.run(_session.get(self), original, self, error_filter=_reply_error)
        return _getresp

    def make_stls(original):
        def stls(self, *args, **kwargs):
            session = _session.get(self)
            result = _session.run(session, original, self, *args, scoped=True, error_filter=_reply_error, **kwargs)
            if session is not None and getattr(self, "_tls_established", False):
                session.call.protocol = "pop3s"
            return result
        return stls

    def make_close(original):
        def close(self):
            session = _session.get(self)
            try:
                return original(self)
            finally:
                _session.closed(self, session)
        return close

    patches.wrap(POP3, "__init__", make_init)
    patches.wrap(POP3, "_putcmd", make_putcmd)
    patches.wrap(POP3, "_putline", make_putline)
    patches.wrap(POP3, "_getline", make_getline)
    patches.wrap(POP3, "_getresp", make_getresp)
    patches.wrap(POP3, "stls", make_stls)
    patches.wrap(POP3, "close", make_close)
