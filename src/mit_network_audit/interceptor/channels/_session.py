"""Sessions of line protocols (SMTP, IMAP, POP3, FTP): one row per session, connect to close.

A session's call is created at connect with the caller's stack (attribution), never made
current except *inside* the library's own connect / TLS / data-connection code
(``capture.scope``), where the socket and TLS layers below then only enrich it.  It is
finished when the client is closed, when the client object is collected (``weakref.finalize``)
or at exit / uninstall (``Call.defer`` puts it on the core's pending list).

Only protocol *verbs* from a fixed list are kept (``method``); arguments — recipients, mailbox
and file names, credentials — never leave the library.  Bytes are the protocol stream as the
client wrote and read it (commands, message data, replies; data-connection payload for FTP),
counted on the plaintext side of TLS.
"""

from __future__ import annotations

import weakref

from .. import capture

ATTR = "_mna_session"


class Session:
    __slots__ = ("call", "depth", "closing", "quiet", "__weakref__")

    def __init__(self, call: capture.Call) -> None:
        self.call = call
        self.depth = 0  # library primitives of ours running now (close inside send must wait)
        self.closing = False
        self.quiet = 0  # >0: commands sent now are continuation data (AUTH exchanges), not verbs


def get(client) -> Session | None:
    try:
        return client.__dict__.get(ATTR)
    except AttributeError:
        return None


def open_session(client, channel: str, protocol: str, host=None, port=None) -> Session | None:
    """Begin the row of a new session on ``client`` (a previous, unclosed one ends first)."""
    try:
        previous = client.__dict__.pop(ATTR, None)
        if previous is not None:
            finish(previous)
        call = capture.begin(channel, activate=False, protocol=protocol,
                             host=str(host) if host else None, port=port if isinstance(port, int) and port else None)
        if call is None:
            return None
        call.defer()
        session = Session(call)
        client.__dict__[ATTR] = session
        weakref.finalize(client, finish, session)
        return session
    except Exception:
        capture.counters["errors.capture"] += 1
        return None


def finish(session: Session, exc: BaseException | None = None) -> None:
    try:
        call = session.call
        if exc is not None:
            capture.fail(call, exc)
        call._ended = True
        capture.finish(call)
    except Exception:
        capture.counters["errors.capture"] += 1


def closed(client, session: Session | None) -> None:
    """The client closed its connection: the row is complete (or completes when the primitive
    that triggered the close — a failed send — has recorded its exception)."""
    if session is None:
        return
    try:
        if client.__dict__.get(ATTR) is session:
            del client.__dict__[ATTR]
    except Exception:
        pass
    if session.depth > 0:
        session.closing = True
    else:
        finish(session)


def run(session: Session | None, fn, *args, scoped: bool = False, error_filter=None, **kwargs):
    """Call a library primitive for ``session``: record its exception (unless ``error_filter``
    says it is a protocol reply, not a failure), finish a close it caused, and with ``scoped``
    make the session current so the socket/TLS layers underneath only enrich it."""
    if session is None:
        return fn(*args, **kwargs)
    session.depth += 1
    try:
        if scoped:
            with capture.scope(session.call):
                return fn(*args, **kwargs)
        return fn(*args, **kwargs)
    except BaseException as exc:
        if error_filter is None or not error_filter(exc):
            capture.fail(session.call, exc)
        raise
    finally:
        session.depth -= 1
        if session.closing and session.depth == 0:
            session.closing = False
            finish(session)


def wrap_open(channel: str, protocol_of, error_filter=None):
    """Wrapper factory for a client's connect/open: a new session row, the library's own connect
    scoped to it, then host, port and peer read off the client; a client that never connected
    ends its row at once (nothing will close it)."""
    def make(original):
        def opener(self, *args, **kwargs):
            if not capture.runtime.active:
                return original(self, *args, **kwargs)
            session = open_session(self, channel, protocol_of(self))
            try:
                return run(session, original, self, *args, scoped=True, error_filter=error_filter, **kwargs)
            finally:
                if session is not None:
                    attrs = self.__dict__
                    port = attrs.get("port", getattr(self, "port", None))
                    session.call.enrich(host=attrs.get("host") or None, port=port if isinstance(port, int) else None)
                    enrich_peer(session, attrs.get("sock"))
                    if attrs.get("sock") is None:
                        closed(self, session)
        return opener
    return make


def wrap_verbs(known: frozenset):
    """Wrapper factory for the method that sends a command: its first word is recorded as a verb."""
    def make(original):
        def command(self, word, *args, **kwargs):
            add_verb(get(self), word, known)
            return original(self, word, *args, **kwargs)
        return command
    return make


def wrap_counted(field: str, measure, error_filter=None):
    """Wrapper factory for a primitive that moves protocol bytes: it runs for the session, then
    ``measure(client, args, result)`` bytes are added to the call's ``field`` (req/resp_bytes)."""
    def make(original):
        def counted(self, *args):
            session = get(self)
            result = run(session, original, self, *args, error_filter=error_filter)
            if session is not None:
                try:
                    call = session.call
                    setattr(call, field, getattr(call, field) + measure(self, args, result))
                except Exception:
                    capture.counters["errors.capture"] += 1
            return result
        return counted
    return make


def wrap_tls_upgrade(protocol: str, upgraded, error_filter=None):
    """Wrapper factory for STARTTLS-like methods: the handshake is scoped to the session, whose
    ``protocol`` becomes ``protocol`` once ``upgraded(client)`` says TLS is on."""
    def make(original):
        def upgrade(self, *args, **kwargs):
            session = get(self)
            result = run(session, original, self, *args, scoped=True, error_filter=error_filter, **kwargs)
            if session is not None and upgraded(self):
                session.call.protocol = protocol
            return result
        return upgrade
    return make


def wrap_close(record_errors: bool = False):
    """Wrapper factory for the method that closes the connection: the row completes (an exception
    of the close itself is the session's outcome only with ``record_errors``)."""
    def make(original):
        def close(self, *args, **kwargs):
            session = get(self)
            try:
                if record_errors:
                    return run(session, original, self, *args, **kwargs)
                return original(self, *args, **kwargs)
            finally:
                closed(self, session)
        return close
    return make


def tls_established(client) -> bool:
    return bool(getattr(client, "_tls_established", False))


def add_verb(session: Session | None, word, known: frozenset) -> None:
    """Record a protocol verb: the first word of a command line, kept only if it is a known verb."""
    if session is None or session.quiet:
        return
    try:
        if isinstance(word, bytes | bytearray):
            word = bytes(word).decode("ascii", "replace")
        verb = str(word).split(None, 1)[0].upper() if word else ""
        session.call.add_verb(verb if verb in known else "OTHER")
    except Exception:
        capture.counters["errors.capture"] += 1


def enrich_peer(session: Session | None, sock) -> None:
    """Peer and local address (the socket layer does this too, unless it is not installed)."""
    if session is None or sock is None or session.call.dest_ip is not None:
        return
    try:
        peer = sock.getpeername()
        local = sock.getsockname()
        if isinstance(peer, tuple):
            session.call.enrich(dest_ip=peer[0], dest_port=peer[1], src_ip=local[0], src_port=local[1])
    except Exception:
        pass


def split_host_port(host, port, default_port):
    """smtplib's own rule: ``host:port`` in ``host`` when no port is given."""
    try:
        if not port and isinstance(host, str) and host.find(":") == host.rfind(":") and ":" in host:
            name, _, tail = host.rpartition(":")
            if tail.isdigit():
                return name, int(tail)
        return host, int(port) if port else default_port
    except Exception:
        return host, None
