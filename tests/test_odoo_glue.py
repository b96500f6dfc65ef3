"""The Odoo glue's pure parts, without Odoo: module/file -> addon mapping, manifest parsing, the
attributor over real frames, Odoo path redaction, the idempotent markers, the routing sink."""

from __future__ import annotations

import importlib.util
import os
import sys
import textwrap
import threading
import time
import types

import pytest

ADDON = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "odoo_addons", "mit_network_audit"
)


def _load_glue():
    """Import the addon's glue/ as a stand-alone package (the addon's __init__ needs Odoo)."""
    name = "mna_odoo_glue_under_test"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name,
        os.path.join(ADDON, "glue", "__init__.py"),
        submodule_search_locations=[os.path.join(ADDON, "glue")],
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    for sub in ("odoo_attribution", "odoo_redaction", "routing_sink", "marker", "health"):
        importlib.import_module(f"{name}.{sub}")
    return module


glue = _load_glue()
attr = sys.modules["mna_odoo_glue_under_test.odoo_attribution"]
red = sys.modules["mna_odoo_glue_under_test.odoo_redaction"]
routing = sys.modules["mna_odoo_glue_under_test.routing_sink"]
marker = sys.modules["mna_odoo_glue_under_test.marker"]
health = sys.modules["mna_odoo_glue_under_test.health"]


@pytest.fixture()
def addons_root(tmp_path):
    """A fake addons path with two addons, one with an author, one with a broken manifest."""
    for name, manifest in (
        ("acme_sync", "{'name': 'Acme', 'author': 'Acme Corp', 'depends': ['base']}"),
        ("broken", "{'name': __import__('os').getcwd()}"),
    ):
        d = tmp_path / name
        (d / "models").mkdir(parents=True)
        (d / "__manifest__.py").write_text(manifest)
        (d / "__init__.py").write_text("")
    return tmp_path


def test_addon_of_module():
    assert attr.addon_of_module("odoo.addons.sale.models.sale_order") == "sale"
    assert attr.addon_of_module("odoo.addons.mna_test_connector") == "mna_test_connector"
    assert attr.addon_of_module("odoo.addons.") is None
    assert attr.addon_of_module("odoo.http") is None
    assert attr.addon_of_module("requests.sessions") is None


def test_addon_of_file(addons_root):
    f = str(addons_root / "acme_sync" / "models" / "x.py")
    assert attr.addon_of_file(f, [str(addons_root)]) == "acme_sync"
    assert attr.addon_of_file("/elsewhere/x.py", [str(addons_root)]) is None
    assert attr.addon_of_file("<string>", [str(addons_root)]) is None
    # a directory without a manifest is not an addon
    (addons_root / "notanaddon").mkdir()
    assert attr.addon_of_file(str(addons_root / "notanaddon" / "x.py"), [str(addons_root)]) is None


def test_manifest_parsed_as_literal_never_executed(addons_root):
    assert attr.read_manifest(str(addons_root / "acme_sync"))["author"] == "Acme Corp"
    assert attr.read_manifest(str(addons_root / "broken")) == {}  # a call is not a literal
    assert attr.read_manifest(str(addons_root / "missing")) == {}
    assert attr.manifest_author("acme_sync", [str(addons_root)]) == "Acme Corp"
    assert attr.manifest_author("broken", [str(addons_root)]) is None


def test_own_manifest_declares_the_package():
    manifest = attr.read_manifest(ADDON)
    assert "mit_network_audit" in manifest["external_dependencies"]["python"]
    assert manifest["post_load"] == "post_load"
    assert manifest["version"].startswith("18.0.")
    for path in manifest["data"]:
        assert os.path.isfile(os.path.join(ADDON, path)), path


def _exec_as(module_name: str, source: str, filename: str) -> types.ModuleType:
    module = types.ModuleType(module_name)
    module.__file__ = filename
    exec(compile(textwrap.dedent(source), filename, "exec"), module.__dict__)
    return module


