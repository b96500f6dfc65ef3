"""PostgreSQL store: when many workers or hosts share one journal.

``chain_seq`` is assigned under ``pg_advisory_xact_lock`` in READ COMMITTED, so writers from any
process or host take turns per batch; ``PRIMARY KEY (chain_seq)`` and ``UNIQUE (prev_hash)`` make
a fork impossible even if the lock were bypassed.  Batches go in with COPY.  Triggers, enabled
ALWAYS (so even ``session_replication_role = replica`` does not skip them), refuse UPDATE,
TRUNCATE and any DELETE except the retention vacuum's, which sets ``mna.vacuum_cut`` for its own
transaction and may delete only rows below it.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence

import psycopg

from ..interceptor.event import NetEvent
from . import schema
from .canonical import ZERO_HASH, iter_linked, prepare_rows, storable
from .store import JournalRow, RowFilter

LOCK_KEY = 0x6D6E615F6A726E  # "mna_jrn": the journal writers' advisory lock
T = schema.TABLE
_COLS = ", ".join(f"{c} {schema.column_type(c, postgres=True)}" for c in schema.COLUMNS)
_COPY = f"COPY {T} ({schema.SELECT_LIST}) FROM STDIN"

DDL = [
    f"CREATE TABLE IF NOT EXISTS {T} ({_COLS}, CONSTRAINT {T}_prev_unique UNIQUE (prev_hash))",
    f"CREATE UNIQUE INDEX IF NOT EXISTS {T}_event ON {T}(event_id)",
    f"CREATE INDEX IF NOT EXISTS {T}_logged ON {T}(logged_at_us)",
    *[f"CREATE INDEX IF NOT EXISTS {T}_{c} ON {T}({c}, chain_seq)" for c in schema.INDEXED_FILTERS],
    "CREATE TABLE IF NOT EXISTS mna_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE OR REPLACE FUNCTION mna_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN RAISE EXCEPTION 'egress_log is append-only: % refused', TG_OP; END $$""",
    """CREATE OR REPLACE FUNCTION mna_guard_delete() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF OLD.chain_seq < coalesce(nullif(current_setting('mna.vacuum_cut', true), '')::bigint, 0) THEN
           RETURN OLD;
         END IF;
         RAISE EXCEPTION 'egress_log is append-only: DELETE refused (only the retention vacuum may delete)';
       END $$""",
    f"DROP TRIGGER IF EXISTS {T}_no_update ON {T}",
    f"CREATE TRIGGER {T}_no_update BEFORE UPDATE ON {T} FOR EACH ROW EXECUTE FUNCTION mna_refuse_change()",
    f"DROP TRIGGER IF EXISTS {T}_no_delete ON {T}",
    f"CREATE TRIGGER {T}_no_delete BEFORE DELETE ON {T} FOR EACH ROW EXECUTE FUNCTION mna_guard_delete()",
    f"DROP TRIGGER IF EXISTS {T}_no_truncate ON {T}",
    f"CREATE TRIGGER {T}_no_truncate BEFORE TRUNCATE ON {T} FOR EACH STATEMENT EXECUTE FUNCTION mna_refuse_change()",
    f"ALTER TABLE {T} ENABLE ALWAYS TRIGGER {T}_no_update",
    f"ALTER TABLE {T} ENABLE ALWAYS TRIGGER {T}_no_delete",
    f"ALTER TABLE {T} ENABLE ALWAYS TRIGGER {T}_no_truncate",
]


def schema_version(cur) -> int | None:
    """The journal schema version in the cursor's database, or None when there is no journal there."""
    cur.execute("SELECT to_regclass('mna_meta') IS NOT NULL")
    if not cur.fetchone()[0]:
        return None
    cur.execute("SELECT value FROM mna_meta WHERE key = 'schema_version'")
    row = cur.fetchone()
    return int(row[0]) if row else None


