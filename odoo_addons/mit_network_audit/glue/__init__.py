"""Glue between Odoo and the mit_network_audit package.

``post_load()`` is idempotent: Odoo calls it on the module's first import (server-wide ``--load``
and Apps install alike) and ``ir.http._register_hook`` calls it again after an Apps install in a
running server.  It installs the interceptor with Odoo-aware collaborators and patches
``odoo.http.Application.__call__`` on the *class* (``server.start()`` keeps the root object it
was started with, so replacing ``odoo.http.root`` is not enough).
"""

from __future__ import annotations

import logging

from .marker import MARKER, mark_once, wrap_call_once  # noqa: F401  (re-exported for tests)

_logger = logging.getLogger(__name__)
_state: dict = {}


def _dsn_for(dbname: str) -> str:
    import odoo.sql_db
    from psycopg.conninfo import make_conninfo

    _db, info = odoo.sql_db.connection_info_for(dbname)
    info = {k: v for k, v in info.items() if v not in (None, "", False) and k != "application_name"}
    if "database" in info:  # psycopg2's keyword; libpq's is dbname
        info["dbname"] = info.pop("database")
    info["application_name"] = "mit_network_audit"
    return make_conninfo(**info)


def _default_db():
    from odoo.tools import config

    names = [n for n in (config.get("db_name") or "").split(",") if n.strip()]
    return names[0].strip() if len(names) == 1 else None


def _addons_paths():
    import odoo.addons

    return list(odoo.addons.__path__)


def _patch_http() -> bool:
    import odoo.http

    from mit_network_audit.interceptor.inbound.wsgi import AuditWSGIMiddleware

    def make_wrapper(original):
        def __call__(self, environ, start_response):
            middleware = getattr(self, "_mna_middleware", None)
            if middleware is None:

                def app(env, sr, _self=self):
                    return original(_self, env, sr)

                app.__module__ = "odoo.http"
                middleware = AuditWSGIMiddleware(app, app_name="odoo")
                try:
                    self._mna_middleware = middleware
                except Exception:
                    pass
            return middleware(environ, start_response)

        return __call__

    return wrap_call_once(odoo.http.Application, make_wrapper)


def post_load() -> None:
    """Start auditing this Odoo process; safe to call any number of times."""
    import mit_network_audit.interceptor as interceptor

    if not mark_once(interceptor, MARKER):
        # an Apps install: the journal exists now (registry reload after the install)
        start_settings()
        _start_forensic()
        return
    try:
        from mit_network_audit.interceptor.redaction import load_or_create_salt

        from .odoo_attribution import OdooAttributor
        from .odoo_redaction import OdooRedaction
        from .routing_sink import RoutingSink

        sink = RoutingSink(_dsn_for, _default_db)
        _state["sink"] = sink
        interceptor.install(
            sink=sink,
            attributor=OdooAttributor(_addons_paths),
            redaction=OdooRedaction(load_or_create_salt()),
        )
        _patch_http()
        _logger.info("mit_network_audit: interceptor installed (pid-wide), odoo.http patched")
        start_settings()  # before the start row, which names the disabled channels
        _start_forensic()
        from . import health

        health.start()
        health.patch_prefork_stop()
        _track_children()
    except Exception:  # fail-open: Odoo starts whatever happens here
        _logger.exception("mit_network_audit: post_load failed; this process is NOT audited")


def _single_journal():
    """(dbname, dsn) of the server's single database when its journal exists there, else None."""
    db = _default_db()
    if not db:
        return None
    from mit_network_audit.journal import is_postgres

    from .routing_sink import _has_journal

    dsn = _dsn_for(db)
    if not is_postgres(dsn) or not _has_journal(dsn):
        return None
    return db, dsn


def start_settings() -> bool:
    """Follow the package's settings (``runner.live_settings``: one poller thread per process, fork-safe)
    of the single database's journal, and make ``capture.disabled_channels`` this process's disabled
    channels, live: a change saved in Odoo (or with ``mit-network-audit settings set``) reaches every
    worker within the poll period (``$MNA_SETTINGS_POLL_S``, default 2 s), each writing a ``heartbeat``
    row that names the channels now disabled.  Single-database servers only (the interceptor is
    process-wide; with several databases, whose setting would win?).  Idempotent; fail-open."""
    try:
        found = _single_journal()
        if found is None or _state.get("settings_dsn") == found[1]:
            return False
        from mit_network_audit.runner import live_settings

        live_settings.start(found[1])
        live_settings.follow_disabled_channels()
        _state["settings_dsn"] = found[1]
        return True
    except Exception:
        _logger.exception("mit_network_audit: live settings not started")
        return False


def settings_dsn():
    """The journal DSN whose settings this process follows live (None: not following)."""
    return _state.get("settings_dsn")


def _start_forensic() -> bool:
    """Forensic body capture (off by default; the package's ``runner.forensic_boot``) for a server
    that serves exactly one database (``--database`` with one name) whose journal exists: the tap
    is process-wide, so with several databases a body could land in another database's store, and
    capture stays off.  Idempotent; fail-open; storing needs only the officer's PUBLIC key
    (``$MNA_FORENSIC_PUBLIC_KEY`` or the package's key files), never the private one."""
    try:
        db = _default_db()
        if not db or _state.get("forensic_db") == db:
            return False
        found = _single_journal()
        if found is None:
            return False
        from mit_network_audit.runner import forensic_boot

        forensic_boot.start(found[1])
        _state["forensic_db"] = db
        return True
    except Exception:
        _logger.exception("mit_network_audit: forensic capture not started")
        return False


def _track_children() -> bool:
    """The prefork master notes the workers it forks and, reaping one killed by a signal (SIGKILL after
    ``--limit-time-real``, the OOM killer, a crash), writes a ``stop`` row for it (the package's
    ``runner.children``: ``killed_by_signal``, ``reaped_by``, ``unflushed_rows``, and a ``gap`` row with
    the exact number of rows the worker still owed), so such a worker
    is a reported loss, not a silent process.  Idempotent; fail-open."""
    try:
        from mit_network_audit.runner import children
    except ImportError:  # an older package
        return False
    try:
        children.install()
        return True
    except Exception:
        _logger.exception("mit_network_audit: killed workers will not be reported")
        return False


def current_sink():
    return _state.get("sink")
