"""Loopback mail and file servers for the mail/FTP/process tests, all driven by the real stdlib clients.

* SMTP: aiosmtpd — plain with STARTTLS and AUTH, and SMTPS (implicit TLS);
* FTP: pyftpdlib — plain and FTP_TLS (AUTH TLS, PROT P; needs pyOpenSSL);
* IMAP4rev1 and POP3: small servers of our own, protocol-correct for the commands the stdlib
  clients send (CAPABILITY, STARTTLS/STLS, LOGIN/USER/PASS, SELECT, SEARCH, FETCH, LIST, STAT,
  RETR, LOGOUT/QUIT, ...), with IMAP4_SSL/POP3_SSL variants;
* certificates made by trustme for 127.0.0.1 / localhost.

Servers record what they received (so a test can prove its canary really went over the wire).
"""

from __future__ import annotations

import base64
import os
import socket
import ssl
import threading
from dataclasses import dataclass, field

import trustme

from net_support import close_listener

USER = "mailuser"
PASSWORD = "canary-Pa55w0rd-7f3a9c"  # must never appear in any event
RECIPIENT = "canary.recipient.7f3a9c@example.org"  # must never appear in any event
SENDER = "sender@example.net"
MAILBOX = "Canary-Box-7f3a9c"

MESSAGES = [
    b"From: a@example.net\r\nSubject: one\r\n\r\nfirst body\r\n",
    b"From: b@example.net\r\nSubject: two\r\n\r\n.leading dot line\r\nsecond body\r\n",
]


@dataclass
class Certs:
    ca: trustme.CA
    server_context: ssl.SSLContext
    client_context: ssl.SSLContext
    certfile: str
    keyfile: str


def make_certs(directory: str) -> Certs:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost", "::1")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    certfile = os.path.join(directory, "server.pem")
    keyfile = os.path.join(directory, "server.key")
    cert.cert_chain_pems[0].write_to_path(certfile)
    for extra in cert.cert_chain_pems[1:]:
        with open(certfile, "ab") as fh:
            fh.write(extra.bytes())
    cert.private_key_pem.write_to_path(keyfile)
    return Certs(ca, server_context, client_context, certfile, keyfile)


# -- a tiny threaded line server ------------------------------------------------------------------
class Conn:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.rfile = sock.makefile("rb")

    def readline(self) -> bytes:
        return self.rfile.readline(65536)

    def read(self, n: int) -> bytes:
        return self.rfile.read(n)

    def write(self, data: bytes) -> None:
        self.sock.sendall(data)

    def starttls(self, context: ssl.SSLContext) -> None:
        self.rfile.close()
        self.sock = context.wrap_socket(self.sock, server_side=True)
        self.rfile = self.sock.makefile("rb")

    def close(self) -> None:
        try:
            self.rfile.close()
            self.sock.close()
        except OSError:
            pass


@dataclass
class LineServer:
    handler: object  # callable(server, conn)
    tls_context: ssl.SSLContext | None  # STARTTLS / STLS
    implicit_tls: bool = False
    received: list = field(default_factory=list)
    port: int = 0

    def start(self) -> LineServer:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=512)
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock) -> None:
        try:
            if self.implicit_tls:
                sock = self.tls_context.wrap_socket(sock, server_side=True)
            conn = Conn(sock)
            self.handler(self, conn)
            conn.close()
        except (OSError, ValueError):
            try:
                sock.close()
            except OSError:
                pass

    def stop(self) -> None:
        close_listener(self._listener)


# -- IMAP4rev1 ------------------------------------------------------------------------------------
def _imap_args(text: str) -> list[str]:
    """Split IMAP arguments: atoms and "quoted strings" (with \\ escapes)."""
    out, i = [], 0
    while i < len(text):
        if text[i] == " ":
            i += 1
            continue
        if text[i] == '"':
            i += 1
            buf = []
            while i < len(text) and text[i] != '"':
                if text[i] == "\\" and i + 1 < len(text):
                    i += 1
                buf.append(text[i])
                i += 1
            out.append("".join(buf))
            i += 1
        else:
            j = text.find(" ", i)
            j = len(text) if j < 0 else j
            out.append(text[i:j])
            i = j
    return out


