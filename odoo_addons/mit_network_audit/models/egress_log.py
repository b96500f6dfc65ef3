"""network.egress_log: the journal table, read through a view.

The journal table (``egress_log``) belongs to the package: its columns are the hashed event, its
triggers refuse UPDATE/TRUNCATE and any DELETE but the vacuum's.  Odoo needs an ``id`` column, so
the model reads the view ``network_egress_log`` (``id = chain_seq``).  The view is a simple view,
so an UPDATE/DELETE through it reaches the table and its triggers still refuse it.  The ORM
refuses create/write/unlink first, even under sudo.  ``_log_access = False`` and no stored
computed field: an ORM flush never writes.  Module and user are plain text (a Many2one with
ondelete would turn an uninstall or a user deletion into an UPDATE the triggers refuse).
"""

from odoo import _, api, fields, models
from odoo.exceptions import UserError

from .journal_ddl import ensure_journal

DIRECTIONS = [("outbound", "Outbound"), ("inbound", "Inbound"), ("internal", "Internal")]


class EgressLog(models.Model):
    _name = "network.egress_log"
    _description = "Network Audit Log (append-only journal)"
    _auto = False
    _table = "network_egress_log"
    _order = "chain_seq desc"
    _log_access = False
    _rec_name = "display_label"

    chain_seq = fields.Integer("Chain Seq", readonly=True, index=True)
    event_id = fields.Char(readonly=True)
    logged_at_us = fields.Integer("Logged (µs)", readonly=True)
    started_at_us = fields.Integer("Started (µs)", readonly=True)
    logged_at = fields.Datetime("Logged At", readonly=True)
    duration_us = fields.Integer("Duration (µs)", readonly=True)
    direction = fields.Selection(DIRECTIONS, readonly=True)
    channel = fields.Char(readonly=True)
    protocol = fields.Char(readonly=True)
    method = fields.Char(readonly=True)
    host = fields.Char(readonly=True)
    port = fields.Integer(readonly=True)
    path = fields.Char(readonly=True)
    query_keys = fields.Char(readonly=True)
    dest_ip = fields.Char("Destination IP", readonly=True)
    dest_port = fields.Integer(readonly=True)
    src_ip = fields.Char("Source IP", readonly=True)
    src_port = fields.Integer(readonly=True)
    status = fields.Integer(readonly=True)
    outcome = fields.Char(readonly=True)
    error = fields.Char(readonly=True)
    req_bytes = fields.Integer("Request Bytes", readonly=True)
    resp_bytes = fields.Integer("Response Bytes", readonly=True)
    req_headers = fields.Char("Request Headers", readonly=True)
    resp_headers = fields.Char("Response Headers", readonly=True)
    fingerprint = fields.Char(readonly=True)
    addon = fields.Char("Addon", readonly=True, index=True)
    addon_author = fields.Char("Addon Author", readonly=True)
    call_site = fields.Char(readonly=True)
    via = fields.Char(readonly=True)
    pid = fields.Integer("PID", readonly=True)
    hostname = fields.Char(readonly=True)
    vendor_bound = fields.Boolean("MIT-bound", readonly=True)
    component = fields.Char(readonly=True)
    dest_class = fields.Char("Destination Class", readonly=True)
    detail = fields.Char(readonly=True)
    leaf_hash = fields.Char(readonly=True)
    prev_hash = fields.Char("Prev Hash", readonly=True)
    row_hash = fields.Char("Row Hash", readonly=True)
    display_label = fields.Char(compute="_compute_display_label")  # not stored: never flushed
    module_id = fields.Many2one("ir.module.module", compute="_compute_module_id", string="Module")

    def init(self):
        ensure_journal(self.env.cr)
        self.env.cr.execute("DROP VIEW IF EXISTS network_egress_log")
        self.env.cr.execute("""
            CREATE VIEW network_egress_log AS
            SELECT chain_seq AS id, *, to_timestamp(logged_at_us / 1000000.0) AT TIME ZONE 'UTC' AS logged_at
              FROM egress_log""")

    @api.depends("chain_seq", "method", "host")
    def _compute_display_label(self):
        for rec in self:
            rec.display_label = (
                f"#{rec.chain_seq} {rec.direction or ''} {rec.method or ''} {rec.host or ''}".strip()
            )

    @api.depends("addon")
    def _compute_module_id(self):
        names = set(self.mapped("addon"))
        modules = self.env["ir.module.module"].sudo().search([("name", "in", list(names))])
        by_name = {m.name: m.id for m in modules}
        for rec in self:
            rec.module_id = by_name.get(rec.addon, False)

    # -- append-only, whoever asks ------------------------------------------------------------
    @api.model_create_multi
    def create(self, vals_list):
        raise UserError(_("The network audit log is append-only: rows are written by the interceptor only."))

    def write(self, vals):
        raise UserError(_("The network audit log is append-only: rows cannot be changed."))

    def unlink(self):
        raise UserError(_("The network audit log is append-only: rows cannot be deleted."))

    def copy(self, default=None):
        raise UserError(_("The network audit log is append-only: rows cannot be duplicated."))

    # -- actions --------------------------------------------------------------------------------
    @api.model
    def action_verify(self):
        """Recompute the whole chain (DESIGN §4) and report the result to the user."""
        self._check_auditor()
        from mit_network_audit.journal.verify import verify

        store = self.env["network.egress.component"]._open_store()
        try:
            result = verify(store)
        finally:
            store.close()
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "title": _("Journal verification"),
                "sticky": True,
                "type": "success" if result.ok else "danger",
                "message": result.message if hasattr(result, "message") else str(result.as_dict()),
            },
        }

    def action_export_jsonl(self):
        """Export the selected rows (or the newest 10,000) as JSON lines with their chain hashes."""
        self._check_auditor()
        import base64
        import json

        recs = self or self.search([], limit=10000)
        lines = []
        for rec in recs.sorted("chain_seq"):
            row = rec.read([f for f in self._fields if f not in ("display_label", "module_id", "logged_at")])[
                0
            ]
            lines.append(json.dumps(row, sort_keys=True, default=str))
        attachment = self.env["ir.attachment"].create(
            {
                "name": "egress_log.jsonl",
                "mimetype": "application/jsonl",
                "res_model": self._name,
                "datas": base64.b64encode(("\n".join(lines) + "\n").encode()),
            }
        )
        return {
            "type": "ir.actions.act_url",
            "url": f"/web/content/{attachment.id}?download=true",
            "target": "self",
        }

    def _check_auditor(self):
        if not self.env.user.has_group("mit_network_audit.group_auditor"):
            from odoo.exceptions import AccessError

            raise AccessError(_("Only network auditors may verify or export the journal."))
