"""Network Audit settings (officers only).

Forensic body capture is the package's setting, kept in the journal's database (``mna_meta``) and
read/written through ``mit_network_audit.journal.forensic.current_settings`` / ``change_setting``
(which use ``journal.settings.get_settings`` / ``set_setting`` when that module is present): every
change appends an ``internal`` ``settings`` row (who, key, old -> new) to the journal, so a process
started with ``mit-network-audit run`` on the same journal and the Trust Report see the same switch.

The Odoo-side parameters (retention, key and witness paths, disabled channels) stay system
parameters, and every change of one is journaled the same way (``internal`` ``settings`` row,
``key = odoo:<parameter>``, ``via = odoo``) before the settings transaction commits: a journal that
cannot be written refuses the change.
"""

import json

from odoo import _, api, fields, models
from odoo.exceptions import AccessError, UserError

OFFICER = "mit_network_audit.group_officer"
FORENSIC_FIELDS = {
    "mna_forensic_enabled": "forensic.enabled",
    "mna_forensic_addons": "forensic.addons",
    "mna_forensic_hosts": "forensic.hosts",
    "mna_forensic_max_bytes": "forensic.max_bytes",
    "mna_forensic_retention_days": "forensic.retention_days",
}
PARAM_FIELDS = {
    "mna_retention_days": "mit_network_audit.retention_days",
    "mna_key_path": "mit_network_audit.key_path",
    "mna_witness_path": "mit_network_audit.witness_path",
    "mna_disabled_channels": "mit_network_audit.disabled_channels",
    "mna_forensic_key_path": "mit_network_audit.forensic_key_path",
}


def _raw(value, boolean=False):
    """A field value as the package's settings store it (text); an empty Char field is False in Odoo."""
    if boolean:
        return "true" if value else "false"
    if value is None or value is False:
        return ""
    return str(value).strip()


def _same(raw):
    """An unset parameter and an Integer field's 0 are the same setting."""
    return "" if raw == "0" else raw


