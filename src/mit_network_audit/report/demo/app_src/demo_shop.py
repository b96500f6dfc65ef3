"""The example application: a tiny shop that serves a page and uses three third-party add-ons."""

import sys
import threading
import urllib.request
from wsgiref.simple_server import WSGIRequestHandler, make_server

import acme_mail_sync
import crm_export_plus
import llm_assistant
import mit_licence

from mit_network_audit.interceptor.inbound import AuditWSGIMiddleware


def shop(environ, start_response):
    body = b"<h1>Demo shop</h1>"
    start_response("200 OK", [("Content-Type", "text/html"), ("Content-Length", str(len(body)))])
    return [body]


class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


def main(vendor_url: str, llm_url: str, smtp_host: str, smtp_port: int) -> None:
    server = make_server("127.0.0.1", 0, AuditWSGIMiddleware(shop, app_name="demo_shop"), handler_class=Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    for _ in range(3):  # a few customers visit the shop
        urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/products?page=1", timeout=5).read()
    mit_licence.check_licence(vendor_url, "demo_shop", "1.0.0", "LIC-DEMO-0001")
    print("assistant says:", llm_assistant.ask(llm_url, "sk-demo-key", "Summarise our best-selling products"))
    acme_mail_sync.send_invoice(smtp_host, smtp_port, "client@example.com")
    crm_export_plus.sync(vendor_url, "LIC-CRM-0042")
    server.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
