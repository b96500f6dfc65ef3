"""The proof suite's machinery: loopback providers, real servers (gunicorn / uvicorn) under
``mit-network-audit run``, a load driver (wrk, else a small Python one), faults, and the
reconciliation of what the server really did against what the journal holds.

Everything here is real: real processes, real sockets on 127.0.0.1, the real PostgreSQL on
127.0.0.1:5432 (databases named ``mna_h3_*``, dropped afterwards) or SQLite files.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APPS = ROOT / "proof" / "apps"
SITE = ROOT / "proof" / "site"
BIN = Path(sys.executable).parent
CLI = str(BIN / "mit-network-audit")
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_PREFIX = "mna_h3_"


# -- loopback provider ------------------------------------------------------------------------------
class _ProviderHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _handle(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        srv = self.server
        with srv.lock:
            srv.per_worker[self.headers.get("X-Worker", "?")] += 1
            srv.total += 1
            if srv.keep_raw:
                srv.raw.append(self.requestline.encode() + b"\n" + bytes(self.headers) + body)
        payload = b'{"quote":42}'
        # one write for head and body: two small writes meet Nagle + delayed ACK (40 ms per call)
        self.wfile.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (len(payload), payload)
        )

    do_GET = do_POST = do_PUT = _handle

    def log_message(self, *args):
        pass


class Provider(ThreadingHTTPServer):
    """A loopback HTTP provider that counts the requests it served, per X-Worker (the caller's pid)."""

    daemon_threads = True
    request_queue_size = 2048

    def __init__(self, keep_raw: bool = False) -> None:
        super().__init__(("127.0.0.1", 0), _ProviderHandler)
        self.lock = threading.Lock()
        self.per_worker: Counter = Counter()
        self.total = 0
        self.keep_raw = keep_raw
        self.raw: list[bytes] = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- journals ---------------------------------------------------------------------------------------
def pg_available() -> bool:
    try:
        import psycopg

        psycopg.connect(PG_ADMIN, connect_timeout=3).close()
        return True
    except Exception:
        return False


@contextlib.contextmanager
def pg_database():
    import psycopg

    name = f"{PG_PREFIX}{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        for _ in range(20):
            try:
                with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as admin:
                    admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
                    admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                break
            except Exception:
                time.sleep(1)


@contextlib.contextmanager
def journal(backend: str, directory: str):
    if backend == "postgres":
        with pg_database() as dsn:
            yield dsn
    else:
        yield f"sqlite:///{directory}/journal.db"


def pg_admin_exec(sql: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=10) as admin:
        admin.execute(sql)


def pg_dbname(dsn: str) -> str:
    return dsn.rsplit("/", 1)[1]


def terminate_backends(dsn: str) -> None:
    """Drop every connection to OUR database only (the shared server is not disturbed)."""
    pg_admin_exec(
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{pg_dbname(dsn)}' "
        "AND pid <> pg_backend_pid()"
    )


def block_database(dsn: str, allow: bool) -> None:
    """An outage of OUR database only: refuse new connections and cut the open ones (or undo)."""
    pg_admin_exec(f"ALTER DATABASE {pg_dbname(dsn)} ALLOW_CONNECTIONS {'true' if allow else 'false'}")
    if not allow:
        terminate_backends(dsn)


def journal_rows(dsn: str) -> list[tuple]:
    from mit_network_audit.journal import open_store

    store = open_store(dsn)
    try:
        return store.execute_raw(
            "SELECT chain_seq, pid, direction, channel, method, port, detail, logged_at_us, addon "
            "FROM egress_log ORDER BY chain_seq"
        )
    finally:
        store.close()


def verify_cli(dsn: str) -> tuple[bool, str]:
    done = subprocess.run([CLI, "verify", "--db", dsn], capture_output=True, text=True, timeout=600)
    return done.returncode == 0, (done.stdout + done.stderr).strip()[-400:]


# -- servers ----------------------------------------------------------------------------------------
class Server:
    """gunicorn (WSGI, 4 prefork workers) or uvicorn (ASGI) on a free port, audited when ``dsn``."""

    def __init__(
        self,
        kind: str,
        provider: Provider,
        work: str,
        dsn: str | None = None,
        env: dict | None = None,
        workers: int = 4,
    ) -> None:
        self.kind, self.dsn, self.work = kind, dsn, work
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.count_dir = tempfile.mkdtemp(prefix="counts-", dir=work)
        self.log_path = os.path.join(work, f"server-{kind}-{self.port}.log")
        base = {
            **os.environ,
            "PROOF_PROVIDER": provider.url,
            "PROOF_COUNT_DIR": self.count_dir,
            "PYTHONPATH": str(SITE),
            "MNA_HEARTBEAT": "0",
            **(env or {}),
        }
        if kind == "wsgi":
            cmd = [
                str(BIN / "gunicorn"),
                "-w",
                str(workers),
                "-b",
                f"127.0.0.1:{self.port}",
                "--pythonpath",
                str(APPS),
                "--backlog",
                "2048",
                "--graceful-timeout",
                "30",
                "--timeout",
                "60",
                "--log-level",
                "warning",
                "wsgi_app:app",
            ]
        else:
            cmd = [
                str(BIN / "uvicorn"),
                "--app-dir",
                str(APPS),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--no-access-log",
                "--log-level",
                "warning",
                "--backlog",
                "2048",
                "asgi_app:app",
            ]
        if dsn:
            cmd = [CLI, "run", "--db", dsn, "--", *cmd]
        self.log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            cmd, env=base, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True, cwd=work
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60) -> None:
        import urllib.request

        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.tail()}")
            try:
                with urllib.request.urlopen(self.url + "/ready", timeout=5) as r:
                    r.read()
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"server not ready: {self.tail()}")

    def tail(self) -> str:
        with open(self.log_path, "rb") as fh:
            return fh.read()[-2000:].decode("utf-8", "replace")

    def pids(self) -> set[int]:
        """Every live process of the server's session (the run wrapper, master, workers)."""
        out = set()
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if os.getsid(int(entry)) == self.proc.pid:
                        with open(f"/proc/{entry}/stat") as fh:
                            if fh.read().rsplit(")", 1)[1].split()[0] != "Z":  # not an exited, unreaped one
                                out.add(int(entry))
                except OSError:
                    pass
        return out

    def workers(self) -> list[int]:
        """gunicorn worker pids (children of the master) / the uvicorn process."""
        children = defaultdict(list)
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
                children[ppid].append(pid)
            except OSError:
                pass
        leaves = [p for p in self.pids() if p not in children]
        return sorted(leaves)

    def stop(self, timeout: float = 90, sig: int | None = None, app_only: bool = False) -> None:
        """Graceful stop (a signal to the session): servers finish in-flight requests, flush, exit.

        gunicorn gets SIGTERM.  uvicorn gets SIGINT by default: after its graceful shutdown uvicorn
        re-raises the signal it caught, and a re-raised SIGTERM kills the process without running
        atexit; the auditor installs its own SIGTERM handler at boot (runner/boot.py) that flushes and
        writes the stop row before the process dies by the signal: fault.uvicorn_sigterm_stop checks it.
        ``app_only``: signal only the server's main process, as a supervisor does (``mit-network-audit
        run`` execs the server, so that is the PID it was started with; its exit status tells how the
        server ended: -signal when it died by a signal)."""
        if sig is None:
            sig = signal.SIGINT if self.kind == "asgi" else signal.SIGTERM
        with contextlib.suppress(ProcessLookupError):
            if app_only:
                os.kill(self.proc.pid, sig)
            else:
                os.killpg(self.proc.pid, sig)
        deadline = time.time() + timeout
        while time.time() < deadline and self.pids():
            self.proc.poll()  # reap the run wrapper as soon as it exits
            time.sleep(0.2)
        if self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.log.close()

    def served(self) -> Counter:
        out: Counter = Counter()
        for name in os.listdir(self.count_dir):
            if name.startswith("served-"):
                with open(os.path.join(self.count_dir, name), "rb") as fh:
                    out[int(name[7:])] += fh.read().count(b"\n")
        return out

    def stats(self) -> dict[int, dict]:
        out = {}
        for name in os.listdir(self.count_dir):
            if name.startswith("stats-"):
                with open(os.path.join(self.count_dir, name)) as fh:
                    out[int(name[6:-5])] = json.load(fh)
        return out


