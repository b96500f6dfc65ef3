"""The body download behind the "Read body" button: officers only, the read journaled by the package
before anything is decrypted (``network.egress_body._read_body_raw``); the body goes to the browser
and is never stored in Odoo (no attachment, no transient record), ``Cache-Control: no-store``."""

from odoo import http
from odoo.http import request


class ForensicController(http.Controller):
    @http.route("/mit_network_audit/forensic/body/<string:ref>", type="http", auth="user", methods=["GET"])
    def body(self, ref):
        got = request.env["network.egress_body"]._read_body_raw(ref)
        name = f"body-{got.info.event_id}{'-truncated' if got.info.truncated else ''}.bin"
        return request.make_response(
            got.body,
            headers=[
                ("Content-Type", "application/octet-stream"),
                ("Content-Disposition", f'attachment; filename="{name}"'),
                ("Cache-Control", "no-store"),
                ("X-MNA-Read-Seq", str(got.read_seq)),
            ],
        )
