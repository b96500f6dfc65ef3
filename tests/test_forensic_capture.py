"""Forensic body capture through the real interceptor, real loopback servers and real clients.

* Off (the default): a canary body sent through every HTTP client never reaches the disk — not in
  the SQLite file, its -wal/-shm, nor any other file in the directory; not in a PostgreSQL dump.
* On and in scope: the body is stored encrypted (the canary is still nowhere in plaintext on disk),
  readable only through ``read_body``, which journals a ``forensic_read`` row first; out-of-scope
  calls are not stored; the size cap holds; a live switch-off stops capture at once.
* Reads fail closed: with the journal unwritable (SQLite trigger; PostgreSQL revoked privilege or
  trigger) a read is refused and no body is shown (API and CLI).
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import mit_network_audit as mna
from mit_network_audit.interceptor import capture
from mit_network_audit.interceptor.forensic_tap import BodyTap
from mit_network_audit.journal import forensic, open_store
from mit_network_audit.journal.sink import BatchingSink
from mit_network_audit.journal.verify import verify
from mit_network_audit.report.catalogue import load_catalogue
from mit_network_audit.report.trust import build_report
from mit_network_audit.runner import forensic_boot

CLI = [sys.executable, "-m", "mit_network_audit.cli"]


# -- loopback servers ------------------------------------------------------------------------------
class SinkHandler(BaseHTTPRequestHandler):
    """Reads the request body (chunked or not) and answers with it echoed back."""

    protocol_version = "HTTP/1.1"

    def _handle(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        payload = b"echo:" + body  # the canary also travels back: response bodies are never captured
        self.send_response(200)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = _handle

    def log_message(self, *args):
        pass


def _serve(host: str):
    server = ThreadingHTTPServer((host, 0), SinkHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://{host}:{server.server_address[1]}"


@pytest.fixture(scope="module")
def servers():
    inside, inside_url = _serve("127.0.0.1")  # the in-scope host
    outside, outside_url = _serve("127.0.0.2")  # another loopback host, out of scope
    yield inside_url, outside_url
    inside.shutdown()
    outside.shutdown()


# -- canaries and clients ---------------------------------------------------------------------------
class Canary:
    """A unique body: an ASCII token and 24 random raw bytes, searched for in every encoding."""

    def __init__(self, label: str = "") -> None:
        self.token = f"mna-canary-{label}-{uuid.uuid4().hex}".encode()
        self.raw = os.urandom(24)
        self.body = b"secret=" + self.token + b"&blob=" + self.raw

    def needles(self) -> list[bytes]:
        return [self.token, self.raw, self.raw.hex().encode(), base64.b64encode(self.token)[:40]]

    def found_in(self, data: bytes) -> bool:
        return any(n in data for n in self.needles())


def send_all(url: str, canary: Canary) -> int:
    """POST the canary through every HTTP client the interceptor wraps; returns how many calls."""
    import aiohttp
    import httpx
    import requests
    import urllib3

    body = canary.body
    requests.post(url + "/requests", data=body, timeout=10).raise_for_status()
    requests.post(url + "/requests-chunked", data=iter([body[:10], body[10:]]), timeout=10).raise_for_status()
    httpx.post(url + "/httpx", content=body, timeout=10).raise_for_status()
    with urllib.request.urlopen(urllib.request.Request(url + "/urllib", data=body), timeout=10) as r:
        r.read()
    host, port = url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("POST", "/http-client", body=body)
    conn.getresponse().read()
    conn.putrequest("PUT", "/http-client-send")  # the body streamed in pieces through send()
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders()
    conn.send(body[:7])
    conn.send(body[7:])
    conn.getresponse().read()
    conn.close()
    urllib3.PoolManager().request("POST", url + "/urllib3", body=body)

    async def with_aiohttp():
        async with aiohttp.ClientSession() as session, session.post(url + "/aiohttp", data=body) as resp:
            await resp.read()

    asyncio.run(with_aiohttp())
    return 8


def scan_dir(directory) -> dict[str, bytes]:
    """Every file under ``directory`` (the database, -wal, -shm, journals, temp files), by path."""
    out = {}
    for root, _dirs, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as fh:
                out[path] = fh.read()
    return out


def pg_dump(dsn: str) -> bytes:
    done = subprocess.run(["pg_dump", "--no-owner", dsn], capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


class PgWal:
    """The server's write-ahead log written since ``start()`` (every committed row passes through it
    before it reaches a table file), when this test may read the data directory; else None."""

    def __init__(self, dsn: str) -> None:
        import psycopg

        self.conn = psycopg.connect(dsn, autocommit=True)
        directory = self.conn.execute("SHOW data_directory").fetchone()[0]
        self.dir = os.path.join(directory, "pg_wal")
        self.first = self.conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()[0]

    @classmethod
    def start(cls, dsn: str):
        try:
            wal = cls(dsn)
            os.listdir(wal.dir)
            return wal
        except Exception:
            return None

    def read(self) -> bytes:
        self.conn.execute("SELECT pg_switch_wal()")  # nothing is left in WAL buffers only
        last = self.conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()[0]
        out = b""
        for name in sorted(os.listdir(self.dir)):
            if len(name) == 24 and self.first <= name <= last:
                with open(os.path.join(self.dir, name), "rb") as fh:
                    out += fh.read()
        return out


# -- fixtures ---------------------------------------------------------------------------------------
@pytest.fixture
def h2_pg(pg_dsn):
    return pg_dsn


@pytest.fixture(params=["sqlite", "postgres"])
def journal_dsn(request, tmp_path):
    if request.param == "sqlite":
        (tmp_path / "db").mkdir()
        return f"sqlite:///{tmp_path}/db/journal.db"
    return request.getfixturevalue("h2_pg")


@pytest.fixture
def key(monkeypatch, tmp_path):
    """A forensic key outside the database (env var); the key file path points into tmp, unused."""
    raw = os.urandom(32)
    monkeypatch.setenv(forensic.ENV_KEY, base64.b64encode(raw).decode())
    monkeypatch.setenv(forensic.ENV_KEY_FILE, str(tmp_path / "keys" / "forensic.key"))
    return raw


class Audited:
    """The interceptor installed with the real journal sink, as ``boot.start`` does (plus the tap)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.sink = BatchingSink(dsn)
        mna.install(sink=self.sink, salt=b"forensic-test-salt" * 2)
        forensic_boot.start(dsn)

    def flush(self) -> None:
        writer = forensic_boot._state["writer"]
        if writer is not None:
            assert writer.flush(10)
        assert self.sink.flush(10)

    def close(self) -> None:
        self.flush()
        forensic_boot.stop()
        mna.uninstall()
        self.sink.close()
        capture.runtime.body_tap = None


