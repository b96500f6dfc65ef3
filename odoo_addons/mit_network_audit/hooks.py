"""Install / uninstall hooks.

Uninstall keeps the evidence: the journal table ``egress_log`` (and mna_meta, mna_rollup and the
checkpoint tables) stay in the database with their triggers; only Odoo's views over them and the
addon's own tables go.  Removing the addon must not be a way to erase what it recorded.  An
operator who really wants the evidence gone drops the tables by hand (documented in docs/odoo.md);
that act is visible to anyone holding a checkpoint or the witness file.
"""

import logging

_logger = logging.getLogger(__name__)


def post_init_hook(env):
    env["network.egress.component"]._seed_from_package()


def uninstall_hook(env):
    env.cr.execute("DROP VIEW IF EXISTS network_egress_log")
    env.cr.execute("DROP VIEW IF EXISTS network_egress_rollup")
    env.cr.execute("DROP VIEW IF EXISTS network_egress_body")  # the body table itself stays, like the journal
    _logger.warning(
        "mit_network_audit uninstalled: the journal table egress_log and its checkpoints are KEPT "
        "as evidence (see docs/odoo.md to remove them deliberately)"
    )
    try:
        from .glue import current_sink

        sink = current_sink()
        if sink is not None:
            sink.forget(env.cr.dbname)
    except Exception:
        pass
