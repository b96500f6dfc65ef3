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
        from odoo.addons.mit_network_audit import glue

        sink = current_sink()
        self.assertIsNotNone(sink, "post_load did not install the interceptor")
        sink._absent.clear()  # a check made before the install committed must not linger
        threading.current_thread().dbname = self.env.cr.dbname
        # what the next registry load (or a restart) does once the install has committed
        glue.start_settings()


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

    def test_trust_report_rechecks_a_small_journal_and_says_when_it_did_not(self):
        """As `mit-network-audit report`: the chain is re-checked at once up to AUTO_ROWS rows; above,
        the report says it was not and where to do it, and verify_chain=True re-checks at any size."""
        from unittest import mock

        from mit_network_audit.report import integrity

        self._ready()
        model = self.env["network.audit.report"]
        with mock.patch.object(integrity, "AUTO_ROWS", 0):
            report = model.get_trust_report(days=1)
            self.assertIsNone(report["chain_ok"], report)
            line = next(x for x in report["lines"] if x["rule"] == "chain_not_checked")
            self.assertIn("Audit Log", line["message"])
            self.assertFalse(report["chain"]["checked"])
            report = model.get_trust_report(days=1, verify_chain=True)
        self.assertTrue(report["chain_ok"], report)
        self.assertTrue(report["chain"]["checked"] and report["chain"]["rows_checked"] > 0, report)

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
class TestVerifyAndExport(TransactionCase):
    """The Audit Log's actions: Verify Journal (server action) and Export (list header button)."""

    @classmethod
    def setUpClass(cls):
        # the row is made and committed by the writer before the test transaction takes its snapshot
        from odoo.addons.mit_network_audit import glue
        from odoo.addons.mna_test_connector.connector import fetch
        from odoo.tests.common import get_db_name

        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            sink = current_sink()
            sink._absent.clear()
            threading.current_thread().dbname = get_db_name()
            glue.start_settings()
            cls.port = server.server_address[1]
            fetch(f"http://127.0.0.1:{cls.port}/export")
            sink.flush(10)
        finally:
            server.shutdown()
            server.server_close()
        super().setUpClass()
        cls.viewer = new_test_user(
            cls.env, "mna_ve_viewer", groups="base.group_user,mit_network_audit.group_user"
        )
        cls.auditor = new_test_user(
            cls.env, "mna_ve_auditor", groups="base.group_user,mit_network_audit.group_auditor"
        )

    def test_verify_action(self):
        action = self.env.ref("mit_network_audit.action_egress_log_verify")
        self.assertIn(self.env.ref("mit_network_audit.group_auditor"), action.groups_id)
        result = self.env["network.egress_log"].with_user(self.auditor).action_verify()
        self.assertEqual(result["tag"], "display_notification")
        self.assertEqual(result["params"]["type"], "success", result)
        with self.assertRaises(AccessError):
            self.env["network.egress_log"].with_user(self.viewer).action_verify()

    def test_export_selected_rows_with_their_hashes(self):
        Log = self.env["network.egress_log"].with_user(self.auditor)
        recs = Log.search(
            [("direction", "=", "outbound"), ("port", "=", self.port), ("path", "=", "/export")]
        )
        self.assertEqual(len(recs), 1)
        result = recs.action_export_jsonl()
        self.assertEqual(result["type"], "ir.actions.act_url")
        attachment_id = int(result["url"].split("/web/content/")[1].split("?")[0])
        attachment = self.env["ir.attachment"].browse(attachment_id)
        lines = [json.loads(line) for line in attachment.raw.decode().splitlines()]
        self.assertEqual(len(lines), 1, lines)
        row = lines[0]
        self.assertEqual(row["chain_seq"], recs.chain_seq)
        self.assertEqual(row["addon"], "mna_test_connector")
        for key in ("prev_hash", "row_hash", "leaf_hash", "event_id"):
            self.assertTrue(row[key], key)
        self.assertNotIn("body", row)  # metadata only
        with self.assertRaises(AccessError):
            self.env["network.egress_log"].with_user(self.viewer).browse(recs.ids).action_export_jsonl()