@pytest.fixture
def audited():
    made = []

    def start(dsn):
        made.append(Audited(dsn))
        return made[-1]

    yield start
    for a in made:
        a.close()


def settings(dsn: str, **values) -> None:
    store = open_store(dsn)
    for k, v in values.items():
        forensic.change_setting(store, "forensic." + k, v, actor="officer-test")
    store.close()


# -- capture off --------------------------------------------------------------------------------------
def test_off_by_default_no_tap_and_canary_never_on_disk_sqlite(tmp_path, servers, key, audited):
    inside, outside = servers
    directory = tmp_path / "db"
    directory.mkdir()
    dsn = f"sqlite:///{directory}/journal.db"
    # a key is configured and a scope exists: still, capture is off until forensic.enabled is set
    settings(dsn, hosts="*", addons="*")
    a = audited(dsn)
    assert capture.runtime.body_tap is None
    canary = Canary("off")
    n = send_all(inside, canary) + send_all(outside, canary)
    a.flush()
    store = open_store(dsn)
    outbound = [r.event for r in store.rows(limit=100) if r.event.direction == "outbound"]
    assert len(outbound) == n and all(e.req_bytes == len(canary.body) for e in outbound)
    assert not forensic.table_exists(store) and forensic.count_bodies(store) == 0
    files = scan_dir(directory)  # while the writers are still open: the -wal and -shm exist
    assert any(p.endswith("-wal") for p in files), sorted(files)
    hits = [p for p, data in files.items() if canary.found_in(data)]
    assert hits == []
    a.close()
    files = scan_dir(tmp_path)  # and after close, everything under the test's directory
    assert [p for p, data in files.items() if canary.found_in(data)] == []
    # the scan can fail: the same canary written into the directory is found
    (directory / "control.tmp").write_bytes(b"x" + canary.body)
    assert [p for p, data in scan_dir(directory).items() if canary.found_in(data)] == [
        str(directory / "control.tmp")
    ]