def test_attributor_names_the_addon_not_odoo_core(addons_root):
    # innermost: odoo core helper, called by the addon, called by odoo.http (core) — the addon owns it
    core = _exec_as(
        "odoo.tools.misc", "import sys\ndef helper():\n    return sys._getframe()\n", "/odoo/tools/misc.py"
    )
    addon = _exec_as(
        "odoo.addons.acme_sync.models.sync",
        "def call(helper):\n    return helper()\n",
        str(addons_root / "acme_sync" / "models" / "sync.py"),
    )
    http = _exec_as("odoo.http", "def dispatch(call, helper):\n    return call(helper)\n", "/odoo/http.py")
    frame = http.dispatch(addon.call, core.helper)
    owner = attr.OdooAttributor([str(addons_root)]).attribute(frame)
    assert owner.addon == "acme_sync"
    assert owner.author == "Acme Corp"
    assert owner.call_site.startswith("odoo/addons/acme_sync/models/sync.py:2 in call")


def test_attributor_falls_back_to_odoo_core_and_to_file_paths(addons_root):
    core = _exec_as(
        "odoo.service.server",
        "import sys\ndef tick():\n    return sys._getframe()\n",
        "/odoo/service/server.py",
    )
    owner = attr.OdooAttributor([str(addons_root)]).attribute(core.tick())
    assert (owner.addon, owner.author) == ("odoo", "Odoo S.A.")
    # code of an addon loaded under another module name (a script run from the addon folder)
    script = _exec_as(
        "acme_script",
        "import sys\ndef go():\n    return sys._getframe()\n",
        str(addons_root / "acme_sync" / "models" / "script.py"),
    )
    assert attr.OdooAttributor([str(addons_root)]).attribute(script.go()).addon == "acme_sync"


def test_attributor_through_real_requests_call(addons_root, http_server):
    """A real loopback call: requests/urllib3 frames are 'via', the addon frame owns the call."""
    import requests

    import mit_network_audit as mna

    memory = mna.MemorySink()
    mna.install(
        sink=memory,
        attributor=attr.OdooAttributor([str(addons_root)]),
        redaction=red.OdooRedaction(b"t" * 32),
    )
    try:
        addon = _exec_as(
            "odoo.addons.acme_sync.models.sync",
            "def call(requests, url):\n    return requests.get(url, timeout=5).status_code\n",
            str(addons_root / "acme_sync" / "models" / "sync.py"),
        )
        assert addon.call(requests, http_server + "/echo/web/signup/abc") == 200
    finally:
        mna.uninstall()
    rows = [e for e in memory.events if e.direction == "outbound" and e.host == "127.0.0.1"]
    assert len(rows) == 1
    assert (rows[0].addon, rows[0].addon_author) == ("acme_sync", "Acme Corp")
    assert "requests" in rows[0].via


def test_odoo_redaction_masks_token_routes():
    assert red.mask_odoo_path("/web/signup/abc") == "/web/signup/:token"
    assert red.mask_odoo_path("/survey/start/1/secret") == "/survey/start/1/:token"
    assert red.mask_odoo_path("/web/login") == "/web/login"
    assert red.mask_odoo_path(None) is None
    policy = red.OdooRedaction(b"s" * 32)
    assert policy.path("/mail/view/shortish?x=1") == "/mail/view/:token"


def test_marker_once():
    target = types.SimpleNamespace()
    assert marker.mark_once(target) is True
    assert marker.mark_once(target) is False


def test_wrap_call_once_is_idempotent():
    class App:
        def __call__(self, environ, start_response):
            return ["orig"]

    calls = []

    def make(original):
        def wrapper(self, environ, start_response):
            calls.append(1)
            return original(self, environ, start_response)

        return wrapper

    assert marker.wrap_call_once(App, make) is True
    assert marker.wrap_call_once(App, make) is False  # a second post_load does not wrap twice
    assert App()({}, None) == ["orig"]
    assert calls == [1]


