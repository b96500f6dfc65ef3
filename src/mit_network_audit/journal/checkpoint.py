"""Signed checkpoints: the journal's commitments kept *outside* the database (DESIGN §4).

A checkpoint is a C2SP signed note (c2sp.org/tlog-checkpoint) with two extension lines::

    mit-network-audit/journal/<journal id>       origin
    1234                                          tree size = last chain_seq (vacuumed rows included)
    <base64 RFC 9162 root over every leaf_hash>
    head <base64 row_hash of chain_seq = size>    the hash chain's head
    time <unix seconds>                           when it was signed

    — <key name> <base64(key id || Ed25519 signature)>

Each one is appended to a witness file (JSON lines, fsynced, outside the database: the path is
configurable and by default sits beside the signing key) *and* stored in ``mna_checkpoints``, with
the RFC 9162 consistency proof from the checkpoint before it.  One signer per journal at a time
(``pg_try_advisory_lock`` / a file lock).  The signer refuses to sign a tree that does not extend
the previous checkpoint, so a rewritten journal can never be blessed after the fact.

``verify_trust(store)`` (called by ``mit-network-audit verify`` and the Trust Report through
``report.integrity.further_checks``) checks the
journal against the newest checkpoint (size, root, head) and every checkpoint against the one
before it, trusting the witness file over the database copies.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from . import merkle
from .keys import SigningKey, Verifier, default_key_path, load_signing_key, load_verifier
from .merkle import STRIDE, CompactRange, TreeView, verify_consistency

ORIGIN_PREFIX = "mit-network-audit/journal/"
SIGNER_LOCK_KEY = 0x6D6E615F636B70  # "mna_ckp"
ENV_WITNESS = "MNA_WITNESS_FILE"
READ_BATCH = 50_000


class TamperDetected(RuntimeError):
    """The journal no longer extends what was signed before."""


class EmptyJournal(ValueError):
    """Nothing to sign yet."""


class NoteError(ValueError):
    """A checkpoint note that is malformed or whose signature does not verify."""


# --- the note ---------------------------------------------------------------------------------------

def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64_canonical(text: str, what: str) -> bytes:
    """Canonical base64 only: with the spare bits of its last character set, one value has several
    spellings — a changed file whose signature and hashes still decode to the signed bytes."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except ValueError:
        raise NoteError(f"{what} is not base64: {text[:20]!r}") from None
    if _b64(raw) != text:
        raise NoteError(f"{what} is not canonical base64")
    return raw


def _unb64_hash(text: str) -> bytes:
    raw = unb64_canonical(text, "a hash line")
    if len(raw) != 32:
        raise NoteError("a hash line must be the canonical base64 of 32 bytes")
    return raw


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    head: bytes
    time_s: int
    note: str = ""
    prev_size: int | None = None
    consistency: tuple[bytes, ...] = field(default=())

    @property
    def body(self) -> str:
        return format_body(self.origin, self.size, self.root, self.head, self.time_s)

    def record(self, verifier: Verifier) -> dict:
        """The witness-file line."""
        return {"note": self.note, "prev_size": self.prev_size, "consistency": [p.hex() for p in self.consistency],
                "vkey": verifier.vkey}


def format_body(origin: str, size: int, root: bytes, head: bytes, time_s: int) -> str:
    return f"{origin}\n{size}\n{_b64(root)}\nhead {_b64(head)}\ntime {time_s}\n"


def sign_note(body: str, key: SigningKey) -> str:
    sig = key.sign(body.encode("utf-8"))
    return f"{body}\n— {key.name} {_b64(key.key_id + sig)}\n"


