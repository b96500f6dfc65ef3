"""The rollup's daily level: whole days of a period are read from mna_rollup_day, its edges from the
hours.  A period's groups must be exactly what merging its hours gives, for any period boundaries,
on both backends; the day level must equal the hours regrouped by day after any sequence of
incremental catch-ups, after the one-time migration of an older rollup, and after a rebuild; and
``consistency`` must notice a day level that was edited behind its back."""

from __future__ import annotations

import random
from decimal import Decimal

from mit_network_audit.interceptor.event import NetEvent, internal_event, new_event_id
from mit_network_audit.journal import open_store
from mit_network_audit.report import rollup, trust

DAY = rollup.DAY_US
HOUR = rollup.HOUR_US
T0 = 1_780_000_000 * 1_000_000 // DAY * DAY  # a UTC midnight


def _rows(rng: random.Random, count: int, span_us: int) -> list[NetEvent]:
    out = []
    for _ in range(count):
        base = internal_event("x").as_dict()
        base.update(
            direction=rng.choice(["outbound", "outbound", "inbound", "internal"]),
            channel=rng.choice(["requests", "smtp", "httpx"]),
            method=rng.choice(["GET", "POST", "gap"]),
            host=rng.choice(["a.example", "b.example", None]),
            addon=rng.choice(["m1", "m2", None]),
            dest_class=rng.choice(["provider", "vendor", "unknown"]),
            component=None,
            vendor_bound=rng.random() < 0.3,
            outcome=rng.choice(["ok", "error"]),
            req_bytes=rng.randint(0, 10**6),
            resp_bytes=rng.randint(0, 10**6),
            detail='{"lost": 3}' if rng.random() < 0.1 else None,
            logged_at_us=T0 + rng.randint(0, span_us),
            event_id=new_event_id(),
        )
        out.append(NetEvent.from_dict(base))
    out.sort(key=lambda e: e.logged_at_us)  # the journal's time only grows, more or less
    return out


def _hourly_groups(store, since_us: int, until_us: int) -> dict:
    """Reference: the period's hours merged per key, without the day level."""
    p = "%s" if store.kind == "postgres" else "?"
    low = since_us // HOUR * HOUR
    rows = store.execute_raw(
        f"SELECT {', '.join(rollup.KEY[1:])}, {rollup.MERGED} FROM mna_rollup "
        f"WHERE bucket_us >= {p} AND bucket_us < {p} GROUP BY {', '.join(rollup.KEY[1:])}",
        (low, until_us),
    )
    return {tuple(r[:9]): tuple(int(v) for v in r[9:]) for r in rows}


def _groups(store, since_us: int, until_us: int) -> dict:
    found = {}
    for g in trust._groups(store, since_us, until_us):
        found[tuple(g[k] for k in rollup.KEY[1:])] = tuple(int(g[k]) for k in rollup.VALUES)
    return found


def _days_from_hours(store) -> list:
    day = f"(bucket_us / {DAY}) * {DAY}"
    key = ", ".join(rollup.KEY[1:])
    return sorted(
        tuple(int(v) if isinstance(v, int | Decimal) else v for v in r)
        for r in store.execute_raw(f"SELECT {day}, {key}, {rollup.MERGED} FROM mna_rollup GROUP BY {day}, {key}")
    )


def _day_level(store) -> list:
    return sorted(
        tuple(int(v) if isinstance(v, int | Decimal) else v for v in r)
        for r in store.execute_raw(f"SELECT {', '.join(rollup.COLUMNS)} FROM mna_rollup_day")
    )


def _periods(rng: random.Random, span_us: int):
    yield T0, T0 + span_us + 1  # everything
    yield T0 + DAY, T0 + 3 * DAY  # exactly whole days
    yield T0 + 5 * HOUR, T0 + 5 * HOUR + 1  # inside one hour
    yield T0 + DAY - HOUR, T0 + DAY + HOUR  # across one midnight, no whole day
    for _ in range(40):
        a = T0 - DAY + rng.randint(0, span_us + 2 * DAY)
        yield a, a + rng.randint(1, span_us + DAY)


def test_period_groups_equal_merged_hours(any_dsn):
    rng = random.Random(7)
    span = 6 * DAY
    store = open_store(any_dsn)
    rows = _rows(rng, 3000, span)
    for start in range(0, len(rows), 400):  # incremental catch-ups, chunks cutting through days
        store.append(rows[start : start + 400])
        rollup.catch_up(store, chunk=rng.randint(50, 700))
    assert _day_level(store) == _days_from_hours(store)
    assert rollup.consistency(store)["ok"]
    for since, until in _periods(rng, span):
        assert _groups(store, since, until) == _hourly_groups(store, since, until), (since - T0, until - T0)
    store.close()


def test_older_rollup_gets_its_days_once_and_rebuild_keeps_them(any_dsn):
    store = open_store(any_dsn)
    store.append(_rows(random.Random(3), 800, 3 * DAY))
    rollup.catch_up(store)
    # a rollup made before the day level: no day rows, no marker
    store.execute_raw("DROP TABLE mna_rollup_day")
    store.execute_raw(
        "DELETE FROM mna_meta WHERE key = %s" if store.kind == "postgres" else "DELETE FROM mna_meta WHERE key = ?",
        (rollup.DAYS,),
    )
    rollup.catch_up(store)
    assert _day_level(store) and _day_level(store) == _days_from_hours(store)
    store.append(_rows(random.Random(4), 300, 3 * DAY))
    rollup.catch_up(store, chunk=97)
    before = _day_level(store)
    assert before == _days_from_hours(store)
    rollup.rebuild(store)
    assert _day_level(store) == before
    assert rollup.consistency(store)["ok"]
    store.close()


def test_consistency_notices_an_edited_day_level(any_dsn):
    store = open_store(any_dsn)
    store.append(_rows(random.Random(5), 500, 2 * DAY))
    rollup.catch_up(store)
    assert rollup.consistency(store)["ok"]
    store.execute_raw("UPDATE mna_rollup_day SET n = n - 1 WHERE bucket_us = (SELECT min(bucket_us) FROM mna_rollup_day)")
    check = rollup.consistency(store)
    assert not check["ok"] and not check["days_match_hours"]
    assert "rebuild" in check["message"]
    rollup.rebuild(store)
    assert rollup.consistency(store)["ok"]
    store.close()
