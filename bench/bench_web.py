"""Dashboard server time on a large journal (SQLite and PostgreSQL).

    # build (resumable: re-running continues where it stopped), then measure
    .venv/bin/python bench/bench_web.py build   --db sqlite:////work/bench_data/web10m.db --rows 10000000
    .venv/bin/python bench/bench_web.py measure --db sqlite:////work/bench_data/web10m.db [--repeat 40]

The journal is written through the store's own bulk path (``Store.append`` in batches: real
chaining, real hashes, real indexes), spread over the last 30 days with a realistic mix: outbound
calls to ~40 destinations of every class from ~15 modules, inbound requests, errors, a few
vendor-bound licence calls, heartbeats.  ``measure`` drives the real ASGI app in-process
(Starlette's TestClient: routing, auth, queries, template rendering — no socket), logged in as an
officer, and reports p50/p95/max per page in milliseconds.  Targets (issue 7): Trust Report
<= 150 ms, an Audit Log page with any filter <= 200 ms, a forensic record <= 50 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
import zlib

from mit_network_audit.interceptor.event import NetEvent
from mit_network_audit.journal import open_store

DAY_US = 86_400_000_000
SPAN_US = 30 * DAY_US
BATCH = 20_000

# (host, dest_class, component, vendor_bound, weight)
DESTINATIONS = [
    ("licence.mit-vendor.example", "vendor", "mit-licence", True, 12),
    ("updates.mit-vendor.example", "vendor", "mit-updates", True, 3),
    ("api.openai.com", "provider", "openai", False, 60),
    ("api.anthropic.com", "provider", "anthropic", False, 25),
    ("api.mistral.ai", "provider", "mistral", False, 8),
    ("smtp.gmail.com", "provider", "google-mail", False, 40),
    ("smtp.sendgrid.net", "provider", "smtp-relays", False, 30),
    ("graph.microsoft.com", "provider", "microsoft-365-mail", False, 15),
    ("api.stripe.com", "provider", "stripe", False, 30),
    ("erp.internal.example", "own", None, False, 50),
    ("files.internal.example", "own", None, False, 20),
    ("127.0.0.1", "local", None, False, 60),
    ("localhost", "local", None, False, 20),
    *[
        (
            f"partner{i}.example.net",
            "unknown" if i % 4 == 0 else "provider",
            None if i % 4 == 0 else "partners",
            False,
            3,
        )
        for i in range(26)
    ],
]
ADDONS = [
    "sale_ai_assistant",
    "crm_mail_sync",
    "account_stripe",
    "stock_partner_edi",
    "website_shop",
    "hr_payroll_export",
    "mit_licence",
    "project_sync",
    "mail",
    "base",
    "web",
    "helpdesk_llm",
    "purchase_edi",
    "l10n_reports",
    "documents_store",
]
INBOUND_PATHS = [
    "/web",
    "/web/dataset/call_kw",
    "/shop",
    "/shop/cart",
    "/longpolling/poll",
    "/api/v1/orders",
    "/web/image",
    "/my/orders",
    "/web/login",
]
CHANNELS = ["requests", "urllib3", "http.client", "httpx"]


def _events(start_index: int, count: int, t0: int, per_row_us: float, rng: random.Random) -> list[NetEvent]:
    hosts = list(DESTINATIONS)
    weights = [d[4] for d in DESTINATIONS]
    out = []
    for i in range(start_index, start_index + count):
        ts = t0 + int(i * per_row_us)
        r = rng.random()
        error = rng.random() < 0.02
        eid = rng.getrandbits(128).to_bytes(16, "big").hex()
        if r < 0.05:  # the auditor's own heartbeats/starts
            out.append(
                NetEvent(
                    event_id=eid,
                    logged_at_us=ts,
                    started_at_us=ts,
                    duration_us=0,
                    direction="internal",
                    channel="audit",
                    method="heartbeat",
                    pid=1000 + i % 8,
                    hostname=f"web{i % 4}",
                    dest_class="local",
                    addon="mit_network_audit",
                    detail='{"disabled":[]}',
                )
            )
            continue
        if r < 0.32:  # inbound requests to the audited server
            path = rng.choice(INBOUND_PATHS)
            out.append(
                NetEvent(
                    event_id=eid,
                    logged_at_us=ts,
                    started_at_us=ts - 3000,
                    duration_us=rng.randint(500, 90_000),
                    direction="inbound",
                    channel="wsgi",
                    protocol="http",
                    method=rng.choice(("GET", "POST")),
                    host="erp.example.com",
                    port=443,
                    path=path,
                    src_ip=f"10.0.{i % 50}.{i % 200}",
                    src_port=40000 + i % 20000,
                    status=500 if error else 200,
                    outcome="error" if error else "ok",
                    req_bytes=rng.randint(0, 4000),
                    resp_bytes=rng.randint(200, 90_000),
                    req_headers=("content-type: text/html",),
                    addon="web" if path.startswith("/web") else "website_shop",
                    pid=1000 + i % 8,
                    hostname=f"web{i % 4}",
                    dest_class="own",
                )
            )
            continue
        host, dest_class, component, vendor, _ = rng.choices(hosts, weights)[0]
        addon = "mit_licence" if vendor else ADDONS[(zlib.crc32(host.encode()) + i % 3) % len(ADDONS)]
        # A module talks to a destination through one library, with one or two verbs: that is what
        # keeps a real rollup to a few hundred groups an hour.
        key = zlib.crc32(f"{host}|{addon}".encode())
        channel = "smtp" if host.startswith("smtp") else CHANNELS[key % 4]
        method = (
            "EHLO,MAIL,RCPT,DATA,QUIT"
            if channel == "smtp"
            else "POST"
            if vendor
            else ("GET", "POST")[rng.random() < 0.6]
        )
        out.append(
            NetEvent(
                event_id=eid,
                logged_at_us=ts,
                started_at_us=ts - 20_000,
                duration_us=rng.randint(2_000, 900_000),
                direction="outbound",
                channel=channel,
                protocol="smtp" if channel == "smtp" else "https",
                method=method,
                host=host,
                port=587 if channel == "smtp" else 443,
                path=None
                if channel == "smtp"
                else f"/v1/{rng.choice(('items', 'chat/completions', 'check', 'sync'))}",
                query_keys=("page",) if i % 7 == 0 else (),
                dest_ip=f"203.0.113.{zlib.crc32(host.encode()) % 250}",
                dest_port=443,
                src_ip="10.0.0.5",
                src_port=50000 + i % 10000,
                status=None if error else 200,
                outcome="error" if error else "ok",
                error="requests.exceptions.ConnectTimeout" if error else None,
                req_bytes=rng.randint(100, 1500) if vendor else rng.randint(100, 60_000),
                resp_bytes=rng.randint(100, 200_000),
                req_headers=("authorization: ***", "content-type: application/json"),
                resp_headers=("content-type: application/json",),
                fingerprint=f"{rng.getrandbits(256):064x}",
                addon=addon,
                addon_author="Example SA",
                call_site=f"addons/{addon}/models/sync.py:{40 + i % 30} in run",
                via=("requests", "urllib3") if channel == "requests" else (),
                pid=1000 + i % 8,
                hostname=f"web{i % 4}",
                vendor_bound=vendor,
                component=component,
                dest_class=dest_class,
            )
        )
    return out


def use_bench_key(key_dir: str) -> None:
    """A checkpoint key and witness file for the benchmark journal (kept in ``key_dir``)."""
    import base64

    os.makedirs(key_dir, exist_ok=True)
    seed_path = os.path.join(key_dir, "signing.seed")
    if not os.path.exists(seed_path):
        with open(seed_path, "w") as fh:
            fh.write(base64.b64encode(os.urandom(32)).decode())
    with open(seed_path) as fh:
        os.environ["MNA_SIGNING_KEY"] = fh.read().strip()
    os.environ["MNA_SIGNING_KEY_NAME"] = "bench-web"
    label = "".join(c if c.isalnum() else "_" for c in os.environ.get("MNA_BENCH_DSN", ""))[-60:]
    os.environ["MNA_WITNESS_FILE"] = os.path.join(key_dir, f"witness-{label}.jsonl")


def checkpoint_journal(dsn: str, key_dir: str) -> None:
    from mit_network_audit.journal import checkpoint

    os.environ["MNA_BENCH_DSN"] = dsn
    use_bench_key(key_dir)
    store = open_store(dsn)
    t = time.perf_counter()
    cp = checkpoint.make_checkpoint(store)
    print(f"checkpoint of {cp.size:,} rows signed in {time.perf_counter() - t:.1f}s")
    store.close()


def build(dsn: str, rows: int, *, defer_indexes: bool = False) -> None:
    store = open_store(dsn)
    if getattr(store, "kind", "") == "sqlite":
        store.conn.execute("PRAGMA cache_size=-1000000")  # 1 GB page cache: random-key indexes at 10M rows
        if defer_indexes:
            # Classic bulk load: drop the secondary indexes, append, then build each index once from
            # sorted data (below).  The random-key UNIQUE indexes (event_id, prev_hash) are what makes
            # row-by-row loading slow past a few million rows.  NB: on a slow disk, dropping the
            # indexes of a large existing file costs minutes itself — use it from the start.
            for (name,) in store.conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND "
                "tbl_name = 'egress_log' AND sql IS NOT NULL"
            ).fetchall():
                store.conn.execute(f"DROP INDEX {name}")
    have = store.max_seq()
    meta = store.meta_get("bench.t0")
    t0 = int(meta) if meta else time.time_ns() // 1000 - SPAN_US
    store.meta_set("bench.t0", str(t0))
    per_row_us = SPAN_US / rows
    if have:
        # Resuming (or extending) a journal: spread the new rows from its newest row up to now, so the
        # recent periods the pages show (24h, 7d) always hold data.
        last = store.head().event.logged_at_us
        t0 = last + 1 - int(have * ((time.time_ns() // 1000 - last) / max(1, rows - have)))
        per_row_us = (time.time_ns() // 1000 - last) / max(1, rows - have)
    rng = random.Random(have)
    started = time.perf_counter()
    done = have
    while done < rows:
        n = min(BATCH, rows - done)
        store.append(_events(done, n, t0, per_row_us, rng))
        done += n
        if done % 500_000 < BATCH or done == rows:
            rate = (done - have) / (time.perf_counter() - started)
            print(f"{done:,} rows  ({rate:,.0f} rows/s)", flush=True)
    if getattr(store, "kind", "") == "sqlite":
        # Deferred (or interrupted) index drops: (re)build every index of the store's own DDL.
        from mit_network_audit.journal.sqlite import DDL

        t = time.perf_counter()
        statements = [s.strip() for s in DDL.split(";") if "INDEX IF NOT EXISTS" in s]
        for sql in statements:
            store.conn.execute(sql)
        print(f"indexes present ({len(statements)}; {time.perf_counter() - t:.1f}s)", flush=True)
    from mit_network_audit.report import rollup

    t = time.perf_counter()
    rollup.catch_up(store, progress=lambda up, head: print(f"rollup {up:,}/{head:,}", flush=True))
    print(f"rollup caught up in {time.perf_counter() - t:.1f}s")
    if getattr(store, "kind", "") == "postgres":
        store.execute_raw("ANALYZE")
    else:
        store.execute_raw("ANALYZE")
    store.close()


def _pctl(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def hourly_groups(store, since_us: int, until_us: int, where: str = "", params: tuple = ()) -> list[dict]:
    """Reference: ``trust._groups`` before it merged hours in SQL (one row per key per hourly bucket)."""
    from mit_network_audit.report import rollup

    p = "%s" if getattr(store, "kind", "") == "postgres" else "?"
    low = (since_us // rollup.HOUR_US) * rollup.HOUR_US
    cols = (*rollup.KEY, "n", "req_bytes", "resp_bytes", "max_req_bytes", "lost", "first_seq", "last_seq")
    cols = (*cols, "first_us", "last_us")
    rows = store.execute_raw(
        f"SELECT {', '.join(cols)} FROM mna_rollup WHERE bucket_us >= {p} AND bucket_us < {p} {where}",
        (low, until_us, *params),
    )
    return [dict(zip(cols, r, strict=True)) for r in rows]


def aggregated_groups(store, since_us: int, until_us: int, where: str = "", params: tuple = ()) -> list[dict]:
    """Reference: ``trust._groups`` before the rollup's day level — the period's hourly buckets merged
    per key by the database, every hour read.  The same groups (tests compare the two reports); the
    bench times both side by side."""
    from mit_network_audit.report import rollup

    p = "%s" if getattr(store, "kind", "") == "postgres" else "?"
    low = (since_us // rollup.HOUR_US) * rollup.HOUR_US
    key = [k for k in rollup.KEY if k != "bucket_us"]
    aggs = (
        "sum(n)",
        "sum(req_bytes)",
        "sum(resp_bytes)",
        "max(max_req_bytes)",
        "sum(lost)",
        "min(first_seq)",
        "max(last_seq)",
        "min(first_us)",
        "max(last_us)",
    )
    rows = store.execute_raw(
        f"SELECT min(bucket_us), {', '.join(key)}, {', '.join(aggs)} FROM mna_rollup "
        f"WHERE bucket_us >= {p} AND bucket_us < {p} {where} GROUP BY {', '.join(key)}",
        (low, until_us, *params),
    )
    cols = (
        "bucket_us",
        *key,
        "n",
        "req_bytes",
        "resp_bytes",
        "max_req_bytes",
        "lost",
        "first_seq",
        "last_seq",
        "first_us",
        "last_us",
    )
    return [dict(zip(cols, r, strict=True)) for r in rows]


def _logged_in(client):
    form = client.get("/login").text
    csrf = form.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    r = client.post(
        "/login",
        data={"username": "bench", "password": "bench-password-1", "csrf": csrf},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    return client


def measure(dsn: str, repeat: int, out_json: str | None, key_dir: str) -> dict:
    from starlette.testclient import TestClient

    from mit_network_audit.web.auth import Accounts
    from mit_network_audit.web.server import create_dashboard

    os.environ["MNA_BENCH_DSN"] = dsn
    use_bench_key(key_dir)
    store = open_store(dsn)
    accounts = Accounts(store)
    if not accounts.get("bench"):
        accounts.add("bench", "officer", "bench-password-1")
    head = store.max_seq()
    # The journal has a module POSTing to the vendor's update endpoint (GET only in the shipped
    # catalogue) every hour: an alarm line per hour, the report's worst case.  A second app reads the
    # same journal with a catalogue that allows it, which is the all-clear (well: review) case.
    allow = os.path.join(key_dir, "allow-updates-post.toml")
    with open(allow, "w") as fh:
        fh.write(
            '[[component]]\nname = "mit-updates"\nclass = "vendor"\nhosts = ["updates.mit-vendor.example"]\n'
            'methods = ["GET", "POST"]\nmax_request_bytes = 2048\n'
        )
    client = _logged_in(TestClient(create_dashboard(dsn), base_url="http://127.0.0.1"))
    clean = _logged_in(
        TestClient(create_dashboard(dsn, catalogue_paths=[allow]), base_url="http://127.0.0.1")
    )
    rng = random.Random(7)
    some_host, some_addon = "api.stripe.com", "crm_mail_sync"
    cases = {
        "Trust Report 24h": ("report", lambda: "/report?since=24h"),
        "Trust Report 7d": ("report", lambda: "/report?since=7d"),
        "Trust Report 30d": ("report", lambda: "/report?since=30d"),
        "API report 24h": ("report", lambda: "/api/report?since=24h"),
        "Trust Report 24h, no alarm": ("clean", lambda: "/report?since=24h"),
        "Trust Report 7d, no alarm": ("clean", lambda: "/report?since=7d"),
        "Trust Report 30d, no alarm": ("clean", lambda: "/report?since=30d"),
        # the same pages reading hours only (trust._groups before the day level), side by side
        "[hours only] Trust Report 7d": ("merged", lambda: "/report?since=7d"),
        "[hours only] Trust Report 30d": ("merged", lambda: "/report?since=30d"),
        "[hours only] Trust Report 30d, no alarm": ("merged-clean", lambda: "/report?since=30d"),
        "Audit Log all": ("log", lambda: "/log"),
        "Audit Log vendor-bound": ("log", lambda: "/log?filter=vendor"),
        "Audit Log outbound": ("log", lambda: "/log?filter=outbound"),
        "Audit Log inbound": ("log", lambda: "/log?filter=inbound"),
        "Audit Log errors": ("log", lambda: "/log?filter=errors"),
        "Audit Log addon": ("log", lambda: f"/log?addon={some_addon}"),
        "Audit Log host": ("log", lambda: f"/log?host={some_host}"),
        "Audit Log channel": ("log", lambda: "/log?channel=smtp"),
        "Audit Log vendor+errors page deep": (
            "log",
            lambda: f"/log?filter=errors&before={rng.randint(1, head)}",
        ),
        "Audit Log vendor page deep": ("log", lambda: f"/log?filter=vendor&before={rng.randint(1, head)}"),
        "Audit Log all page deep": ("log", lambda: f"/log?before={rng.randint(1, head)}"),
        "Audit Log errors+host": ("log", lambda: f"/log?filter=errors&host={some_host}"),
        "Audit Log vendor+host (no match)": ("worst", lambda: f"/log?filter=vendor&host={some_host}"),
        # Combinations a plain keyset query answers by walking a whole index (issue 7's miss): rare x
        # rare, common x common that never meet, a text that is nowhere, a path that belongs to another
        # module/direction, and deep keyset pages of rare combinations.
        "Audit Log addon+host (no match)": ("worst", lambda: f"/log?addon=mit_licence&host={some_host}"),
        "Audit Log inbound+channel smtp (no match)": ("worst", lambda: "/log?filter=inbound&channel=smtp"),
        "Audit Log errors+channel+addon (rare)": (
            "worst",
            lambda: f"/log?filter=errors&channel=smtp&addon={some_addon}",
        ),
        "Audit Log q nowhere (no match)": ("worst", lambda: "/log?q=no-such-text-anywhere"),
        "Audit Log q path of another module": ("worst", lambda: "/log?q=/shop&addon=web"),
        "Audit Log q outbound path, inbound": ("worst", lambda: "/log?filter=inbound&q=chat/completions"),
        "Audit Log vendor+q (no match)": ("worst", lambda: "/log?filter=vendor&q=stripe"),
        "Audit Log vendor+licence host deep": (
            "worst",
            lambda: f"/log?filter=vendor&host=licence.mit-vendor.example&before={rng.randint(1, head)}",
        ),
        "Audit Log errors+q deep": (
            "worst",
            lambda: f"/log?filter=errors&q=stripe&before={rng.randint(1, head)}",
        ),
        "Audit Log q deep": ("worst", lambda: f"/log?q=partner1&before={rng.randint(1, head)}"),
        "API rows vendor+host (no match)": ("worst", lambda: f"/api/rows?filter=vendor&host={some_host}"),
        "Audit Log search (q)": ("search", lambda: "/log?q=stripe"),
        "Audit Log grouped by host 24h": ("groups", lambda: "/log/groups?by=host&since=24h"),
        "Audit Log grouped by addon 7d": ("groups", lambda: "/log/groups?by=addon&since=7d"),
        "Audit Log grouped by host 30d": ("groups", lambda: "/log/groups?by=host&since=30d"),
        "Forensic record": ("row", lambda: f"/row/{rng.randint(1, head)}"),
        "API row": ("row", lambda: f"/api/rows/{rng.randint(1, head)}"),
        "Prove this row": ("proof", lambda: f"/row/{rng.randint(1, head)}/proof"),
        "Signed export page": ("export", lambda: "/export"),
        "Traffic Summary 24h": ("summary", lambda: "/summary?since=24h"),
        "Traffic Summary 7d": ("summary", lambda: "/summary?since=7d"),
    }
    results = {}
    from mit_network_audit.report import trust

    original_groups = trust._groups
    for name, (kind, url) in cases.items():
        times = []
        cut = 0
        http = clean if kind in ("clean", "merged-clean") else client
        trust._groups = aggregated_groups if kind.startswith("merged") else original_groups
        http.get(url())  # warm the page cache and the rollup once; the first hit is reported separately
        for _ in range(repeat):
            u = url()
            t = time.perf_counter()
            resp = http.get(u)
            times.append((time.perf_counter() - t) * 1000)
            if resp.status_code != 200:
                raise SystemExit(f"{u}: HTTP {resp.status_code}: {resp.text[:300]}")
            # pages the search's time budget cut short (fewer rows, "searched down to seq ...")
            cut += b"Searched rows down to seq" in resp.content
        results[name] = {
            "p50": statistics.median(times),
            "p95": _pctl(times, 0.95),
            "max": max(times),
            "bytes": len(resp.content),
            "cut_short": cut,
        }
        print(
            f"{name:42s} p50 {results[name]['p50']:8.1f} ms   p95 {results[name]['p95']:8.1f} ms"
            f"   max {results[name]['max']:8.1f} ms" + (f"   cut short {cut}/{repeat}" if cut else ""),
            flush=True,
        )
    trust._groups = original_groups
    # The same rare combinations through the plain keyset query (what the Audit Log ran before the
    # rollup-guided search), for comparison: a few runs each, they can take seconds.
    from mit_network_audit.journal.store import RowFilter

    plain_cases = {
        "[plain query] vendor+host (no match)": RowFilter(vendor_bound=True, host=some_host),
        "[plain query] inbound+channel smtp (no match)": RowFilter(direction="inbound", channel="smtp"),
        "[plain query] q nowhere (no match)": RowFilter(text="no-such-text-anywhere"),
        "[plain query] q path of another module": RowFilter(text="/shop", addon="web"),
    }
    for name, flt in plain_cases.items():
        times = []
        for _ in range(3):
            t = time.perf_counter()
            store.rows(flt, limit=50)
            times.append((time.perf_counter() - t) * 1000)
        results[name] = {"p50": statistics.median(times), "p95": max(times), "max": max(times), "bytes": 0}
        print(f"{name:42s} median {results[name]['p50']:8.1f} ms   max {max(times):8.1f} ms", flush=True)
    summary = {"dsn_kind": getattr(store, "kind", "?"), "rows": head, "repeat": repeat, "results": results}
    if out_json:
        with open(out_json, "w") as fh:
            json.dump(summary, fh, indent=2)
    return summary


def figures(dsn: str, key_dir: str, skip_verify: bool = False) -> dict:
    """Issue 4's figures on a built journal: `report` over all of it, a full rollup rebuild (a catch-up
    from empty; the build's own first catch-up is printed by ``build``), rollup == journal, verify."""
    import subprocess

    from mit_network_audit.journal.verify import verify
    from mit_network_audit.report import rollup
    from mit_network_audit.report.trust import build_report

    os.environ["MNA_BENCH_DSN"] = dsn
    use_bench_key(key_dir)
    store = open_store(dsn)
    out: dict = {"rows": store.max_seq(), "kind": getattr(store, "kind", "?")}
    rollup.catch_up(store)
    times = []
    for _ in range(7):
        t = time.perf_counter()
        rep = build_report(store, since_us=0)
        times.append((time.perf_counter() - t) * 1000)
    out["report_ms"] = {"best": min(times), "median": statistics.median(times), "max": max(times)}
    print(
        f"report over all {out['rows']:,} rows (in-process, 7 runs): best {min(times):.0f} ms, "
        f"median {statistics.median(times):.0f} ms, max {max(times):.0f} ms; verdict {rep.verdict}",
        flush=True,
    )
    cli = os.path.join(os.path.dirname(sys.executable), "mit-network-audit")
    times = []
    for _ in range(3):
        t = time.perf_counter()
        done = subprocess.run(
            [cli, "report", "--db", dsn, "--since", "60d", "--format", "json"], capture_output=True, text=True
        )
        times.append((time.perf_counter() - t) * 1000)
    out["report_cli_ms"] = {"best": min(times), "median": statistics.median(times)}
    print(
        f"`mit-network-audit report --since 60d --format json` (process, 3 runs): best {min(times):.0f} ms, "
        f"median {statistics.median(times):.0f} ms (exit {done.returncode})",
        flush=True,
    )
    t = time.perf_counter()
    res = rollup.rebuild(store)
    took = time.perf_counter() - t
    out["rebuild_s"], out["rebuild_rows"] = took, res.rows
    print(
        f"full rollup rebuild: {res.rows:,} rows in {took:.1f}s = {res.rows / took:,.0f} rows/s", flush=True
    )
    sizes = {
        t: store.execute_raw(f"SELECT count(*) FROM {t}")[0][0] for t in ("mna_rollup", "mna_rollup_day", "mna_rollup_path")
    }
    out["rollup_rows"] = sizes
    print(f"rollup rows: {sizes}", flush=True)
    c = rollup.consistency(store)
    out["consistency"] = c
    print(f"consistency: {c['message']} ok={c['ok']}", flush=True)
    if not skip_verify:
        t = time.perf_counter()
        v = verify(store)
        took = time.perf_counter() - t
        out["verify_s"], out["verify_ok"] = took, v.ok
        print(
            f"verify (hash chain): {v.rows_checked:,} rows in {took:.1f}s = {v.rows_checked / took:,.0f} rows/s; "
            f"ok={v.ok} {v.message}",
            flush=True,
        )
    store.close()
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--db", required=True)
    b.add_argument("--rows", type=int, default=10_000_000)
    b.add_argument("--key-dir", default="/tmp/mna-bench-web-keys")
    b.add_argument(
        "--defer-indexes",
        action="store_true",
        help="SQLite: drop the secondary indexes during the load and rebuild them after",
    )
    m = sub.add_parser("measure")
    m.add_argument("--db", required=True)
    m.add_argument("--repeat", type=int, default=40)
    m.add_argument("--json")
    m.add_argument("--key-dir", default="/tmp/mna-bench-web-keys")
    f = sub.add_parser("figures", help="report / rollup rebuild / consistency / verify timings")
    f.add_argument("--db", required=True)
    f.add_argument("--key-dir", default="/tmp/mna-bench-web-keys")
    f.add_argument("--skip-verify", action="store_true")
    f.add_argument("--json")
    c = sub.add_parser("checkpoint", help="sign a checkpoint of the journal (for the proof page)")
    c.add_argument("--db", required=True)
    c.add_argument("--key-dir", default="/tmp/mna-bench-web-keys")
    args = parser.parse_args(argv)
    if args.cmd == "build":
        build(args.db, args.rows, defer_indexes=args.defer_indexes)
        checkpoint_journal(args.db, args.key_dir)
    elif args.cmd == "figures":
        result = figures(args.db, args.key_dir, args.skip_verify)
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(result, fh, indent=2)
    elif args.cmd == "checkpoint":
        checkpoint_journal(args.db, args.key_dir)
    else:
        measure(args.db, args.repeat, args.json, args.key_dir)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    raise SystemExit(main())
