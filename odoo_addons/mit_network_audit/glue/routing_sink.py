"""A Sink that writes each event into the journal of the Odoo database it belongs to.

Odoo serves several databases from one process; the thread's ``dbname`` (set by Odoo for HTTP
requests and cron jobs) names the database.  Each database gets its own BatchingSink on its *own*
connection, so a rolled-back business transaction never loses an audit row.  A database where
the addon is not installed (possible with ``--load=...,mit_network_audit``) has no journal table:
its events are counted and dropped, never written, and no table is created there.
"""

from __future__ import annotations

import threading
import time

RECHECK_SECONDS = 60.0


class RoutingSink:
    def __init__(self, dsn_for, default_db=None, sink_factory=None, has_journal=None) -> None:
        self._dsn_for = dsn_for  # dbname -> libpq conninfo
        self._default_db = default_db  # callable -> dbname or None (single-database servers)
        self._factory = sink_factory
        self._has_journal = has_journal or _has_journal
        self._sinks: dict[str, object] = {}
        self._absent: dict[str, float] = {}
        self._lock = threading.Lock()
        self.counters = {"no_database": 0, "not_installed": 0, "errors": 0}

    def _dbname(self):
        name = getattr(threading.current_thread(), "dbname", None)
        if not name and self._default_db is not None:
            name = self._default_db()
        return name

    def sink_for(self, dbname: str):
        sink = self._sinks.get(dbname)
        if sink is not None:
            return sink
        absent_since = self._absent.get(dbname)
        if absent_since is not None and time.monotonic() - absent_since < RECHECK_SECONDS:
            return None
        with self._lock:
            sink = self._sinks.get(dbname)
            if sink is None:
                dsn = self._dsn_for(dbname)
                if not self._has_journal(dsn):
                    self._absent[dbname] = time.monotonic()
                    return None
                self._absent.pop(dbname, None)
                sink = self._sinks[dbname] = self._make(dsn)
        return sink

    def _make(self, dsn):
        if self._factory is not None:
            return self._factory(dsn)
        from mit_network_audit.journal.sink import BatchingSink

        return BatchingSink(dsn, flush_interval=0.05)

    def emit(self, event) -> None:
        try:
            dbname = self._dbname()
            if not dbname:
                self.counters["no_database"] += 1
                return
            sink = self.sink_for(dbname)
            if sink is None:
                self.counters["not_installed"] += 1
                return
            sink.emit(event)
        except Exception:
            self.counters["errors"] += 1  # fail-open

    def flush(self, timeout: float = 10.0) -> bool:
        ok = True
        for sink in list(self._sinks.values()):
            try:
                ok = sink.flush(timeout) and ok
            except Exception:
                ok = False
        return ok

    def forget(self, dbname: str) -> None:
        """After uninstall or drop: stop writing there."""
        with self._lock:
            sink = self._sinks.pop(dbname, None)
        if sink is not None:
            try:
                sink.close(2.0)
            except Exception:
                pass


def _has_journal(dsn: str) -> bool:
    """The journal table exists and the addon is installed in that database (own short connection)."""
    try:
        import psycopg

        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT to_regclass('egress_log') IS NOT NULL AND EXISTS (SELECT 1 FROM ir_module_module "
                "WHERE name = 'mit_network_audit' AND state IN ('installed', 'to upgrade'))"
            ).fetchone()
            return bool(row and row[0])
    except Exception:
        return False