def test_off_canary_not_in_postgres_dump_nor_wal(h2_pg, servers, key, audited):
    inside, _ = servers
    wal = PgWal.start(h2_pg)
    a = audited(h2_pg)
    assert capture.runtime.body_tap is None
    canary = Canary("off-pg")
    n = send_all(inside, canary)
    a.flush()
    store = open_store(h2_pg)
    assert store.count() >= n
    dump = pg_dump(h2_pg)
    assert b"egress_log" in dump and not canary.found_in(dump)
    assert not forensic.table_exists(store)
    if wal is None:
        return  # the data directory is not readable here: the dump is the check
    assert canary.token not in wal.read()
    # the WAL scan can fail: the same token committed to a table is found
    store.execute_raw("CREATE TABLE control (t TEXT)")
    store.execute_raw("INSERT INTO control VALUES (%s)", (canary.token.decode(),))
    assert canary.token in wal.read()


# -- capture on ---------------------------------------------------------------------------------------
def test_on_in_scope_encrypted_read_journaled_out_of_scope_dropped(
    journal_dsn, servers, key, audited, tmp_path
):
    inside, outside = servers
    wal = PgWal.start(journal_dsn) if journal_dsn.startswith("postgresql") else None
    settings(journal_dsn, enabled="true", hosts="127.0.0.1", max_bytes="4096")
    a = audited(journal_dsn)
    assert isinstance(capture.runtime.body_tap, BodyTap)
    canary, stranger = Canary("in"), Canary("out")
    n = send_all(inside, canary)
    m = send_all(outside, stranger)
    a.flush()
    store = open_store(journal_dsn)
    rows = {r.event.event_id: r for r in store.rows(limit=200) if r.event.direction == "outbound"}
    assert len(rows) == n + m
    bodies = forensic.list_bodies(store, limit=100)
    assert len(bodies) == n
    assert {b.host for b in bodies} == {"127.0.0.1"} and all(b.event_id in rows for b in bodies)
    assert all(
        b.size == len(canary.body) and b.stored == len(canary.body) and not b.truncated for b in bodies
    )
    # encrypted at rest: neither canary in plaintext anywhere on disk / in the dump
    if journal_dsn.startswith("sqlite"):
        files = scan_dir(tmp_path / "db")
        assert [p for p, d in files.items() if canary.found_in(d) or stranger.found_in(d)] == []
    else:
        dump = pg_dump(journal_dsn)
        assert b"egress_body" in dump and not canary.found_in(dump) and not stranger.found_in(dump)
        if wal is not None:
            log = wal.read()
            assert not canary.found_in(log) and not stranger.found_in(log)
    # readable back only through the read path, which journals first (pg_dump above is itself an
    # audited subprocess call: its row is flushed first, so nothing else lands between)
    a.flush()
    before = store.max_seq()
    got = forensic.read_body(store, bodies[0].chain_seq, actor="olga", via="test")
    assert got.body == canary.body and got.read_seq == before + 1
    read_row = store.get(got.read_seq).event
    assert (read_row.direction, read_row.method) == ("internal", "forensic_read")
    assert json.loads(read_row.detail) == {
        "actor": "olga",
        "event_id": bodies[0].event_id,
        "chain_seq": bodies[0].chain_seq,
        "via": "test",
    }
    assert forensic.read_body(store, bodies[1].event_id, actor="olga").body == canary.body
    assert verify(store).ok
    # a read of an out-of-scope row finds nothing, and the attempt is journaled too
    out_seq = next(r.chain_seq for r in rows.values() if r.event.host == "127.0.0.2")
    with pytest.raises(forensic.NoSuchBody):
        forensic.read_body(store, out_seq, actor="olga")
    assert json.loads(store.head().event.detail)["chain_seq"] == out_seq


