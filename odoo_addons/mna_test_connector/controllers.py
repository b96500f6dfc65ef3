"""An HTTP route that makes the connector's outbound call from whichever Odoo process serves it
(an HTTP worker, or the gevent process on the gevent port): used by scripts/odoo-prefork-check.

The target URL comes from the system parameter ``mna_test_connector.url`` (set by the operator),
never from the request, so this fixture cannot be turned into a proxy."""

import json
import os

from odoo import http

from .connector import fetch


class ConnectorController(http.Controller):
    @http.route("/mna_test_connector/fetch", type="http", auth="public", methods=["GET"], csrf=False)
    def fetch_configured_url(self):
        url = http.request.env["ir.config_parameter"].sudo().get_param("mna_test_connector.url")
        status = fetch(url) if url else None
        body = json.dumps({"pid": os.getpid(), "status": status})
        return http.request.make_response(body, headers=[("Content-Type", "application/json")])
