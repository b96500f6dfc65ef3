"""network.egress_body: forensic request/response bodies (officer only).

STUB: the package has no forensic body store yet (no forensic issue landed in this tree), so this
model only fixes the access contract (officers only, every read journaled as an ``internal`` row)
and holds nothing unless an officer's tooling writes it.  When the forensic store lands, this
model becomes a view over it, like network.egress_log.
"""

from odoo import api, fields, models


class EgressBody(models.Model):
    _name = "network.egress_body"
    _description = "Network Audit Forensic Body (officer only)"
    _order = "id desc"

    chain_seq = fields.Integer("Chain Seq", index=True)
    part = fields.Selection([("request", "Request"), ("response", "Response")])
    content_type = fields.Char()
    size = fields.Integer()
    sha256 = fields.Char("SHA-256")

    @api.model
    def _journal_read(self, ids):
        """Forensic reads are facts the auditor keeps: one internal row per read."""
        try:
            from mit_network_audit.interceptor import capture, internal_event

            sink = capture.runtime.sink
            detail = f"model={self._name} ids={','.join(map(str, ids))} user={self.env.user.login}"
            sink.emit(internal_event("forensic_read", detail))
        except Exception:
            pass

    def read(self, fields=None, load="_classic_read"):
        self._journal_read(self.ids)
        return super().read(fields, load)