def open_note(note: str, verifier: Verifier) -> Checkpoint:
    """Parse a signed checkpoint and check its signature by ``verifier``; raises NoteError."""
    if any(ord(c) < 0x20 and c != "\n" for c in note):
        raise NoteError("control characters in the note")
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n"):
        raise NoteError("not a signed note (no blank line before the signatures)")
    body, sig_lines = note[: split + 1], note[split + 2:].splitlines()
    verified = False
    for line in sig_lines:
        if not line.startswith("— "):
            raise NoteError(f"malformed signature line {line[:40]!r}")
        parts = line[2:].split(" ")
        if len(parts) != 2:
            raise NoteError("malformed signature line")
        name, b64 = parts
        raw = unb64_canonical(b64, "signature")
        if name != verifier.name or raw[:4] != verifier.key_id:
            continue  # C2SP: ignore signatures from unknown keys
        if len(raw) != 68 or not verifier.verify(body.encode("utf-8"), raw[4:]):
            raise NoteError(f"the signature by {name} does not verify")
        verified = True
    if not verified:
        raise NoteError(f"not signed by the trusted key {verifier.name}+{verifier.key_id.hex()}")
    lines = body[:-1].split("\n")
    if len(lines) != 5 or not lines[3].startswith("head ") or not lines[4].startswith("time "):
        raise NoteError("a checkpoint has: origin, size, root, 'head ...', 'time ...'")
    origin, size_text, root_text = lines[:3]
    if not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")) or \
            not lines[4][5:].isdigit():
        raise NoteError("tree size and time must be decimal numbers")
    cp = Checkpoint(origin, int(size_text), _unb64_hash(root_text), _unb64_hash(lines[3][5:]),
                    int(lines[4][5:]), note)
    if cp.body != body:
        raise NoteError("non-canonical checkpoint body")
    return cp


# --- tables -----------------------------------------------------------------------------------------

def _pg(store) -> bool:
    return getattr(store, "kind", "") == "postgres"


def _ddl(pg: bool) -> list[str]:
    out = [
        """CREATE TABLE IF NOT EXISTS mna_checkpoints (tree_size BIGINT PRIMARY KEY, root_hash TEXT NOT NULL,
           head_hash TEXT NOT NULL, signed_at_us BIGINT NOT NULL, note TEXT NOT NULL, prev_size BIGINT,
           consistency TEXT NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS mna_merkle_state (id INTEGER PRIMARY KEY CHECK (id = 1), size BIGINT NOT NULL,
           peaks TEXT NOT NULL, head TEXT NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS mna_merkle_nodes (level INTEGER NOT NULL, idx BIGINT NOT NULL,
           hash TEXT NOT NULL, PRIMARY KEY (level, idx))""",
    ]
    for table in ("mna_checkpoints", "mna_merkle_nodes"):  # append-only, like the journal
        if pg:
            out += [
                """CREATE OR REPLACE FUNCTION mna_trust_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
                   BEGIN RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP; END $$""",
                f"CREATE OR REPLACE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION mna_trust_refuse()",
                f"CREATE OR REPLACE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION mna_trust_refuse()",
                f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {table}_append_only",
                f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {table}_no_truncate",
            ]
        else:
            for op in ("UPDATE", "DELETE"):
                out.append(f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table} "
                           f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {op} refused'); END")
    return out


def _has_checkpoint_tables(store) -> bool:
    if _pg(store):
        return bool(store.execute_raw("SELECT to_regclass('mna_checkpoints') IS NOT NULL")[0][0])
    return bool(store.execute_raw("SELECT count(*) FROM sqlite_master WHERE type = 'table' "
                                  "AND name = 'mna_checkpoints'")[0][0])


def ensure_tables(store) -> None:
    if getattr(store, "_mna_trust_tables", False):
        return
    if store.meta_get("trust_schema") != "1":
        with transaction(store):
            if _pg(store):
                store.execute_raw("SELECT pg_advisory_xact_lock(%s)", (SIGNER_LOCK_KEY + 1,))
            for statement in _ddl(_pg(store)):
                store.conn.execute(statement)  # no parameters: the plpgsql bodies contain '%'
        store.meta_set("trust_schema", "1")
    store._mna_trust_tables = True


@contextlib.contextmanager
def transaction(store):
    if _pg(store):
        with store._lock, store.conn.transaction():
            yield
    else:
        with store._lock:
            store.conn.execute("BEGIN IMMEDIATE")
            try:
                yield
                store.conn.execute("COMMIT")
            except BaseException:
                # SQLite may already have rolled back (SQLITE_FULL, SQLITE_IOERR): a second ROLLBACK
                # would raise "no transaction is active" and hide the real error.
                if store.conn.in_transaction:
                    store.conn.execute("ROLLBACK")
                raise


