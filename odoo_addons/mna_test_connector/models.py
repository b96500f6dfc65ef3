"""A cron entry point for the connector's outbound call (the cron worker's side of
scripts/odoo-prefork-check)."""

from odoo import api, models

from .connector import fetch


class MnaTestConnector(models.AbstractModel):
    _name = "mna.test.connector"
    _description = "MNA Test Connector"

    @api.model
    def _cron_fetch(self):
        url = self.env["ir.config_parameter"].sudo().get_param("mna_test_connector.url")
        if url:
            fetch(url)