def imap_handler(server: LineServer, conn: Conn) -> None:
    tls = server.implicit_tls
    caps = lambda: "IMAP4rev1 AUTH=PLAIN" + ("" if tls else " STARTTLS")  # noqa: E731
    conn.write(f"* OK [CAPABILITY {caps()}] loopback IMAP4rev1 ready\r\n".encode())
    selected = False
    while True:
        line = conn.readline()
        if not line:
            return
        server.received.append(line)
        text = line.decode("utf-8", "replace").rstrip("\r\n")
        tag, _, rest = text.partition(" ")
        command, _, args = rest.partition(" ")
        command = command.upper()
        if command == "UID":
            command, _, args = args.partition(" ")
            command = command.upper()

        def ok(msg="completed", tag=tag, command=command):
            conn.write(f"{tag} OK {command} {msg}\r\n".encode())

        if command == "CAPABILITY":
            conn.write(f"* CAPABILITY {caps()}\r\n".encode())
            ok()
        elif command == "NOOP":
            ok()
        elif command == "STARTTLS" and not tls:
            ok("begin TLS negotiation now")
            conn.starttls(server.tls_context)
            tls = True
        elif command == "LOGIN":
            user, password = (_imap_args(args) + ["", ""])[:2]
            if user == USER and password == PASSWORD:
                ok()
            else:
                conn.write(f"{tag} NO [AUTHENTICATIONFAILED] invalid credentials\r\n".encode())
        elif command == "AUTHENTICATE":
            conn.write(b"+ \r\n")
            data = conn.readline()
            server.received.append(data)
            fields = base64.b64decode(data.strip() or b"=").split(b"\0")
            if len(fields) == 3 and fields[1].decode() == USER and fields[2].decode() == PASSWORD:
                ok()
            else:
                conn.write(f"{tag} NO [AUTHENTICATIONFAILED] invalid credentials\r\n".encode())
        elif command in ("SELECT", "EXAMINE"):
            selected = True
            conn.write(f"* {len(MESSAGES)} EXISTS\r\n* 0 RECENT\r\n".encode())
            conn.write(b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n")
            conn.write(b"* OK [UIDVALIDITY 1] UIDs valid\r\n")
            mode = "READ-ONLY" if command == "EXAMINE" else "READ-WRITE"
            conn.write(f"{tag} OK [{mode}] {command} completed\r\n".encode())
        elif command == "LIST":
            conn.write(b'* LIST (\\HasNoChildren) "/" "INBOX"\r\n')
            conn.write(f'* LIST (\\HasNoChildren) "/" "{MAILBOX}"\r\n'.encode())
            ok()
        elif command == "SEARCH" and selected:
            conn.write(("* SEARCH " + " ".join(str(i + 1) for i in range(len(MESSAGES))) + "\r\n").encode())
            ok()
        elif command == "FETCH" and selected:
            numbers = args.split(" ", 1)[0]
            for n in _message_set(numbers):
                body = MESSAGES[n - 1]
                conn.write(f"* {n} FETCH (RFC822 {{{len(body)}}}\r\n".encode() + body + b")\r\n")
            ok()
        elif command == "CLOSE" and selected:
            selected = False
            ok()
        elif command == "LOGOUT":
            conn.write(b"* BYE loopback IMAP4rev1 server logging out\r\n")
            ok()
            return
        else:
            conn.write(f"{tag} BAD unknown or illegal command\r\n".encode())


def _message_set(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        if ":" in part:
            a, b = part.split(":")
            b = len(MESSAGES) if b == "*" else int(b)
            out.extend(range(int(a), b + 1))
        elif part.isdigit():
            out.append(int(part))
    return [n for n in out if 1 <= n <= len(MESSAGES)]


# -- POP3 -----------------------------------------------------------------------------------------
def pop3_handler(server: LineServer, conn: Conn) -> None:
    tls = server.implicit_tls
    conn.write(b"+OK loopback POP3 ready\r\n")
    user = None
    authed = False
    while True:
        line = conn.readline()
        if not line:
            return
        server.received.append(line)
        text = line.decode("utf-8", "replace").rstrip("\r\n")
        command, _, arg = text.partition(" ")
        command = command.upper()
        if command == "CAPA":
            conn.write(b"+OK capability list follows\r\nUSER\r\nUIDL\r\nTOP\r\n" + (b"" if tls else b"STLS\r\n")
                       + b".\r\n")
        elif command == "STLS" and not tls:
            conn.write(b"+OK begin TLS negotiation\r\n")
            conn.starttls(server.tls_context)
            tls = True
        elif command == "USER":
            user = arg
            conn.write(b"+OK send PASS\r\n")
        elif command == "PASS":
            authed = user == USER and arg == PASSWORD
            conn.write(b"+OK logged in\r\n" if authed else b"-ERR invalid credentials\r\n")
        elif command == "NOOP":
            conn.write(b"+OK\r\n")
        elif command == "QUIT":
            conn.write(b"+OK bye\r\n")
            return
        elif not authed:
            conn.write(b"-ERR authenticate first\r\n")
        elif command == "STAT":
            conn.write(f"+OK {len(MESSAGES)} {sum(map(len, MESSAGES))}\r\n".encode())
        elif command == "LIST":
            conn.write(b"+OK scan listing follows\r\n" + b"".join(
                f"{i + 1} {len(m)}\r\n".encode() for i, m in enumerate(MESSAGES)) + b".\r\n")
        elif command == "UIDL":
            conn.write(b"+OK\r\n" + b"".join(f"{i + 1} uid{i + 1}\r\n".encode() for i in range(len(MESSAGES)))
                       + b".\r\n")
        elif command in ("RETR", "TOP") and arg.split(" ")[0].isdigit() \
                and 1 <= int(arg.split(" ")[0]) <= len(MESSAGES):
            body = MESSAGES[int(arg.split(" ")[0]) - 1]
            stuffed = b"\r\n".join(b"." + ln if ln.startswith(b".") else ln for ln in body.split(b"\r\n"))
            conn.write(b"+OK message follows\r\n" + stuffed.rstrip(b"\r\n") + b"\r\n.\r\n")
        elif command in ("DELE", "RSET"):
            conn.write(b"+OK\r\n")
        else:
            conn.write(b"-ERR unknown command\r\n")


# -- SMTP (aiosmtpd) ------------------------------------------------------------------------------
class RecordingHandler:
    def __init__(self) -> None:
        self.messages: list = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("reject"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK message accepted"


def _authenticator(server, session, envelope, mechanism, auth_data):
    from aiosmtpd.smtp import AuthResult

    ok = getattr(auth_data, "login", b"") == USER.encode() and getattr(auth_data, "password", b"") == \
        PASSWORD.encode()
    return AuthResult(success=ok)


def start_smtp(certs: Certs, implicit_tls: bool = False):
    from aiosmtpd.controller import Controller

    handler = RecordingHandler()
    with socket.create_server(("127.0.0.1", 0)) as probe:  # aiosmtpd 1.4 cannot listen on port 0
        port = probe.getsockname()[1]
    kwargs = dict(authenticator=_authenticator, auth_require_tls=False)
    if implicit_tls:
        controller = Controller(handler, hostname="127.0.0.1", port=port, ssl_context=certs.server_context,
                                server_hostname="127.0.0.1", **kwargs)
    else:
        controller = Controller(handler, hostname="127.0.0.1", port=port, tls_context=certs.server_context, **kwargs)
    controller.start()
    controller.handler_record = handler
    return controller


def smtp_port(controller) -> int:
    return controller.server.sockets[0].getsockname()[1]


# -- FTP (pyftpdlib) ------------------------------------------------------------------------------
def start_ftp(home: str, certs: Certs | None = None):
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.servers import ThreadedFTPServer

    authorizer = DummyAuthorizer()
    authorizer.add_user(USER, PASSWORD, home, perm="elradfmwMT")
    if certs is not None:
        from pyftpdlib.handlers import TLS_FTPHandler

        class Handler(TLS_FTPHandler):
            pass

        Handler.certfile = certs.certfile
        Handler.keyfile = certs.keyfile
        Handler.tls_control_required = False
        Handler.tls_data_required = False
    else:
        from pyftpdlib.handlers import FTPHandler

        class Handler(FTPHandler):
            pass

    Handler.authorizer = authorizer
    Handler.passive_ports = None
    Handler.banner = "loopback ftp ready"
    import logging

    logging.getLogger("pyftpdlib").setLevel(logging.WARNING)
    from pyftpdlib.ioloop import IOLoop

    # each server gets its own loop: two servers on pyftpdlib's shared default loop, served from two
    # threads, close each other's sockets
    server = ThreadedFTPServer(("127.0.0.1", 0), Handler, ioloop=IOLoop())
    server.mna_port = server.address[1]
    server.max_cons = 512
    threading.Thread(target=server.serve_forever, kwargs={"handle_exit": False}, daemon=True).start()
    return server


def ftp_port(server) -> int:
    return server.mna_port