def test_size_cap_and_addon_scope(tmp_path, servers, key, audited):
    inside, _ = servers
    dsn = f"sqlite:///{tmp_path}/journal.db"
    settings(dsn, enabled="true", addons="acme_connector", max_bytes="1000")
    a = audited(dsn)
    import requests

    big = Canary("big")
    tail = os.urandom(16).hex().encode()  # beyond the cap: must never be stored
    body = big.body + b"x" * 100_000 + tail
    from acme_connector import client as acme  # a throwaway "third-party addon" (tests/acme_connector)

    requests.post(inside + "/tests", data=body, timeout=10)  # owner: this test module, not in scope
    acme.with_requests(inside + "/acme", data=body, timeout=10)  # a GET with a body, owned by the addon
    a.flush()
    store = open_store(dsn)
    (info,) = forensic.list_bodies(store)
    assert (info.addon, info.size, info.stored, info.truncated) == ("acme_connector", len(body), 1000, True)
    got = forensic.read_body(store, info.event_id, actor="olga")
    assert got.body == body[:1000] and tail not in got.body
    assert not any(tail in d for d in scan_dir(tmp_path).values())


def test_live_switch_off_and_on(tmp_path, servers, key, audited, monkeypatch):
    """What the live-settings hook delivers (``apply(settings)``) takes effect for the next call."""
    monkeypatch.setenv(forensic_boot.POLL_ENV, "0")  # only the explicit changes below
    inside, _ = servers
    dsn = f"sqlite:///{tmp_path}/journal.db"
    settings(dsn, enabled="true", hosts="*")
    a = audited(dsn)
    first = Canary("first")
    send_all(inside, first)
    a.flush()
    forensic_boot.apply({"forensic.enabled": False, "forensic.hosts": ["*"]})  # what a live change delivers
    assert capture.runtime.body_tap is None
    second = Canary("second")
    send_all(inside, second)
    forensic_boot.apply({"forensic.enabled": True, "forensic.hosts": ["127.0.0.9"]})
    third = Canary("third")
    send_all(inside, third)  # on again, but out of the new scope
    a.flush()
    store = open_store(dsn)
    stored = [forensic.read_body(store, b.event_id, actor="t").body for b in forensic.list_bodies(store)]
    assert len(stored) == 8 and set(stored) == {first.body}
    assert [p for p, d in scan_dir(tmp_path).items() if second.found_in(d) or third.found_in(d)] == []


def test_tap_pays_nothing_when_off_and_empty_scope_means_nothing():
    tap = BodyTap(lambda *a: pytest.fail("delivered"), addons=(), hosts=())
    call = capture.Call("requests", "outbound")
    call.host = "api.example"
    tap.feed(call, b"abc")
    assert call.tap_state.skip and not call.tap_state.data
    ev = mna.interceptor.event.internal_event("x")
    tap.finish(call, ev)
    assert tap.counters == {"delivered": 0, "out_of_scope": 1, "truncated": 0}


