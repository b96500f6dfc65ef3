"""Throwaway PostgreSQL databases on the local server (127.0.0.1:5432, trust auth, user postgres)."""

from __future__ import annotations

import uuid
from contextlib import contextmanager

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


@contextmanager
def scratch_database(prefix: str = "mna_test"):
    """Create ``<prefix>_<random>``, yield its DSN and drop it after (even with connections left);
    yields None when psycopg or the server is missing, so the caller can skip with a reason."""
    try:
        import psycopg

        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3)
    except Exception:
        yield None
        return
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin.execute(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()