# -- load -------------------------------------------------------------------------------------------
def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s|m)", text)
    value, unit = float(m.group(1)), m.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def drive(url: str, seconds: float, connections: int = 16) -> dict:
    """Load ``url`` for ``seconds``: wrk when installed, else a small threaded Python driver."""
    if shutil.which("wrk"):
        done = subprocess.run(
            [
                "wrk",
                "-t2",
                f"-c{connections}",
                f"-d{int(seconds)}s",
                "--latency",
                "--timeout",
                "30s",
                url + "/work",
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 120,
        )
        out = done.stdout
        res = {"driver": "wrk", "requests": int(re.search(r"(\d+) requests in", out).group(1))}
        for pct in ("50", "99"):
            res[f"p{pct}_ms"] = _ms(re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M).group(1))
        m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        res["non_2xx"] = int(m.group(1)) if m else 0
        m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
        res["socket_errors"] = sum(int(x) for x in m.groups()) if m else 0
        res["rps"] = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        return res
    return _py_drive(url, seconds, connections)


def _py_drive(url: str, seconds: float, connections: int) -> dict:
    import http.client

    host, port = urllib.parse.urlsplit(url).netloc.split(":")
    lat: list[float] = []
    errors = Counter()
    stop_at = time.monotonic() + seconds

    def worker():
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        while time.monotonic() < stop_at:
            t0 = time.perf_counter()
            try:
                conn.request("GET", "/work")
                r = conn.getresponse()
                r.read()
                lat.append((time.perf_counter() - t0) * 1000)
                if r.status >= 400:
                    errors["non_2xx"] += 1
            except OSError:
                errors["socket"] += 1
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=30)

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lat.sort()
    n = len(lat)
    return {
        "driver": "python",
        "requests": n,
        "p50_ms": lat[n // 2] if n else 0.0,
        "p99_ms": lat[min(n - 1, int(n * 0.99))] if n else 0.0,
        "non_2xx": errors["non_2xx"],
        "socket_errors": errors["socket"],
        "rps": n / seconds,
    }


# -- one run, reconciled ----------------------------------------------------------------------------
def reconcile(server: Server, provider: Provider, dsn: str) -> dict:
    """Compare, per process, what the server served and what the provider received with the rows."""
    rows = journal_rows(dsn)
    served = server.served()
    stats = server.stats()
    per: dict[int, Counter] = defaultdict(Counter)
    gap_lost: Counter = Counter()
    gap_in_flight: Counter = Counter()  # of gap_lost: calls a killed child had begun (its parent's gap row)
    gap_reasons: set = set()
    unexpected = 0
    seqs = [r[0] for r in rows]
    backwards = sum(1 for a, b in zip(rows, rows[1:], strict=False) if b[7] < a[7])
    for _seq, pid, direction, channel, method, port, detail, _t, _addon in rows:
        if direction == "inbound":
            # a socket row is a TCP connection no request claimed (one accepted while a worker shut down,
            # a probe): a fact of its own, not a request served
            per[pid]["in" if channel != "socket" else "in_connections"] += 1
        elif direction == "outbound":
            if port == provider.port:
                per[pid]["out"] += 1
            else:
                unexpected += 1
        elif method == "gap":
            info = json.loads(detail or "{}")
            # rows of requests lost: the auditor's own internal rows (a stop row) are said apart
            gap_lost[pid] += int(info.get("lost", 0)) - int(info.get("lost_internal", 0))
            gap_in_flight[pid] += int(info.get("in_flight", 0))
            gap_reasons.update(info.get("reasons", []))
        else:
            per[pid][f"internal.{method}"] += 1
    pids = set(served) | {int(k) for k in provider.per_worker if k.isdigit()} | set(per)
    procs = {}
    exact = True
    accounted = True
    for pid in sorted(pids):
        raised = int(stats.get(pid, {}).get("raised_by_proof_sink", 0))
        want_in, want_out = served.get(pid, 0), provider.per_worker.get(str(pid), 0)
        got_in, got_out = per[pid]["in"], per[pid]["out"]
        procs[pid] = {
            "served": want_in,
            "provider": want_out,
            "in_rows": got_in,
            "out_rows": got_out,
            "bare_connections": per[pid]["in_connections"],
            "gap_lost": gap_lost[pid],
            "gap_in_flight": gap_in_flight[pid],
            "sink_raised": raised,
            "stop_rows": per[pid]["internal.stop"],
        }
        if (want_in, want_out) != (got_in, got_out):
            exact = False
        # A call in flight at a kill is declared lost; if the kill came before the peer saw it (the
        # request not yet counted as served, the provider not yet reached) it is declared, not missing.
        declared = got_in + got_out + gap_lost[pid] + raised
        if not declared - gap_in_flight[pid] <= want_in + want_out <= declared:
            accounted = False
    ok, verify_out = verify_cli(dsn)
    return {
        "served": sum(served.values()),
        "provider_calls": provider.total,
        "inbound_rows": sum(c["in"] for c in per.values()),
        "outbound_rows": sum(c["out"] for c in per.values()),
        "gap_rows": sum(1 for r in rows if r[2] == "internal" and r[4] == "gap"),
        "lost_in_gaps": sum(gap_lost.values()),
        "in_flight_in_gaps": sum(gap_in_flight.values()),
        "gap_reasons": sorted(gap_reasons),
        "sink_raised": sum(p["sink_raised"] for p in procs.values()),
        "unexpected_outbound_rows": unexpected,
        "exact": exact,
        "accounted": accounted,
        "seq_gapless": seqs == list(range(1, len(seqs) + 1)),
        "rows": len(rows),
        "clock_backwards_steps": backwards,
        "verify_ok": ok,
        "verify": verify_out,
        "processes": {str(k): v for k, v in procs.items()},
        "dropped_counted": sum(int(s.get("dropped", 0)) for s in stats.values()),
    }


def load_run(
    kind: str,
    backend: str | None,
    seconds: float,
    work: str,
    *,
    connections: int = 16,
    env: dict | None = None,
    fault=None,
    stop_signal: int | None = None,
    stop_app_only: bool = False,
) -> dict:
    """One load run: provider + server (audited into ``backend`` unless None) + driver (+ a fault
    in a thread while the load runs) + graceful stop + reconciliation."""
    provider = Provider()
    run_dir = tempfile.mkdtemp(prefix=f"{kind}-{backend or 'none'}-", dir=work)
    with contextlib.ExitStack() as stack:
        dsn = stack.enter_context(journal(backend, run_dir)) if backend else None
        server = Server(kind, provider, run_dir, dsn, env=env)
        fault_out: dict = {}
        thread = None
        try:
            if fault is not None:
                thread = threading.Thread(target=fault, args=(server, dsn, fault_out), daemon=True)
                thread.start()
            load = drive(server.url, seconds, connections)
            if thread is not None:
                thread.join(120)
        finally:
            server.stop(sig=stop_signal, app_only=stop_app_only)
            provider.stop()
        result = {
            "kind": kind,
            "backend": backend or "none",
            "exit_status": server.proc.returncode,
            "seconds": seconds,
            "load": load,
            "fault": fault_out,
            "server_log_tail": server.tail()[-600:],
        }
        if dsn:
            result.update(reconcile(server, provider, dsn))
        else:
            result["served"] = sum(server.served().values())
        return result


# -- faults (each runs in a thread while the load runs) ---------------------------------------------
def fault_terminate_backends(times: int = 3, every: float = 1.5):
    def fault(server, dsn, out):
        for _ in range(times):
            time.sleep(every)
            terminate_backends(dsn)
        out["terminated"] = times

    return fault


def fault_outage(seconds: float = 3.0, after: float = 1.5):
    def fault(server, dsn, out):
        time.sleep(after)
        block_database(dsn, allow=False)
        time.sleep(seconds)
        block_database(dsn, allow=True)
        out["outage_s"] = seconds

    return fault


def fault_pg_restart(after: float = 5.0):
    """Restart the whole PostgreSQL cluster (disturbs every user of it: full run only)."""

    def fault(server, dsn, out):
        time.sleep(after)
        t0 = time.monotonic()
        done = subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", "15", "main", "restart"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        out.update(
            restart_rc=done.returncode, restart_s=round(time.monotonic() - t0, 2), stderr=done.stderr[-300:]
        )

    return fault