def test_routing_sink_per_database_and_absent_journal():
    written: dict[str, list] = {}

    class ListSink:
        def __init__(self, dsn):
            self.dsn = dsn
            written[dsn] = []

        def emit(self, event):
            written[self.dsn].append(event)

        def flush(self, timeout=10.0):
            return True

    checked = []

    def has_journal(dsn):
        checked.append(dsn)
        return dsn != "dsn:bare"

    sink = routing.RoutingSink(lambda db: f"dsn:{db}", lambda: None, ListSink, has_journal)
    t = threading.current_thread()
    try:
        t.dbname = "prod"
        sink.emit("e1")
        sink.emit("e2")
        t.dbname = "bare"  # --load serves a database without the addon: nothing written, no table made
        sink.emit("e3")
        sink.emit("e4")
        del t.dbname
        sink.emit("e5")
    finally:
        if hasattr(t, "dbname"):
            del t.dbname
    assert written == {"dsn:prod": ["e1", "e2"]}
    assert checked == ["dsn:prod", "dsn:bare"]  # the absent database is re-checked only after a while
    assert sink.counters == {"no_database": 1, "not_installed": 2, "errors": 0}
    assert sink.flush() is True


def test_routing_sink_is_fail_open():
    def boom(db):
        raise RuntimeError("no db")

    sink = routing.RoutingSink(boom, lambda: "x")
    sink.emit("e")
    assert sink.counters["errors"] == 1


@pytest.mark.postgres
def test_routing_sink_survives_prefork(pg_dsn):
    """Odoo's prefork master writes (e.g. the row for spawning the gevent process) before it forks
    its workers: each forked worker must write on its own connection and thread, the master keeps
    its own, and the chain stays one (real PostgreSQL journal, real os.fork).  What a real Odoo
    does with --workers and the gevent process is checked by scripts/odoo-prefork-check."""
    import psycopg

    from mit_network_audit.interceptor.event import internal_event
    from mit_network_audit.journal import open_store
    from mit_network_audit.journal.verify import verify

    store = open_store(pg_dsn)  # the package's DDL, as the addon's install runs it
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE ir_module_module (name TEXT, state TEXT)")
        conn.execute("INSERT INTO ir_module_module VALUES ('mit_network_audit', 'installed')")
    sink = routing.RoutingSink(lambda db: pg_dsn, lambda: "odoo_db")  # the real BatchingSink and check
    sink.emit(internal_event("heartbeat", detail="master before fork"))
    assert sink.flush(10)
    pid = os.fork()
    if pid == 0:  # a worker: same RoutingSink object, inherited from the master
        code = 1
        try:
            t = threading.current_thread()
            t.dbname = "odoo_db"
            for i in range(3):
                sink.emit(internal_event("heartbeat", detail=f"worker {i}"))
            code = 0 if sink.flush(10) else 2
        finally:
            os._exit(code)
    sink.emit(internal_event("heartbeat", detail="master after fork"))
    assert sink.flush(10)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid, detail FROM egress_log WHERE method = 'heartbeat' ORDER BY chain_seq"
        ).fetchall()
    assert sorted(d for p, d in rows if p == pid) == ["worker 0", "worker 1", "worker 2"]
    assert sorted(d for p, d in rows if p == os.getpid()) == ["master after fork", "master before fork"]
    assert verify(store).ok
    sink.forget("odoo_db")
    store.close()


