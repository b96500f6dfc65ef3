"""Forensic body capture, journal side: the encrypted ``egress_body`` store, its key, reads and retention.

Off by default (DESIGN §2: no body, ever, in the default path).  When an officer switches it on
(setting ``forensic.enabled``), the interceptor's body tap hands the request bodies of in-scope
calls to a ``BodyWriter``, which seals each one at once and stores it in ``egress_body``:

    event_id        the journal row's event_id (the link; also the AES-GCM associated data)
    captured_at_us  when the row was logged
    size            request body bytes the call sent (may exceed what was kept)
    truncated       true when more than ``forensic.max_bytes`` was sent: only the first bytes are kept
    key_id          which key pair it is sealed to (first 8 bytes of SHA-256 over a label and the public key)
    epk             the writer's ephemeral X25519 public key
    nonce           12 random bytes
    ciphertext      AES-256-GCM(HKDF-SHA256(X25519(epk, recipient)), nonce, body, aad = event_id)

The table lives in the journal's own database (SQLite file or PostgreSQL), next to ``egress_log``
but apart from it: it is not chained (a purge must be able to delete it), it has its own retention
(``forensic.retention_days``), and nothing in it is readable without the private key, which never
lives in the database nor needs to be on an audited host: readers take it from ``$MNA_FORENSIC_KEY``
(base64 of 32 bytes) or a 0600 file (``$MNA_FORENSIC_KEY_FILE``, default ``<config
dir>/forensic.key``, made by ``forensic key init``); audited processes need only the public key
(``$MNA_FORENSIC_PUBLIC_KEY`` or ``forensic.key.pub``).

Every read (``read_body``: CLI, page, API) first appends an ``internal`` ``forensic_read`` row to the
journal — who, which event, through what — and refuses to decrypt anything when that append fails.
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import json
import os
import stat
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from ..interceptor import capture
from ..interceptor.event import internal_event

TABLE = "egress_body"
ENV_KEY = "MNA_FORENSIC_KEY"
ENV_KEY_FILE = "MNA_FORENSIC_KEY_FILE"
MAX_BYTES_CEILING = 16 * 1024 * 1024  # whatever the setting says, no call buffers more than this
DEFAULTS = {
    "forensic.enabled": False,
    "forensic.addons": [],
    "forensic.hosts": [],
    "forensic.max_bytes": 65536,
    "forensic.retention_days": 30,
}


class ForensicProblem(Exception):
    """Something a reader must be told plainly (no key, no such body, a body that does not decrypt)."""

    status = 409


class KeyProblem(ForensicProblem):
    pass


class NoSuchBody(ForensicProblem):
    status = 404


class ReadRefused(ForensicProblem):
    """The ``forensic_read`` row could not be journaled: the body is not shown (fail closed)."""

    status = 503


# -- settings ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scope:
    enabled: bool
    addons: tuple[str, ...]
    hosts: tuple[str, ...]
    max_bytes: int
    retention_days: int


def _as_list(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    text = str(value).strip()
    if text.startswith("["):
        try:
            return _as_list(json.loads(text))
        except ValueError:
            pass
    return [v.strip() for v in text.split(",") if v.strip()]


def _as_bool(value) -> bool:
    if isinstance(value, bool):
        return value
    return str(value or "").strip().lower() in ("1", "true", "on", "yes")


def current_settings(store) -> dict:
    """The forensic settings: from ``journal.settings.get_settings`` when present, else the meta keys."""
    try:
        from .settings import get_settings
    except ImportError:
        get_settings = None
    if get_settings is not None:
        got = get_settings(store)
        return {k: got.get(k, v) for k, v in DEFAULTS.items()}
    out = dict(DEFAULTS)
    for key in DEFAULTS:
        raw = store.meta_get(f"setting.{key}")
        if raw is not None:
            out[key] = raw
    return out


def change_setting(store, key: str, raw: str, *, actor: str) -> None:
    """Change one forensic setting, journaled: ``journal.settings.set_setting`` when present; else the
    meta key plus an ``internal`` ``settings`` row (who, key, old -> new), written first."""
    if key not in DEFAULTS:
        raise ForensicProblem(f"unknown forensic setting {key!r}: one of {', '.join(DEFAULTS)}")
    try:
        from .settings import set_setting
    except ImportError:
        set_setting = None
    if set_setting is not None:
        set_setting(store, key, raw, actor=actor)
        return
    old = store.meta_get(f"setting.{key}")
    detail = json.dumps({"actor": actor, "key": key, "old": old, "new": raw}, sort_keys=True)
    with capture.suppressed():
        store.append([internal_event("settings", detail=detail)])
    store.meta_set(f"setting.{key}", raw)


def scope_from_settings(settings: dict) -> Scope:
    def num(key):
        try:
            return int(settings.get(key, DEFAULTS[key]))
        except (TypeError, ValueError):
            return DEFAULTS[key]

    return Scope(
        _as_bool(settings.get("forensic.enabled")),
        tuple(_as_list(settings.get("forensic.addons"))),
        tuple(_as_list(settings.get("forensic.hosts"))),
        min(max(0, num("forensic.max_bytes")), MAX_BYTES_CEILING),
        max(1, num("forensic.retention_days")),
    )


# -- the key ----------------------------------------------------------------------------------------
# An X25519 key pair.  Audited processes need only the PUBLIC key to store bodies; only readers hold
# the private key.  Each writer makes an ephemeral X25519 pair, derives an AES-256-GCM content key
# from it and the officer's public key (HKDF-SHA256), forgets the ephemeral private key, and stores
# the ephemeral public key (``epk``) with every body it seals.  So a compromised application host —
# which has the database credentials — still cannot decrypt the bodies stored before it.
HKDF_INFO = b"mit-network-audit/forensic-body/v1"
ENV_PUBLIC_KEY = "MNA_FORENSIC_PUBLIC_KEY"
ROTATE_AFTER_BODIES = 100_000  # a writer derives a fresh content key after this many bodies ...
ROTATE_AFTER_SECONDS = 3600.0  # ... or this long, whichever comes first


def default_key_path() -> str:
    env = os.environ.get(ENV_KEY_FILE)
    if env:
        return env
    import platformdirs

    return os.path.join(platformdirs.user_config_dir("mit-network-audit"), "forensic.key")


def _parse_key(text: str, origin: str) -> bytes:
    try:
        key = base64.b64decode(text.strip().encode("ascii"), validate=True)
    except ValueError:
        raise KeyProblem(f"{origin}: not base64") from None
    if len(key) != 32:
        raise KeyProblem(f"{origin}: an X25519 key is 32 bytes, got {len(key)}")
    return key


def public_key(private: bytes) -> bytes:
    return (
        X25519PrivateKey.from_private_bytes(private).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    )


def key_id(public: bytes) -> str:
    """First 8 bytes of SHA-256 over a label and the public key, hex: which key a body is sealed to."""
    return hashlib.sha256(b"mit-network-audit/forensic-key\n" + public).digest()[:8].hex()


def init_key(path: str | None = None, *, force: bool = False) -> str:
    """Create a new key pair: the private key (mode 0600, in a 0700 directory) and ``<path>.pub``.

    Refuses to overwrite unless ``force``: rotating the key makes every body sealed to the old one
    unreadable (which is also the fastest way to destroy them all)."""
    path = path or default_key_path()
    os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise KeyProblem(
            f"{path} exists: refusing to replace the forensic key (bodies sealed to it would become "
            "unreadable; use --force to rotate it)"
        ) from None
    private = X25519PrivateKey.generate().private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fh.fileno(), 0o600)
        fh.write(base64.b64encode(private).decode("ascii") + "\n")
    with open(path + ".pub", "w") as fh:
        fh.write(base64.b64encode(public_key(private)).decode("ascii") + "\n")
    return path


def load_key(path: str | None = None, *, required: bool = True) -> bytes | None:
    """The PRIVATE key (readers): ``$MNA_FORENSIC_KEY``, else the key file (refused if group/other may
    read it)."""
    env = os.environ.get(ENV_KEY)
    if env:
        return _parse_key(env, f"${ENV_KEY}")
    path = path or default_key_path()
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if required:
            raise KeyProblem(
                f"no forensic key at {path}: run `mit-network-audit forensic key init` (or set ${ENV_KEY})"
            ) from None
        return None
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise KeyProblem(
            f"{path} is readable by group/others (mode {stat.S_IMODE(st.st_mode):o}): chmod 600 {path}"
        )
    with open(path) as fh:
        return _parse_key(fh.read(), path)


def load_public_key(path: str | None = None, *, required: bool = True) -> bytes | None:
    """The PUBLIC key (what an audited process needs to store bodies): ``$MNA_FORENSIC_PUBLIC_KEY``,
    else derived from ``$MNA_FORENSIC_KEY``, else ``<key file>.pub``, else derived from the key file."""
    env = os.environ.get(ENV_PUBLIC_KEY)
    if env:
        return _parse_key(env, f"${ENV_PUBLIC_KEY}")
    if os.environ.get(ENV_KEY):
        return public_key(load_key())
    path = path or default_key_path()
    if os.path.exists(path + ".pub"):
        with open(path + ".pub") as fh:
            return _parse_key(fh.read(), path + ".pub")
    private = load_key(path, required=required)
    return public_key(private) if private is not None else None


def _content_key(shared: bytes, epk: bytes, recipient: bytes) -> bytes:
    return HKDF(algorithm=SHA256(), length=32, salt=epk + recipient, info=HKDF_INFO).derive(shared)


class Sealer:
    """Seals bodies to a public key: AES-256-GCM under a content key derived from an ephemeral X25519
    pair (rotated after ``ROTATE_AFTER_BODIES`` bodies or ``ROTATE_AFTER_SECONDS``)."""

    def __init__(self, recipient: bytes) -> None:
        self.recipient = bytes(recipient)
        self._peer = X25519PublicKey.from_public_bytes(self.recipient)
        self.key_id = key_id(self.recipient)
        self._lock = threading.Lock()
        self._rotate()

    def _rotate(self) -> None:
        ephemeral = X25519PrivateKey.generate()
        epk = ephemeral.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self._aead = AESGCM(_content_key(ephemeral.exchange(self._peer), epk, self.recipient))
        self.epk = epk  # the ephemeral private key goes out of scope here: this writer cannot re-derive
        self._count = 0
        self._born = time.monotonic()

    def seal(self, event_id: str, captured_at_us: int, body: bytes, size: int, truncated: bool) -> tuple:
        with self._lock:
            if self._count >= ROTATE_AFTER_BODIES or time.monotonic() - self._born > ROTATE_AFTER_SECONDS:
                self._rotate()
            self._count += 1
            aead, epk = self._aead, self.epk
        nonce = os.urandom(12)
        ct = aead.encrypt(nonce, bytes(body), event_id.encode("ascii"))
        return (event_id, captured_at_us, size, truncated, self.key_id, epk, nonce, ct)


def seal(
    recipient: bytes, event_id: str, captured_at_us: int, body: bytes, size: int, truncated: bool
) -> tuple:
    """One body sealed to ``recipient`` (a public key), as a row for ``put_sealed``."""
    return Sealer(recipient).seal(event_id, captured_at_us, body, size, truncated)


def decrypt(private: bytes, event_id: str, epk: bytes, nonce: bytes, ciphertext: bytes) -> bytes:
    try:
        key = X25519PrivateKey.from_private_bytes(private)
        shared = key.exchange(X25519PublicKey.from_public_bytes(bytes(epk)))
        aead = AESGCM(_content_key(shared, bytes(epk), public_key(private)))
        return aead.decrypt(bytes(nonce), bytes(ciphertext), event_id.encode("ascii"))
    except (InvalidTag, ValueError):
        raise ForensicProblem(
            f"the body of {event_id} does not decrypt: another key, or it was altered "
            "(or moved to another event)"
        ) from None


# -- the table --------------------------------------------------------------------------------------
def _pg(store) -> bool:
    return getattr(store, "kind", "") == "postgres"


def ensure_table(store) -> None:
    if _pg(store):
        ddl = [
            f"CREATE TABLE IF NOT EXISTS {TABLE} (event_id TEXT PRIMARY KEY, captured_at_us BIGINT NOT NULL, "
            "size BIGINT NOT NULL, truncated BOOLEAN NOT NULL, key_id TEXT NOT NULL, epk BYTEA NOT NULL, "
            "nonce BYTEA NOT NULL, "
            "ciphertext BYTEA NOT NULL)",
            f"CREATE INDEX IF NOT EXISTS {TABLE}_captured ON {TABLE}(captured_at_us)",
            """CREATE OR REPLACE FUNCTION mna_body_no_update() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN RAISE EXCEPTION 'egress_body rows are never updated (only purged)'; END $$""",
            f"DROP TRIGGER IF EXISTS {TABLE}_no_update ON {TABLE}",
            f"CREATE TRIGGER {TABLE}_no_update BEFORE UPDATE ON {TABLE} FOR EACH ROW "
            "EXECUTE FUNCTION mna_body_no_update()",
        ]
        exists = store.execute_raw("SELECT to_regclass(%s) IS NOT NULL", (TABLE,))
        if exists and exists[0][0]:
            return
        store.execute_raw("SELECT pg_advisory_lock(%s)", (0x6D6E615F626F6479,))
        try:
            for statement in ddl:
                store.execute_raw(statement)
        finally:
            store.execute_raw("SELECT pg_advisory_unlock(%s)", (0x6D6E615F626F6479,))
        return
    store.execute_raw(
        f"CREATE TABLE IF NOT EXISTS {TABLE} (event_id TEXT PRIMARY KEY, captured_at_us INTEGER NOT NULL, "
        "size INTEGER NOT NULL, truncated INTEGER NOT NULL, key_id TEXT NOT NULL, epk BLOB NOT NULL, "
        "nonce BLOB NOT NULL, "
        "ciphertext BLOB NOT NULL)"
    )
    store.execute_raw(f"CREATE INDEX IF NOT EXISTS {TABLE}_captured ON {TABLE}(captured_at_us)")
    store.execute_raw(
        f"CREATE TRIGGER IF NOT EXISTS {TABLE}_no_update BEFORE UPDATE ON {TABLE} "
        "BEGIN SELECT RAISE(ABORT, 'egress_body rows are never updated (only purged)'); END"
    )


def table_exists(store) -> bool:
    if _pg(store):
        rows = store.execute_raw("SELECT to_regclass(%s) IS NOT NULL", (TABLE,))
    else:
        rows = store.execute_raw(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLE,)
        )
    return bool(rows and rows[0][0])


def put_sealed(store, rows: list[tuple]) -> None:
    """Insert sealed rows ``(event_id, captured_at_us, size, truncated, key_id, epk, nonce, ct)``."""
    if not rows:
        return
    p = "%s" if _pg(store) else "?"
    one = f"({', '.join([p] * 8)})"
    params: list = []
    for event_id, at, size, truncated, kid, epk, nonce, ct in rows:
        params += [
            event_id,
            int(at),
            int(size),
            bool(truncated) if _pg(store) else int(bool(truncated)),
            kid,
            bytes(epk),
            bytes(nonce),
            bytes(ct),
        ]
    conflict = "ON CONFLICT (event_id) DO NOTHING"
    store.execute_raw(
        f"INSERT INTO {TABLE} (event_id, captured_at_us, size, truncated, key_id, epk, nonce, ciphertext) "
        f"VALUES {', '.join([one] * len(rows))} {conflict}",
        params,
    )


def purge(store, retention_days: int, *, now_us: int | None = None) -> int:
    """Delete bodies captured more than ``retention_days`` ago; returns how many went."""
    if not table_exists(store):
        return 0
    now_us = now_us if now_us is not None else time.time_ns() // 1000
    cut = max(0, now_us - int(retention_days) * 86_400_000_000)  # before 1970: nothing is older
    p = "%s" if _pg(store) else "?"
    if not _pg(store):
        store.execute_raw("PRAGMA secure_delete = ON")  # freed pages are zeroed, not left behind
    n = store.execute_raw(f"SELECT count(*) FROM {TABLE} WHERE captured_at_us < {p}", (cut,))[0][0]
    if n:
        store.execute_raw(f"DELETE FROM {TABLE} WHERE captured_at_us < {p}", (cut,))
    return int(n)


@dataclass(frozen=True)
class BodyInfo:
    event_id: str
    captured_at_us: int
    size: int
    stored: int
    truncated: bool
    chain_seq: int | None
    host: str | None
    addon: str | None
    method: str | None
    path: str | None

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def list_bodies(
    store, *, limit: int = 100, before_us: int | None = None, event_id: str | None = None
) -> list[BodyInfo]:
    """What is stored (metadata only, newest first); no body is decrypted, so no read is journaled."""
    if not table_exists(store):
        return []
    p = "%s" if _pg(store) else "?"
    length = "octet_length" if _pg(store) else "length"
    conds, params = [], []
    if before_us is not None:
        conds.append(f"b.captured_at_us < {p}")
        params.append(before_us)
    if event_id is not None:
        conds.append(f"b.event_id = {p}")
        params.append(event_id)
    where = (" WHERE " + " AND ".join(conds)) if conds else ""
    rows = store.execute_raw(
        f"SELECT b.event_id, b.captured_at_us, b.size, {length}(b.ciphertext) - 16, b.truncated, l.chain_seq, "
        f"l.host, l.addon, l.method, l.path FROM {TABLE} b LEFT JOIN egress_log l ON l.event_id = b.event_id"
        f"{where} ORDER BY b.captured_at_us DESC LIMIT {p}",
        [*params, int(limit)],
    )
    return [
        BodyInfo(r[0], int(r[1]), int(r[2]), int(r[3]), bool(r[4]), r[5], r[6], r[7], r[8], r[9])
        for r in rows
    ]


def list_bodies_for(store, event_id: str) -> list[BodyInfo]:
    return list_bodies(store, limit=1, event_id=event_id)


def count_bodies(store) -> int:
    return int(store.execute_raw(f"SELECT count(*) FROM {TABLE}")[0][0]) if table_exists(store) else 0


def recent_reads(store, limit: int = 50) -> list[dict]:
    """The newest ``forensic_read`` rows of the journal (who read which body, when, through what)."""
    p = "%s" if _pg(store) else "?"
    rows = store.execute_raw(
        "SELECT chain_seq, logged_at_us, detail FROM egress_log WHERE direction = 'internal' "
        f"AND method = 'forensic_read' ORDER BY chain_seq DESC LIMIT {p}",
        (int(limit),),
    )
    out = []
    for seq, at, detail in rows:
        try:
            facts = json.loads(detail or "{}")
        except ValueError:
            facts = {}
        if not isinstance(facts, dict):  # any program can write a row: a detail that is no object says nothing
            facts = {}
        target = facts.get("chain_seq")
        out.append(
            {
                "seq": int(seq),
                "at_us": int(at),
                **{k: None if facts.get(k) is None else str(facts[k]) for k in ("actor", "role", "via", "event_id")},
                "chain_seq": target if isinstance(target, int) and not isinstance(target, bool) else None,
            }
        )
    return out


# -- reading ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BodyRead:
    info: BodyInfo
    body: bytes
    read_seq: int  # chain_seq of the forensic_read row that journaled this read


def resolve(store, ref) -> tuple[str, int | None]:
    """An event id (32 hex digits) or a chain_seq -> (event_id, chain_seq or None)."""
    text = str(ref).strip()
    if text.isascii() and text.isdigit() and len(text) < 32:
        row = store.get(int(text)) if int(text) < 2**63 else None  # past 64 bits: no such row
        if row is None:
            raise NoSuchBody(f"no journal row {text}")
        return row.event.event_id, row.chain_seq
    if len(text) != 32 or any(c not in "0123456789abcdef" for c in text.lower()):
        raise NoSuchBody(f"{text!r} is neither a chain_seq nor an event id (32 hex digits)")
    row = store.get_by_event_id(text.lower())
    return text.lower(), (row.chain_seq if row is not None else None)


def journal_read(
    store, *, actor: str, event_id: str, chain_seq: int | None, via: str, role: str | None = None
) -> int:
    """Append the ``forensic_read`` row now, synchronously; raise ``ReadRefused`` if it is not written."""
    detail = {"actor": actor, "event_id": event_id, "chain_seq": chain_seq, "via": via}
    if role:
        detail["role"] = role
    try:
        with capture.suppressed():
            written = store.append(
                [internal_event("forensic_read", detail=json.dumps(detail, sort_keys=True))]
            )
        seq = int(written[0].chain_seq)
    except Exception as exc:
        raise ReadRefused(
            f"the read could not be journaled ({type(exc).__name__}: {exc}); refusing to show the body"
        ) from None
    if seq <= 0:
        raise ReadRefused("the read could not be journaled; refusing to show the body")
    return seq


def read_body(
    store, ref, *, actor: str, via: str = "cli", role: str | None = None, key: bytes | None = None
) -> BodyRead:
    """Journal the read, then decrypt and return the body.  Fails closed: no row, no body."""
    if not actor or not str(actor).strip():
        raise ForensicProblem("a read needs the reader's name (actor)")
    key = key if key is not None else load_key(required=True)
    event_id, seq = resolve(store, ref)
    read_seq = journal_read(
        store, actor=str(actor).strip(), event_id=event_id, chain_seq=seq, via=via, role=role
    )
    if not table_exists(store):
        raise NoSuchBody(f"no body was captured for {event_id} (no forensic store in this journal)")
    p = "%s" if _pg(store) else "?"
    rows = store.execute_raw(
        f"SELECT captured_at_us, size, truncated, epk, nonce, ciphertext FROM {TABLE} WHERE event_id = {p}",
        (event_id,),
    )
    if not rows:
        raise NoSuchBody(
            f"no body was captured for {event_id} (capture off, out of scope, no body, or purged)"
        )
    at, size, truncated, epk, nonce, ct = rows[0]
    body = decrypt(key, event_id, epk, nonce, ct)
    row = store.get(seq) if seq is not None else None
    ev = row.event if row is not None else None
    info = BodyInfo(
        event_id,
        int(at),
        int(size),
        len(body),
        bool(truncated),
        seq,
        getattr(ev, "host", None),
        getattr(ev, "addon", None),
        getattr(ev, "method", None),
        getattr(ev, "path", None),
    )
    return BodyRead(info, body, read_seq)


# -- writing (inside the audited process) -------------------------------------------------------------
class BodyWriter:
    """Takes bodies from the tap, seals each at once to the officer's PUBLIC key (no plaintext waits in
    a queue; this process cannot decrypt what it stored), writes them from one background thread, and
    purges past the retention window about once an hour.

    ``submit`` never blocks and never raises into the audited call; what cannot be kept (a full queue,
    a database that stays down) is counted in ``counters`` and in ``capture.stats()``."""

    def __init__(
        self,
        store_or_dsn,
        public: bytes,
        *,
        retention_days: int = 30,
        flush_interval: float = 0.1,
        queue_limit: int = 10_000,
        purge_every: float = 3600.0,
        batch: int = 100,
    ) -> None:
        self._given = None if isinstance(store_or_dsn, str) else store_or_dsn
        self.dsn = store_or_dsn if isinstance(store_or_dsn, str) else getattr(store_or_dsn, "dsn", None)
        self._public = bytes(public)
        self.retention_days = retention_days
        self.flush_interval = flush_interval
        self.queue_limit = queue_limit
        self.purge_every = purge_every
        self.batch = batch
        self.counters = {"submitted": 0, "written": 0, "lost": 0, "write_errors": 0, "purged": 0}
        self._reset()
        _live_writers.add(self)

    def _reset(self) -> None:
        self._sealer = Sealer(self._public)  # a forked worker gets its own content key (and lock)
        self._pid = os.getpid()
        self._store = self._given
        self._queue: deque = deque()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._last_purge = 0.0
        self._ready = False

    def submit(self, event_id: str, captured_at_us: int, body: bytes, size: int, truncated: bool) -> None:
        if self._pid != os.getpid():
            self._given = None if self.dsn else self._given
            self._reset()
        if len(self._queue) >= self.queue_limit:
            self.counters["lost"] += 1
            capture.counters["forensic.lost"] += 1
            return
        self._queue.append(self._sealer.seal(event_id, captured_at_us, body, size, truncated))
        self.counters["submitted"] += 1
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="mna-forensic-writer", daemon=True)
            self._thread.start()
        self._wake.set()

    def flush(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while self._queue and time.monotonic() < deadline:
            self._idle.clear()
            self._wake.set()
            self._idle.wait(max(0.0, min(0.2, deadline - time.monotonic())))
        return not self._queue

    def close(self, timeout: float = 10.0) -> None:
        self.flush(timeout)
        self._stop = True
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        if self._store is not None and self._given is None:
            try:
                self._store.close()
            except Exception:
                pass
        self._store = None

    def _open(self):
        if self._store is None:
            from . import open_store

            self._store = open_store(self.dsn)
        if not self._ready:
            ensure_table(self._store)
            self._ready = True
        return self._store

    def _run(self) -> None:
        capture.suppress_current_thread()
        while True:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            self._drain()
            if self._stop and not self._queue:
                return

    def _drain(self) -> None:
        failures = 0
        while self._queue:
            batch = [self._queue[i] for i in range(min(self.batch, len(self._queue)))]
            try:
                put_sealed(self._open(), batch)
            except Exception:
                self.counters["write_errors"] += 1
                capture.counters["errors.forensic_write"] += 1
                self._drop_store()
                failures += 1
                if failures >= 3:  # the database stays down: drop this batch, counted, do not spin
                    for _ in batch:
                        self._queue.popleft()
                    self.counters["lost"] += len(batch)
                    capture.counters["forensic.lost"] += len(batch)
                    failures = 0
                time.sleep(0.2)
                continue
            for _ in batch:
                self._queue.popleft()
            self.counters["written"] += len(batch)
        self._maybe_purge()
        self._idle.set()

    def _maybe_purge(self) -> None:
        now = time.monotonic()
        if now - self._last_purge < self.purge_every:
            return
        self._last_purge = now
        try:
            self.counters["purged"] += purge(self._open(), self.retention_days)
        except Exception:
            capture.counters["errors.forensic_purge"] += 1
            self._drop_store()

    def _drop_store(self) -> None:
        if self._given is None and self._store is not None:
            try:
                self._store.close()
            except Exception:
                pass
            self._store = None
            self._ready = False


_live_writers: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _flush_writers_at_exit() -> None:
    # Registered after the journal sink's own at-exit hook, so it runs first: streamed calls still
    # pending are finished (their bodies handed over) before the writers flush.
    if not _live_writers:
        return
    capture.finish_pending()
    for writer in list(_live_writers):
        try:
            if writer._pid == os.getpid():
                writer.flush(timeout=5.0)
        except Exception:
            pass