def fault_kill_worker(after: float = 2.0, count: int = 1):
    def fault(server, dsn, out):
        killed = []
        for _ in range(count):
            time.sleep(after)
            workers = server.workers()
            if workers:
                os.kill(workers[0], signal.SIGKILL)
                killed.append(workers[0])
        out["killed"] = killed

    return fault


def fault_disk_full(mount_dir: str, after: float = 1.0, full_for: float | None = 3.0):
    """Fill the tmpfs under the SQLite journal, hold it full, then free the space (``full_for=None``:
    keep it full; the caller frees it after the server has stopped)."""

    def fault(server, dsn, out):
        time.sleep(after)
        filler = os.path.join(mount_dir, "filler")
        written = 0
        try:  # the journal may already have filled the disk itself: then open() fails, which is fine
            with open(filler, "wb") as fh:
                while True:
                    fh.write(b"\0" * 65536)
                    fh.flush()
                    written += 65536
        except OSError:
            pass
        st = os.statvfs(mount_dir)
        out["free_bytes_when_full"] = st.f_bavail * st.f_frsize
        out["filler_bytes"] = written
        if full_for is None:
            return
        time.sleep(full_for)
        with contextlib.suppress(OSError):
            os.unlink(filler)

    return fault


@contextlib.contextmanager
def tmpfs(size: str = "16m"):
    """A small tmpfs (needs root); yields its path or None when mounting is not allowed."""
    path = tempfile.mkdtemp(prefix="mna_h3_tmpfs_")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path], capture_output=True)
    if done.returncode != 0:
        os.rmdir(path)
        yield None
        return
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", path], capture_output=True)
        with contextlib.suppress(OSError):
            os.rmdir(path)