def test_health_rows_and_disabled_channels(sink):
    """start/heartbeat/stop rows name the installed and disabled channels (what the Trust Report
    reads); the disabled channels come from the reader (Odoo: the system parameter) and are applied."""
    import json

    from mit_network_audit import interceptor
    from mit_network_audit.interceptor import capture

    reads = iter(["smtp, ftp", "smtp"])
    try:
        assert health.start(read_disabled=lambda: next(reads), interval=0) is True
        assert health.start(read_disabled=lambda: "x", interval=0) is False  # once per process
        assert capture.runtime.disabled == frozenset({"smtp", "ftp"})
        health.apply_disabled()  # a heartbeat re-reads the parameter
        assert capture.runtime.disabled == frozenset({"smtp"})
        health.stop()
        rows = [e for e in sink.events if e.direction == "internal"]
        assert [e.method for e in rows] == ["start", "stop"]
        assert json.loads(rows[0].detail)["disabled"] == ["ftp", "smtp"]
        assert json.loads(rows[1].detail)["disabled"] == ["smtp"]
        assert all(e.pid == os.getpid() for e in rows)
        health.stop()  # idempotent: no second stop row
        assert len([e for e in sink.events if e.direction == "internal"]) == 2
    finally:
        health.stop()
        interceptor.set_disabled_channels([])


def test_health_row_on_behalf_of_a_killed_process(sink):
    """The prefork master SIGKILLs Odoo's gevent process; it writes the stop row for it."""
    import json

    health._state["on"] = True
    try:
        health.emit_for(424242, "stop", killed_by=os.getpid())
    finally:
        health._state["on"] = False
    (row,) = [e for e in sink.events if e.direction == "internal"]
    assert (row.method, row.pid) == ("stop", 424242)
    assert json.loads(row.detail)["killed_by"] == os.getpid()


def test_start_settings_follows_the_journal_settings_live(pg_dsn, sink, monkeypatch):
    """The glue follows the single database's journal settings (``runner.live_settings``): a change of
    ``capture.disabled_channels`` written by another connection (the Odoo form in another worker, the
    CLI) is applied to this process's interceptor by its poller, without a save here, and announced
    by a heartbeat row.  Real PostgreSQL journal; the Odoo-side bits (database name, DSN) patched."""
    import json

    import psycopg

    from mit_network_audit.interceptor import capture
    from mit_network_audit.journal import open_store
    from mit_network_audit.journal import settings as journal_settings
    from mit_network_audit.runner import live_settings

    monkeypatch.setenv(live_settings.POLL_ENV, "0.1")
    store = open_store(pg_dsn)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE ir_module_module (name TEXT, state TEXT)")
        conn.execute("INSERT INTO ir_module_module VALUES ('mit_network_audit', 'installed')")
    monkeypatch.setattr(glue, "_default_db", lambda: "odoo_db")
    monkeypatch.setattr(glue, "_dsn_for", lambda db: pg_dsn)
    glue._state.pop("settings_dsn", None)
    try:
        assert glue.start_settings() is True
        assert glue.start_settings() is False  # idempotent (every registry load calls it)
        assert glue.settings_dsn() == pg_dsn
        journal_settings.set_setting(store, "capture.disabled_channels", "smtp,ftp", actor="officer")
        deadline = time.monotonic() + 15
        while capture.runtime.disabled != {"smtp", "ftp"} and time.monotonic() < deadline:
            time.sleep(0.02)
        assert capture.runtime.disabled == {"smtp", "ftp"}
        beats = [json.loads(e.detail) for e in sink.events if e.method == "heartbeat"]
        assert [(b["disabled"], b["reason"]) for b in beats] == [(["ftp", "smtp"], "settings")]
    finally:
        live_settings.stop()
        live_settings._callbacks.clear()
        live_settings._state["following"] = False
        glue._state.pop("settings_dsn", None)
        capture.set_disabled(())
        store.close()


def test_start_settings_needs_a_single_database_with_a_journal(monkeypatch):
    """Several databases (no single ``--database``) or no journal there: nothing is followed."""
    monkeypatch.setattr(glue, "_default_db", lambda: None)
    assert glue.start_settings() is False
    monkeypatch.setattr(glue, "_default_db", lambda: "odoo_db")
    monkeypatch.setattr(glue, "_dsn_for", lambda db: "host=127.0.0.1 port=1 dbname=nowhere connect_timeout=1")
    assert glue.start_settings() is False
    assert glue.settings_dsn() is None
