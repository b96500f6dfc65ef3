"""Odoo tests of the addon (run with ``--test-tags /mit_network_audit``; see scripts/odoo-test).

post_install: the journal is written on its own connection, which sees only committed data, so the
addon must be installed and committed before the writer finds its table (the at_install phase runs
inside the uncommitted install transaction)."""

import json
import os
import shutil
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
from odoo.addons.mit_network_audit.glue import current_sink
from odoo.exceptions import AccessError, UserError
from odoo.tests import HttpCase, TransactionCase, new_test_user, tagged


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.do_GET()

    def log_message(self, *args):
        pass


def _journal_rows(env, where, params=()):
    """Read the journal on a fresh connection (the test cursor's snapshot cannot see the writer's rows)."""
    sink = current_sink()
    sink.flush(10)
    dsn = env["network.egress.component"]._dsn()
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(
            f"SELECT chain_seq, addon, addon_author, direction, host, port, path, status, call_site "
            f"FROM egress_log WHERE {where} ORDER BY chain_seq",
            params,
        ).fetchall()


class _AuditCase:
    def _ready(self):
        sink = current_sink()
        self.assertIsNotNone(sink, "post_load did not install the interceptor")
        sink._absent.clear()  # a check made before the install committed must not linger
        threading.current_thread().dbname = self.env.cr.dbname