def disk_full_run(
    kind: str, seconds: float, work: str, size: str = "64m", free_after: float | None = 3.0
) -> dict | None:
    """The journal on a ``size`` tmpfs, filled 1 s into the load: freed ``free_after`` s later, or
    (None) kept full until the server has stopped -- its exit flush meets a full disk."""
    with tmpfs(size) as mount_dir:
        if mount_dir is None:
            return None
        provider = Provider()
        dsn = f"sqlite:///{mount_dir}/journal.db"
        server = Server(kind, provider, work, dsn, env={"PROOF_SINK_LIMIT": "300"})
        out: dict = {}
        fault = fault_disk_full(mount_dir, full_for=free_after)
        thread = threading.Thread(target=fault, args=(server, dsn, out), daemon=True)
        thread.start()
        try:
            load = drive(server.url, seconds)
            thread.join(60)
        finally:
            server.stop()
            provider.stop()
        if free_after is None:
            out["free_bytes_after_stop"] = os.statvfs(mount_dir).f_bavail * os.statvfs(mount_dir).f_frsize
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(mount_dir, "filler"))
        result = {
            "kind": kind,
            "backend": f"sqlite on a {size.upper().replace('M', ' MiB')} tmpfs, "
            + (f"full for {free_after:g} s" if free_after is not None else "full until the server exited"),
            "seconds": seconds,
            "load": load,
            "fault": out,
            "server_log_tail": server.tail()[-600:],
        }
        result.update(reconcile(server, provider, dsn))
        return result


