{
    "name": "MIT Network Audit",
    "version": "18.0.1.0.0",
    "summary": "Prove where your data goes: every network call in an append-only, hash-chained journal",
    "description": "Audits every outbound and inbound network call of the Odoo server, attributes it "
    "to the addon that made it, and shows a Trust Report. Built on the mit_network_audit "
    "Python package.",
    "author": "MIT",
    "license": "LGPL-3",
    "category": "Administration",
    "depends": ["base", "web"],
    "external_dependencies": {"python": ["mit_network_audit", "psycopg"]},
    "data": [
        "security/security.xml",
        "security/ir.model.access.csv",
        "data/cron.xml",
        "views/egress_log_views.xml",
        "views/egress_rollup_views.xml",
        "views/egress_component_views.xml",
        "views/egress_body_views.xml",
        "views/res_config_settings_views.xml",
        "views/menus.xml",
    ],
    "assets": {
        "web.assets_backend": [
            "mit_network_audit/static/src/trust_report/*",
        ],
        "web.assets_tests": [
            "mit_network_audit/static/tests/tours/*",
        ],
    },
    "post_load": "post_load",
    "post_init_hook": "post_init_hook",
    "uninstall_hook": "uninstall_hook",
    "installable": True,
    "application": True,
}
