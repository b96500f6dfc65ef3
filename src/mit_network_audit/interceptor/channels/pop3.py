"""poplib: ``POP3``, ``POP3_SSL``, ``stls`` — one row per session (connect to close).

Row: ``method`` = the commands used, in order, without repeats (``CAPA,STLS,USER,PASS,STAT,RETR,
QUIT``); ``protocol`` = ``pop3s`` once the session is TLS-protected (POP3_SSL or a successful
STLS), else ``pop3``; bytes = the protocol stream before encryption.  POP3 replies are ``+OK`` /
``-ERR``, with no numeric code: ``status`` stays null; a broken connection sets ``outcome`` =
``error`` (an ``-ERR`` reply is a protocol answer, not a failure of the session).  User names,
passwords and message numbers are arguments: never stored.
"""

from __future__ import annotations

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

    def protocol_of(client) -> str:
        return "pop3s" if POP3_SSL is not None and isinstance(client, POP3_SSL) else "pop3"

    def make_getresp(original):
        def _getresp(self):
            return _session.run(_session.get(self), original, self, error_filter=_reply_error)
        return _getresp

    patches.wrap(POP3, "__init__", _session.wrap_open(NAME, protocol_of))
    patches.wrap(POP3, "_putcmd", _session.wrap_verbs(VERBS))
    patches.wrap(POP3, "_putline", _session.wrap_counted("req_bytes", lambda _c, args, _r: len(args[0]) + 2))
    patches.wrap(POP3, "_getline", _session.wrap_counted("resp_bytes", lambda _c, _a, result: result[1]))
    patches.wrap(POP3, "_getresp", make_getresp)
    patches.wrap(POP3, "stls", _session.wrap_tls_upgrade("pop3s", _session.tls_established, _reply_error))
    patches.wrap(POP3, "close", _session.wrap_close())
