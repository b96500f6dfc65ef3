"""network.audit.report: the Trust Report (DESIGN §5) and the trust-anchor crons, on the package."""

import time

from odoo import _, api, models
from odoo.exceptions import AccessError


class AuditReport(models.AbstractModel):
    _name = "network.audit.report"
    _description = "Network Audit Trust Report"

    def _param(self, key, default=None):
        return self.env["ir.config_parameter"].sudo().get_param(f"mit_network_audit.{key}", default)

    def _key(self):
        from mit_network_audit.journal.keys import load_signing_key

        return load_signing_key(self._param("key_path") or None)

    @api.model
    def get_trust_report(self, days=7, verify_chain=True):
        """The verdict with its evidence lines (each naming chain_seq rows) for the OWL client action."""
        if not self.env.user.has_group("mit_network_audit.group_user"):
            raise AccessError(_("Network Audit: the Trust Report needs the Network Audit / User group."))
        from mit_network_audit.journal.checkpoint import verify_trust
        from mit_network_audit.journal.verify import verify
        from mit_network_audit.report.trust import build_report

        store = self.env["network.egress.component"]._open_store()
        try:
            now_us = time.time_ns() // 1000
            result = verify(store) if verify_chain else None
            try:
                checks = verify_trust(
                    store,
                    witness_path=self._param("witness_path") or None,
                    key_path=self._param("key_path") or None,
                )
            except Exception as exc:  # no key configured yet: a review, not a crash
                checks = [
                    {
                        "name": "checkpoint",
                        "ok": True,
                        "level": "review",
                        "message": f"checkpoints not checked: {type(exc).__name__}",
                    }
                ]
            report = build_report(
                store,
                now_us - int(days) * 86_400_000_000,
                now_us=now_us,
                verify_result=result,
                trust_checks=checks,
            )
        finally:
            store.close()
        data = report.as_dict()
        data["checks"] = checks
        data["chain_ok"] = None if result is None else bool(result.ok)
        return data

    @api.model
    def _cron_checkpoint(self):
        from mit_network_audit.journal.checkpoint import maybe_checkpoint

        store = self.env["network.egress.component"]._open_store()
        try:
            maybe_checkpoint(store, key=self._key(), witness_path=self._param("witness_path") or None)
        finally:
            store.close()

    @api.model
    def _cron_vacuum(self):
        days = int(self._param("retention_days", 0) or 0)
        if days <= 0:
            return
        from mit_network_audit.journal.vacuum import vacuum

        store = self.env["network.egress.component"]._open_store()
        try:
            vacuum(
                store,
                older_than_s=days * 86_400,
                key=self._key(),
                witness_path=self._param("witness_path") or None,
            )
        finally:
            store.close()
