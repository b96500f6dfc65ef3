"""Local accounts (argon2 hashes), sessions, API tokens and login throttling — kept in the journal's
database, in tables of their own.  Roles (DESIGN §6): viewer < auditor < officer."""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import threading
import time
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

ROLES = ("viewer", "auditor", "officer")
SESSION_SECONDS = 8 * 3600
MAX_FAILURES = 5
LOCKOUT_SECONDS = 60
MAX_TRACKED = 10_000  # throttling keys kept before the stale ones are dropped

_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("timing-equaliser")


def same_token(expected: str | None, given: str | None) -> bool:
    """Constant-time comparison of a CSRF token the client sent: as UTF-8 bytes, because
    ``secrets.compare_digest`` raises TypeError on a str with non-ASCII characters (a 500 on any form)."""
    return secrets.compare_digest((expected or "-").encode(), (given or "").encode(errors="surrogateescape"))


def role_at_least(role: str, needed: str) -> bool:
    return ROLES.index(role) >= ROLES.index(needed)


@dataclass(frozen=True)
class Principal:
    name: str
    role: str
    csrf: str = ""
    via_token: bool = False


class Accounts:
    def __init__(self, store) -> None:
        self.store = store
        self.p = "%s" if getattr(store, "kind", "") == "postgres" else "?"
        for ddl in (
            "CREATE TABLE IF NOT EXISTS mna_users (name TEXT PRIMARY KEY, role TEXT NOT NULL, pw_hash TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS mna_sessions (token_hash TEXT PRIMARY KEY, name TEXT NOT NULL, "
            "csrf TEXT NOT NULL, expires BIGINT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS mna_tokens (token_hash TEXT PRIMARY KEY, name TEXT NOT NULL, created BIGINT)",
        ):
            store.execute_raw(ddl)
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    # -- accounts -------------------------------------------------------------------------------
    def add(self, name: str, role: str, password: str) -> None:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        if len(password) < 8:
            raise ValueError("the password must have at least 8 characters")
        if self.get(name):
            raise ValueError(f"user {name!r} exists (use `user passwd` or `user remove`)")
        self.store.execute_raw(f"INSERT INTO mna_users VALUES ({self.p}, {self.p}, {self.p})",
                               (name, role, _hasher.hash(password)))

    def set_password(self, name: str, password: str) -> None:
        if not self.get(name):
            raise ValueError(f"no user {name!r}")
        self.store.execute_raw(f"UPDATE mna_users SET pw_hash = {self.p} WHERE name = {self.p}",
                               (_hasher.hash(password), name))
        self.store.execute_raw(f"DELETE FROM mna_sessions WHERE name = {self.p}", (name,))

    def remove(self, name: str) -> None:
        for table in ("mna_sessions", "mna_tokens", "mna_users"):
            self.store.execute_raw(f"DELETE FROM {table} WHERE name = {self.p}", (name,))

    def get(self, name: str):
        rows = self.store.execute_raw(f"SELECT name, role, pw_hash FROM mna_users WHERE name = {self.p}", (name,))
        return rows[0] if rows else None

    def list(self) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in self.store.execute_raw("SELECT name, role FROM mna_users ORDER BY name")]

    # -- login ------------------------------------------------------------------------------------
    def throttled(self, key: str) -> bool:
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._failures.get(key, []) if now - t < LOCKOUT_SECONDS]
            self._failures[key] = recent
            return len(recent) >= MAX_FAILURES

    def login(self, name: str, password: str, client: str) -> tuple[str, Principal] | None:
        key = f"{name}|{client}"
        # The attempt counts as a failure from the start, taken back if it succeeds: counted only after
        # the password check (~50 ms), 40 guesses sent at once all got through before the first was counted.
        with self._lock:
            now = time.monotonic()
            if len(self._failures) > MAX_TRACKED:  # one key per user name tried: forget the stale ones
                self._failures = {k: v for k, v in self._failures.items() if v and now - v[-1] < LOCKOUT_SECONDS}
            recent = [t for t in self._failures.get(key, []) if now - t < LOCKOUT_SECONDS]
            if len(recent) >= MAX_FAILURES:
                self._failures[key] = recent
                return None
            self._failures[key] = [*recent, now]
        row = self.get(name)
        try:
            ok = _hasher.verify(row[2] if row else _DUMMY_HASH, password) and row is not None
        except (VerificationError, InvalidHashError):
            ok = False
        if not ok:
            return None
        with self._lock:
            with contextlib.suppress(KeyError, ValueError):
                self._failures[key].remove(now)
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        self.store.execute_raw(f"INSERT INTO mna_sessions VALUES ({self.p}, {self.p}, {self.p}, {self.p})",
                               (_digest(token), name, csrf, int(time.time()) + SESSION_SECONDS))
        return token, Principal(name, row[1], csrf)

    def logout(self, token: str) -> None:
        self.store.execute_raw(f"DELETE FROM mna_sessions WHERE token_hash = {self.p}", (_digest(token),))

    def session(self, token: str | None) -> Principal | None:
        if not token:
            return None
        rows = self.store.execute_raw(
            f"SELECT s.name, u.role, s.csrf, s.expires FROM mna_sessions s JOIN mna_users u ON u.name = s.name "
            f"WHERE s.token_hash = {self.p}", (_digest(token),))
        if not rows or rows[0][3] < time.time():
            return None
        return Principal(rows[0][0], rows[0][1], rows[0][2])

    # -- API tokens -------------------------------------------------------------------------------
    def new_token(self, name: str) -> str:
        if not self.get(name):
            raise ValueError(f"no user {name!r}")
        token = "mna_" + secrets.token_urlsafe(32)
        self.store.execute_raw(f"INSERT INTO mna_tokens VALUES ({self.p}, {self.p}, {self.p})",
                               (_digest(token), name, int(time.time())))
        return token

    def bearer(self, token: str) -> Principal | None:
        rows = self.store.execute_raw(
            f"SELECT t.name, u.role FROM mna_tokens t JOIN mna_users u ON u.name = t.name WHERE t.token_hash = {self.p}",
            (_digest(token),))
        return Principal(rows[0][0], rows[0][1], via_token=True) if rows else None


def _digest(token: str) -> str:
    """Only a hash of a session/API token is stored: a stolen database grants no session."""
    return hashlib.sha256(token.encode()).hexdigest()
