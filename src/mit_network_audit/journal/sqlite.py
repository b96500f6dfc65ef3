"""SQLite store: the embedded default.  One file, WAL, one ``BEGIN IMMEDIATE`` transaction per batch.

Triggers abort every UPDATE and DELETE of journal rows.  The only delete let through is the
retention vacuum's: it raises ``vacuum_guard.cut_seq`` inside its own transaction (after appending
an anchor row and signing a checkpoint) and may then delete rows *below* that cut.  The guard
itself can only move forward.  Anyone who can write the file can still drop a trigger: that is
what verify, the signed checkpoints and the witness file outside the database catch.

Unlike PostgreSQL's, this table has no ``UNIQUE (prev_hash)``: every writer takes the file's write
lock (``BEGIN IMMEDIATE``) before it reads the head it links to and ``chain_seq`` is the primary key,
so no writer of ours can fork the chain, and anyone else who can write the file can drop an index as
easily as insert a row — verify finds a fork either way.  The index cost more than any other part of
an append (a random 64-character key on a random page per row: 1.6x fewer rows/s with it).
Journals made before keep theirs; it does no harm.
"""

from __future__ import annotations

import os
import queue
import sqlite3
import threading
import urllib.parse
import uuid
from collections.abc import Iterable, Iterator, Sequence

from ..interceptor.event import NetEvent
from . import schema
from .canonical import ZERO_HASH, link_prepared, prepare_rows, storable
from .store import JournalRow, RowFilter

_COLS = ", ".join(f"{c} {schema.column_type(c, postgres=False)}" for c in schema.COLUMNS)
DDL = f"""
CREATE TABLE IF NOT EXISTS {schema.TABLE} ({_COLS});
CREATE UNIQUE INDEX IF NOT EXISTS {schema.TABLE}_event ON {schema.TABLE}(event_id);
CREATE INDEX IF NOT EXISTS {schema.TABLE}_logged ON {schema.TABLE}(logged_at_us);
{chr(10).join(f"CREATE INDEX IF NOT EXISTS {schema.TABLE}_{c} ON {schema.TABLE}({c}, chain_seq);" for c in schema.INDEXED_FILTERS)}
CREATE TABLE IF NOT EXISTS mna_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS mna_vacuum_guard (id INTEGER PRIMARY KEY CHECK (id = 1), cut_seq INTEGER NOT NULL);
INSERT OR IGNORE INTO mna_vacuum_guard (id, cut_seq) VALUES (1, 0);
CREATE TRIGGER IF NOT EXISTS {schema.TABLE}_no_update BEFORE UPDATE ON {schema.TABLE}
BEGIN SELECT RAISE(ABORT, 'egress_log is append-only: UPDATE refused'); END;
CREATE TRIGGER IF NOT EXISTS {schema.TABLE}_no_delete BEFORE DELETE ON {schema.TABLE}
WHEN OLD.chain_seq >= (SELECT cut_seq FROM mna_vacuum_guard WHERE id = 1)
BEGIN SELECT RAISE(ABORT, 'egress_log is append-only: DELETE refused (only the retention vacuum may delete)'); END;
CREATE TRIGGER IF NOT EXISTS mna_vacuum_guard_forward BEFORE UPDATE ON mna_vacuum_guard
WHEN NEW.cut_seq < OLD.cut_seq BEGIN SELECT RAISE(ABORT, 'vacuum cut can only move forward'); END;
CREATE TRIGGER IF NOT EXISTS mna_vacuum_guard_no_delete BEFORE DELETE ON mna_vacuum_guard
BEGIN SELECT RAISE(ABORT, 'vacuum guard cannot be deleted'); END;
"""

_INSERT = (f"INSERT INTO {schema.TABLE} ({schema.SELECT_LIST}) VALUES "
           f"({', '.join('?' for _ in schema.COLUMNS)})")

