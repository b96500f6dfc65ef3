"""imaplib: ``IMAP4``, ``IMAP4_SSL``, ``starttls`` — one row per session (open to shutdown).

Row: ``method`` = the IMAP commands used, in order, without repeats (``CAPABILITY,LOGIN,SELECT,
SEARCH,FETCH,LOGOUT``); ``protocol`` = ``imaps`` once the session is TLS-protected (IMAP4_SSL
or a successful STARTTLS), else ``imap``; bytes = the protocol stream (commands, literals,
responses) before encryption.  IMAP has no numeric reply code: ``status`` stays null and a
failed greeting or a broken connection sets ``outcome`` = ``error``.  Mailbox names, search
criteria, message sets and credentials are arguments: never stored.  ``IMAP4_stream`` runs a
local command, not a connection: the subprocess channel sees that.
"""

from __future__ import annotations

from . import _session

NAME = "imap"
TARGET = "imaplib"


def install(patches) -> None:
    import imaplib

    IMAP4 = imaplib.IMAP4
    IMAP4_SSL = getattr(imaplib, "IMAP4_SSL", None)
    verbs = frozenset(imaplib.Commands) | {"AUTHENTICATE", "ID", "COMPRESS", "IDLE"}

    def protocol_of(client) -> str:
        return "imaps" if IMAP4_SSL is not None and isinstance(client, IMAP4_SSL) else "imap"

    def make_connect(original):  # the greeting and CAPABILITY
        def _connect(self, *args, **kwargs):
            return _session.run(_session.get(self), original, self, *args, **kwargs)
        return _connect

    received = _session.wrap_counted("resp_bytes", lambda _c, _a, data: len(data))
    patches.wrap(IMAP4, "open", _session.wrap_open(NAME, protocol_of))
    patches.wrap(IMAP4, "_connect", make_connect)
    patches.wrap(IMAP4, "_command", _session.wrap_verbs(verbs))
    patches.wrap(IMAP4, "send", _session.wrap_counted("req_bytes", lambda _c, args, _r: len(args[0])))
    patches.wrap(IMAP4, "read", received)
    patches.wrap(IMAP4, "readline", received)
    patches.wrap(IMAP4, "starttls", _session.wrap_tls_upgrade("imaps", _session.tls_established))
    patches.wrap(IMAP4, "shutdown", _session.wrap_close(record_errors=True))
