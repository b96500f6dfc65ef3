"""The Audit Log's rollup-guided search returns exactly the plain query's rows, on SQLite and PostgreSQL.

Every filter combination (including ones that match nothing, NULL hosts, hostile LIKE text, huge and
tiny keyset positions), with the rollup complete, lagging (a tail above the watermark), missing the
path table (a rollup folded before it existed), in small rounds (``CAP``) and with a zero time budget
(every page cut short: paging on must still give the plain query's rows, in order, once each).
"""

from __future__ import annotations

import itertools
import random

import pytest

from mit_network_audit.interceptor.event import NetEvent
from mit_network_audit.journal import open_store
from mit_network_audit.journal.store import RowFilter
from mit_network_audit.report import logsearch, rollup
from pg_support import scratch_database

HOUR = rollup.HOUR_US
HOSTS = ["api.stripe.com", "licence.mit-vendor.example", "erp.example.com", None, "", "Ünïcode.example",
         "100%_sure.example", "back\\slash.example"]
ADDONS = ["web", "website_shop", "mit_licence", "crm_sync", None, "o'brien"]
PATHS = [None, "/web", "/shop/cart", "/v1/check", "/100%", "/a_b", "/ÜBER", "/x\\y"]


def _events(n: int, seed: int) -> list[NetEvent]:
    rng = random.Random(seed)
    t0 = 1_700_000_000_000_000
    out = []
    for i in range(n):
        # mostly increasing time with clock skew: keys' seq ranges overlap across hours
        ts = t0 + i * (HOUR // 40) + rng.randint(-2 * HOUR, 2 * HOUR) * (rng.random() < 0.1)
        host = rng.choice(HOSTS)
        vendor = host == "licence.mit-vendor.example" and rng.random() < 0.7
        out.append(NetEvent(
            event_id=rng.getrandbits(128).to_bytes(16, "big").hex(), logged_at_us=ts, started_at_us=ts,
            duration_us=1, direction=rng.choice(("outbound", "inbound", "internal")),
            channel=rng.choice(("requests", "smtp", "wsgi")), method=rng.choice(("GET", "POST", None)),
            host=host, path=rng.choice(PATHS), addon=rng.choice(ADDONS),
            outcome="error" if rng.random() < 0.1 else "ok", vendor_bound=vendor,
            dest_class=rng.choice(("vendor", "provider", "own")), req_bytes=rng.randint(0, 900)))
    return out


FILTERS = [
    {}, {"vendor_bound": True}, {"vendor_bound": False}, {"direction": "inbound"}, {"outcome": "error"},
    {"vendor_bound": True, "host": "api.stripe.com"},  # the old miss: no vendor row to this host
    {"vendor_bound": True, "host": "licence.mit-vendor.example"},
    {"outcome": "error", "host": "erp.example.com", "addon": "mit_licence"},
    {"direction": "internal", "channel": "smtp", "vendor_bound": True, "outcome": "error"},
    {"host": "", "addon": "web"}, {"host": "nowhere.example", "outcome": "ok"},
    {"addon": "o'brien", "dest_class": "own"}, {"channel": "nope", "direction": "inbound"},
    {"text": "stripe"}, {"text": "STRIPE"}, {"text": "nothing-matches-this"}, {"text": "%"}, {"text": "_"},
    {"text": "\\"}, {"text": "100%_"}, {"text": "über"}, {"text": "ü"}, {"text": "' OR 1=1 --"},
    {"text": "/shop", "addon": "web"}, {"text": "/web", "vendor_bound": True}, {"text": "cart", "host": None},
    {"text": "/v1", "outcome": "error", "direction": "inbound"}, {"text": "x" * 5000},
    {"since_us": 1_700_000_000_000_000 + 30 * HOUR}, {"until_us": 1_700_000_000_000_000 + 3 * HOUR},
    {"since_us": 1_700_000_000_000_000 + 10 * HOUR, "until_us": 1_700_000_000_000_000 + 12 * HOUR,
     "host": "erp.example.com"},
    {"since_us": 2**62}, {"text": "web", "since_us": 1_700_000_000_000_000 + 20 * HOUR, "outcome": "error"},
]


def _all_pages(store, flt, before, limit, **kw):
    """Page on with next_before until the end; every page's rows newest first."""
    rows, pages = [], 0
    while True:
        page = logsearch.search(store, flt, before_seq=before, limit=limit, **kw)
        assert len(page.rows) <= limit
        rows += page.rows
        pages += 1
        if page.next_before is None:
            return rows, pages
        assert all(r.chain_seq >= page.next_before for r in page.rows)
        before = page.next_before
        assert pages < 10_000


def _check(store, head, paging, *, positions=3, limits=(3, 50)):
    rng = random.Random(3)
    befores = [None, 1, head + 1, 2**62, *rng.sample(range(2, head), positions)]
    for spec, before, limit in itertools.product(FILTERS, befores, limits):
        flt = RowFilter(**spec)
        want = store.rows(flt, before_seq=before, limit=limit)
        got = logsearch.search(store, flt, before_seq=before, limit=limit, budget_s=60)
        assert [r.chain_seq for r in got.rows] == [r.chain_seq for r in want], (spec, before, limit)
        assert got.rows == want
        assert got.next_before == (want[-1].chain_seq if len(want) == limit else None), (spec, before, limit)
    for spec in FILTERS if paging else ():  # every page cut short by a zero budget: paging on is still
        # the plain query
        flt = RowFilter(**spec)
        everything = store.rows(flt, limit=10**9)
        got, _ = _all_pages(store, flt, None, 40, budget_s=0)
        assert [r.chain_seq for r in got] == [r.chain_seq for r in everything], spec


def _scenarios(store, monkeypatch):
    monkeypatch.setattr(logsearch, "PROBE_ROWS", 50)  # a direct window smaller than the journal
    monkeypatch.setattr(logsearch, "PROBE_ROWS_SCAN", 20)
    store.append(_events(1500, seed=1))
    rollup.catch_up(store, chunk=400)
    head = store.max_seq()
    widest = store.execute_raw("SELECT max(last_seq - first_seq) FROM mna_rollup")[0][0]
    assert int(store.meta_get(rollup.SPAN)) == widest > 40  # (clock skew: keys wider than an hour of rows)
    yield "complete", head, True
    store.append(_events(300, seed=2))  # a tail above the watermark
    yield "tail", store.max_seq(), False
    monkeypatch.setattr(logsearch, "CAP", 3)  # many small rounds
    monkeypatch.setattr(logsearch, "PROBE_ROWS", 0)  # no direct window: the rollup from the start
    monkeypatch.setattr(logsearch, "PROBE_ROWS_SCAN", 1)
    monkeypatch.setattr(logsearch, "LOOSE_MAX", 2)  # too many distinct values: LIKE over the rollup
    yield "small rounds", store.max_seq(), True
    monkeypatch.setattr(logsearch, "TAIL_CATCH_UP", 10)  # the search folds the tail itself
    yield "folds the tail", store.max_seq(), False
    assert int(store.meta_get(rollup.WATERMARK)) == store.max_seq()
    # a rollup folded before the path table existed: its paths below the mark are unknown
    store.execute_raw("DELETE FROM mna_rollup_path")
    store.execute_raw("DELETE FROM mna_meta WHERE key = %s", (rollup.PATHS_FROM,))
    store.execute_raw("DELETE FROM mna_meta WHERE key = %s", (rollup.SPAN,))  # (nor the span bound)
    store.append(_events(200, seed=4))
    rollup.catch_up(store)
    assert int(store.meta_get(rollup.PATHS_FROM)) == store.max_seq() - 200
    assert store.meta_get(rollup.SPAN) is None
    yield "old rollup without paths", store.max_seq(), True
    rollup.rebuild(store)
    yield "rebuilt", store.max_seq(), False


def test_guided_search_equals_plain_query_sqlite(tmp_path, monkeypatch):
    store = open_store(f"sqlite:///{tmp_path / 'j.db'}")
    for _name, head, paging in _scenarios(store, monkeypatch):
        _check(store, head, paging)


def test_guided_search_equals_plain_query_postgres(monkeypatch):
    with scratch_database("mna_test_logsearch") as dsn:
        if dsn is None:
            pytest.skip("no PostgreSQL server on 127.0.0.1:5432")
        store = open_store(dsn)
        try:
            for name, head, paging in _scenarios(store, monkeypatch):
                # (each statement is a server round trip: page on with a zero budget in one scenario)
                _check(store, head, paging and name == "small rounds", positions=1, limits=(7,))
        finally:
            store.close()


def test_no_match_reads_no_journal_segment(tmp_path, monkeypatch):
    """A combination the rollup says nothing matches is answered without searching a segment (beyond
    the bounded direct window below the page's start, turned off here)."""
    monkeypatch.setattr(logsearch, "PROBE_ROWS", 0)
    monkeypatch.setattr(logsearch, "PROBE_ROWS_SCAN", 0)
    store = open_store(f"sqlite:///{tmp_path / 'j.db'}")
    store.append(_events(800, seed=5))
    rollup.catch_up(store)
    calls = []
    real = store.rows
    monkeypatch.setattr(store, "rows", lambda *a, **k: calls.append(k) or real(*a, **k))
    for spec in ({"vendor_bound": True, "host": "api.stripe.com"}, {"text": "nothing-matches-this"},
                 {"channel": "nope", "direction": "inbound"}):
        calls.clear()
        page = logsearch.search(store, RowFilter(**spec))
        assert page.rows == [] and page.next_before is None and calls == [], spec


def test_a_rebuild_under_the_search_falls_back_to_the_plain_query(tmp_path, monkeypatch):
    store = open_store(f"sqlite:///{tmp_path / 'j.db'}")
    store.append(_events(600, seed=6))
    rollup.catch_up(store)
    flt = RowFilter(outcome="error", host="erp.example.com")
    real = store.execute_raw

    def rebuilding(sql, params=()):
        out = real(sql, params)
        if "FROM mna_rollup WHERE" in sql:
            rollup.rebuild(store)
        return out

    monkeypatch.setattr(store, "execute_raw", rebuilding)
    assert logsearch.search(store, flt).rows == store.rows(flt, limit=50)