# A batch is first bound into a staging table (TEMP: in this connection's memory, no index, no
# trigger), then moved into the journal by one INSERT ... SELECT.  The costly part of an insert --
# the table and its nine indexes -- then runs as one statement, with the GIL released for all of it
# (executemany takes the GIL back after every row: a hand-off with the audited program's threads
# per row), and it is faster in itself (one statement, not one per row).  Same columns and types as
# the journal, so SQLite converts a value the same way either table would.
_STAGE = "mna_stage"
_STAGE_DDL = (f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} ("
              + ", ".join(f"{c} {schema.column_type(c, postgres=False)}" for c in schema.COLUMNS) + ")")
_STAGE_INSERT = _INSERT.replace(f"INSERT INTO {schema.TABLE} ", f"INSERT INTO temp.{_STAGE} ", 1)
_FROM_STAGE = (f"INSERT INTO main.{schema.TABLE} ({schema.SELECT_LIST}) "
               f"SELECT {schema.SELECT_LIST} FROM temp.{_STAGE} WHERE chain_seq >= ? ORDER BY chain_seq")
_CLEAR_STAGE = f"DELETE FROM temp.{_STAGE}"

# A larger batch is staged and moved in chunks, two at a time in flight: the move of one chunk (one
# statement, GIL released) runs on a helper thread while this thread encodes and links the next.
# A small batch goes straight in with executemany: two statements more cost it ~8 µs a batch, more
# than they save below ~20 rows.
PIPELINE_ROWS = 250
LAST_ROWS = 50
DIRECT_ROWS = 16


def _chunk_bounds(n: int) -> list[int]:
    """Where the chunks of an n-row batch start, and n: PIPELINE_ROWS each, the last one LAST_ROWS
    (nothing overlaps the last chunk's move, so it is kept short)."""
    if n <= PIPELINE_ROWS:
        return [0, n]
    starts = list(range(0, n - LAST_ROWS, PIPELINE_ROWS))
    if len(starts) > 1 and n - LAST_ROWS - starts[-1] < LAST_ROWS:
        starts.pop()  # no sliver of a chunk: the one before takes it
    return [*starts, n - LAST_ROWS, n]


def _insert_staged(conn, events, bounds: list[int], prepared, seq: int, prev: bytes,
                   mover: _Mover | None) -> list[tuple]:
    """The batch into the journal through the staging table, chunk by chunk (``bounds``, from
    ``_chunk_bounds``; ``prepared``: the first chunk's rows).  Inside the caller's transaction;
    returns the stored tuples."""
    rows: list[tuple] = []
    for start, end in zip(bounds[1:], [*bounds[2:], None], strict=True):
        params = link_prepared(prepared, seq, prev)
        if mover is not None:
            mover.wait()  # the previous chunk is in the journal: the connection is ours again
        conn.executemany(_STAGE_INSERT, params)
        rows += params
        if end is None:  # the last chunk
            conn.execute(_FROM_STAGE, (seq,))
            conn.execute(_CLEAR_STAGE)
            return rows
        mover.start(seq)  # this chunk goes into the journal while the next one is encoded
        seq, prev = seq + len(params), bytes.fromhex(params[-1][-1])
        prepared = prepare_rows(events[start:end], bool_as_int=True)
    raise AssertionError("unreachable: the last chunk returns")


