"""Shared pieces of the trust-anchor tests: a key outside the database, journals on SQLite and
PostgreSQL (own databases, prefix mna_trust_), and the attacker's tools (dropping triggers)."""

from __future__ import annotations

import sqlite3
import time
import uuid

import pytest

from mit_network_audit.interceptor.event import NetEvent, internal_event
from mit_network_audit.journal import open_store

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
DAY_US = 86_400_000_000


@pytest.fixture
def key_env(tmp_path, monkeypatch):
    """A fresh signing key in tmp (0600) and the witness beside it; no key in the environment."""
    from mit_network_audit.journal.keys import init_key

    for var in ("MNA_SIGNING_KEY", "MNA_PUBLIC_KEY", "MNA_WITNESS_FILE", "MNA_SIGNING_KEY_NAME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MNA_SIGNING_KEY_FILE", str(tmp_path / "keys" / "signing.key"))
    key, path = init_key(name="auditor.example/erp-1")
    return key


@pytest.fixture
def trust_pg(pg_dsn):
    """A fresh PostgreSQL database (conftest's pg_dsn, under the name the trust tests use)."""
    return pg_dsn


@pytest.fixture
def trust_dsn(any_dsn):
    """SQLite and PostgreSQL in turn (conftest's any_dsn)."""
    return any_dsn


def events(n: int, *, logged_at_us: int | None = None, host: str = "api.example") -> list[NetEvent]:
    base = logged_at_us if logged_at_us is not None else time.time_ns() // 1000
    out = []
    for i in range(n):
        out.append(NetEvent(event_id=uuid.uuid4().hex, logged_at_us=base + i, started_at_us=base + i, duration_us=5,
                            direction="outbound", channel="requests", protocol="https", method="POST", host=host,
                            port=443, path=f"/v1/items/{i}", query_keys=("a", "b"), status=200, req_bytes=10 + i,
                            resp_bytes=20, req_headers=("content-type: application/json",), via=("requests",),
                            pid=42, hostname="erp-1", addon="acme_connector", dest_class="provider",
                            call_site=f"app.py:{i} in f" + ("\x1f\u00e9" if i % 7 == 0 else ""),
                            detail=None if i % 5 else "{\"note\": \"ünïcode\"}"))
    return out


def old_events(n: int, days: int = 100) -> list[NetEvent]:
    return events(n, logged_at_us=time.time_ns() // 1000 - days * DAY_US)


def heartbeat() -> NetEvent:
    return internal_event("heartbeat")


def attacker(dsn: str):
    """A connection with the triggers out of the way: what a database owner can do."""
    if dsn.startswith("postgresql"):
        import psycopg

        conn = psycopg.connect(dsn, autocommit=True)
        for table in ("egress_log", "mna_checkpoints", "mna_merkle_nodes"):
            conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER ALL")
        return conn, "%s"
    conn = sqlite3.connect(dsn[len("sqlite:///"):], isolation_level=None)
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        conn.execute(f"DROP TRIGGER {name}")
    return conn, "?"


def reopen(dsn: str):
    return open_store(dsn)