# -- security ---------------------------------------------------------------------------------------
def make_canaries() -> dict:
    sys.path.insert(0, str(ROOT / "tests"))
    import mail_support

    tag = uuid.uuid4().hex
    return {
        "header": f"hdrSecret{tag[:20]}",
        "query": f"qrySecret{tag[4:24]}",
        "body": f"bodySecret{tag[8:28]}",
        "path": f"sk_live_{uuid.uuid4().hex}",
        "mail_user": mail_support.USER,
        "mail_password": mail_support.PASSWORD,
        "mail_rcpt": mail_support.RECIPIENT,
        "mail_box": mail_support.MAILBOX,
    }


def canary_needles(c: dict) -> dict[str, bytes]:
    """Every canary in the forms it could take on disk: raw, URL-quoted, base64 (incl. AUTH PLAIN)."""
    out = {}
    for name, value in c.items():
        if name == "mail_user":
            continue  # the mail user name is not a secret (a row may name the account's server)
        out[name] = value.encode()
        if urllib.parse.quote(value) != value:
            out[name + ".urlquoted"] = urllib.parse.quote(value).encode()
        out[name + ".b64"] = base64.b64encode(value.encode())
    plain = base64.b64encode(f"\0{c['mail_user']}\0{c['mail_password']}".encode())
    out["mail_auth_plain.b64"] = plain
    return out


def scan(blobs: dict[str, bytes], needles: dict[str, bytes]) -> list[str]:
    return [
        f"{needle} in {where}"
        for where, blob in blobs.items()
        for needle, value in needles.items()
        if value in blob
    ]


def read_tree(directory: str) -> dict[str, bytes]:
    out = {}
    for root, _dirs, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            with contextlib.suppress(OSError), open(path, "rb") as fh:
                out[path] = fh.read()
    return out


