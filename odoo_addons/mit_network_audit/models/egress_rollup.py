"""network.egress.rollup: the package's rollup table (mna_rollup), read through a view.

The rollup is derived data (rebuilt from the journal at any time); the cron keeps it caught up.
"""

from odoo import api, fields, models

from .journal_ddl import ensure_journal, ensure_rollup


class EgressRollup(models.Model):
    _name = "network.egress.rollup"
    _description = "Network Audit Traffic Summary"
    _auto = False
    _table = "network_egress_rollup"
    _order = "bucket desc"
    _log_access = False

    bucket = fields.Datetime("Hour", readonly=True)
    direction = fields.Char(readonly=True)
    channel = fields.Char(readonly=True)
    host = fields.Char(readonly=True)
    addon = fields.Char("Addon", readonly=True)
    dest_class = fields.Char("Destination Class", readonly=True)
    outcome = fields.Char(readonly=True)
    vendor_bound = fields.Boolean("MIT-bound", readonly=True)
    component = fields.Char(readonly=True)
    method = fields.Char(readonly=True)
    calls = fields.Integer(readonly=True)
    req_bytes = fields.Integer("Request Bytes", readonly=True)
    resp_bytes = fields.Integer("Response Bytes", readonly=True)
    max_req_bytes = fields.Integer("Largest Request", readonly=True)
    first_seq = fields.Integer(readonly=True)
    last_seq = fields.Integer(readonly=True)

    def init(self):
        ensure_journal(self.env.cr)
        ensure_rollup(self.env.cr)
        self.env.cr.execute("DROP VIEW IF EXISTS network_egress_rollup")
        self.env.cr.execute("""
            CREATE VIEW network_egress_rollup AS
            SELECT row_number() OVER (ORDER BY bucket_us, direction, channel, host, addon, dest_class, outcome,
                                      vendor_bound, component, method) AS id,
                   to_timestamp(bucket_us / 1000000.0) AT TIME ZONE 'UTC' AS bucket,
                   direction, channel, host, addon, dest_class, outcome, vendor_bound <> 0 AS vendor_bound,
                   component, method, n AS calls, req_bytes, resp_bytes, max_req_bytes, first_seq, last_seq
              FROM mna_rollup""")

    @api.model
    def _cron_catch_up(self):
        from mit_network_audit.report import rollup

        store = self.env["network.egress.component"]._open_store()
        try:
            rollup.catch_up(store)
        finally:
            store.close()