# -- the run wrapper (zero code: sitecustomize boot) ------------------------------------------------
def test_run_wrapper_captures_when_on_and_not_when_off(tmp_path, servers, key):
    inside, _ = servers
    script = tmp_path / "app.py"
    for state in ("off", "on"):
        canary = Canary(state)
        directory = tmp_path / state
        directory.mkdir()
        dsn = f"sqlite:///{directory}/journal.db"
        settings(dsn, enabled="true" if state == "on" else "false", hosts="127.0.0.1")
        script.write_text(
            "import sys, requests, urllib.request\n"
            "body = bytes.fromhex(sys.argv[2])\n"
            "requests.post(sys.argv[1] + '/r', data=body, timeout=10)\n"
            "urllib.request.urlopen(urllib.request.Request(sys.argv[1] + '/u', data=body)).read()\n"
        )
        done = subprocess.run(
            [*CLI, "run", "--db", dsn, "--", sys.executable, str(script), inside, canary.body.hex()],
            env=dict(os.environ),
            capture_output=True,
            timeout=90,
        )
        assert done.returncode == 0, done.stderr
        assert [p for p, d in scan_dir(directory).items() if canary.found_in(d)] == []
        store = open_store(dsn)
        bodies = forensic.list_bodies(store)
        if state == "off":
            assert bodies == []
            continue
        assert len(bodies) == 2
        # the CLI read path: journals, then prints the exact bytes
        out = tmp_path / "body.bin"
        done = subprocess.run(
            [
                *CLI,
                "forensic",
                "read",
                "--db",
                dsn,
                str(bodies[0].chain_seq),
                "--actor",
                "olga",
                "--out",
                str(out),
            ],
            capture_output=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert out.read_bytes() == canary.body and oct(out.stat().st_mode & 0o777) == "0o600"
        head = store.head().event
        assert head.method == "forensic_read" and json.loads(head.detail)["actor"] == "olga"


# -- fail closed ---------------------------------------------------------------------------------------
def _stored_body(dsn: str, key: bytes, body: bytes) -> tuple[str, int]:
    from mit_network_audit.interceptor.event import internal_event

    store = open_store(dsn)
    ev = internal_event("x")
    ev = type(ev)(
        **{
            **ev.as_dict(),
            "direction": "outbound",
            "channel": "requests",
            "method": "POST",
            "host": "127.0.0.1",
            "query_keys": (),
            "req_headers": (),
            "resp_headers": (),
            "via": (),
        }
    )
    (row,) = store.append([ev])
    forensic.ensure_table(store)
    public = forensic.public_key(key)
    forensic.put_sealed(store, [forensic.seal(public, ev.event_id, ev.logged_at_us, body, len(body), False)])
    store.close()
    return ev.event_id, row.chain_seq


def test_read_refused_when_sqlite_journal_unwritable(tmp_path, key):
    dsn = f"sqlite:///{tmp_path}/journal.db"
    canary = Canary("ro")
    event_id, seq = _stored_body(dsn, key, canary.body)
    store = open_store(dsn)
    assert forensic.read_body(store, seq, actor="olga").body == canary.body  # works while writable
    raw = sqlite3.connect(str(tmp_path / "journal.db"))
    raw.execute(
        "CREATE TRIGGER refuse_all BEFORE INSERT ON egress_log BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
    )
    raw.commit()
    count = store.count()
    with pytest.raises(forensic.ReadRefused, match="could not be journaled"):
        forensic.read_body(store, seq, actor="olga")
    assert store.count() == count
    done = subprocess.run(
        [*CLI, "forensic", "read", "--db", dsn, event_id, "--actor", "olga"], capture_output=True, timeout=60
    )
    assert done.returncode == 1 and b"refusing to show the body" in done.stderr
    assert not canary.found_in(done.stdout + done.stderr)
    # a read-only open of the file (another uid, a read-only mount): the append fails, so does the read
    raw.execute("DROP TRIGGER refuse_all")
    raw.commit()
    store.conn = sqlite3.connect(
        f"file:{tmp_path}/journal.db?mode=ro", uri=True, isolation_level=None, check_same_thread=False
    )
    with pytest.raises(forensic.ReadRefused, match="readonly"):
        forensic.read_body(store, seq, actor="olga")
    assert store.count() == count


def test_read_refused_when_postgres_journal_unwritable(h2_pg, key):
    import psycopg

    canary = Canary("pg-ro")
    event_id, seq = _stored_body(h2_pg, key, canary.body)
    role = f"mna_h2_reader_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect(h2_pg, autocommit=True)
    admin.execute(f"CREATE ROLE {role} LOGIN")
    try:
        admin.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
        reader_dsn = h2_pg.replace("postgres@", f"{role}@")
        reader = open_store(reader_dsn)
        with pytest.raises(forensic.ReadRefused, match="permission denied"):
            forensic.read_body(reader, seq, actor="olga")
        reader.close()
        # the owner's own connection, with a trigger refusing every insert into the journal
        store = open_store(h2_pg)
        assert forensic.read_body(store, event_id, actor="olga").body == canary.body
        admin.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'journal frozen'; END $$"
        )
        admin.execute(
            "CREATE TRIGGER refuse_insert BEFORE INSERT ON egress_log FOR EACH ROW EXECUTE FUNCTION refuse()"
        )
        with pytest.raises(forensic.ReadRefused, match="journal frozen"):
            forensic.read_body(store, event_id, actor="olga")
        done = subprocess.run(
            [*CLI, "forensic", "read", "--db", h2_pg, str(seq), "--actor", "olga"],
            capture_output=True,
            timeout=60,
        )
        assert done.returncode == 1 and not canary.found_in(done.stdout + done.stderr)
        store.close()
    finally:
        admin.execute(f"DROP OWNED BY {role}")
        admin.execute(f"DROP ROLE {role}")
        admin.close()