class PgWal:
    """The PostgreSQL WAL segments written since construction (every committed row passes here)."""

    def __init__(self, dsn: str) -> None:
        import psycopg

        self.conn = psycopg.connect(dsn, autocommit=True)
        self.dir = os.path.join(self.conn.execute("SHOW data_directory").fetchone()[0], "pg_wal")
        self.first = self.conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()[0]

    def read(self) -> bytes:
        self.conn.execute("SELECT pg_switch_wal()")
        last = self.conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()[0]
        self.conn.close()
        out = b""
        for name in sorted(os.listdir(self.dir)):
            if len(name) == 24 and self.first <= name <= last:
                with open(os.path.join(self.dir, name), "rb") as fh:
                    out += fh.read()
        return out


class SocketWatch:
    """Samples ``ss -tuanp`` from outside the audited processes and keeps every socket they own."""

    def __init__(self, server: Server, interval: float = 0.05) -> None:
        self.server, self.interval = server, interval
        self.seen: set[tuple[str, str, str, int]] = set()  # (proto, local, peer, pid)
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            pids = self.server.pids()
            out = subprocess.run(["ss", "-tuanpH"], capture_output=True, text=True).stdout
            self.samples += 1
            for line in out.splitlines():
                parts = line.split()
                if len(parts) < 7:
                    continue
                for pid in (int(p) for p in re.findall(r"pid=(\d+)", parts[-1])):
                    if pid in pids:
                        self.seen.add((parts[0], parts[4], parts[5], pid))
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def foreign(self, allowed_ports: set[int], local_port: int) -> list[tuple]:
        """Sockets that are neither the server's own listener/inbound connections nor calls to an
        allowed peer port (the test's providers, the journal's PostgreSQL)."""
        bad = []
        for proto, local, peer, pid in sorted(self.seen):
            lport = int(local.rsplit(":", 1)[1])
            peer_port = peer.rsplit(":", 1)[1]
            if lport == local_port or peer_port == "*":
                continue
            if int(peer_port) not in allowed_ports:
                bad.append((proto, local, peer, pid))
        return bad


def security_run(kind: str, backend: str, work: str, requests_n: int = 20) -> dict:
    import requests

    sys.path.insert(0, str(ROOT / "tests"))
    import mail_support

    canaries = make_canaries()
    needles = canary_needles(canaries)
    run_dir = tempfile.mkdtemp(prefix=f"sec-{kind}-{backend}-", dir=work)
    certs = mail_support.make_certs(run_dir)
    smtp = mail_support.start_smtp(certs)
    imap = mail_support.LineServer(mail_support.imap_handler, certs.server_context).start()
    smtp_port = mail_support.smtp_port(smtp)
    provider = Provider(keep_raw=True)
    result: dict = {"kind": kind, "backend": backend}
    with journal(backend, run_dir) as dsn:
        wal = PgWal(dsn) if backend == "postgres" else None
        env = {
            "PROOF_CANARIES": json.dumps(canaries),
            "PROOF_SMTP_PORT": str(smtp_port),
            "PROOF_IMAP_PORT": str(imap.port),
        }
        server = Server(kind, provider, run_dir, dsn, env=env)
        watch = SocketWatch(server)
        try:
            for i in range(requests_n):  # inbound: header value, query value, body, token-like path segment
                r = requests.post(
                    f"{server.url}/canary/{canaries['path']}",
                    params={"token": canaries["query"], "i": i},
                    headers={"Authorization": f"Bearer {canaries['header']}"},
                    data=canaries["body"].encode(),
                    timeout=60,
                )
                assert r.status_code == 200, r.text
            time.sleep(0.5)
        finally:
            watch.stop()
            server.stop()
            provider.stop()
            smtp.stop()
            imap.stop()
        allowed = {provider.port, smtp_port, imap.port, 5432}
        result["sockets_seen"] = len(watch.seen)
        result["ss_samples"] = watch.samples
        result["foreign_sockets"] = [list(map(str, s)) for s in watch.foreign(allowed, server.port)]
        # control: the canaries really went over the wire
        wire = b"\n".join(provider.raw) + b"".join(line for line in imap.received)
        mail = b"".join(
            m[2] if isinstance(m[2], bytes) else m[2].encode() for m in smtp.handler_record.messages
        )
        result["control_on_wire"] = sorted(n for n, v in needles.items() if v in wire + mail)
        blobs: dict[str, bytes] = {}
        if backend == "sqlite":
            blobs.update(read_tree(os.path.dirname(dsn[len("sqlite:///") :])))
            blobs = {k: v for k, v in blobs.items() if "/journal.db" in k}  # the database, -wal, -shm
        else:
            dump = subprocess.run(["pg_dump", "--no-owner", dsn], capture_output=True, timeout=300)
            blobs["pg_dump"] = dump.stdout
            blobs["pg_wal"] = wal.read() if wal else b""
        # the auditor's exports: the JSONL export and a signed proof bundle
        key_env = {
            **os.environ,
            "MNA_SIGNING_KEY": base64.b64encode(os.urandom(32)).decode(),
            "MNA_SIGNING_KEY_NAME": "proof",
            "MNA_WITNESS_FILE": os.path.join(run_dir, "witness.jsonl"),
        }
        bundle = os.path.join(run_dir, "bundle")
        exp = subprocess.run(
            [CLI, "export", "--db", dsn, "--out", bundle], capture_output=True, env=key_env, timeout=300
        )
        result["export_rc"] = exp.returncode
        blobs.update({f"export:{k}": v for k, v in read_tree(bundle).items()})
        blobs["export:cli-output"] = exp.stdout + exp.stderr
        logs = subprocess.run(
            [CLI, "log", "--db", dsn, "--limit", "100000"], capture_output=True, timeout=300
        )
        blobs["cli:log"] = logs.stdout + logs.stderr
        with open(server.log_path, "rb") as fh:
            blobs["server-log"] = fh.read()
        result["scanned_bytes"] = sum(len(v) for v in blobs.values())
        result["scanned"] = sorted(k.split(":")[0] if ":" in k else os.path.basename(k) for k in blobs)
        result["leaks"] = scan(blobs, needles)
        rows = journal_rows(dsn)
        result["rows"] = len(rows)
        result["channels"] = sorted({r[3] for r in rows if r[2] != "internal"})
        result["auditor_rows"] = sum(
            1 for r in rows if r[2] != "internal" and (r[8] or "").startswith("mit_network_audit")
        )
        result["verify_ok"] = verify_cli(dsn)[0]
        result["authz"] = authz_matrix_live(dsn, run_dir)
    return result


