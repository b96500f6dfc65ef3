"""network.egress_body: the package's forensic body store (``egress_body``), officer only.

The table belongs to the package (``mit_network_audit.journal.forensic``): each row is one request
body sealed to the officer's X25519 public key (AES-256-GCM, the journal row's event_id as
associated data), with its own retention.  Odoo reads it through the view ``network_egress_body``
(``id`` = the journal row's ``chain_seq``), which exposes metadata only — never the ciphertext.

Reading a body goes through the package's ``forensic.read_body``: it first appends an ``internal``
``forensic_read`` row to the journal (who, which event, through ``odoo``) on its own connection and
refuses to decrypt anything when that append fails (fail closed).  The private key is never in the
database: it comes from the file named by the system parameter ``mit_network_audit.forensic_key_path``
or the package's default (``$MNA_FORENSIC_KEY``, ``$MNA_FORENSIC_KEY_FILE``, ``<config dir>/forensic.key``).
Listing bodies decrypts nothing and is therefore not journaled (as in the package's CLI and web page).
"""

from odoo import _, api, fields, models
from odoo.exceptions import AccessError, UserError

from .journal_ddl import ensure_journal

OFFICER = "mit_network_audit.group_officer"


class _CursorStore:
    """Just enough of the package's Store for ``forensic.ensure_table`` on Odoo's cursor (install
    transaction: a failed install leaves nothing behind)."""

    kind = "postgres"

    def __init__(self, cr):
        self._cr = cr

    def execute_raw(self, sql, params=()):
        self._cr.execute(sql, params or None)
        return self._cr.fetchall() if self._cr.description else []


class EgressBody(models.Model):
    _name = "network.egress_body"
    _description = "Network Audit Forensic Body (officer only)"
    _auto = False
    _table = "network_egress_body"
    _order = "captured_at_us desc"
    _log_access = False
    _rec_name = "event_id"

    chain_seq = fields.Integer("Chain Seq", readonly=True)
    event_id = fields.Char(readonly=True)
    captured_at_us = fields.Integer("Captured (µs)", readonly=True)
    captured_at = fields.Datetime("Captured At", readonly=True)
    size = fields.Integer("Bytes sent", readonly=True)
    stored = fields.Integer("Bytes kept", readonly=True)
    truncated = fields.Boolean(readonly=True)
    key_id = fields.Char("Key", readonly=True)
    direction = fields.Char(readonly=True)
    host = fields.Char(readonly=True)
    addon = fields.Char(readonly=True)
    method = fields.Char(readonly=True)
    path = fields.Char(readonly=True)

    def init(self):
        from mit_network_audit.journal import forensic

        ensure_journal(self.env.cr)  # the view joins egress_log, whichever model initialises first
        forensic.ensure_table(_CursorStore(self.env.cr))
        self.env.cr.execute("DROP VIEW IF EXISTS network_egress_body")
        self.env.cr.execute("""
            CREATE VIEW network_egress_body AS
            SELECT l.chain_seq AS id, l.chain_seq, b.event_id, b.captured_at_us,
                   to_timestamp(b.captured_at_us / 1000000.0) AT TIME ZONE 'UTC' AS captured_at,
                   b.size, octet_length(b.ciphertext) - 16 AS stored, b.truncated, b.key_id,
                   l.direction, l.host, l.addon, l.method, l.path
              FROM egress_body b JOIN egress_log l ON l.event_id = b.event_id""")

    # -- the store is the package's: Odoo never writes it ---------------------------------------
    @api.model_create_multi
    def create(self, vals_list):
        raise UserError(_("Forensic bodies are written by the interceptor only."))

    def write(self, vals):
        raise UserError(_("Forensic bodies cannot be changed."))

    def unlink(self):
        raise UserError(_("Forensic bodies leave only through their retention purge."))

    def copy(self, default=None):
        raise UserError(_("Forensic bodies cannot be duplicated."))

    # -- reads: journaled first, fail closed -----------------------------------------------------
    def _check_officer(self):
        if not self.env.user.has_group(OFFICER):
            raise AccessError(_("Only network officers may read forensic bodies."))

    @api.model
    def _forensic_key(self):
        from mit_network_audit.journal import forensic

        path = self.env["ir.config_parameter"].sudo().get_param("mit_network_audit.forensic_key_path")
        return forensic.load_key(path or None, required=True)

    @api.model
    def _read_body_raw(self, ref):
        """(BodyRead) after the package journaled the read; UserError when it could not."""
        self._check_officer()
        from mit_network_audit.journal import forensic

        try:
            key = self._forensic_key()
            store = self.env["network.egress.component"]._open_store()
        except forensic.ForensicProblem as exc:
            raise UserError(str(exc)) from None
        try:
            return forensic.read_body(
                store, ref, actor=self.env.user.login, via="odoo", role="officer", key=key
            )
        except forensic.ForensicProblem as exc:
            raise UserError(str(exc)) from None
        finally:
            store.close()

    @api.model
    def read_body(self, ref):
        """Journal the read, then decrypt: ``ref`` is a chain_seq or an event id.  Returns a dict
        (event_id, chain_seq, read_seq, size, stored, truncated, body as text).  Raises UserError when
        the read cannot be journaled, the key is missing or the body does not decrypt."""
        got = self._read_body_raw(ref)
        info = got.info
        return {
            "event_id": info.event_id,
            "chain_seq": info.chain_seq,
            "read_seq": got.read_seq,
            "size": info.size,
            "stored": info.stored,
            "truncated": info.truncated,
            "body": got.body.decode("utf-8", "replace"),
        }

    def action_read_body(self):
        """Button: open the body through the controller (a download, never stored in Odoo)."""
        self.ensure_one()
        self._check_officer()
        return {
            "type": "ir.actions.act_url",
            "url": f"/mit_network_audit/forensic/body/{self.event_id}",
            "target": "new",
        }
