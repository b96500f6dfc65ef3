"""Apps install in a running server: the addon's code is imported after the server started, so
``_register_hook`` (run on every registry load) calls the idempotent post_load."""

from odoo import models


class IrHttp(models.AbstractModel):
    _inherit = "ir.http"

    def _register_hook(self):
        super()._register_hook()
        from ..glue import post_load

        post_load()