@tagged("post_install", "-at_install", "mit_network_audit")
class TestEgressAttribution(TransactionCase, _AuditCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        cls.thread = threading.Thread(target=cls.server.serve_forever, daemon=True)
        cls.thread.start()

    @classmethod
    def tearDownClass(cls):
        cls.server.shutdown()
        cls.server.server_close()
        super().tearDownClass()

    def test_outbound_call_attributed_to_calling_addon(self):
        self._ready()
        from odoo.addons.mna_test_connector.connector import fetch

        # a random marker in the path would be masked as :token by the redaction policy (by design);
        # the server's fresh ephemeral port and a plain path identify the call instead
        port = self.server.server_address[1]
        self.assertEqual(fetch(f"http://127.0.0.1:{port}/probe"), 200)
        rows = _journal_rows(self.env, "direction = 'outbound' AND port = %s AND path = '/probe'", (port,))
        self.assertEqual(len(rows), 1, rows)
        _seq, addon, author, _d, host, _port, _path, status, call_site = rows[0]
        self.assertEqual(addon, "mna_test_connector")
        self.assertEqual(author, "MNA Test Vendor")
        self.assertEqual(host, "127.0.0.1")
        self.assertEqual(status, 200)
        self.assertIn("connector.py", call_site)

    def test_orm_refuses_write_and_unlink_even_under_sudo(self):
        self._ready()
        from odoo.addons.mna_test_connector.connector import fetch

        fetch(f"http://127.0.0.1:{self.server.server_address[1]}/orm")
        current_sink().flush(10)
        Log = self.env["network.egress_log"].sudo()
        # the test transaction's snapshot may predate the row: build the record by id anyway
        rec = Log.browse(1)
        with self.assertRaises(UserError):
            rec.write({"host": "tampered.example"})
        with self.assertRaises(UserError):
            rec.unlink()
        with self.assertRaises(UserError):
            Log.create({"host": "forged.example"})

    def test_database_refuses_update_delete_truncate(self):
        self._ready()
        from odoo.addons.mna_test_connector.connector import fetch

        fetch(f"http://127.0.0.1:{self.server.server_address[1]}/db")
        current_sink().flush(10)
        dsn = self.env["network.egress.component"]._dsn()
        with psycopg.connect(dsn, autocommit=True) as conn:
            for sql in (
                "UPDATE egress_log SET host = 'tampered' WHERE chain_seq = (SELECT max(chain_seq) FROM egress_log)",
                "DELETE FROM egress_log WHERE chain_seq = (SELECT max(chain_seq) FROM egress_log)",
                "UPDATE network_egress_log SET host = 'x' WHERE id = (SELECT max(chain_seq) FROM egress_log)",
                "TRUNCATE egress_log",
            ):
                with self.subTest(sql=sql), self.assertRaises(psycopg.Error) as ctx:
                    conn.execute(sql)
                self.assertIn("append-only", str(ctx.exception))

    def test_trust_report_verdict(self):
        self._ready()
        report = self.env["network.audit.report"].get_trust_report(days=1)
        self.assertIn(report["verdict"], ("alarm", "review", "all_clear"))
        self.assertTrue(report["chain_ok"], report)
        # loopback traffic of a test addon is local, never vendor-bound: no alarm
        self.assertNotEqual(report["verdict"], "alarm", report["lines"])
        for line in report["lines"]:
            self.assertIn(line["level"], ("alarm", "review", "info"))

    def test_components_seeded(self):
        self.assertTrue(self.env["network.egress.component"].search_count([("seeded", "=", True)]))


@tagged("post_install", "-at_install", "mit_network_audit")
class TestGroupsAccess(TransactionCase):
    def test_groups(self):
        viewer = new_test_user(self.env, "mna_viewer", groups="base.group_user,mit_network_audit.group_user")
        auditor = new_test_user(
            self.env, "mna_auditor", groups="base.group_user,mit_network_audit.group_auditor"
        )
        officer = new_test_user(
            self.env, "mna_officer", groups="base.group_user,mit_network_audit.group_officer"
        )
        plain = new_test_user(self.env, "mna_plain", groups="base.group_user")

        def can(user, model, mode):
            return self.env[model].with_user(user).has_access(mode)

        self.assertFalse(can(plain, "network.egress.rollup", "read"))
        self.assertTrue(can(viewer, "network.egress.rollup", "read"))
        self.assertFalse(can(viewer, "network.egress_log", "read"))
        self.assertTrue(can(auditor, "network.egress_log", "read"))
        for user in (auditor, officer):
            self.assertFalse(can(user, "network.egress_log", "write"))
            self.assertFalse(can(user, "network.egress_log", "unlink"))
        self.assertFalse(can(auditor, "network.egress_body", "read"))
        self.assertTrue(can(officer, "network.egress_body", "read"))
        self.assertFalse(can(auditor, "network.egress.component", "write"))
        self.assertTrue(can(officer, "network.egress.component", "write"))
        with self.assertRaises(AccessError):
            self.env["network.audit.report"].with_user(plain).get_trust_report(days=1, verify_chain=False)


@tagged("post_install", "-at_install", "mit_network_audit")
class TestInbound(HttpCase, _AuditCase):
    def test_inbound_request_becomes_row(self):
        self._ready()
        marker = uuid.uuid4().hex[:8]
        response = self.url_open(f"/web/login?redirect=/probe-{marker}")
        self.assertEqual(response.status_code, 200)
        rows = []
        for _ in range(50):  # the row is emitted when the server closes the response iterable
            rows = _journal_rows(self.env, "direction = 'inbound' AND path = '/web/login' AND chain_seq > 0")
            if rows:
                break
            time.sleep(0.1)
        self.assertTrue(rows, "no inbound row for /web/login")
        self.assertEqual(rows[-1][7], 200)


@tagged("post_install", "-at_install", "mit_network_audit")
class TestForensicBodies(HttpCase, _AuditCase):
    """network.egress_body over the package's sealed store: a read is journaled (forensic_read row,
    actor and via=odoo) before the body is decrypted; officers only."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        cls.thread = threading.Thread(target=cls.server.serve_forever, daemon=True)
        cls.thread.start()
        cls.keydir = tempfile.mkdtemp(prefix="mna-odoo-forensic-")

    @classmethod
    def tearDownClass(cls):
        cls.server.shutdown()
        cls.server.server_close()
        shutil.rmtree(cls.keydir, ignore_errors=True)
        super().tearDownClass()

    def _stored_body(self, body):
        """A real outbound call (its journal row), then a body sealed to the officer's public key."""
        from odoo.addons.mna_test_connector.connector import fetch

        from mit_network_audit.journal import forensic

        self._ready()
        key_path = forensic.init_key(os.path.join(self.keydir, uuid.uuid4().hex, "forensic.key"))
        self.env["ir.config_parameter"].sudo().set_param("mit_network_audit.forensic_key_path", key_path)
        port = self.server.server_address[1]
        fetch(f"http://127.0.0.1:{port}/forensic")
        seq = _journal_rows(self.env, "direction = 'outbound' AND port = %s AND path = '/forensic'", (port,))[
            -1
        ][0]
        store = self.env["network.egress.component"]._open_store()
        try:
            event_id = store.get(seq).event.event_id
            forensic.ensure_table(store)
            row = forensic.seal(
                forensic.load_public_key(key_path), event_id, int(time.time() * 1e6), body, len(body), False
            )
            forensic.put_sealed(store, [row])
        finally:
            store.close()
        return seq, event_id

    def _reads(self, event_id):
        return _journal_rows(
            self.env,
            "direction = 'internal' AND method = 'forensic_read' AND detail LIKE %s",
            (f"%{event_id}%",),
        )

    def test_officer_read_is_journaled_first(self):
        body = b'{"invoice": "secret-canary"}'
        seq, event_id = self._stored_body(body)
        officer = new_test_user(
            self.env, "mna_f_officer", groups="base.group_user,mit_network_audit.group_officer"
        )
        self.assertFalse(self._reads(event_id))
        got = self.env["network.egress_body"].with_user(officer).read_body(seq)
        self.assertEqual(got["body"], body.decode())
        self.assertEqual(got["event_id"], event_id)
        reads = self._reads(event_id)
        self.assertEqual(len(reads), 1, reads)
        self.assertEqual(reads[0][0], got["read_seq"])
        dsn = self.env["network.egress.component"]._dsn()
        with psycopg.connect(dsn, autocommit=True) as conn:
            detail = json.loads(
                conn.execute(
                    "SELECT detail FROM egress_log WHERE chain_seq = %s", (got["read_seq"],)
                ).fetchone()[0]
            )
        self.assertEqual(
            (detail["actor"], detail["via"], detail["chain_seq"]), ("mna_f_officer", "odoo", seq)
        )

    def test_download_route_and_auditor_refused(self):
        body = b"raw body bytes \x00\x01"
        seq, event_id = self._stored_body(body)
        auditor = new_test_user(
            self.env, "mna_f_auditor", groups="base.group_user,mit_network_audit.group_auditor"
        )
        with self.assertRaises(AccessError):
            self.env["network.egress_body"].with_user(auditor).read_body(seq)
        self.assertFalse(self._reads(event_id), "a refused read decrypts nothing and journals nothing")
        new_test_user(self.env, "mna_f_officer2", groups="base.group_user,mit_network_audit.group_officer")
        self.authenticate("mna_f_officer2", "mna_f_officer2")
        response = self.url_open(f"/mit_network_audit/forensic/body/{event_id}")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.content, body)
        self.assertEqual(response.headers["Cache-Control"], "no-store")
        self.assertEqual(len(self._reads(event_id)), 1)

    def test_odoo_process_captures_when_switched_on(self):
        """End to end inside Odoo: capture switched on by an officer's setting, the Odoo process
        seals the body of an in-scope call made by an addon, an officer reads it (journaled)."""
        import base64

        from odoo.addons.mit_network_audit import glue
        from odoo.addons.mna_test_connector.connector import send

        from mit_network_audit.interceptor import capture
        from mit_network_audit.journal import forensic
        from mit_network_audit.runner import forensic_boot

        self._ready()
        key_path = forensic.init_key(os.path.join(self.keydir, uuid.uuid4().hex, "forensic.key"))
        self.env["ir.config_parameter"].sudo().set_param("mit_network_audit.forensic_key_path", key_path)
        public = base64.b64encode(forensic.load_public_key(key_path)).decode()
        old_env = os.environ.get(forensic.ENV_PUBLIC_KEY)
        os.environ[forensic.ENV_PUBLIC_KEY] = public  # what the server's operator sets: the PUBLIC key only
        store = self.env["network.egress.component"]._open_store()

        def restore():
            forensic.change_setting(store, "forensic.enabled", "false", actor="test-cleanup")
            forensic.change_setting(store, "forensic.addons", "", actor="test-cleanup")
            forensic_boot.apply({"forensic.enabled": False})
            if old_env is None:
                os.environ.pop(forensic.ENV_PUBLIC_KEY, None)
            else:
                os.environ[forensic.ENV_PUBLIC_KEY] = old_env
            store.close()

        self.addCleanup(restore)
        forensic.change_setting(store, "forensic.addons", "mna_test_connector", actor="officer")
        forensic.change_setting(store, "forensic.enabled", "true", actor="officer")
        glue._state.pop("forensic_db", None)
        self.assertTrue(glue._start_forensic(), "capture did not start for the single database")
        self.assertIsNotNone(capture.runtime.body_tap)
        port = self.server.server_address[1]
        body = b"name=secret-canary&amount=42"
        self.assertEqual(send(f"http://127.0.0.1:{port}/capture", body), 200)
        self.assertTrue(forensic_boot._state["writer"].flush(10))
        seq = _journal_rows(self.env, "direction = 'outbound' AND port = %s AND path = '/capture'", (port,))[
            -1
        ][0]
        event_id = store.get(seq).event.event_id
        self.assertEqual(len(forensic.list_bodies_for(store, event_id)), 1)
        raw = store.execute_raw("SELECT ciphertext FROM egress_body WHERE event_id = %s", (event_id,))[0][0]
        self.assertNotIn(b"secret-canary", bytes(raw))
        got = self.env["network.egress_body"].read_body(seq)
        self.assertEqual(got["body"], body.decode())
        self.assertEqual(len(self._reads(event_id)), 1)

    def test_missing_key_refuses(self):
        seq, event_id = self._stored_body(b"x")
        self.env["ir.config_parameter"].sudo().set_param(
            "mit_network_audit.forensic_key_path", os.path.join(self.keydir, "none.key")
        )
        with self.assertRaises(UserError):
            self.env["network.egress_body"].read_body(seq)


