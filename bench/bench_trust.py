"""Trust-anchor figures: checkpoint signing cost, inclusion proofs at 1M rows, export / verify-bundle throughput.

    .venv/bin/python bench/bench_trust.py [--rows 1000000] [--export-rows 100000] [--pg]

Builds a journal of ``--rows`` realistic rows (through the real store, so leaf hashes are real),
then measures.  Nothing is asserted; the numbers go to docs/benchmarks.md ("Trust anchors").
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

from mit_network_audit.interceptor.event import NetEvent  # noqa: E402
from mit_network_audit.journal import checkpoint as ckpt  # noqa: E402
from mit_network_audit.journal import open_store  # noqa: E402
from mit_network_audit.journal.export import export_bundle, prove, verify_bundle  # noqa: E402
from mit_network_audit.journal.keys import SigningKey  # noqa: E402
from mit_network_audit.journal.merkle import verify_inclusion  # noqa: E402


def make_events(n: int, start: int) -> list[NetEvent]:
    t = 1_767_225_600_000_000 + start * 1000
    return [
        NetEvent(
            event_id=uuid.uuid4().hex,
            logged_at_us=t + i * 1000,
            started_at_us=t + i * 1000 - 900,
            duration_us=900,
            direction="outbound",
            channel="requests",
            protocol="https",
            method="POST",
            host="api.provider.example",
            port=443,
            path="/v1/completions",
            query_keys=("model",),
            dest_ip="203.0.113.9",
            dest_port=443,
            src_ip="10.0.0.5",
            src_port=40000 + i % 20000,
            status=200,
            req_bytes=1200 + i % 500,
            resp_bytes=5000,
            req_headers=("content-type: ***",),
            resp_headers=("content-type: application/json",),
            fingerprint="ab" * 32,
            addon="llm_assistant",
            call_site="llm_assistant/client.py:42 in ask",
            via=("requests", "urllib3"),
            pid=4242,
            hostname="erp-1",
            dest_class="provider",
            component="openai",
        )
        for i in range(n)
    ]


def timed(fn, *a, **kw):
    t = time.perf_counter()
    out = fn(*a, **kw)
    return out, time.perf_counter() - t


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--export-rows", type=int, default=100_000)
    ap.add_argument(
        "--pg", action="store_true", help="PostgreSQL on 127.0.0.1 (own database mna_trust_bench_*)"
    )
    ap.add_argument("--samples", type=int, default=2000)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="mna_trust_bench_")
    key = SigningKey.generate("bench.example/erp-1")
    witness = os.path.join(work, "witness.jsonl")
    admin = None
    if args.pg:
        import psycopg

        name = f"mna_trust_bench_{uuid.uuid4().hex[:8]}"
        admin = psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True)
        admin.execute(f"CREATE DATABASE {name}")
        dsn = f"postgresql://postgres@127.0.0.1:5432/{name}"
    else:
        dsn = f"sqlite:///{work}/journal.db"
    results: dict = {"backend": "postgres" if args.pg else "sqlite", "rows": args.rows}
    try:
        store = open_store(dsn)
        t = time.perf_counter()
        batch = 20_000
        for start in range(0, args.rows, batch):
            store.append(make_events(min(batch, args.rows - start), start))
        results["build_s"] = round(time.perf_counter() - t, 1)

        # -- signing: the signature alone, a first checkpoint over everything, then every 1,000 rows
        body = ckpt.format_body("x", 1, b"\0" * 32, b"\0" * 32, 0)
        sig = [timed(ckpt.sign_note, body, key)[1] for _ in range(2000)]
        results["ed25519_note_sign_us"] = round(statistics.median(sig) * 1e6, 1)
        _, first = timed(ckpt.make_checkpoint, store, key, witness_path=witness)
        results["first_checkpoint_s"] = round(first, 2)
        incremental = []
        for i in range(20):
            store.append(make_events(1000, args.rows + i * 1000))
            incremental.append(timed(ckpt.make_checkpoint, store, key, witness_path=witness)[1])
        results["checkpoint_per_1000_new_rows_ms"] = round(statistics.median(incremental) * 1e3, 2)
        size = ckpt.max_seq(store)

        # -- inclusion proofs at ~1M rows: the proof itself (storage-backed tree view), then `prove` end to end
        cp = ckpt.latest_checkpoint(store, key.verifier, witness)
        rng = random.Random(7)
        gen, blocks, lens = [], [], []
        for i in range(
            args.samples
        ):  # one storage round trip per proof vs one per 16-node block, interleaved
            seq = rng.randint(1, size)
            for batched in (True, False) if i % 2 else (False, True):
                view = ckpt.tree_view(store, cp.size)
                if not batched:
                    view._fetch_many = None
                path, dt = timed(view.inclusion_proof, seq - 1)
                (gen if batched else blocks).append(dt)
            lens.append(len(path))
        leaf = bytes.fromhex(store.get(size // 3).leaf_hash)
        path = ckpt.tree_view(store, cp.size).inclusion_proof(size // 3 - 1)
        ver = [timed(verify_inclusion, size // 3 - 1, cp.size, leaf, path, cp.root)[1] for _ in range(2000)]
        assert verify_inclusion(size // 3 - 1, cp.size, leaf, path, cp.root)
        full = [
            timed(prove, store, rng.randint(1, size), key=key, witness_path=witness)[1] for _ in range(200)
        ]
        doc = prove(store, 12345, key=key, witness_path=witness)
        results.update(
            proof_hashes_max=max(lens),
            proof_bytes_max=32 * max(lens),
            proof_json_hex_bytes=len(json.dumps(doc["inclusion_proof"])),
            proof_gen_ms_median=round(statistics.median(gen) * 1e3, 3),
            proof_gen_ms_p90=round(pct(gen, 0.9) * 1e3, 3),
            proof_gen_ms_p99=round(pct(gen, 0.99) * 1e3, 3),
            proof_gen_per_block_queries_ms_median=round(statistics.median(blocks) * 1e3, 3),
            proof_verify_us_median=round(statistics.median(ver) * 1e6, 1),
            prove_command_ms_median=round(statistics.median(full) * 1e3, 2),
            stored_nodes=store.execute_raw("SELECT count(*) FROM mna_merkle_nodes")[0][0],
        )

        # -- verify (checkpoints + full root recomputation)
        _, dt = timed(ckpt.verify_trust, store, verifier=key.verifier, witness_path=witness)
        results["verify_trust_s"] = round(dt, 2)

        # -- export and verify-bundle throughput
        n = min(args.export_rows, size)
        first_seq = size - n + 1
        since = store.get(first_seq).event.logged_at_us
        out = os.path.join(work, "bundle")
        info, dt = timed(export_bundle, store, out, since_us=since, key=key, witness_path=witness)
        results["export_rows"] = info["rows"]
        results["export_rows_per_s"] = int(info["rows"] / dt)
        res, dt = timed(verify_bundle, out, key.verifier.vkey)
        assert res.ok, res.problems
        results["verify_bundle_rows_per_s"] = int(res.rows / dt)
        import importlib.util

        spec = importlib.util.spec_from_file_location(
            "standalone", os.path.join(os.path.dirname(__file__), "..", "docs", "verify_bundle_standalone.py")
        )
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):
            _, dt = timed(mod.main, out, key.verifier.vkey)
        results["standalone_verify_rows_per_s"] = int(res.rows / dt)
        results["bundle_bytes_per_row"] = int(
            sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out)) / res.rows
        )
        store.close()
    finally:
        if admin is not None:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