class _Mover:
    """Moves the staged chunk into the journal on a helper thread, one chunk at a time."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._todo: queue.SimpleQueue = queue.SimpleQueue()
        self._started: queue.SimpleQueue = queue.SimpleQueue()
        self._done: queue.SimpleQueue = queue.SimpleQueue()
        self._busy = False
        threading.Thread(target=self._run, name="mna-journal-mover", daemon=True).start()

    def _run(self) -> None:
        while (first_seq := self._todo.get()) is not None:
            self._started.put(None)
            try:
                self._conn.execute(_FROM_STAGE, (first_seq,))  # the GIL is released inside
                self._done.put(None)
            except BaseException as exc:  # handed to the appending thread, which rolls back
                self._done.put(exc)

    def start(self, first_seq: int) -> None:
        """Move the staged rows from ``first_seq`` on.  Returns once the helper has the GIL and is on
        its way into SQLite: else it would wait for this thread's next GIL switch (up to 5 ms)."""
        self._busy = True
        self._todo.put(first_seq)
        self._started.get()

    def wait(self) -> None:
        """Until the chunk in flight is in the journal; its error, if it failed."""
        if self._busy:
            self._busy = False
            exc = self._done.get()
            if exc is not None:
                raise exc

    def stop(self) -> None:
        """Let the chunk in flight finish (its error is the caller's to report), end the thread."""
        if self._busy:
            self._busy = False
            self._done.get()
        self._todo.put(None)


RESERVE_SUFFIX = ".mna-reserve"
RESERVE_BYTES = 1 << 20  # a few hundred rows of WAL frames: enough for the gap row a full disk needs


def release_reserve(path: str) -> bool:
    try:
        os.unlink(path + RESERVE_SUFFIX)
        return True
    except OSError:
        return False


def path_from_dsn(dsn: str) -> str:
    """``sqlite:///rel/path`` -> ``rel/path``, ``sqlite:////abs/path`` -> ``/abs/path`` (the scheme in
    any case, as ``open_store`` reads it); anything else is a path already."""
    if dsn[:len("sqlite://")].lower() == "sqlite://":
        rest = dsn[len("sqlite://"):]
        return rest[1:] if rest.startswith("/") else rest
    return dsn


