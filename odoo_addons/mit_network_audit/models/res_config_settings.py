"""Network Audit settings (officers only).

The package's settings (``mit_network_audit.journal.settings``: disabled channels, journal retention,
rollup and checkpoint intervals, forensic capture) live in the journal's database (``mna_meta``), not
in Odoo: the form reads them with ``get_settings`` and saves a change with ``set_settings``, which
validates every value first, then appends an ``internal`` ``settings`` row (actor = the Odoo login,
key, old -> new) *before* storing each value.  So a process started with ``mit-network-audit run`` on
the same journal, the CLI, the web dashboard and the Trust Report see the same values, and every
Odoo worker applies a change live (``runner.live_settings``, followed by the glue).

File paths stay Odoo system parameters (the checkpoint key, the witness file, the forensic private
key): they are per-server facts, not the journal's.  Every change of one is journaled too (``internal``
``settings`` row, ``key = odoo:<parameter>``, ``via = odoo``) before the settings transaction
commits: a journal that cannot be written refuses the change.
"""

import json

from odoo import _, api, fields, models
from odoo.exceptions import AccessError, UserError

OFFICER = "mit_network_audit.group_officer"
# form field -> the package's setting key (mit_network_audit.journal.settings.SETTINGS)
PACKAGE_FIELDS = {
    "mna_disabled_channels": "capture.disabled_channels",
    "mna_retention_days": "retention.days",
    "mna_rollup_interval_s": "rollup.interval_s",
    "mna_checkpoint_interval_s": "checkpoint.interval_s",
    "mna_forensic_enabled": "forensic.enabled",
    "mna_forensic_addons": "forensic.addons",
    "mna_forensic_hosts": "forensic.hosts",
    "mna_forensic_max_bytes": "forensic.max_bytes",
    "mna_forensic_retention_days": "forensic.retention_days",
}
PARAM_FIELDS = {
    "mna_key_path": "mit_network_audit.key_path",
    "mna_witness_path": "mit_network_audit.witness_path",
    "mna_forensic_key_path": "mit_network_audit.forensic_key_path",
}
RETENTION = "retention.days"  # 0 in the form: never set, the retention vacuum keeps every row


def _raw(value, boolean=False):
    """A field value as text; an empty Char field is False in Odoo."""
    if boolean:
        return "true" if value else "false"
    if value is None or value is False:
        return ""
    return str(value).strip()


def retention_days(store):
    """The journal's ``retention.days`` when an officer set it, else None (keep every row).

    The package's default (90) applies to a ``vacuum`` someone runs by hand; Odoo's daily retention
    cron removes evidence only after a journaled decision to do so."""
    from mit_network_audit.journal import settings as journal_settings

    if store.meta_get(journal_settings.PREFIX + RETENTION) is None:
        return None
    return int(journal_settings.get_settings(store)[RETENTION])


class ResConfigSettings(models.TransientModel):
    _inherit = "res.config.settings"

    mna_retention_days = fields.Integer(
        "Audit retention (days)",
        default=0,
        help="0 keeps every row (never set). Older rows are removed by the daily retention vacuum, which "
        "first anchors and signs what it removes. The package's setting retention.days.",
    )
    mna_rollup_interval_s = fields.Integer(
        "Traffic summary every (s)",
        default=60,
        help="Seconds between rollup passes (setting rollup.interval_s). Odoo's cron worker wakes once a "
        "minute, so less than 60 acts as 60.",
    )
    mna_checkpoint_interval_s = fields.Integer(
        "Signed checkpoint every (s)",
        default=300,
        help="Seconds between signed checkpoints (setting checkpoint.interval_s; also after 10,000 rows). "
        "Less than 60 acts as 60.",
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
        help="Comma-separated channel names (setting capture.disabled_channels), applied live in every "
        "Odoo worker; every disabled channel makes the Trust Report a Review.",
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
    def _mna_form_values(self, store):
        """The package's settings as this form's field values."""
        from mit_network_audit.journal import settings as journal_settings

        current = journal_settings.get_settings(store)
        out = {}
        for name, key in PACKAGE_FIELDS.items():
            value = current[key]
            if key == RETENTION:
                value = retention_days(store) or 0
            elif isinstance(value, list):
                value = ",".join(value)
            out[name] = value
        return out

    @api.model
    def get_values(self):
        res = super().get_values()
        if not self.env.user.has_group(OFFICER):
            return res
        try:
            store = self._mna_store()
        except Exception:  # no journal reachable: show the defaults, the Trust Report says why
            return res
        try:
            res.update(self._mna_form_values(store))
        finally:
            store.close()
        return res

    def set_values(self):
        Param = self.env["ir.config_parameter"].sudo()
        old_params = {name: _raw(Param.get_param(key) or "") for name, key in PARAM_FIELDS.items()}
        self.ensure_one()
        officer = self.env.user.has_group(OFFICER)
        if not officer:
            # The block is hidden from non-officers, so their form holds the defaults: any other value
            # of a package field is a change submitted anyway.
            defaults = self.default_get(list(PACKAGE_FIELDS))
            if any(_raw(self[n]) != _raw(defaults.get(n)) for n in PACKAGE_FIELDS):
                raise AccessError(_("Only network officers may change the Network Audit settings."))
        super().set_values()
        param_changes = [
            (PARAM_FIELDS[name], old_params[name], _raw(self[name]))
            for name in PARAM_FIELDS
            if _raw(self[name]) != old_params[name]
        ]
        if not param_changes and not officer:
            return
        if not officer:
            raise AccessError(_("Only network officers may change the Network Audit settings."))
        from mit_network_audit.interceptor import capture
        from mit_network_audit.interceptor.event import internal_event
        from mit_network_audit.journal import settings as journal_settings

        actor = self.env.user.login
        store = self._mna_store()
        try:
            package_changes = self._mna_package_changes(store)
            if not (param_changes or package_changes):
                return
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
            if package_changes:
                try:
                    journal_settings.set_settings(store, package_changes, actor=actor)
                except journal_settings.SettingRefused as exc:
                    raise UserError(str(exc)) from None
                self._mna_apply_here(store)
        finally:
            store.close()

    @api.model
    def _mna_apply_here(self, store):
        """This process applies the change at once; the other workers at their next settings poll."""
        from odoo.addons.mit_network_audit import glue

        from mit_network_audit.runner import live_settings

        following = glue.settings_dsn()
        if following is not None and following == self.env["network.egress.component"]._dsn():
            live_settings.refresh()

    def _mna_package_changes(self, store):
        """{package key: raw value} for the fields that differ from the journal's settings.  Values are
        compared in the package's canonical form (a value that parses to what is stored is no change);
        a value the package refuses is passed on, so ``set_settings`` refuses it with its message."""
        from mit_network_audit.journal import settings as journal_settings

        now = self._mna_form_values(store)
        out = {}
        for name, key in PACKAGE_FIELDS.items():
            setting = journal_settings.SETTINGS[key]
            new, old = self[name], now[name]
            if key == RETENTION:
                new = int(new or 0)
                if new == old:
                    continue
                if new == 0:
                    raise UserError(
                        _(
                            "Retention was set to %s days; it cannot go back to 'keep every row'. "
                            "Enter a long period instead (up to 36500 days).",
                            old,
                        )
                    )
                out[key] = str(new)
                continue
            raw = _raw(new, boolean=setting.type == "bool")
            try:
                same = journal_settings.as_text(setting.parse(raw)) == journal_settings.as_text(
                    setting.parse(old)
                )
                if same:
                    continue
            except journal_settings.SettingRefused:
                pass
            out[key] = raw
        return out
