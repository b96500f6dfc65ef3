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

from .. import capture
from . import _session

NAME = "imap"
TARGET = "imaplib"


def install(patches) -> None:
    import imaplib

    IMAP4 = imaplib.IMAP4
    IMAP4_SSL = getattr(imaplib, "IMAP4_SSL", None)
    verbs = frozenset(imaplib.Commands) | {"AUTHENTICATE", "ID", "COMPRESS", "IDLE"}

    def make_open(original):
        def open(self, *args, **kwargs):
            if not capture.runtime.active:
                return original(self, *args, **kwargs)
            tls = IMAP4_SSL is not None and isinstance(self, IMAP4_SSL)
            session = _session.open_session(self, NAME, "imaps" if tls else "imap")
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
        return open

    def make_connect(original):  # the greeting and CAPABILITY
        def _connect(self, *args, **kwargs):
            return _session.run(_session.get(self), original, self, *args, **kwargs)
        return _connect

    def make_command(original):
        def _command(self, name, *args):
            _session.add_verb(_session.get(self), name, verbs)
            return original(self, name, *args)
        return _command

    def make_send(original):
        def send(self, data):
            session = _session.get(self)
            result = _session.run(session, original, self, data)
            if session is not None:
                session.call.req_bytes += len(data)
            return result
        return send

    def make_read(original):
        def read(self, *args):
            session = _session.get(self)
            data = _session.run(session, original, self, *args)
            if session is not None:
                session.call.resp_bytes += len(data)
            return data
        return read

    def make_starttls(original):
        def starttls(self, *args, **kwargs):
            session = _session.get(self)
            result = _session.run(session, original, self, *args, scoped=True, **kwargs)
            if session is not None and getattr(self, "_tls_established", False):
                session.call.protocol = "imaps"
            return result
        return starttls

    def make_shutdown(original):
        def shutdown(self):
            session = _session.get(self)
            try:
                return _session.run(session, original, self)
            finally:
                _session.closed(self, session)
        return shutdown

    patches.wrap(IMAP4, "open", make_open)
    patches.wrap(IMAP4, "_connect", make_connect)
    patches.wrap(IMAP4, "_command", make_command)
    patches.wrap(IMAP4, "send", make_send)
    patches.wrap(IMAP4, "read", make_read)
    patches.wrap(IMAP4, "readline", make_read)
    patches.wrap(IMAP4, "starttls", make_starttls)
    patches.wrap(IMAP4, "shutdown", make_shutdown)
