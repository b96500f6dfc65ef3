"""The journal: append-only, hash-chained storage (DESIGN §4).

``open_store(dsn)`` picks the backend: a bare path or ``sqlite:///path`` -> SQLite (the embedded
default); ``postgresql://...`` -> PostgreSQL.
"""

from __future__ import annotations

import os
import re

from .store import JournalRow, RowFilter, Store

__all__ = ["JournalRow", "RowFilter", "Store", "absolute_dsn", "default_dsn", "display_dsn", "open_store"]


def default_dsn() -> str:
    """``$MNA_DB``, else ``journal.db`` in the user data directory."""
    env = os.environ.get("MNA_DB")
    if env:
        return env
    import platformdirs

    return "sqlite:///" + os.path.join(platformdirs.user_data_dir("mit-network-audit"), "journal.db")


def absolute_dsn(dsn: str) -> str:
    """``dsn`` with a relative SQLite path made absolute (against the current directory), for a DSN
    handed to other processes: a child that changes directory must still write the same journal."""
    if "://" in dsn:
        if not dsn.lower().startswith("sqlite://"):
            return dsn  # PostgreSQL, or a scheme open_store refuses
    elif dsn.startswith("host=") or _SCHEME_TYPO.match(dsn):
        return dsn  # PostgreSQL's keyword form, or a mistyped scheme open_store refuses
    from .sqlite import path_from_dsn

    path = path_from_dsn(dsn)
    if path in ("", ":memory:") or path.startswith("file:") or os.path.isabs(path):
        return dsn
    return ("sqlite:///" if "://" in dsn else "") + os.path.abspath(path)


_URL_PASSWORD = re.compile(r"(://[^/@:]*:)[^/@]*@")
_KV_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]+)", re.IGNORECASE)


_SCHEME_TYPO = re.compile(r"(sqlite|postgres|postgresql):", re.IGNORECASE)


def display_dsn(dsn: str) -> str:
    """``dsn`` as it may be shown (an error message, a log line): a password in it is masked."""
    return _KV_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***@", dsn))


def is_postgres(dsn: str) -> bool:
    return dsn.startswith(("postgresql://", "postgres://")) or dsn.startswith("host=")


def open_store(dsn: str | None = None, *, create: bool = True) -> Store:
    dsn = dsn or default_dsn()
    if is_postgres(dsn):
        try:
            from .postgres import PostgresStore
        except ImportError as exc:  # pragma: no cover - depends on the extra
            raise RuntimeError("PostgreSQL support needs the extra: pip install 'mit-network-audit[postgres]'") from exc
        return PostgresStore(dsn, create=create)
    scheme = dsn.split("://", 1)[0].lower() if "://" in dsn else ""
    if not scheme and _SCHEME_TYPO.match(dsn):  # sqlite:/x, postgresql:x: not a file named so
        raise ValueError(f"{display_dsn(dsn)!r} is not a DSN: write sqlite:///relative/path, "
                         "sqlite:////absolute/path or postgresql://user@host/db (or a plain file path)")
    if scheme not in ("", "sqlite"):
        raise ValueError(f"unknown journal DSN scheme {scheme!r} in {display_dsn(dsn)!r}: "
                         "use a file path, sqlite:///path or postgresql://user@host/db")
    from .sqlite import SQLiteStore

    return SQLiteStore(dsn, create=create)
