"""Loopback stand-ins for the outside world: a vendor licence server, an LLM provider, a mail server.

Each listens on its own loopback address (127.0.0.2, .3, .4) so the demo catalogue can tell
them apart the way real host names would be told apart."""

from __future__ import annotations

import json
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VENDOR_IP, LLM_IP, MAIL_IP = "127.0.0.2", "127.0.0.3", "127.0.0.4"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    reply: dict = {"ok": True}

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = json.dumps(self.reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST

    def log_message(self, *args):
        pass


class _LLMHandler(_Handler):
    reply = {"choices": [{"message": {"content": "Chairs and lamps sell best this month."}}]}


class _SMTPHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP (RFC 5321) for smtplib to deliver a message, which is then discarded."""

    def handle(self):
        self.wfile.write(b"220 mail.demo ESMTP\r\n")
        while line := self.rfile.readline():
            verb = line[:4].upper()
            if verb == b"EHLO":
                self.wfile.write(b"250-mail.demo\r\n250 8BITMIME\r\n")
            elif verb == b"DATA":
                self.wfile.write(b"354 end with <CRLF>.<CRLF>\r\n")
                while (data := self.rfile.readline()) and data != b".\r\n":
                    pass
                self.wfile.write(b"250 queued\r\n")
            elif verb == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 ok\r\n")


class StandIns:
    def __init__(self) -> None:
        self.servers = []
        self.smtp = None

    def start(self) -> StandIns:
        self.vendor = self._http(VENDOR_IP, _Handler)
        self.llm = self._http(LLM_IP, _LLMHandler)
        self.smtp = socketserver.ThreadingTCPServer((MAIL_IP, 0), _SMTPHandler)
        self.smtp.daemon_threads = True
        threading.Thread(target=self.smtp.serve_forever, daemon=True).start()
        self.smtp_port = self.smtp.server_address[1]
        return self

    def _http(self, ip, handler):
        server = ThreadingHTTPServer((ip, 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.servers.append(server)
        return f"http://{ip}:{server.server_port}"

    def stop(self) -> None:
        for server in self.servers:
            server.shutdown()
        if self.smtp is not None:
            self.smtp.shutdown()
            self.smtp.server_close()


DEMO_CATALOGUE = f"""
# Demo extension: the stand-ins on loopback play the vendor and the operator's providers.
[[component]]
name = "mit-licence"
class = "vendor"
purpose = "licence check (demo stand-in)"
cidrs = ["{VENDOR_IP}/32"]
methods = ["POST"]
max_request_bytes = 2048

[[component]]
name = "demo-llm-provider"
class = "provider"
category = "llm"
cidrs = ["{LLM_IP}/32"]

[[component]]
name = "demo-mail-server"
class = "provider"
category = "mail"
cidrs = ["{MAIL_IP}/32"]
"""
