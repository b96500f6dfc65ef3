from odoo import fields, models


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