# -- crypto, key, retention, report --------------------------------------------------------------------
def test_ciphertext_is_bound_to_its_event_and_key(tmp_path, key):
    dsn = f"sqlite:///{tmp_path}/journal.db"
    a_id, a_seq = _stored_body(dsn, key, b"body of a")
    b_id, _ = _stored_body(dsn, key, b"body of b")
    store = open_store(dsn)
    # move b's ciphertext under a's event id: AES-GCM's associated data (the event id) refuses it
    sealed = store.execute_raw("SELECT epk, nonce, ciphertext FROM egress_body WHERE event_id = ?", (b_id,))[
        0
    ]
    store.execute_raw("DELETE FROM egress_body WHERE event_id = ?", (a_id,))
    store.execute_raw("INSERT INTO egress_body VALUES (?, 0, 9, 0, 'k', ?, ?, ?)", (a_id, *sealed))
    with pytest.raises(forensic.ForensicProblem, match="does not decrypt"):
        forensic.read_body(store, a_seq, actor="olga")
    with pytest.raises(forensic.ForensicProblem, match="does not decrypt"):
        forensic.read_body(store, b_id, actor="olga", key=os.urandom(32))
    with pytest.raises(sqlite3.IntegrityError, match="never updated"):
        store.execute_raw("UPDATE egress_body SET size = 1")


