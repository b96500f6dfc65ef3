"""network.audit.report: the Trust Report (DESIGN §5) and the trust-anchor crons, on the package."""

import logging
import time

from odoo import _, api, models
from odoo.exceptions import AccessError

_logger = logging.getLogger(__name__)


class AuditReport(models.AbstractModel):
    _name = "network.audit.report"
    _description = "Network Audit Trust Report"

    def _param(self, key, default=None):
        return self.env["ir.config_parameter"].sudo().get_param(f"mit_network_audit.{key}", default)

    def _key(self):
        from mit_network_audit.journal.keys import load_signing_key

        return load_signing_key(self._param("key_path") or None)

    @api.model
    def get_trust_report(self, days=7, verify_chain=None):
        """The verdict with its evidence lines (each naming chain_seq rows) for the OWL client action.

        ``verify_chain``: re-check the whole chain, the checkpoints and the rollup first (True), never
        (False), or, by default, when the journal is small enough to do it at once
        (``report.integrity.AUTO_ROWS``, as ``mit-network-audit report`` does); the report says when
        it did not.  The Audit Log's Verify re-checks a journal of any size."""
        if not self.env.user.has_group("mit_network_audit.group_user"):
            raise AccessError(_("Network Audit: the Trust Report needs the Network Audit / User group."))
        from mit_network_audit.report import integrity
        from mit_network_audit.report.trust import build_report

        store = self.env["network.egress.component"]._open_store()
        try:
            now_us = time.time_ns() // 1000
            rows = store.max_seq()
            run = verify_chain if verify_chain is not None else rows <= integrity.AUTO_ROWS
            checked = (
                integrity.check(
                    store,
                    witness_path=self._param("witness_path") or None,
                    key_path=self._param("key_path") or None,
                )
                if run
                else None
            )
            pending = None
            if checked is None and verify_chain is None:
                pending = integrity.not_checked_message(rows, "Network Audit → Audit Log → Verify")
            report = build_report(
                store,
                now_us - int(days) * 86_400_000_000,
                now_us=now_us,
                integrity=checked,
                chain_pending=pending,
            )
        finally:
            store.close()
        data = report.as_dict()
        data["checks"] = list(checked.checks) if checked is not None else []
        data["chain_ok"] = None if checked is None else bool(checked.chain.ok)
        return data

    @api.model
    def _cron_checkpoint(self):
        """Runs every minute; signs when the package's ``checkpoint.interval_s`` has passed since the
        newest checkpoint (or 10,000 rows were appended) and something new was appended."""
        from mit_network_audit.journal import settings as journal_settings
        from mit_network_audit.journal.checkpoint import maybe_checkpoint

        store = self.env["network.egress.component"]._open_store()
        try:
            every = journal_settings.get_settings(store)["checkpoint.interval_s"]
            return maybe_checkpoint(
                store,
                every_seconds=float(every),
                key=self._key(),
                witness_path=self._param("witness_path") or None,
            )
        finally:
            store.close()

    @api.model
    def _cron_vacuum(self):
        """Daily: remove rows older than the package's ``retention.days`` — only once an officer set it
        (a journaled ``settings`` row); never set keeps every row."""
        from ..models.res_config_settings import retention_days

        store = self.env["network.egress.component"]._open_store()
        try:
            days = retention_days(store)
            if not days:
                return None
            from mit_network_audit.journal.vacuum import vacuum

            return vacuum(
                store,
                older_than_s=days * 86_400,
                key=self._key(),
                witness_path=self._param("witness_path") or None,
            )
        finally:
            store.close()

    @api.model
    def _sync_crons(self):
        """Install and upgrade: the rollup and checkpoint crons wake every minute and do their work when
        the package's interval has passed (cron.xml is noupdate, so an upgrade needs this)."""
        for xmlid in ("mit_network_audit.cron_rollup", "mit_network_audit.cron_checkpoint"):
            cron = self.env.ref(xmlid, raise_if_not_found=False)
            if cron and (cron.interval_number, cron.interval_type) != (1, "minutes"):
                cron.sudo().write({"interval_number": 1, "interval_type": "minutes"})
        self._migrate_params()

    @api.model
    def _migrate_params(self):
        """Upgrade from the addon's first version, which kept retention and disabled channels as system
        parameters: move a value that is set into the package's setting (journaled, actor
        ``odoo-upgrade``) unless the journal already has one, then drop the parameter."""
        Param = self.env["ir.config_parameter"].sudo()
        old = {
            "retention.days": "mit_network_audit.retention_days",
            "capture.disabled_channels": "mit_network_audit.disabled_channels",
        }
        found = {key: Param.get_param(param) for key, param in old.items()}
        found = {k: v for k, v in found.items() if v and v.strip() not in ("", "0")}
        records = Param.search([("key", "in", list(old.values()))])
        if not found:
            records.unlink()
            return
        from mit_network_audit.journal import settings as journal_settings

        store = self.env["network.egress.component"]._open_store()
        try:
            for key, raw in found.items():
                if store.meta_get(journal_settings.PREFIX + key) is not None:
                    continue
                try:
                    journal_settings.set_setting(store, key, raw.strip(), actor="odoo-upgrade")
                except journal_settings.SettingRefused as exc:
                    _logger.warning("mit_network_audit: parameter %s not moved: %s", old[key], exc)
        finally:
            store.close()
        records.unlink()