# -- the authorization matrix against a live `mit-network-audit serve` -----------------------------
ROUTES = {  # route -> least role (as tests/test_web_security.py)
    "/report": "viewer",
    "/summary": "viewer",
    "/api/report": "viewer",
    "/api/openapi.json": "viewer",
    "/log": "auditor",
    "/log?filter=vendor": "auditor",
    "/row/1": "auditor",
    "/verify": "auditor",
    "/api/rows": "auditor",
    "/api/rows/1": "auditor",
    "/export.jsonl?since=24h": "auditor",
}
RANK = {"anonymous": -1, "viewer": 0, "auditor": 1, "officer": 2}


def authz_matrix_live(dsn: str, work: str) -> dict:
    import requests

    password = "proof-" + uuid.uuid4().hex
    for role in ("viewer", "auditor", "officer"):
        subprocess.run(
            [CLI, "user", "add", f"p_{role}", "--role", role, "--db", dsn, "--password-stdin"],
            input=password + "\n",
            text=True,
            capture_output=True,
            check=True,
            timeout=60,
        )
    port = free_port()
    log = open(os.path.join(work, "serve.log"), "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [CLI, "serve", "--db", dsn, "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    checked, wrong = 0, []
    try:
        for _ in range(150):
            try:
                requests.get(url + "/login", timeout=2)
                break
            except requests.RequestException:
                time.sleep(0.2)
        for role in RANK:
            session = requests.Session()
            if role != "anonymous":
                form = session.get(url + "/login").text
                csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
                r = session.post(
                    url + "/login",
                    data={"username": f"p_{role}", "password": password, "csrf": csrf},
                    allow_redirects=False,
                )
                if r.status_code != 303:
                    wrong.append((role, "/login", r.status_code))
                    continue
            for route, least in ROUTES.items():
                status = session.get(url + route, allow_redirects=False).status_code
                checked += 1
                if RANK[role] >= RANK[least]:
                    good = (
                        status in (200, 404) if route.startswith(("/row/", "/api/rows/")) else status == 200
                    )
                else:
                    good = status in (303, 401) if role == "anonymous" else status == 403
                if not good:
                    wrong.append((role, route, status))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        log.close()
    return {"checked": checked, "wrong": wrong}