def test_key_file_outside_database_0600(tmp_path, monkeypatch):
    monkeypatch.delenv(forensic.ENV_KEY, raising=False)
    path = str(tmp_path / "cfg" / "forensic.key")
    monkeypatch.setenv(forensic.ENV_KEY_FILE, path)
    with pytest.raises(forensic.KeyProblem, match="forensic key init"):
        forensic.load_key()
    done = subprocess.run(
        [*CLI, "forensic", "key", "init"], capture_output=True, text=True, timeout=60, env={**os.environ}
    )
    assert done.returncode == 0, done.stderr
    assert oct(os.stat(path).st_mode & 0o777) == "0o600" and len(forensic.load_key()) == 32
    # the public half sits beside it: what an audited host needs, and all it needs
    assert forensic.load_public_key() == forensic.public_key(forensic.load_key())
    with open(path + ".pub") as fh:
        assert base64.b64decode(fh.read()) == forensic.public_key(forensic.load_key())
    again = subprocess.run([*CLI, "forensic", "key", "init"], capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "refusing to replace" in again.stderr
    os.chmod(path, 0o644)
    with pytest.raises(forensic.KeyProblem, match="readable by group/others"):
        forensic.load_key()


def test_retention_purge(tmp_path, key):
    dsn = f"sqlite:///{tmp_path}/journal.db"
    store = open_store(dsn)
    forensic.ensure_table(store)
    now = time.time_ns() // 1000 - 3_600_000_000  # an hour ago, so the CLI's 'now' sees the same ages
    day = 86_400_000_000
    forensic.put_sealed(
        store,
        [
            forensic.seal(forensic.public_key(key), f"{i:032x}", now - i * day, b"b", 1, False)
            for i in range(10)
        ],
    )
    assert forensic.purge(store, 3, now_us=now) == 6  # captured 4..9 days ago
    assert forensic.count_bodies(store) == 4
    settings(dsn, retention_days="1")
    done = subprocess.run(
        [*CLI, "forensic", "purge", "--db", dsn], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "purged 3 bodies captured more than 1 day(s) ago" in done.stdout


def test_trust_report_says_review_while_capture_on(tmp_path):
    dsn = f"sqlite:///{tmp_path}/journal.db"
    store = open_store(dsn)
    from mit_network_audit.interceptor.event import internal_event

    store.append([internal_event("heartbeat", detail="{}")])
    since = store.head().event.logged_at_us - 3600 * 10**6
    cat = load_catalogue()

    def rules():
        return {line.rule for line in build_report(store, since, catalogue=cat).lines}

    assert "forensic_capture_on" not in rules()
    forensic.change_setting(store, "forensic.enabled", "true", actor="olga")
    rep = build_report(store, since, catalogue=cat)
    assert rep.verdict == "review" and "forensic_capture_on" in {line.rule for line in rep.lines}
    assert forensic.scope_from_settings(forensic.current_settings(store)).enabled
    forensic.change_setting(store, "forensic.enabled", "false", actor="olga")
    assert "forensic_capture_on" not in rules()
    changes = [json.loads(r.event.detail) for r in store.rows(limit=10) if r.event.method == "settings"]
    assert [(c["key"], c["new"]) for c in changes][:2] == [
        ("forensic.enabled", "false"),
        ("forensic.enabled", "true"),
    ]


def test_on_without_a_key_stores_nothing_and_counts_it(tmp_path, servers, monkeypatch, audited):
    inside, _ = servers
    monkeypatch.delenv(forensic.ENV_KEY, raising=False)
    monkeypatch.setenv(forensic.ENV_KEY_FILE, str(tmp_path / "no-such.key"))
    dsn = f"sqlite:///{tmp_path}/journal.db"
    settings(dsn, enabled="true", hosts="*")
    before = capture.stats().get("errors.forensic_no_key", 0)
    a = audited(dsn)
    assert capture.runtime.body_tap is None  # never a plaintext fallback
    assert capture.stats()["errors.forensic_no_key"] == before + 1
    canary = Canary("nokey")
    send_all(inside, canary)
    a.flush()
    assert forensic.count_bodies(open_store(dsn)) == 0
    assert [p for p, d in scan_dir(tmp_path).items() if canary.found_in(d)] == []


def test_running_process_picks_up_a_database_change(tmp_path, servers, key, audited, monkeypatch):
    """A change written to the journal's settings by another process (an officer's CLI) reaches this
    running process without a restart (the settings poller; the live-settings hook when present)."""
    monkeypatch.setenv(forensic_boot.POLL_ENV, "0.2")
    inside, _ = servers
    dsn = f"sqlite:///{tmp_path}/journal.db"
    a = audited(dsn)
    assert capture.runtime.body_tap is None
    done = subprocess.run(
        [*CLI, "forensic", "status", "--db", dsn, "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(done.stdout)["enabled"] is False
    settings(dsn, hosts="127.0.0.1", enabled="true")

    def wait_for(predicate):
        deadline = time.monotonic() + 30  # generous: a correctness wait, not a speed assertion
        while not predicate() and time.monotonic() < deadline:
            time.sleep(0.05)
        return predicate()

    assert wait_for(lambda: isinstance(capture.runtime.body_tap, BodyTap))
    canary = Canary("live-on")
    send_all(inside, canary)
    a.flush()
    settings(dsn, enabled="false")
    assert wait_for(lambda: capture.runtime.body_tap is None)
    later = Canary("live-off")
    send_all(inside, later)
    a.flush()
    store = open_store(dsn)
    bodies = forensic.list_bodies(store)
    assert len(bodies) == 8 and {forensic.read_body(store, b.event_id, actor="t").body for b in bodies} == {
        canary.body
    }
    assert [p for p, d in scan_dir(tmp_path).items() if later.found_in(d)] == []


def test_cli_enable_disable_status_journaled(tmp_path, key):
    dsn = f"sqlite:///{tmp_path}/journal.db"
    open_store(dsn).close()

    def cli(*args):
        done = subprocess.run(
            [*CLI, "forensic", *args, "--db", dsn], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done

    empty = cli("enable", "--actor", "olga")
    assert "scope is empty, so nothing is captured" in empty.stderr
    cli(
        "enable",
        "--hosts",
        "api.partner.example,127.0.0.1",
        "--max-bytes",
        "2048",
        "--retention-days",
        "7",
        "--actor",
        "olga",
    )
    status = json.loads(cli("status", "--format", "json").stdout)
    assert status == {
        "enabled": True,
        "hosts": ["api.partner.example", "127.0.0.1"],
        "addons": [],
        "max_bytes": 2048,
        "retention_days": 7,
        "stored": 0,
    }
    cli("disable", "--actor", "olaf")
    assert json.loads(cli("status", "--format", "json").stdout)["enabled"] is False
    store = open_store(dsn)
    changes = [json.loads(r.event.detail) for r in store.rows(limit=20) if r.event.method == "settings"]
    assert (changes[0]["key"], changes[0]["actor"]) == ("forensic.enabled", "olaf")
    assert {(c["key"], c["actor"]) for c in changes[1:]} >= {
        ("forensic.hosts", "olga"),
        ("forensic.max_bytes", "olga"),
        ("forensic.retention_days", "olga"),
    }
    assert verify(store).ok


def test_audited_host_with_only_the_public_key_stores_but_cannot_read(
    tmp_path, servers, monkeypatch, audited
):
    """Sealed to the officer's public key: the application host (database credentials, public key)
    cannot decrypt what it captured; the officer's private key can."""
    inside, _ = servers
    private = os.urandom(32)
    monkeypatch.delenv(forensic.ENV_KEY, raising=False)
    monkeypatch.setenv(forensic.ENV_KEY_FILE, str(tmp_path / "no-private.key"))
    monkeypatch.setenv(forensic.ENV_PUBLIC_KEY, base64.b64encode(forensic.public_key(private)).decode())
    dsn = f"sqlite:///{tmp_path}/journal.db"
    settings(dsn, enabled="true", hosts="127.0.0.1")
    a = audited(dsn)
    canary = Canary("public-only")
    send_all(inside, canary)
    a.flush()
    store = open_store(dsn)
    bodies = forensic.list_bodies(store)
    assert len(bodies) == 8
    with pytest.raises(forensic.KeyProblem, match="no forensic key"):
        forensic.read_body(store, bodies[0].event_id, actor="app-host")
    with pytest.raises(forensic.ForensicProblem, match="does not decrypt"):
        forensic.read_body(store, bodies[0].event_id, actor="app-host", key=os.urandom(32))
    assert forensic.read_body(store, bodies[0].event_id, actor="olga", key=private).body == canary.body
    # one writer, one ephemeral key: every row names it, and the key id of the officer's key pair
    epks = store.execute_raw("SELECT DISTINCT epk, key_id FROM egress_body")
    assert len(epks) == 1 and epks[0][1] == forensic.key_id(forensic.public_key(private))


def test_forked_worker_captures_with_its_own_writer(tmp_path, servers, key, audited):
    """Prefork servers (Odoo, gunicorn): the tap installed in the parent keeps working in a forked
    worker, which starts its own writer thread and connection."""
    inside, _ = servers
    dsn = f"sqlite:///{tmp_path}/journal.db"
    settings(dsn, enabled="true", hosts="127.0.0.1")
    a = audited(dsn)
    canary = Canary("fork")
    import requests

    pid = os.fork()
    if pid == 0:  # the worker: one call, then what a normal exit runs (atexit), then leave
        code = 1
        try:
            requests.post(inside + "/worker", data=canary.body, timeout=10)
            forensic._flush_writers_at_exit()
            a.sink.flush(10)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    store = open_store(dsn)
    (info,) = forensic.list_bodies(store)
    assert info.chain_seq is not None and store.get(info.chain_seq).event.pid == pid
    assert forensic.read_body(store, info.event_id, actor="olga").body == canary.body


def test_cli_read_odd_refs_and_an_out_that_cannot_be_written(tmp_path, key):
    dsn = f"sqlite:///{tmp_path}/journal.db"
    _event_id, seq = _stored_body(dsn, key, b"the body")

    def read(*args):
        return subprocess.run([*CLI, "forensic", "read", "--db", dsn, "--actor", "olga", *args],
                              capture_output=True, text=True, timeout=60)

    def reads():
        return sum(r.event.method == "forensic_read" for r in open_store(dsn).iter_range())

    for ref in ("99999999999999999999999", "\u00b2"):  # past 64 bits; a superscript two (str.isdigit)
        done = read("--", ref)
        assert done.returncode == 1 and done.stderr.startswith("error: ") and "Traceback" not in done.stderr
    (tmp_path / "keep.txt").write_text("precious")
    for out in (tmp_path / "missing" / "f", tmp_path):  # FileNotFoundError, IsADirectoryError
        done = read(str(seq), "--out", str(out))
        assert done.returncode == 2 and "nothing was read" in done.stderr, done.stderr
    assert reads() == 0  # refused before decrypting: no read journaled
    done = read("999", "--out", str(tmp_path / "keep.txt"))
    assert done.returncode == 1 and (tmp_path / "keep.txt").read_text() == "precious"  # not truncated
    done = read("999", "--out", str(tmp_path / "new.txt"))
    assert done.returncode == 1 and not (tmp_path / "new.txt").exists()
    done = read(str(seq), "--out", str(tmp_path / "keep.txt"))
    assert done.returncode == 0 and (tmp_path / "keep.txt").read_bytes() == b"the body" and reads() == 1


def test_purge_with_a_window_reaching_before_1970(tmp_path, key):
    dsn = f"sqlite:///{tmp_path}/journal.db"
    _stored_body(dsn, key, b"the body")
    done = subprocess.run([*CLI, "forensic", "purge", "--db", dsn, "--older-than-days", "99999999999999"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "purged 0 bodies" in done.stdout, done.stderr
