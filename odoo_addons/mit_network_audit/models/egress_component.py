"""network.egress.component: the catalogue of known destinations, seeded from the package's
shipped catalogue (catalogue.toml).  Operators may add their own providers here."""

from odoo import api, fields, models

DEST_CLASSES = [
    ("vendor", "Vendor (MIT)"),
    ("provider", "Provider you chose"),
    ("own", "Own"),
    ("local", "Local"),
    ("unknown", "Unknown"),
]


class EgressComponent(models.Model):
    _name = "network.egress.component"
    _description = "Network Audit Egress Component"
    _order = "dest_class, name"

    name = fields.Char(required=True)
    dest_class = fields.Selection(DEST_CLASSES, required=True, default="provider")
    purpose = fields.Char()
    category = fields.Char()
    hosts = fields.Char(help="Comma-separated host patterns (fnmatch)")
    methods = fields.Char(help="Comma-separated HTTP methods allowed (vendor components)")
    max_request_bytes = fields.Integer()
    seeded = fields.Boolean(readonly=True, help="Comes from the package's shipped catalogue")

    _sql_constraints = [("name_unique", "unique(name)", "Component names are unique.")]

    @api.model
    def _seed_from_package(self):
        from mit_network_audit.report.catalogue import load_catalogue

        existing = set(self.search([]).mapped("name"))
        for comp in load_catalogue().components:
            if comp.name in existing:
                continue
            self.create(
                {
                    "name": comp.name,
                    "dest_class": comp.dest_class if comp.dest_class in dict(DEST_CLASSES) else "unknown",
                    "purpose": comp.purpose,
                    "category": comp.category,
                    "hosts": ",".join(comp.hosts),
                    "methods": ",".join(comp.methods),
                    "max_request_bytes": comp.max_request_bytes or 0,
                    "seeded": True,
                }
            )

    @api.model
    def _dsn(self):
        from odoo.addons.mit_network_audit.glue import _dsn_for

        return _dsn_for(self.env.cr.dbname)

    @api.model
    def _open_store(self):
        from mit_network_audit.journal.postgres import PostgresStore

        return PostgresStore(self._dsn())
