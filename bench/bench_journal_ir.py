"""Journal append and verify in CPU instructions per row (callgrind), for a machine too busy for timings.

    .venv/bin/python bench/bench_journal_ir.py [--rows 2000]

Runs itself once under ``valgrind --tool=callgrind --dump-before=time_sleep``; each measured section
ends with ``time.sleep(0)``, so every section's instruction count (Ir) lands in its own dump.  Counted:
this process only (a PostgreSQL server's work would not be), so only SQLite and pure-Python sections.

Sections (each on the same ``--rows`` rows, batches of 1,000, memos warmed by 1,000 other rows first):

* chaining, reference path (``chain`` + ``schema.encode_fields``) vs the path the stores use
  (``chain_rows``), with the bench's realistic rows and with rows whose every text field is unique
  (the memo's worst case);
* SQLite: raw ``executemany`` of pre-encoded, pre-hashed rows in ``BEGIN IMMEDIATE`` vs
  ``SQLiteStore.append`` — the ratio of the two is the instruction-count analogue of the timed ratio;
* for the record, what the secondary indexes cost the raw insert (same rows, tables stripped of them);
* verify: the SQLite read alone, the reference (``decode_row`` + ``canonical_bytes`` + SHA-256 of every
  row) vs ``check_rows`` over the same stored tuples, and ``verify()`` in-process (reading included).
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))

SECTIONS = []


def section(name):
    def deco(fn):
        SECTIONS.append((name, fn))
        return fn
    return deco


def child(rows: int, tmp: str) -> None:
    from bench_journal import BATCH, sample_events

    from mit_network_audit.interceptor.event import NetEvent, new_event_id
    from mit_network_audit.journal import open_store, schema
    from mit_network_audit.journal.canonical import ZERO_HASH, canonical_bytes, chain, chain_rows
    from mit_network_audit.journal.sqlite import _INSERT
    from mit_network_audit.journal.verify import check_rows, verify

    def unique(events):
        out = []
        for i, e in enumerate(events):
            d = e.as_dict()
            for k in ("host", "path", "addon", "call_site", "component", "method", "hostname", "fingerprint",
                      "dest_ip", "src_ip", "protocol", "channel", "outcome"):
                d[k] = f"{d[k]}-{i}-{new_event_id()[:6]}"
            d["event_id"] = new_event_id()
            d["query_keys"] = [f"k{i}"]
            d["req_headers"] = [f"x-h{i}: ***"]
            d["via"] = ["requests", f"v{i}"]
            d["port"], d["status"] = 1000 + i, 100 + i % 500
            out.append(NetEvent.from_dict(d))
        return out

    def fresh(events):
        return [NetEvent.from_dict({**e.as_dict(), "event_id": new_event_id()}) for e in events]

    def reference_rows(events, bool_as_int):
        return [(s, *schema.encode_fields(f, bool_as_int=bool_as_int), leaf, prev, row)
                for s, f, leaf, prev, row in chain(events, 1, ZERO_HASH)]

    chain_rows(sample_events(BATCH), 1, ZERO_HASH, bool_as_int=True)  # warm the memos
    events = sample_events(rows)
    uniq = unique(sample_events(rows))
    raw_rows = reference_rows(fresh(events), True)

    @section("chaining, reference path (chain + encode_fields)")
    def _():
        reference_rows(events, True)

    @section("chaining, store path (chain_rows)")
    def _():
        chain_rows(events, 1, ZERO_HASH, bool_as_int=True)

    @section("chaining, reference path, every text field unique")
    def _():
        reference_rows(uniq, True)

    @section("chaining, store path, every text field unique")
    def _():
        chain_rows(uniq, 1, ZERO_HASH, bool_as_int=True)

    raw_db = os.path.join(tmp, "raw.db")
    open_store(raw_db).close()
    conn = sqlite3.connect(raw_db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")

    @section("SQLite raw executemany (pre-encoded, pre-hashed)")
    def _():
        for i in range(0, len(raw_rows), BATCH):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(_INSERT, raw_rows[i:i + BATCH])
            conn.execute("COMMIT")

    def stripped(name, keep_unique):
        """A raw table with fewer secondary indexes: what the indexes cost (for the record, not used)."""
        path = os.path.join(tmp, name)
        open_store(path).close()
        c = sqlite3.connect(path, isolation_level=None)
        for (index,) in c.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'egress_log' "
                                  "AND sql IS NOT NULL").fetchall():
            if not (keep_unique and index in ("egress_log_prev", "egress_log_event")):
                c.execute(f"DROP INDEX {index}")
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("PRAGMA synchronous=NORMAL")
        return c

    for label, keep in (("only the 2 unique indexes (prev_hash, event_id)", True), ("no secondary index", False)):
        c = stripped(f"raw-{keep}.db", keep)
        rows_k = reference_rows(fresh(events), True)

        @section(f"SQLite raw executemany, {label}")
        def _(c=c, rows_k=rows_k):
            for i in range(0, len(rows_k), BATCH):
                c.execute("BEGIN IMMEDIATE")
                c.executemany(_INSERT, rows_k[i:i + BATCH])
                c.execute("COMMIT")

    store = open_store(os.path.join(tmp, "a.db"))
    to_append = fresh(events)

    @section("SQLite append (SQLiteStore.append)")
    def _():
        for i in range(0, len(to_append), BATCH):
            store.append(to_append[i:i + BATCH])

    state = {}

    @section("SQLite read of the stored tuples alone (iter_raw)")
    def _():
        state["stored"] = list(store.iter_raw(1, None, 50_000))

    @section("verify reference: decode_row + canonical_bytes + SHA-256 per row")
    def _():
        for raw in state["stored"]:
            jr = schema.decode_row(raw)
            hashlib.sha256(b"\x00" + canonical_bytes(jr.event.as_dict(), jr.chain_seq)).hexdigest()

    @section("verify check_rows (leaf + link) over the same tuples")
    def _():
        assert check_rows(state["stored"], 1, ZERO_HASH)[2] == len(state["stored"])

    @section("verify(store, workers=1): read + check")
    def _():
        assert verify(store, workers=1).ok

    with open(os.path.join(tmp, "sections.txt"), "w") as f:
        f.write("\n".join(name for name, _ in SECTIONS))
    for _name, fn in SECTIONS:
        time.sleep(0)  # dump: everything before this section
        fn()
    time.sleep(0)
    store.close()
    conn.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.rows, args.tmp)
        return
    tmp = tempfile.mkdtemp(prefix="mna-journal-ir-")
    out = os.path.join(tmp, "cg")
    subprocess.run(["valgrind", "--tool=callgrind", "--dump-before=time_sleep", f"--callgrind-out-file={out}",
                    sys.executable, __file__, "--child", "--rows", str(args.rows), "--tmp", tmp],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = {}
    for path in glob.glob(out + ".*"):
        with open(path) as f:
            m = re.search(r"^(?:summary|totals): (\d+)", f.read(), re.M)
        parts[int(path.rsplit(".", 1)[1])] = int(m.group(1))
    # dump 1 = setup; section k ends with dump k + 1.
    with open(os.path.join(tmp, "sections.txt")) as f:
        names = f.read().split("\n")
    print(f"| section ({args.rows:,} rows) | Ir per row |\n|---|---:|")
    per = {}
    for k, name in enumerate(names):
        per[name] = parts[k + 2] / args.rows
        print(f"| {name} | {per[name]:,.0f} |")
    ratio = per["SQLite raw executemany (pre-encoded, pre-hashed)"] / per["SQLite append (SQLiteStore.append)"]
    print(f"\nSQLite raw executemany / append, in instructions: {ratio:.2f}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