@tagged("post_install", "-at_install", "mit_network_audit")
class TestInbound(HttpCase, _AuditCase):
    def test_inbound_request_becomes_row(self):
        self._ready()
        marker = uuid.uuid4().hex[:8]
        where = "direction = 'inbound' AND path = '/web/login' AND chain_seq > %s"
        head = max((r[0] for r in _journal_rows(self.env, "chain_seq > 0")), default=0)
        response = self.url_open(f"/web/login?redirect=/probe-{marker}")
        self.assertEqual(response.status_code, 200)
        rows = []
        for _ in range(50):  # the row is emitted when the server closes the response iterable
            rows = _journal_rows(self.env, where, (head,))
            if rows:
                break
            time.sleep(0.1)
        self.assertTrue(rows, "no inbound row for /web/login")
        time.sleep(0.3)
        rows = _journal_rows(self.env, where, (head,))
        # one row per request: werkzeug's server is wrapped too (channels/werkzeug_app.py); the glue's
        # named middleware inside it only names the row
        self.assertEqual([(r[1], r[7]) for r in rows], [("odoo", 200)], rows)


@tagged("post_install", "-at_install", "mit_network_audit")
class TestTrustReportClientAction(HttpCase, _AuditCase):
    def test_trust_report_in_the_browser(self):
        """The OWL client action (menu Network Audit -> Trust Report) in headless Chromium: it renders the
        server's verdict and its evidence table without a JS error, and reloads for another period.
        Odoo skips it when no Chrome/Chromium or websocket-client is available."""
        self._ready()
        self.start_tour(
            "/odoo/action-mit_network_audit.action_trust_report",
            "mit_network_audit_trust_report",
            login="admin",
        )


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

    def _details(self, since, method="settings"):
        dsn = self.env["network.egress.component"]._dsn()
        current_sink().flush(10)
        with psycopg.connect(dsn, autocommit=True) as conn:
            return [
                (pid, json.loads(d))
                for (pid, d) in conn.execute(
                    "SELECT pid, detail FROM egress_log WHERE method = %s AND chain_seq > %s ORDER BY chain_seq",
                    (method, since),
                )
            ]

    def test_officer_changes_are_journaled_and_reach_the_package(self):
        from mit_network_audit.journal import forensic
        from mit_network_audit.journal import settings as journal_settings

        self._ready()
        officer = new_test_user(
            self.env,
            "mna_s_officer",
            groups="base.group_user,base.group_system,mit_network_audit.group_officer",
        )
        store = self.env["network.egress.component"]._open_store()
        self.addCleanup(store.close)
        before = journal_settings.get_settings(store)
        since = self._max_seq()
        Settings = self.env["res.config.settings"].with_user(officer)
        Settings.create(
            {
                "mna_forensic_enabled": True,
                "mna_forensic_addons": "mna_test_connector,sale",
                "mna_retention_days": 400,
                "mna_rollup_interval_s": 120,
                "mna_checkpoint_interval_s": 900,
            }
        ).execute()
        self.addCleanup(
            journal_settings.set_settings,
            store,
            {k: journal_settings.as_text(before[k]) for k in ("rollup.interval_s", "checkpoint.interval_s")},
            actor="test-cleanup",
        )
        self.addCleanup(forensic.change_setting, store, "forensic.enabled", "false", actor="test-cleanup")
        self.addCleanup(forensic.change_setting, store, "forensic.addons", "", actor="test-cleanup")
        now = journal_settings.get_settings(store)
        self.assertTrue(now["forensic.enabled"])
        self.assertEqual(now["forensic.addons"], ["mna_test_connector", "sale"])
        self.assertEqual(
            (now["retention.days"], now["rollup.interval_s"], now["checkpoint.interval_s"]), (400, 120, 900)
        )
        changed = {d["key"]: d for _pid, d in self._details(since)}
        self.assertEqual(
            set(changed),
            {
                "retention.days",
                "rollup.interval_s",
                "checkpoint.interval_s",
                "forensic.enabled",
                "forensic.addons",
            },
        )
        self.assertEqual((changed["retention.days"]["old"], changed["retention.days"]["new"]), ("90", "400"))
        self.assertEqual(changed["rollup.interval_s"]["new"], "120")
        self.assertTrue(all(d["actor"] == "mna_s_officer" for d in changed.values()), changed)
        # the form shows what the package holds
        values = Settings.default_get(
            ["mna_forensic_enabled", "mna_forensic_addons", "mna_retention_days", "mna_checkpoint_interval_s"]
        )
        self.assertTrue(values["mna_forensic_enabled"])
        self.assertEqual(values["mna_forensic_addons"], "mna_test_connector,sale")
        self.assertEqual((values["mna_retention_days"], values["mna_checkpoint_interval_s"]), (400, 900))
        # saving again without a change journals nothing
        since = self._max_seq()
        Settings.create({}).execute()
        self.assertEqual(self._settings_rows(since), [])
        # a value the package refuses: the package's message, nothing journaled, nothing changed
        with self.assertRaises(UserError) as ctx:
            Settings.create({"mna_rollup_interval_s": 0}).execute()
        self.assertIn("rollup.interval_s", str(ctx.exception))
        with self.assertRaises(UserError):
            Settings.create({"mna_disabled_channels": "ftp,telepathy"}).execute()
        with self.assertRaises(UserError):  # a set retention cannot go back to 'keep every row'
            Settings.create({"mna_retention_days": 0}).execute()
        self.assertEqual(self._settings_rows(since), [])
        self.assertEqual(journal_settings.get_settings(store)["rollup.interval_s"], 120)

    def test_non_officer_admin_cannot_change(self):
        self._ready()
        admin = new_test_user(self.env, "mna_s_admin", groups="base.group_user,base.group_system")
        since = self._max_seq()
        for vals in (
            {"mna_retention_days": 99},
            {"mna_disabled_channels": "smtp"},
            {"mna_key_path": "/tmp/k"},
        ):
            with self.subTest(vals=vals), self.assertRaises(AccessError):
                self.env["res.config.settings"].with_user(admin).create(vals).execute()
        self.assertEqual(self._settings_rows(since), [])
        # an ordinary save by that administrator (the block hidden, defaults submitted) still works
        self.env["res.config.settings"].with_user(admin).create({}).execute()
        self.assertEqual(self._settings_rows(since), [])

    def test_disabled_channels_applied_live_and_reported(self):
        """Saved in Odoo: journaled by the package (capture.disabled_channels, the officer's login),
        applied in this process at once with a heartbeat row naming it; changed from outside Odoo
        (another process, like ``mit-network-audit settings set``): this Odoo process follows within
        the live-settings poll period, without a save or a restart."""
        from odoo.addons.mit_network_audit import glue

        from mit_network_audit.interceptor import capture
        from mit_network_audit.journal import settings as journal_settings
        from mit_network_audit.runner import live_settings

        self._ready()
        dsn = self.env["network.egress.component"]._dsn()
        self.assertEqual(glue.settings_dsn(), dsn, "the glue does not follow this database's settings")
        officer = new_test_user(
            self.env,
            "mna_s_officer3",
            groups="base.group_user,base.group_system,mit_network_audit.group_officer",
        )
        store = self.env["network.egress.component"]._open_store()

        def restore():
            journal_settings.set_setting(store, "capture.disabled_channels", "", actor="test-cleanup")
            live_settings.refresh()
            store.close()

        self.addCleanup(restore)
        since = self._max_seq()
        self.env["res.config.settings"].with_user(officer).create({"mna_disabled_channels": "ftp"}).execute()
        self.assertEqual(capture.runtime.disabled, frozenset({"ftp"}))
        (change,) = [d for _pid, d in self._details(since)]
        self.assertEqual(
            (change["key"], change["old"], change["new"], change["actor"]),
            ("capture.disabled_channels", "", "ftp", "mna_s_officer3"),
        )
        beats = [d for pid, d in self._details(since, "heartbeat") if pid == os.getpid()]
        self.assertEqual([(d["disabled"], d["reason"]) for d in beats], [(["ftp"], "settings")], beats)
        self.assertIn("requests", beats[0]["channels"])
        # from outside Odoo: another connection, as the CLI would
        since = self._max_seq()
        journal_settings.set_setting(store, "capture.disabled_channels", "smtp,ftp", actor="cli-user")
        deadline = time.monotonic() + 4 * live_settings.poll_interval() + 5
        while capture.runtime.disabled != frozenset({"smtp", "ftp"}) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(capture.runtime.disabled, frozenset({"smtp", "ftp"}))
        beats = [d for pid, d in self._details(since, "heartbeat") if pid == os.getpid()]
        self.assertEqual([d["disabled"] for d in beats], [["ftp", "smtp"]], beats)
        # the form shows it
        values = self.env["res.config.settings"].with_user(officer).default_get(["mna_disabled_channels"])
        self.assertEqual(values["mna_disabled_channels"], "smtp,ftp")


