"""network.egress.rollup: the package's rollup table (mna_rollup), read through a view.

The rollup is derived data (rebuilt from the journal at any time); the cron keeps it caught up.
"""

import time

from odoo import api, fields, models

from .journal_ddl import ensure_journal, ensure_rollup

LAST_PASS = "odoo.rollup_last_pass_us"  # mna_meta: when the cron last rolled up (microseconds)


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
        """Runs every minute; folds new rows when the package's ``rollup.interval_s`` has passed since
        the last pass (kept in the journal's ``mna_meta``, so every cron worker agrees).  Returns the
        package's RollupResult, or None when not due."""
        from mit_network_audit.interceptor import capture
        from mit_network_audit.journal import settings as journal_settings
        from mit_network_audit.report import rollup

        store = self.env["network.egress.component"]._open_store()
        try:
            with capture.suppressed():
                every_us = int(journal_settings.get_settings(store)["rollup.interval_s"]) * 1_000_000
                now_us = time.time_ns() // 1000
                last_us = int(store.meta_get(LAST_PASS) or 0)
                # a little slack: a 60 s interval must not slip to 120 s on a cron woken every ~60 s
                if last_us and now_us - last_us < every_us - 5_000_000:
                    return None
                result = rollup.catch_up(store)
                store.meta_set(LAST_PASS, str(now_us))
                return result
        finally:
            store.close()