class ResConfigSettings(models.TransientModel):
    _inherit = "res.config.settings"

    mna_retention_days = fields.Integer(
        "Audit retention (days)",
        config_parameter="mit_network_audit.retention_days",
        default=0,
        help="0 keeps every row. Older rows are removed by the retention vacuum, which first anchors "
        "and signs what it removes.",
    )
    mna_key_path = fields.Char(
        "Signing key file",
        config_parameter="mit_network_audit.key_path",
        help="Path of the Ed25519 checkpoint key on the server (never stored in the database). "
        "Empty: the package default.",
    )
    mna_witness_path = fields.Char(
        "Witness file",
        config_parameter="mit_network_audit.witness_path",
        help="File outside the database where every checkpoint is also written.",
    )
    mna_disabled_channels = fields.Char(
        "Disabled channels",
        config_parameter="mit_network_audit.disabled_channels",
        help="Comma-separated; every disabled channel makes the Trust Report a Review.",
    )
    mna_forensic_key_path = fields.Char(
        "Forensic private key file",
        config_parameter="mit_network_audit.forensic_key_path",
        help="X25519 private key that opens stored bodies (mode 0600, never in the database). "
        "Empty: $MNA_FORENSIC_KEY, $MNA_FORENSIC_KEY_FILE or the package default.",
    )
    # the package's forensic settings (journal database), not system parameters
    mna_forensic_enabled = fields.Boolean(
        "Forensic body capture",
        help="Off by default. On: request bodies of in-scope calls are sealed to the officer's public key "
        "and stored; the Trust Report says Review while it is on.",
    )
    mna_forensic_addons = fields.Char("Capture for addons", help="Comma-separated addon names, * for all")
    mna_forensic_hosts = fields.Char("Capture for hosts", help="Comma-separated host names, * for all")
    mna_forensic_max_bytes = fields.Integer("Bytes kept per body", default=65536)
    mna_forensic_retention_days = fields.Integer("Body retention (days)", default=30)

    # -- the journal store ------------------------------------------------------------------------
    @api.model
    def _mna_store(self):
        return self.env["network.egress.component"]._open_store()

    @api.model
    def get_values(self):
        res = super().get_values()
        if not self.env.user.has_group(OFFICER):
            return res
        from mit_network_audit.journal import forensic

        try:
            store = self._mna_store()
        except Exception:  # no journal reachable: show the defaults, the Trust Report says why
            return res
        try:
            scope = forensic.scope_from_settings(forensic.current_settings(store))
        finally:
            store.close()
        res.update(
            mna_forensic_enabled=scope.enabled,
            mna_forensic_addons=",".join(scope.addons),
            mna_forensic_hosts=",".join(scope.hosts),
            mna_forensic_max_bytes=scope.max_bytes,
            mna_forensic_retention_days=scope.retention_days,
        )
        return res

    def set_values(self):
        Param = self.env["ir.config_parameter"].sudo()
        old_params = {name: _raw(Param.get_param(key) or "") for name, key in PARAM_FIELDS.items()}
        super().set_values()
        self.ensure_one()
        param_changes = [
            (PARAM_FIELDS[name], old_params[name], _raw(self[name]))
            for name in PARAM_FIELDS
            if _same(_raw(self[name])) != _same(old_params[name])
        ]
        forensic_changes = self._mna_forensic_changes()
        if not (param_changes or forensic_changes):
            return
        if not self.env.user.has_group(OFFICER):
            raise AccessError(_("Only network officers may change the Network Audit settings."))
        from mit_network_audit.interceptor import capture
        from mit_network_audit.interceptor.event import internal_event
        from mit_network_audit.journal import forensic

        actor = self.env.user.login
        store = self._mna_store()
        try:
            if param_changes:
                rows = [
                    internal_event(
                        "settings",
                        detail=json.dumps(
                            {"actor": actor, "key": f"odoo:{key}", "old": old, "new": new, "via": "odoo"},
                            sort_keys=True,
                        ),
                    )
                    for key, old, new in param_changes
                ]
                try:
                    with capture.suppressed():
                        store.append(rows)
                except Exception as exc:
                    raise UserError(
                        _(
                            "The settings change could not be journaled (%s); nothing was changed.",
                            type(exc).__name__,
                        )
                    ) from None
            if any(key == "mit_network_audit.disabled_channels" for key, _old, _new in param_changes):
                from mit_network_audit import interceptor

                from ..glue.health import parse_channels

                # this process at once; the others at their next heartbeat (they re-read the parameter)
                interceptor.set_disabled_channels(parse_channels(self.mna_disabled_channels))
            for key, raw in forensic_changes:
                try:
                    forensic.change_setting(store, key, raw, actor=actor)
                except forensic.ForensicProblem as exc:
                    raise UserError(str(exc)) from None
        finally:
            store.close()

    def _mna_forensic_changes(self):
        """[(package key, new raw value)] for the forensic fields that differ from the journal's settings."""
        from mit_network_audit.journal import forensic

        if not self.env.user.has_group(OFFICER):
            # the fields are hidden from non-officers: what they submit is the defaults, never a change
            return []
        store = self._mna_store()
        try:
            scope = forensic.scope_from_settings(forensic.current_settings(store))
        finally:
            store.close()
        now = {
            "forensic.enabled": _raw(scope.enabled, boolean=True),
            "forensic.addons": ",".join(scope.addons),
            "forensic.hosts": ",".join(scope.hosts),
            "forensic.max_bytes": str(scope.max_bytes),
            "forensic.retention_days": str(scope.retention_days),
        }
        out = []
        for name, key in FORENSIC_FIELDS.items():
            new = _raw(self[name], boolean=key == "forensic.enabled")
            if key in ("forensic.addons", "forensic.hosts"):
                new = ",".join(v.strip() for v in new.split(",") if v.strip())
            if new != now[key]:
                out.append((key, new))
        return out