@tagged("post_install", "-at_install", "mit_network_audit")
class TestSettings(TransactionCase, _AuditCase):
    """res.config.settings reads/writes the package's forensic settings (journal database) and
    journals every change (internal settings rows: actor, key, old -> new); officers only."""

    def _settings_rows(self, since):
        return _journal_rows(
            self.env, "direction = 'internal' AND method = 'settings' AND chain_seq > %s", (since,)
        )

    def _max_seq(self):
        return (_journal_rows(self.env, "true")[-1:] or [(0,)])[0][0]

    def test_officer_changes_are_journaled_and_reach_the_package(self):
        from mit_network_audit.journal import forensic

        self._ready()
        officer = new_test_user(
            self.env,
            "mna_s_officer",
            groups="base.group_user,base.group_system,mit_network_audit.group_officer",
        )
        since = self._max_seq()
        Settings = self.env["res.config.settings"].with_user(officer)
        Settings.create(
            {
                "mna_forensic_enabled": True,
                "mna_forensic_addons": "mna_test_connector,sale",
                "mna_retention_days": 7,
            }
        ).execute()
        store = self.env["network.egress.component"]._open_store()
        self.addCleanup(store.close)
        self.addCleanup(forensic.change_setting, store, "forensic.enabled", "false", actor="test-cleanup")
        self.addCleanup(forensic.change_setting, store, "forensic.addons", "", actor="test-cleanup")
        scope = forensic.scope_from_settings(forensic.current_settings(store))
        self.assertTrue(scope.enabled)
        self.assertEqual(scope.addons, ("mna_test_connector", "sale"))
        dsn = self.env["network.egress.component"]._dsn()
        with psycopg.connect(dsn, autocommit=True) as conn:
            details = [
                json.loads(d)
                for (d,) in conn.execute(
                    "SELECT detail FROM egress_log WHERE method = 'settings' AND chain_seq > %s ORDER BY chain_seq",
                    (since,),
                )
            ]
        changed = {d["key"]: d for d in details}
        self.assertEqual(changed["odoo:mit_network_audit.retention_days"]["new"], "7")
        self.assertEqual(changed["odoo:mit_network_audit.retention_days"]["old"], "")
        self.assertEqual(
            set(changed), {"odoo:mit_network_audit.retention_days", "forensic.enabled", "forensic.addons"}
        )
        self.assertEqual(changed["forensic.enabled"]["actor"], "mna_s_officer")
        self.assertIn("forensic.addons", changed)
        self.assertTrue(all(d["actor"] == "mna_s_officer" for d in details), details)
        # the form shows what the package holds
        values = Settings.default_get(["mna_forensic_enabled", "mna_forensic_addons"])
        self.assertTrue(values["mna_forensic_enabled"])
        # saving again without a change journals nothing
        since = self._max_seq()
        Settings.create({}).execute()
        self.assertEqual(self._settings_rows(since), [])

    def test_non_officer_admin_cannot_change(self):
        self._ready()
        admin = new_test_user(self.env, "mna_s_admin", groups="base.group_user,base.group_system")
        since = self._max_seq()
        with self.assertRaises(AccessError):
            self.env["res.config.settings"].with_user(admin).create({"mna_retention_days": 99}).execute()
        self.assertEqual(self._settings_rows(since), [])

    def test_disabled_channels_applied_and_reported(self):
        from odoo.addons.mit_network_audit.glue import health

        from mit_network_audit import interceptor
        from mit_network_audit.interceptor import capture

        self._ready()
        officer = new_test_user(
            self.env,
            "mna_s_officer3",
            groups="base.group_user,base.group_system,mit_network_audit.group_officer",
        )
        self.addCleanup(interceptor.set_disabled_channels, [])
        self.env["res.config.settings"].with_user(officer).create({"mna_disabled_channels": "ftp"}).execute()
        self.assertEqual(capture.runtime.disabled, frozenset({"ftp"}))
        since = self._max_seq()
        health.emit("heartbeat")  # what the heartbeat thread writes every few minutes
        rows = _journal_rows(self.env, "method = 'heartbeat' AND chain_seq > %s", (since,))
        self.assertEqual(len(rows), 1, rows)
        dsn = self.env["network.egress.component"]._dsn()
        with psycopg.connect(dsn, autocommit=True) as conn:
            detail = json.loads(
                conn.execute("SELECT detail FROM egress_log WHERE chain_seq = %s", (rows[0][0],)).fetchone()[
                    0
                ]
            )
        self.assertEqual(detail["disabled"], ["ftp"])
        self.assertIn("requests", detail["channels"])