def _executemany(store, sql: str, rows: list[tuple]) -> None:
    if not rows:
        return
    if _pg(store):
        with store.conn.cursor() as cur:
            cur.executemany(sql, rows)
    else:
        store.conn.executemany(sql.replace("%s", "?"), rows)


@contextlib.contextmanager
def signer_lock(store) -> Iterator[bool]:
    """One elected signer per journal; yields False when another process holds the role."""
    if _pg(store):
        got = bool(store.execute_raw("SELECT pg_try_advisory_lock(%s)", (SIGNER_LOCK_KEY,))[0][0])
        try:
            yield got
        finally:
            if got:
                store.execute_raw("SELECT pg_advisory_unlock(%s)", (SIGNER_LOCK_KEY,))
        return
    import fcntl

    fd = os.open(store.path + ".signer.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            got = True
        except BlockingIOError:
            got = False
        yield got
    finally:
        os.close(fd)  # closing releases the lock


# --- reading the journal ----------------------------------------------------------------------------

def origin_of(store) -> str:
    return ORIGIN_PREFIX + (store.meta_get("journal_id") or "")


def max_seq(store) -> int:
    return int(store.execute_raw("SELECT coalesce(max(chain_seq), 0) FROM egress_log")[0][0])


def anchor_for(store, low: int | None = None) -> dict | None:
    """The retention anchor that explains the oldest stored row: the newest anchor whose cut is at or
    below it (an anchor whose vacuum was aborted, cut above the oldest row, is skipped)."""
    low = store.min_seq() if low is None else low
    if low is None:
        return None
    for seq, detail_text in store.execute_raw(
            "SELECT chain_seq, detail FROM egress_log WHERE direction = 'internal' AND method = 'anchor' "
            "ORDER BY chain_seq DESC"):
        try:
            detail = json.loads(detail_text)
            detail["anchor_seq"] = seq
            CompactRange.from_hex(int(detail["left_edge_size"]), detail["left_edge"])
            if int(detail["left_edge_size"]) != int(detail["cut_seq"]) - 1:
                raise ValueError("cut and left edge disagree")
        except (TypeError, ValueError, KeyError):
            return {"anchor_seq": seq, "malformed": True}
        if int(detail["cut_seq"]) <= low:
            return detail
    return None


def _anchor_base(store) -> tuple[CompactRange | None, dict | None]:
    """The vacuumed prefix's peaks, when rows were removed."""
    low = store.min_seq()
    if low is None or low <= 1:
        return None, None
    anchor = anchor_for(store, low)
    if anchor is None or anchor.get("malformed"):
        raise TamperDetected(f"rows below chain_seq {low} are gone and no valid retention anchor explains it")
    return CompactRange.from_hex(int(anchor["left_edge_size"]), anchor["left_edge"]), anchor


def iter_chain(store, after: int, through: int) -> Iterator[tuple[int, str, str, str]]:
    """(seq, leaf_hash, prev_hash, row_hash) for ``after < seq <= through``, in order."""
    seq = after
    while seq < through:
        rows = store.execute_raw(
            "SELECT chain_seq, leaf_hash, prev_hash, row_hash FROM egress_log WHERE chain_seq > %s "
            "AND chain_seq <= %s ORDER BY chain_seq LIMIT %s", (seq, through, READ_BATCH))
        if not rows:
            return
        yield from rows
        seq = rows[-1][0]


def tree_view(store, size: int, *, use_stored_nodes: bool = True) -> TreeView:
    """Proof source over the journal: leaf hashes, persisted nodes, and the newest anchor's peaks."""
    base, _ = _anchor_base(store)

    def fetch_leaves(lo: int, hi: int):
        rows = store.execute_raw("SELECT leaf_hash FROM egress_log WHERE chain_seq > %s AND chain_seq <= %s "
                                 "ORDER BY chain_seq", (lo, hi))
        return [bytes.fromhex(r[0]) for r in rows]

    def fetch_nodes(level: int, lo: int, hi: int):
        rows = store.execute_raw("SELECT idx, hash FROM mna_merkle_nodes WHERE level = %s AND idx >= %s "
                                 "AND idx < %s", (level, lo, hi))
        return {int(i): bytes.fromhex(h) for i, h in rows}

    def fetch_many(leaf_ranges: list, node_ranges: list):
        # One round trip for a whole proof: leaves as level -1 rows, stored nodes with their level.
        parts, params = [], []
        for lo, hi in leaf_ranges:
            parts.append("SELECT -1, chain_seq - 1, leaf_hash FROM egress_log WHERE chain_seq > %s AND chain_seq <= %s")
            params += [lo, hi]
        if use_stored_nodes:
            for level, lo, hi in node_ranges:
                parts.append("SELECT level, idx, hash FROM mna_merkle_nodes WHERE level = %s AND idx >= %s AND idx < %s")
                params += [level, lo, hi]
        leaves, nodes = {}, {}
        for level, idx, h in store.execute_raw(" UNION ALL ".join(parts), params) if parts else ():
            if level < 0:
                leaves[int(idx)] = bytes.fromhex(h)
            else:
                nodes[(int(level), int(idx))] = bytes.fromhex(h)
        return leaves, nodes

    return TreeView(size, fetch_leaves, fetch_nodes if use_stored_nodes else None, base=base, fetch_many=fetch_many)


def recompute_root(store, size: int) -> tuple[bytes, bytes | None]:
    """Root over leaf hashes 1..size straight from the journal (no persisted state), and the row_hash
    of row ``size``.  Raises TamperDetected when rows are missing."""
    base, _ = _anchor_base(store)
    cr = base.copy() if base is not None else CompactRange()
    head = None
    expected = cr.size + 1
    for seq, leaf, _prev, row in iter_chain(store, cr.size, size):
        if seq != expected:
            raise TamperDetected(f"chain_seq {expected} is missing")
        cr.append(bytes.fromhex(leaf))
        head = row
        expected += 1
    if cr.size != size:
        raise TamperDetected(f"the journal ends at chain_seq {cr.size}, a checkpoint covers {size}")
    return cr.root(), bytes.fromhex(head) if head else None


# --- the incremental tree state ---------------------------------------------------------------------

class TreeState:
    """The compact range of everything checkpointed so far, persisted in ``mna_merkle_state``."""

    def __init__(self, cr: CompactRange, head: bytes) -> None:
        self.cr = cr
        self.head = head

    @classmethod
    def load(cls, store) -> TreeState:
        rows = store.execute_raw("SELECT size, peaks, head FROM mna_merkle_state WHERE id = 1")
        if rows:
            return cls(CompactRange.from_hex(int(rows[0][0]), json.loads(rows[0][1])), bytes.fromhex(rows[0][2]))
        base, anchor = _anchor_base(store)
        if base is not None:
            return cls(base, bytes.fromhex(anchor["last_removed_row_hash"]))
        return cls(CompactRange(), bytes(32))

    def advance(self, store, through: int) -> None:
        """Append leaves up to ``through``, checking every link; persist state and stored nodes."""
        if through < self.cr.size:
            raise TamperDetected(f"the journal ends at chain_seq {through}, below the signed state ({self.cr.size})")
        if through == self.cr.size:
            return
        nodes: list[tuple[int, int, str]] = []
        self.cr.on_node = lambda lv, ix, h: nodes.append((lv, ix, h.hex())) if lv % STRIDE == 0 else None
        head, expected = self.head, self.cr.size + 1
        try:
            if self.cr.size:
                row = store.execute_raw("SELECT row_hash FROM egress_log WHERE chain_seq = %s", (self.cr.size,))
                if row and row[0][0] != head.hex():
                    raise TamperDetected(f"row {self.cr.size} changed since it was checkpointed")
            for seq, leaf, prev, row_hash in iter_chain(store, self.cr.size, through):
                if seq != expected:
                    raise TamperDetected(f"chain_seq {expected} is missing")
                if prev != head.hex():
                    raise TamperDetected(f"row {seq} does not link to row {seq - 1} as checkpointed")
                self.cr.append(bytes.fromhex(leaf))
                head, expected = bytes.fromhex(row_hash), seq + 1
            if self.cr.size != through:
                raise TamperDetected(f"rows {self.cr.size + 1}..{through} are missing")
        finally:
            self.cr.on_node = None
        self.head = head
        self.save(store, nodes)

    def save(self, store, nodes=()) -> None:
        with transaction(store):
            _executemany(store, "INSERT INTO mna_merkle_nodes (level, idx, hash) VALUES (%s, %s, %s) "
                         "ON CONFLICT DO NOTHING", list(nodes))
            store.execute_raw("DELETE FROM mna_merkle_state WHERE id = 1")
            store.execute_raw("INSERT INTO mna_merkle_state (id, size, peaks, head) VALUES (1, %s, %s, %s)",
                              (self.cr.size, json.dumps(self.cr.to_hex()), self.head.hex()))


# --- the witness file -------------------------------------------------------------------------------

def default_witness_path(store, key_path: str | None = None) -> str:
    """``$MNA_WITNESS_FILE``, else ``witness/<hash of the DSN>.jsonl`` beside the signing key.  Derived
    from the DSN, never from anything stored in the database (which an attacker could change)."""
    env = os.environ.get(ENV_WITNESS)
    if env:
        return env
    dsn = store.dsn
    if getattr(store, "kind", "") != "postgres":
        dsn = "sqlite:" + os.path.realpath(getattr(store, "path", dsn))
    label = hashlib.sha256(dsn.encode()).hexdigest()[:16]
    return os.path.join(os.path.dirname(os.path.abspath(key_path or default_key_path())), "witness",
                        f"{label}.jsonl")


def append_witness(path: str, record: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
    line = json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def read_witness(path: str) -> list[dict] | None:
    if not os.path.exists(path):
        return None
    out = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except ValueError:
                    out.append({"bad_line": n})
    return out


def _to_checkpoint(note: str, prev_size, consistency, verifier: Verifier) -> Checkpoint:
    cp = open_note(note, verifier)
    proof = tuple(bytes.fromhex(p) for p in (json.loads(consistency) if isinstance(consistency, str) else consistency))
    return Checkpoint(cp.origin, cp.size, cp.root, cp.head, cp.time_s, note,
                      None if prev_size is None else int(prev_size), proof)


def db_checkpoints(store, verifier: Verifier) -> tuple[list[Checkpoint], list[str]]:
    ensure_tables(store)
    good, bad = [], []
    for note, prev_size, consistency in store.execute_raw(
            "SELECT note, prev_size, consistency FROM mna_checkpoints ORDER BY tree_size"):
        try:
            good.append(_to_checkpoint(note, prev_size, consistency, verifier))
        except (NoteError, ValueError) as exc:
            bad.append(str(exc))
    return good, bad


def _claimed(note: str) -> tuple[str, int, int]:
    """(origin, size, time) as the note claims them, before any signature check (for ordering)."""
    lines = note.split("\n", 5)
    try:
        return lines[0], int(lines[1]), int(lines[4][5:])
    except (IndexError, ValueError):
        return "", -1, -1


def latest_checkpoint(store, verifier: Verifier, witness_path: str | None = None) -> Checkpoint | None:
    """Newest authentic checkpoint for this journal from the witness file and the database.  Candidates
    are ordered by what they claim and verified newest first, so this costs one or two signature
    checks, not one per checkpoint ever signed."""
    ensure_tables(store)
    origin = origin_of(store)
    candidates = [(note, prev, cons) for note, prev, cons in store.execute_raw(
        "SELECT note, prev_size, consistency FROM mna_checkpoints ORDER BY tree_size DESC LIMIT 4")]
    for rec in read_witness(witness_path or default_witness_path(store)) or []:
        if isinstance(rec.get("note"), str):
            candidates.append((rec["note"], rec.get("prev_size"), rec.get("consistency", [])))
    candidates.sort(key=lambda c: _claimed(c[0])[1:], reverse=True)
    for note, prev, cons in candidates:
        if _claimed(note)[0] != origin:
            continue
        with contextlib.suppress(NoteError, ValueError, KeyError, TypeError):
            return _to_checkpoint(note, prev, cons, verifier)
    return None


# --- signing ----------------------------------------------------------------------------------------

def make_checkpoint(store, key: SigningKey | None = None, *, witness_path: str | None = None,
                    force: bool = False) -> Checkpoint | None:
    """Sign a checkpoint of the journal as it is now.

    Returns the newest checkpoint (a fresh one, or the existing one when nothing was appended since),
    or None when another process is the elected signer.  Raises TamperDetected instead of signing a
    tree that does not extend the previous checkpoint."""
    key = key or load_signing_key(required=True)
    ensure_tables(store)
    with signer_lock(store) as elected:
        if not elected:
            return None
        return sign_locked(store, key, witness_path=witness_path, force=force)


def sign_locked(store, key: SigningKey, *, witness_path: str | None = None, force: bool = False) -> Checkpoint:
    """``make_checkpoint`` for a caller that already holds the signer lock (the vacuum)."""
    witness_path = witness_path or default_witness_path(store)
    prev = latest_checkpoint(store, key.verifier, witness_path)
    size = max_seq(store)
    if size == 0 and prev is None:
        raise EmptyJournal("the journal is empty: nothing to sign yet")
    if prev is not None and size < prev.size:
        raise TamperDetected(f"the journal ends at chain_seq {size}, but a checkpoint signed "
                             f"{_when(prev.time_s)} covers {prev.size}")
    if prev is not None and size == prev.size and not force:
        return prev
    state = TreeState.load(store)
    state.advance(store, size)
    root, head = state.cr.root(), state.head
    proof: list[bytes] = []
    if prev is not None:
        proof = tree_view(store, size).consistency_proof(prev.size)
        if not verify_consistency(prev.size, size, prev.root, root, proof):
            raise TamperDetected(f"the journal's first {prev.size} rows are not the ones signed at "
                                 f"size {prev.size}: refusing to sign")
        if prev.size == size and prev.head != head:
            raise TamperDetected(f"row {size} changed since the last checkpoint")
    body = format_body(origin_of(store), size, root, head, int(time.time()))
    note = sign_note(body, key)
    cp = _to_checkpoint(note, prev.size if prev else None, [p.hex() for p in proof], key.verifier)
    append_witness(witness_path, cp.record(key.verifier))  # outside first: the DB copy is the convenience
    with transaction(store):
        if not store.execute_raw("SELECT 1 FROM mna_checkpoints WHERE tree_size = %s", (size,)):
            store.execute_raw(
                "INSERT INTO mna_checkpoints (tree_size, root_hash, head_hash, signed_at_us, note, prev_size, "
                "consistency) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (size, root.hex(), head.hex(), cp.time_s * 1_000_000, note, cp.prev_size,
                 json.dumps([p.hex() for p in proof])))
    return cp


def maybe_checkpoint(store, *, every_rows: int = 10_000, every_seconds: float = 300.0,
                     key: SigningKey | None = None, witness_path: str | None = None) -> Checkpoint | None:
    """For the sink or a scheduler: sign when ``every_rows`` rows or ``every_seconds`` have passed
    since the newest checkpoint (and something was appended).  Never raises for lack of a key."""
    key = key or load_signing_key()
    if key is None:
        return None
    ensure_tables(store)
    last = store.execute_raw("SELECT tree_size, signed_at_us FROM mna_checkpoints ORDER BY tree_size DESC LIMIT 1")
    size = max_seq(store)
    last_size, last_us = (int(last[0][0]), int(last[0][1])) if last else (0, 0)
    if size <= last_size or size == 0:
        return None
    if size - last_size < every_rows and time.time() * 1e6 - last_us < every_seconds * 1e6:
        return None
    return make_checkpoint(store, key, witness_path=witness_path)


# --- verification -----------------------------------------------------------------------------------

def _check(name: str, ok: bool, message: str, level: str | None = None, **extra) -> dict:
    return {"name": name, "ok": ok, "level": level or ("ok" if ok else "alarm"), "message": message, **extra}


def _when(ts: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ts))