@tagged("post_install", "-at_install", "mit_network_audit")
class TestCronsFollowSettings(TransactionCase, _AuditCase):
    """The rollup, checkpoint and retention crons take their interval and retention from the
    package's settings (journal database), not from Odoo."""

    def setUp(self):
        super().setUp()
        from mit_network_audit.journal import settings as journal_settings

        self._ready()
        self.store = self.env["network.egress.component"]._open_store()
        before = journal_settings.get_settings(self.store)
        keys = ("rollup.interval_s", "checkpoint.interval_s")

        def restore():
            journal_settings.set_settings(
                self.store, {k: journal_settings.as_text(before[k]) for k in keys}, actor="test-cleanup"
            )
            self.store.close()

        self.addCleanup(restore)

    def test_crons_wake_every_minute(self):
        for xmlid in ("mit_network_audit.cron_rollup", "mit_network_audit.cron_checkpoint"):
            cron = self.env.ref(xmlid)
            self.assertEqual((cron.interval_number, cron.interval_type), (1, "minutes"))

    def test_rollup_cron_uses_rollup_interval(self):
        from mit_network_audit.journal import settings as journal_settings

        Rollup = self.env["network.egress.rollup"]
        journal_settings.set_setting(self.store, "rollup.interval_s", "3600", actor="test")
        self.store.meta_set("odoo.rollup_last_pass_us", "0")
        self.assertIsNotNone(Rollup._cron_catch_up(), "the first pass is due")
        self.assertIsNone(Rollup._cron_catch_up(), "not due again within rollup.interval_s")
        journal_settings.set_setting(self.store, "rollup.interval_s", "1", actor="test")
        time.sleep(1.1)
        self.assertIsNotNone(Rollup._cron_catch_up(), "due after the shorter interval")

    def test_checkpoint_cron_uses_checkpoint_interval(self):
        from odoo.addons.mna_test_connector.connector import fetch

        from mit_network_audit.journal import settings as journal_settings
        from mit_network_audit.journal.keys import init_key

        keydir = tempfile.mkdtemp(prefix="mna-odoo-ckpt-")
        self.addCleanup(shutil.rmtree, keydir, True)
        _key, path = init_key(os.path.join(keydir, "checkpoint.key"))
        Param = self.env["ir.config_parameter"].sudo()
        Param.set_param("mit_network_audit.key_path", path)
        Report = self.env["network.audit.report"]
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)

        def append():
            fetch(f"http://127.0.0.1:{server.server_address[1]}/ckpt")
            current_sink().flush(10)

        journal_settings.set_setting(self.store, "checkpoint.interval_s", "3600", actor="test")
        append()
        Report._cron_checkpoint()  # whatever was due before (an old checkpoint or none)
        append()
        self.assertIsNone(Report._cron_checkpoint(), "signed again within checkpoint.interval_s")
        journal_settings.set_setting(self.store, "checkpoint.interval_s", "1", actor="test")
        time.sleep(1.1)
        append()
        self.assertIsNotNone(Report._cron_checkpoint(), "not signed after the shorter interval")

    def test_vacuum_cron_only_after_retention_is_set(self):
        from odoo.addons.mit_network_audit.models.res_config_settings import retention_days

        from mit_network_audit.journal import settings as journal_settings
        from mit_network_audit.journal.keys import init_key

        Report = self.env["network.audit.report"]
        # never set (a test database: forget an earlier test's value; the package has no 'unset')
        self.store.execute_raw(
            "DELETE FROM mna_meta WHERE key = %s", (journal_settings.PREFIX + "retention.days",)
        )
        self.assertEqual(journal_settings.get_settings(self.store)["retention.days"], 90)
        self.assertIsNone(retention_days(self.store))
        # the package's default of 90 days is not a decision: every row is kept, no key needed
        self.assertIsNone(Report._cron_vacuum())
        journal_settings.set_setting(self.store, "retention.days", "36500", actor="test")
        self.assertEqual(
            retention_days(self.store), journal_settings.get_settings(self.store)["retention.days"]
        )
        keydir = tempfile.mkdtemp(prefix="mna-odoo-vac-")
        self.addCleanup(shutil.rmtree, keydir, True)
        _key, path = init_key(os.path.join(keydir, "checkpoint.key"))
        self.env["ir.config_parameter"].sudo().set_param("mit_network_audit.key_path", path)
        result = Report._cron_vacuum()  # set: the vacuum runs with that window (nothing is that old here)
        self.assertIsNotNone(result)
        self.assertEqual(result.removed, 0, result)

    def test_upgrade_moves_old_parameters(self):
        """The addon's first version kept retention and disabled channels as system parameters: the
        upgrade moves them into the package's settings (journaled, actor odoo-upgrade) and drops them;
        the crons are set to wake every minute."""
        from mit_network_audit.journal import settings as journal_settings
        from mit_network_audit.runner import live_settings

        keys = ("retention.days", "capture.disabled_channels")

        def restore():
            journal_settings.set_setting(self.store, "capture.disabled_channels", "", actor="test-cleanup")
            live_settings.refresh()

        self.addCleanup(restore)
        for key in keys:  # as if never set in the journal
            self.store.execute_raw("DELETE FROM mna_meta WHERE key = %s", (journal_settings.PREFIX + key,))
        Param = self.env["ir.config_parameter"].sudo()
        Param.set_param("mit_network_audit.retention_days", "45")
        Param.set_param("mit_network_audit.disabled_channels", "pop3")
        cron = self.env.ref("mit_network_audit.cron_checkpoint")
        cron.write({"interval_number": 5})
        since = (_journal_rows(self.env, "true")[-1:] or [(0,)])[0][0]
        self.env["network.audit.report"]._sync_crons()
        now = journal_settings.get_settings(self.store)
        self.assertEqual((now["retention.days"], now["capture.disabled_channels"]), (45, ["pop3"]))
        self.assertFalse(Param.get_param("mit_network_audit.retention_days"))
        self.assertFalse(Param.get_param("mit_network_audit.disabled_channels"))
        self.assertEqual(cron.interval_number, 1)
        changes = journal_settings.changes_in(self.store, 0)
        moved = {c["key"]: c for c in changes if c["seq"] > since}
        self.assertEqual(set(moved), set(keys))
        self.assertTrue(all(c["actor"] == "odoo-upgrade" for c in moved.values()), moved)