class SQLiteStore:
    kind = "sqlite"

    def __init__(self, dsn: str, *, create: bool = True, timeout: float = 10.0) -> None:
        self.dsn = dsn
        self.path = path_from_dsn(dsn)
        if not create and not os.path.exists(self.path):
            raise FileNotFoundError(
                f"no journal at {self.path!r}: run a program under `mit-network-audit run --db {dsn}` "
                "(or `mit-network-audit demo`) first, or check the --db path")
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        self._lock = threading.RLock()
        self._reserve_checked = False
        self._staged_on: sqlite3.Connection | None = None  # the connection whose TEMP table exists
        self.read_only = False
        try:
            self.conn = self._connect(timeout, existing=not create)
        except sqlite3.OperationalError:
            # A reader (verify, log) on a full disk: WAL mode needs to create the -shm file and cannot.
            # With no WAL content pending (no -wal file, or an empty one) the main file is the whole
            # journal: read it as immutable, which needs no -shm.
            wal = self.path + "-wal"
            if create or (os.path.exists(wal) and os.path.getsize(wal) > 0):
                raise
            uri = "file:/" + urllib.parse.quote(os.path.abspath(self.path).lstrip("/")) + "?immutable=1"
            self.conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            self.read_only = True
            try:
                self._refuse_if_not_a_journal(self.conn)
            except BaseException:
                self.conn.close()
                raise
        self._migrate()

    def _connect(self, timeout: float, *, existing: bool = False) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None, check_same_thread=False)
        try:
            if existing:  # before the WAL pragma: a reader must not write to a file that is no journal
                self._refuse_if_not_a_journal(conn)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        except BaseException:
            conn.close()
            raise
        return conn

    def _refuse_if_not_a_journal(self, conn: sqlite3.Connection) -> None:
        """A reader (``create=False``) given an existing file that holds no journal -- an empty file,
        another application's SQLite database -- stops here, before anything is written into it."""
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'mna_meta'").fetchone():
            return
        raise FileNotFoundError(
            f"no journal in {self.path!r} (an empty file, or a SQLite database with no mna_meta table): "
            f"check the --db path; a journal is made by `mit-network-audit run --db {self.dsn}`")

    def _migrate(self) -> None:
        with self._lock:
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
            if version >= schema.SCHEMA_VERSION:
                return
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                if self.conn.execute("PRAGMA user_version").fetchone()[0] < 1:
                    for statement in _split(DDL):
                        self.conn.execute(statement)
                    self.conn.execute("INSERT OR IGNORE INTO mna_meta VALUES ('journal_id', ?)", (uuid.uuid4().hex,))
                    self.conn.execute("INSERT OR REPLACE INTO mna_meta VALUES ('schema_version', '1')")
                    self.conn.execute("PRAGMA user_version = 1")
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise

    # -- writing ---------------------------------------------------------------------------------
    def append(self, events: Sequence[NetEvent]) -> list[JournalRow]:
        try:
            return self._append(events)
        except UnicodeEncodeError:  # text that is not UTF-8 (a lone surrogate): escaped, then written
            return self._append(storable(events))

    def _append(self, events: Sequence[NetEvent]) -> list[JournalRow]:
        if not events:
            return []
        bounds = _chunk_bounds(len(events))
        prepared = prepare_rows(events[:bounds[1]], bool_as_int=True)  # outside the write lock
        staged = len(events) > DIRECT_ROWS
        with self._lock:
            conn = self.conn
            if staged and self._staged_on is not conn:
                conn.execute("PRAGMA temp_store=MEMORY")
                conn.execute(_STAGE_DDL)
                self._staged_on = conn
            mover = None
            if len(bounds) > 2:
                try:
                    mover = _Mover(conn)
                except RuntimeError:  # no thread to be had ("can't start new thread"): one chunk, in series
                    prepared += prepare_rows(events[bounds[1]:], bool_as_int=True)
                    bounds = [0, len(events)]
            conn.execute("BEGIN IMMEDIATE")
            try:
                head = conn.execute(
                    f"SELECT chain_seq, row_hash FROM {schema.TABLE} ORDER BY chain_seq DESC LIMIT 1").fetchone()
                seq, prev = (head[0] + 1, bytes.fromhex(head[1])) if head else (1, ZERO_HASH)
                if staged:
                    rows = _insert_staged(conn, events, bounds, prepared, seq, prev, mover)
                else:
                    rows = link_prepared(prepared, seq, prev)
                    conn.executemany(_INSERT, rows)
                conn.execute("COMMIT")
            except BaseException:
                if mover is not None:
                    mover.stop()  # before the rollback: the connection is the mover's until then
                # On SQLITE_FULL / SQLITE_IOERR SQLite may have rolled the transaction back itself.
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                raise
            if mover is not None:
                mover.stop()
        if not self._reserve_checked:
            self._reserve_checked = True
            self.ensure_reserve()
        return [JournalRow(r[0], e, r[-3], r[-2], r[-1]) for r, e in zip(rows, events, strict=True)]

    # -- the reserve: room for one last gap row on a full disk ------------------------------------
    @property
    def reserve_path(self) -> str | None:
        if self.path in ("", ":memory:") or self.path.startswith("file:"):
            return None
        return self.path + RESERVE_SUFFIX

    def ensure_reserve(self) -> bool:
        """Keep RESERVE_BYTES allocated next to the journal (after the first successful write of
        this connection).  Never raises; False when it cannot be made (no space, read-only)."""
        path = self.reserve_path
        if path is None:
            return False
        if os.path.exists(path):
            return True
        tmp = f"{path}.{os.getpid()}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError:
            return False
        try:
            try:
                os.posix_fallocate(fd, 0, RESERVE_BYTES)
            finally:
                os.close(fd)
            os.rename(tmp, path)
            return True
        except OSError:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            return False

    def release_reserve(self) -> bool:
        """Free the reserve (the disk is full and one last row must be written).  True if freed."""
        if self.reserve_path is None or not release_reserve(self.path):
            return False
        self._reserve_checked = False  # made again after the next successful write, space allowing
        return True

    # -- reading ---------------------------------------------------------------------------------
    def _query(self, sql: str, params: Iterable = ()) -> list:
        with self._lock:
            return self.conn.execute(sql, tuple(params)).fetchall()

    def head(self) -> JournalRow | None:
        rows = self._query(f"SELECT {schema.SELECT_LIST} FROM {schema.TABLE} ORDER BY chain_seq DESC LIMIT 1")
        return schema.decode_row(rows[0]) if rows else None

    def get(self, chain_seq: int) -> JournalRow | None:
        rows = self._query(f"SELECT {schema.SELECT_LIST} FROM {schema.TABLE} WHERE chain_seq = ?", (chain_seq,))
        return schema.decode_row(rows[0]) if rows else None

    def get_by_event_id(self, event_id: str) -> JournalRow | None:
        rows = self._query(f"SELECT {schema.SELECT_LIST} FROM {schema.TABLE} WHERE event_id = ?", (event_id,))
        return schema.decode_row(rows[0]) if rows else None

    def rows(self, flt: RowFilter | None = None, *, before_seq: int | None = None,
             limit: int = 100, after_seq: int | None = None) -> list[JournalRow]:
        where, params = schema.where_clause(flt, "?", before_seq=before_seq, after_seq=after_seq)
        sql = f"SELECT {schema.SELECT_LIST} FROM {schema.TABLE}{where} ORDER BY chain_seq DESC LIMIT ?"
        return [schema.decode_row(r) for r in self._query(sql, [*params, int(limit)])]

    def count(self, flt: RowFilter | None = None) -> int:
        where, params = schema.where_clause(flt, "?")
        return self._query(f"SELECT count(*) FROM {schema.TABLE}{where}", params)[0][0]

    def iter_range(self, start_seq: int = 1, end_seq: int | None = None,
                   batch: int = 10_000) -> Iterator[JournalRow]:
        for raw in self.iter_raw(start_seq, end_seq, batch):
            yield schema.decode_row(raw)

    def iter_raw(self, start_seq: int = 1, end_seq: int | None = None, batch: int = 10_000) -> Iterator[tuple]:
        """Stored tuples, oldest first (verify and the rollup decode only what they need)."""
        seq = start_seq
        end = end_seq if end_seq is not None else 2**62
        while True:
            chunk = self._query(
                f"SELECT {schema.SELECT_LIST} FROM {schema.TABLE} WHERE chain_seq >= ? AND chain_seq <= ? "
                "ORDER BY chain_seq LIMIT ?", (seq, end, batch))
            if not chunk:
                return
            yield from chunk
            seq = chunk[-1][0] + 1

    def min_seq(self) -> int | None:
        return self._query(f"SELECT min(chain_seq) FROM {schema.TABLE}")[0][0]

    def max_seq(self) -> int:
        return self._query(f"SELECT coalesce(max(chain_seq), 0) FROM {schema.TABLE}")[0][0]

    # -- metadata --------------------------------------------------------------------------------
    def meta_get(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM mna_meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def meta_set(self, key: str, value: str) -> None:
        with self._lock:
            self.conn.execute("INSERT OR REPLACE INTO mna_meta (key, value) VALUES (?, ?)", (key, value))

    @property
    def journal_id(self) -> str:
        return self.meta_get("journal_id") or ""

    def execute_raw(self, sql: str, params: Iterable = ()) -> list[tuple]:
        with self._lock:
            cur = self.conn.execute(sql.replace("%s", "?"), tuple(params))
            return cur.fetchall() if cur.description else []

    def close(self) -> None:
        with self._lock:
            self.conn.close()


def _split(script: str) -> list[str]:
    """Split DDL into statements (triggers contain ';' inside BEGIN ... END)."""
    out, buf = [], []
    for line in script.strip().splitlines():
        buf.append(line)
        joined = "\n".join(buf).strip()
        if joined.endswith(";") and (not joined.upper().startswith("CREATE TRIGGER") or joined.upper().endswith("END;")):
            out.append(joined)
            buf = []
    return out