def verify_trust(store, *, verifier: Verifier | None = None, witness_path: str | None = None,
                 key_path: str | None = None, stale_after_s: int = 86_400) -> list[dict]:
    """Checks of the journal against its signed checkpoints.  Each item: name, ok, level
    (ok | review | alarm), message.  ``ok`` is False only for an alarm."""
    try:
        ensure_tables(store)
    except Exception:
        # verify only reads: on a full disk or a read-only file the (empty) tables cannot be created;
        # a journal that has never been checkpointed has nothing more to check here.
        if not _has_checkpoint_tables(store):
            return [_check("checkpoints", True, "no checkpoint tables in this journal (and none could be "
                           "created: disk full or read-only): a truncated tail or a full rewrite cannot be "
                           "detected", "review"), *_anchor_checks(store)]
        raise
    witness_path = witness_path or default_witness_path(store, key_path)
    records = read_witness(witness_path)
    pinned_from_witness = False
    if verifier is None:
        verifier = load_verifier(key_path=key_path)
    if verifier is None and records:
        # No key configured here: pin the key the witness file names (trust on first use), and say so.
        with contextlib.suppress(Exception):
            verifier = Verifier.parse(next(r["vkey"] for r in records if "vkey" in r))
            pinned_from_witness = True
    if verifier is None:
        return [_check("checkpoints", True, "no signing or public key configured: a truncated tail or a full "
                       "rewrite cannot be detected (run `mit-network-audit keys init`, then "
                       "`mit-network-audit checkpoint`)", "review"), *_anchor_checks(store)]
    checks: list[dict] = []
    origin = origin_of(store)
    db_cps, db_bad = db_checkpoints(store, verifier)
    witness_cps: list[Checkpoint] = []
    witness_bad: list[str] = []
    for n, rec in enumerate(records or [], 1):
        try:
            witness_cps.append(_to_checkpoint(rec["note"], rec.get("prev_size"), rec.get("consistency", []),
                                              verifier))
        except (NoteError, ValueError, KeyError, TypeError) as exc:
            witness_bad.append(f"witness line {n}: {exc}")
    bad = [f"database: {b}" for b in db_bad] + witness_bad
    foreign = sorted({cp.origin for cp in db_cps + witness_cps if cp.origin != origin})
    if foreign:
        bad.append(f"checkpoints of another journal id ({', '.join(foreign)}): the database was replaced or "
                   f"re-created (it now says {origin})")
    checks.append(_check("checkpoint signatures", not bad,
                         "; ".join(bad) if bad else
                         f"{len(witness_cps)} witnessed and {len(db_cps)} stored checkpoints signed by "
                         f"{verifier.name}+{verifier.key_id.hex()}"
                         + (" (key pinned from the witness file)" if pinned_from_witness else "")))
    witness_cps = [cp for cp in witness_cps if cp.origin == origin]
    db_cps = [cp for cp in db_cps if cp.origin == origin]

    # -- the sequence: witness order never goes back; same size, same tree; each extends its predecessor
    problems = []
    for a, b in zip(witness_cps, witness_cps[1:], strict=False):
        if b.size < a.size or b.time_s < a.time_s:
            problems.append(f"the witness file replays an older checkpoint (size {b.size} signed "
                            f"{_when(b.time_s)} after size {a.size} signed {_when(a.time_s)})")
    by_size: dict[int, Checkpoint] = {}
    for cp in witness_cps + db_cps:
        other = by_size.setdefault(cp.size, cp)
        if (other.root, other.head) != (cp.root, cp.head):
            problems.append(f"two different trees were signed at size {cp.size} (fork)")
    ordered = [by_size[s] for s in sorted(by_size)]
    for a, b in zip(ordered, ordered[1:], strict=False):
        if b.prev_size == a.size:
            proof = list(b.consistency)
        else:
            try:
                proof = tree_view(store, b.size).consistency_proof(a.size)
            except (merkle.ProofUnavailable, TamperDetected, ValueError):
                problems.append(f"checkpoint at size {b.size} does not name size {a.size} as its predecessor and "
                                "the rows to prove it are gone")
                continue
        if not verify_consistency(a.size, b.size, a.root, b.root, proof):
            problems.append(f"the tree signed at size {b.size} does not extend the one signed at size {a.size}: "
                            "history was rewritten in between")
    checks.append(_check("checkpoint consistency", not problems,
                         "; ".join(problems) if problems else
                         f"{len(ordered)} checkpoints, each an extension of the one before (RFC 9162 proofs)"))

    # -- the database copies vs the witness
    db_sizes = {cp.size for cp in db_cps}
    if records is None:
        if db_cps:
            checks.append(_check("witness", True, f"no witness file at {witness_path}: only the database copies "
                                 "were checked, which a database owner could roll back", "review"))
    else:
        missing = [cp for cp in witness_cps if cp.size not in db_sizes]
        w_sizes = {cp.size for cp in witness_cps}
        newest_w = max(w_sizes, default=0)
        holes = [s for s in db_sizes if s not in w_sizes and s < newest_w]
        behind = [s for s in db_sizes if s not in w_sizes and s > newest_w]
        if missing:
            checks.append(_check("checkpoints in database", False, "checkpoint(s) at size "
                                 + ", ".join(str(cp.size) for cp in missing)
                                 + " are in the witness file but were deleted from the database"))
        elif holes:
            checks.append(_check("witness", True, f"the witness file {witness_path} lacks checkpoint(s) at size "
                                 f"{sorted(holes)} that the database holds: a new witness file, or an edited one",
                                 "review"))
        elif behind:
            checks.append(_check("witness", True, f"the witness file {witness_path} lacks the newest "
                                 f"checkpoint(s) at size {behind}: copy them or check the path", "review"))
        else:
            checks.append(_check("checkpoints in database", True,
                                 f"all {len(witness_cps)} witnessed checkpoints present in the database"))

    # -- the journal vs the newest checkpoint
    newest = ordered[-1] if ordered else None
    size_now = max_seq(store)
    if newest is None:
        checks.append(_check("journal vs checkpoint", True, "no checkpoint yet: run `mit-network-audit "
                             "checkpoint` (a truncated tail or full rewrite is undetectable until then)", "review"))
    else:
        when = _when(newest.time_s)
        if size_now < newest.size:
            checks.append(_check("journal vs checkpoint", False,
                                 f"tail truncated: the checkpoint signed {when} covers {newest.size:,} rows, the journal "
                                 f"ends at chain_seq {size_now:,}"))
        else:
            try:
                root, head = recompute_root(store, newest.size)
            except TamperDetected as exc:
                checks.append(_check("journal vs checkpoint", False, str(exc)))
            else:
                if root != newest.root or head != newest.head:
                    what = "Merkle root" if root != newest.root else "chain head"
                    checks.append(_check("journal vs checkpoint", False,
                                         f"rewritten: the {what} of rows 1..{newest.size:,} differs from the one "
                                         f"signed {when}"))
                else:
                    checks.append(_check("journal vs checkpoint", True,
                                         f"rows 1..{newest.size:,} match the checkpoint signed {when}"
                                         f" ({size_now - newest.size:,} newer rows not yet checkpointed)"))
        age = time.time() - newest.time_s
        if size_now > newest.size and age > stale_after_s:
            checks.append(_check("checkpoint freshness", True, f"newest checkpoint is {age / 3600:.0f} h old "
                                 f"and {size_now - newest.size:,} rows are newer", "review"))

    return checks + _anchor_checks(store)


def _anchor_checks(store) -> list[dict]:
    """The oldest stored row is seq 1, or the newest retention anchor explains the rows below it.
    Needs no key: rows deleted from the start of the journal are caught without checkpoints."""
    low = store.min_seq()
    if low is None or low <= 1:
        return []
    anchor = anchor_for(store, low)
    first = store.execute_raw("SELECT prev_hash FROM egress_log WHERE chain_seq = %s", (low,))
    if anchor is None or anchor.get("malformed"):
        return [_check("retention anchor", False,
                       f"rows below chain_seq {low} are gone and no valid retention anchor explains it")]
    if int(anchor["cut_seq"]) != low or anchor["last_removed_row_hash"] != first[0][0]:
        return [_check("retention anchor", False,
                       f"the oldest row ({low}) does not continue the newest anchor (cut at "
                       f"{anchor['cut_seq']}): rows were removed outside the vacuum")]
    return [_check("retention anchor", True, f"rows 1..{low - 1:,} removed by the retention vacuum "
                   f"(anchor at chain_seq {anchor['anchor_seq']})")]