def migrate_on(cur) -> None:
    """Bring the journal schema up to date using ``cur`` (inside the caller's transaction).

    Serialised between processes by an advisory transaction lock; a no-op when already current.
    """
    cur.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY + 1,))
    version = schema_version(cur)
    if version is not None and version >= schema.SCHEMA_VERSION:
        return
    for statement in DDL:
        cur.execute(statement)
    cur.execute("INSERT INTO mna_meta VALUES ('journal_id', %s) ON CONFLICT DO NOTHING", (uuid.uuid4().hex,))
    cur.execute("INSERT INTO mna_meta VALUES ('schema_version', '1') "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value")


# Rows encoded before a writer takes the lock.  The rest of a batch is encoded under it, while the
# server inserts what COPY already sent: one writer no longer pays the encoding and the insert in
# series (the server is the slower of the two, so the lock is held about as long as before).
ENCODED_AHEAD = 128


def _encoded_stream(ahead: list, events: Sequence[NetEvent], chunk: int = ENCODED_AHEAD):
    yield from ahead
    for start in range(len(ahead), len(events), chunk):
        yield from prepare_rows(events[start : start + chunk], bool_as_int=False)


class PostgresStore:
    kind = "postgres"

    def __init__(self, dsn: str, *, create: bool = True, connect_timeout: int = 5) -> None:
        self.dsn = dsn
        self._lock = threading.RLock()
        self._connect_timeout = connect_timeout
        self.conn = psycopg.connect(dsn, autocommit=True, connect_timeout=connect_timeout)
        if create:
            self._migrate()
        elif schema_version(self.conn.cursor()) is None:
            self.conn.close()
            from . import display_dsn

            raise FileNotFoundError(
                f"no journal in {display_dsn(dsn)!r} (no mna_meta table): run a program under "
                f"`mit-network-audit run --db {display_dsn(dsn)}` first, or check the --db DSN")

    def reconnect_if_broken(self) -> bool:
        """A fresh connection when the server dropped this one (restart, failover, idle timeout): a
        long-lived reader (the dashboard) calls it after a failed request, never inside a transaction."""
        with self._lock:
            if not (self.conn.closed or self.conn.broken):
                return False
            self.conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=self._connect_timeout)
            return True

    def _migrate(self) -> None:
        with self._lock, self.conn.transaction(), self.conn.cursor() as cur:
            migrate_on(cur)

    def append(self, events: Sequence[NetEvent]) -> list[JournalRow]:
        try:
            return self._append(events)
        except (UnicodeEncodeError, psycopg.DataError):  # a lone surrogate, a NUL: escaped, then written
            safe = storable(events)
            if all(a is b for a, b in zip(safe, events, strict=True)):
                raise  # not one of those: the caller's error
            return self._append(safe)

    def _append(self, events: Sequence[NetEvent]) -> list[JournalRow]:
        if not events:
            return []
        ahead = prepare_rows(events[:ENCODED_AHEAD], bool_as_int=False)
        with self._lock, self.conn.transaction():
            conn = self.conn
            # Two statements on purpose: in READ COMMITTED the head must be read with a snapshot
            # taken *after* the lock is held, or it could miss the previous holder's commit.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
            head = conn.execute(f"SELECT chain_seq, row_hash FROM {T} ORDER BY chain_seq DESC LIMIT 1").fetchone()
            seq, prev = (head[0] + 1, bytes.fromhex(head[1])) if head else (1, ZERO_HASH)
            rows = []
            with conn.cursor() as cur, cur.copy(_COPY) as copy:
                # Encoded (past ENCODED_AHEAD), linked and written row by row: COPY sends every
                # ~32 KiB, so the server inserts the first rows while the rest are still being made.
                write_row, keep = copy.write_row, rows.append
                for row in iter_linked(_encoded_stream(ahead, events), seq, prev):
                    write_row(row)
                    keep(row)
        return [JournalRow(r[0], e, r[-3], r[-2], r[-1]) for r, e in zip(rows, events, strict=True)]

    def _query(self, sql: str, params: Iterable = ()) -> list:
        with self._lock:
            return self.conn.execute(sql, tuple(params)).fetchall()

    def head(self) -> JournalRow | None:
        rows = self._query(f"SELECT {schema.SELECT_LIST} FROM {T} ORDER BY chain_seq DESC LIMIT 1")
        return schema.decode_row(rows[0]) if rows else None

    def get(self, chain_seq: int) -> JournalRow | None:
        rows = self._query(f"SELECT {schema.SELECT_LIST} FROM {T} WHERE chain_seq = %s", (chain_seq,))
        return schema.decode_row(rows[0]) if rows else None

    def get_by_event_id(self, event_id: str) -> JournalRow | None:
        rows = self._query(f"SELECT {schema.SELECT_LIST} FROM {T} WHERE event_id = %s", (event_id,))
        return schema.decode_row(rows[0]) if rows else None

    def rows(self, flt: RowFilter | None = None, *, before_seq: int | None = None,
             limit: int = 100, after_seq: int | None = None) -> list[JournalRow]:
        where, params = schema.where_clause(flt, "%s", before_seq=before_seq, after_seq=after_seq, text_op="ILIKE")
        sql = f"SELECT {schema.SELECT_LIST} FROM {T}{where} ORDER BY chain_seq DESC LIMIT %s"
        return [schema.decode_row(r) for r in self._query(sql, [*params, int(limit)])]

    def count(self, flt: RowFilter | None = None) -> int:
        where, params = schema.where_clause(flt, "%s", text_op="ILIKE")
        return self._query(f"SELECT count(*) FROM {T}{where}", params)[0][0]

    def iter_range(self, start_seq: int = 1, end_seq: int | None = None,
                   batch: int = 10_000) -> Iterator[JournalRow]:
        for raw in self.iter_raw(start_seq, end_seq, batch):
            yield schema.decode_row(raw)

    def iter_raw(self, start_seq: int = 1, end_seq: int | None = None, batch: int = 10_000) -> Iterator[tuple]:
        seq = start_seq
        end = end_seq if end_seq is not None else 2**62
        while True:
            chunk = self._query(
                f"SELECT {schema.SELECT_LIST} FROM {T} WHERE chain_seq >= %s AND chain_seq <= %s "
                "ORDER BY chain_seq LIMIT %s", (seq, end, batch))
            if not chunk:
                return
            yield from chunk
            seq = chunk[-1][0] + 1

    def min_seq(self) -> int | None:
        return self._query(f"SELECT min(chain_seq) FROM {T}")[0][0]

    def max_seq(self) -> int:
        return self._query(f"SELECT coalesce(max(chain_seq), 0) FROM {T}")[0][0]

    def meta_get(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM mna_meta WHERE key = %s", (key,))
        return rows[0][0] if rows else None

    def meta_set(self, key: str, value: str) -> None:
        with self._lock:
            self.conn.execute("INSERT INTO mna_meta (key, value) VALUES (%s, %s) "
                              "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))

    @property
    def journal_id(self) -> str:
        return self.meta_get("journal_id") or ""

    def execute_raw(self, sql: str, params: Iterable = ()) -> list[tuple]:
        with self._lock:
            cur = self.conn.execute(sql, tuple(params))
            return cur.fetchall() if cur.description else []

    def close(self) -> None:
        with self._lock:
            self.conn.close()
