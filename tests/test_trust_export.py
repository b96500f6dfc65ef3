"""Proof bundles and single-row proofs: both verifiers accept real bundles, and a bundle altered
anywhere — one byte, at any position of any file — is rejected by both."""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mit_network_audit.cli import main
from mit_network_audit.journal import checkpoint as ckpt
from mit_network_audit.journal import open_store
from mit_network_audit.journal.export import (
    FORMAT,
    BundleError,
    export_bundle,
    prove,
    read_bundle,
    verify_bundle,
    verify_proof,
)
from mit_network_audit.journal.keys import SigningKey, load_verifier
from trust_support import DAY_US, events, key_env, trust_dsn, trust_pg  # noqa: F401  (fixtures)

STANDALONE = Path(__file__).resolve().parent.parent / "docs" / "verify_bundle_standalone.py"
_spec = importlib.util.spec_from_file_location("verify_bundle_standalone", STANDALONE)
standalone = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(standalone)


def standalone_ok(bundle: str, vkey: str) -> bool:
    """Run the independent verifier in-process (fast enough for hypothesis)."""
    out = io.StringIO()
    try:
        with redirect_stdout(out):
            standalone.main(bundle, vkey)
    except SystemExit as exc:
        return exc.code == 0
    except Exception:
        return False
    return out.getvalue().startswith("OK:")


def test_bundle_verifies_with_both_verifiers(trust_dsn, key_env, tmp_path):  # noqa: F811
    store = open_store(trust_dsn)
    store.append(events(150))
    info = export_bundle(store, str(tmp_path / "b"))
    assert (info["first_seq"], info["last_seq"], info["tree_size"], info["manifest_signed"]) == (1, 150, 150, True)
    assert sorted(os.listdir(tmp_path / "b")) == ["MANIFEST", "README.txt", "checkpoint.txt", "key.pub", "proof.json",
                                                  "rows.jsonl"]
    res = verify_bundle(str(tmp_path / "b"), key_env.verifier.vkey)
    assert res.ok and res.rows == 150 and not res.warnings, res
    # the independent verifier, as an auditor would run it: a separate process
    run = subprocess.run([sys.executable, str(STANDALONE), str(tmp_path / "b"), key_env.verifier.vkey],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.startswith("OK: rows 1..150"), run.stdout + run.stderr
    rows = [json.loads(line) for line in (tmp_path / "b" / "rows.jsonl").read_text().splitlines()]
    assert rows[0]["chain_seq"] == 1 and set(rows[0]) >= {"leaf_hash", "prev_hash", "row_hash", "host", "detail"}
    store.close()


def test_zip_bundle_and_a_period(trust_dsn, key_env, tmp_path):  # noqa: F811
    store = open_store(trust_dsn)
    t0 = 1_767_225_600_000_000
    store.append(events(40, logged_at_us=t0))
    store.append(events(70, logged_at_us=t0 + DAY_US))
    store.append(events(30, logged_at_us=t0 + 2 * DAY_US))
    out = str(tmp_path / "day2.zip")
    info = export_bundle(store, out, since_us=t0 + DAY_US, until_us=t0 + 2 * DAY_US)
    assert (info["first_seq"], info["last_seq"], info["rows"], info["tree_size"]) == (41, 110, 70, 140)
    assert verify_bundle(out, key_env.verifier.vkey).ok
    assert standalone_ok(out, key_env.verifier.vkey)
    proof = json.loads(read_bundle(out)["proof.json"])
    assert len(proof["left_edge"]) == bin(40).count("1") and proof["consistency"]
    with pytest.raises(BundleError):
        export_bundle(store, str(tmp_path / "none"), since_us=t0 + 9 * DAY_US)
    store.close()


def test_wrong_key_missing_and_extra_files_fail(tmp_path, key_env):  # noqa: F811
    store = open_store(f"sqlite:///{tmp_path}/j.db")
    store.append(events(10))
    bundle = tmp_path / "b"
    export_bundle(store, str(bundle))
    stranger = SigningKey.generate("auditor.example/erp-1").verifier.vkey
    assert not verify_bundle(str(bundle), stranger).ok and not standalone_ok(str(bundle), stranger)
    (bundle / "notes.txt").write_text("hello")
    assert not verify_bundle(str(bundle), key_env.verifier.vkey).ok
    assert not standalone_ok(str(bundle), key_env.verifier.vkey)
    (bundle / "notes.txt").unlink()
    (bundle / "README.txt").unlink()
    assert not verify_bundle(str(bundle), key_env.verifier.vkey).ok
    store.close()


# --- one byte at a time -------------------------------------------------------------------------------

_CACHE: dict = {}


def _pristine(tmp_root: Path):
    if "files" not in _CACHE:
        key = SigningKey.generate("auditor.example/flip")
        store = open_store(f"sqlite:///{tmp_root}/flip.db")
        store.append(events(23))  # includes control characters and non-ASCII (escaped / raw in JSON)
        ckpt.make_checkpoint(store, key, witness_path=str(tmp_root / "w.jsonl"))
        store.append(events(9))
        export_bundle(store, str(tmp_root / "pristine"), since_us=None, key=key, witness_path=str(tmp_root / "w.jsonl"))
        store.close()
        _CACHE["files"] = read_bundle(str(tmp_root / "pristine"))
        _CACHE["vkey"] = key.verifier.vkey
    return _CACHE["files"], _CACHE["vkey"]


@pytest.fixture(scope="module")
def flip_root(tmp_path_factory):
    return tmp_path_factory.mktemp("flip")


def test_untouched_bundle_passes(flip_root):
    files, vkey = _pristine(flip_root)
    assert verify_bundle(str(flip_root / "pristine"), vkey).ok
    assert standalone_ok(str(flip_root / "pristine"), vkey)


@settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_any_single_byte_change_fails_both_verifiers(flip_root, data):
    files, vkey = _pristine(flip_root)
    name = data.draw(st.sampled_from(sorted(files)))
    pos = data.draw(st.integers(0, len(files[name]) - 1))
    mask = data.draw(st.integers(1, 255))
    target = flip_root / "case"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir()
    for n, blob in files.items():
        if n == name:
            blob = blob[:pos] + bytes([blob[pos] ^ mask]) + blob[pos + 1:]
        (target / n).write_bytes(blob)
    assert not verify_bundle(str(target), vkey).ok, (name, pos, mask)
    assert not standalone_ok(str(target), vkey), (name, pos, mask)


def test_manifest_signature_with_spare_base64_bits_fails_both_verifiers(flip_root):
    # Found by the test above (MANIFEST, byte 583, mask 1): the signature's last base64 character
    # carries 2 bits no byte uses; a lenient decoder reads the same signature from another file.
    files, vkey = _pristine(flip_root)
    manifest = files["MANIFEST"].decode()
    body, _, sig_line = manifest.rpartition("\n\n")
    token = sig_line.rstrip("\n").rsplit(" ", 1)[1]
    assert token.endswith("=") and not token.endswith("==")  # 68 bytes: the last quad holds 2 bytes
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    spare = alphabet[alphabet.index(token[-2]) ^ 1]
    twin = token[:-2] + spare + "="
    assert base64.b64decode(twin) == base64.b64decode(token) and twin != token
    target = flip_root / "spare-bits"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir()
    for name, blob in files.items():
        (target / name).write_bytes(blob if name != "MANIFEST" else manifest.replace(token, twin).encode())
    assert not verify_bundle(str(target), vkey).ok
    assert not standalone_ok(str(target), vkey)


# --- prove ---------------------------------------------------------------------------------------------

def test_prove_one_row(trust_dsn, key_env):  # noqa: F811
    store = open_store(trust_dsn)
    store.append(events(1000))
    doc = prove(store, 517)
    assert doc["row"]["chain_seq"] == 517 and doc["tree_size"] == 1000
    assert len(doc["inclusion_proof"]) == 10 and len(json.dumps(doc["inclusion_proof"])) < 1024
    assert verify_proof(doc, key_env.verifier)
    bad = json.loads(json.dumps(doc))
    bad["inclusion_proof"][3] = "00" * 32
    assert not verify_proof(bad, key_env.verifier)
    bad = json.loads(json.dumps(doc))
    bad["row"]["host"] = "elsewhere.example"
    assert not verify_proof(bad, key_env.verifier)
    store.append(events(3))
    assert prove(store, 1003)["tree_size"] == 1003  # newer than the checkpoint: a new one is signed
    with pytest.raises(BundleError):
        prove(store, 5000)
    store.close()


def test_prove_survives_a_corrupted_node_cache(tmp_path, key_env):  # noqa: F811
    dsn = f"sqlite:///{tmp_path}/j.db"
    store = open_store(dsn)
    store.append(events(300))
    ckpt.make_checkpoint(store)
    import sqlite3

    conn = sqlite3.connect(store.path)
    conn.execute("DROP TRIGGER mna_merkle_nodes_no_update")
    conn.execute("UPDATE mna_merkle_nodes SET hash = ?", ("11" * 32,))
    conn.commit()
    conn.close()
    assert verify_proof(prove(store, 42), key_env.verifier)  # the cache is checked, then bypassed
    store.close()


def test_cli_export_verify_bundle_prove(tmp_path, key_env):  # noqa: F811
    dsn = f"sqlite:///{tmp_path}/j.db"
    store = open_store(dsn)
    store.append(events(25))
    store.close()
    runner = CliRunner()
    result = runner.invoke(main, ["export", "--db", dsn, "--out", str(tmp_path / "b.zip")])
    assert result.exit_code == 0 and "rows 1..25" in result.output, result.output
    pub = os.environ["MNA_SIGNING_KEY_FILE"] + ".pub"
    result = runner.invoke(main, ["verify-bundle", str(tmp_path / "b.zip"), "--public-key", pub])
    assert result.exit_code == 0 and "bundle verifies" in result.output, result.output
    result = runner.invoke(main, ["prove", "--db", dsn, "7"])
    assert result.exit_code == 0 and verify_proof(json.loads(result.output), load_verifier(pub))
    (tmp_path / "b.zip").write_bytes((tmp_path / "b.zip").read_bytes()[:-30])
    result = runner.invoke(main, ["verify-bundle", str(tmp_path / "b.zip")])
    assert result.exit_code == 1 and "DOES NOT VERIFY" in result.output


def test_export_without_the_private_key(tmp_path, key_env, monkeypatch):  # noqa: F811
    dsn = f"sqlite:///{tmp_path}/j.db"
    store = open_store(dsn)
    store.append(events(30))
    ckpt.make_checkpoint(store)
    store.append(events(5))  # not checkpointed yet
    witness = ckpt.default_witness_path(store)
    pub = os.environ["MNA_SIGNING_KEY_FILE"] + ".pub"
    monkeypatch.setenv("MNA_SIGNING_KEY_FILE", str(tmp_path / "elsewhere" / "k"))
    monkeypatch.setenv("MNA_PUBLIC_KEY", pub)
    info = export_bundle(store, str(tmp_path / "b"), witness_path=witness)
    assert info["last_seq"] == 30 and not info["manifest_signed"] and "31..35" in info["note"]
    res = verify_bundle(str(tmp_path / "b"), pub)
    assert res.ok and any("MANIFEST is not signed" in w for w in res.warnings)
    rows = (tmp_path / "b" / "rows.jsonl").read_bytes()
    (tmp_path / "b" / "rows.jsonl").write_bytes(rows.replace(b"api.example", b"api.exampla", 1))
    assert not verify_bundle(str(tmp_path / "b"), pub).ok  # rows are still proven by the checkpoint
    store.close()


def test_cli_export_to_a_place_it_cannot_write_is_one_line_and_exit_2(tmp_path, key_env):  # noqa: F811
    dsn = f"sqlite:///{tmp_path}/j.db"
    open_store(dsn).append(events(3))
    (tmp_path / "a-file").write_text("x")
    runner = CliRunner()
    for out in (tmp_path / "missing-dir" / "b.zip", tmp_path / "a-file", tmp_path / "a-file" / "b", ""):
        result = runner.invoke(main, ["export", "--db", dsn, "--out", str(out)])
        assert result.exit_code == 2, (out, result.output)
        assert result.output.startswith("error: cannot write the bundle") and "--out" in result.output
        assert not isinstance(result.exception, OSError)
    assert (tmp_path / "a-file").read_text() == "x"


def test_cli_export_and_prove_refuse_a_named_key_that_does_not_exist(tmp_path, key_env):  # noqa: F811
    dsn = f"sqlite:///{tmp_path}/j.db"
    open_store(dsn).append(events(3))
    missing = str(tmp_path / "typo.key")
    runner = CliRunner()
    for args in (["export", "--out", str(tmp_path / "b")], ["prove", "2"]):
        result = runner.invoke(main, [*args, "--db", dsn, "--key", missing])
        assert result.exit_code == 2 and f"no signing key at {missing}" in result.output, result.output
    assert not (tmp_path / "b").exists()  # not signed with the default key instead


def _reforged(bundle: Path, proof=None, first_row=None) -> None:
    """What anyone can do to a bundle: change proof.json or a row, then write the MANIFEST again,
    unsigned (a bundle exported without the signing key has such a manifest)."""
    import hashlib

    if proof is not None:
        (bundle / "proof.json").write_text(json.dumps(proof, sort_keys=True, separators=(",", ":")) + "\n")
    if first_row is not None:
        lines = (bundle / "rows.jsonl").read_text().splitlines()
        (bundle / "rows.jsonl").write_text("\n".join([first_row, *lines[1:]]) + "\n")
    origin = (bundle / "checkpoint.txt").read_text().split("\n")[0]
    names = ("rows.jsonl", "checkpoint.txt", "proof.json", "key.pub", "README.txt")
    body = [FORMAT, origin] + [f"{hashlib.sha256((bundle / n).read_bytes()).hexdigest()} {n}" for n in names]
    (bundle / "MANIFEST").write_text("\n".join(body) + "\n")


def test_a_malformed_bundle_is_a_verdict_never_a_traceback(tmp_path, key_env):  # noqa: F811
    dsn = f"sqlite:///{tmp_path}/j.db"
    open_store(dsn).append(events(4))
    good = tmp_path / "good"
    assert CliRunner().invoke(main, ["export", "--db", dsn, "--out", str(good)]).exit_code == 0
    proof = json.loads((good / "proof.json").read_text())
    row = json.loads((good / "rows.jsonl").read_text().splitlines()[0])
    canon = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
    variants = {
        "left edge not a list": {"proof": {**proof, "left_edge": 5}},
        "proof hashes not text": {"proof": {**proof, "consistency": [1, 2]}},
        "proof not an object": {"proof": [1]},
        "first_seq null": {"proof": {**proof, "first_seq": None}},
        "first_seq 1.5": {"proof": {**proof, "first_seq": 1.5}},  # int(1.5) == 1: it used to verify
        "prev_hash a number": {"first_row": canon({**row, "prev_hash": 5})},
        "nested a million deep": {"first_row": "[" * 100_000 + "]" * 100_000},
    }
    for name, change in variants.items():
        bundle = tmp_path / name.replace(" ", "-")
        shutil.copytree(good, bundle)
        _reforged(bundle, **change)
        result = CliRunner().invoke(main, ["verify-bundle", str(bundle), "--format", "json"])
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), (name, result.exception)
        assert json.loads(result.output)["ok"] is False, (name, result.output)


def test_export_never_writes_over_a_directory_of_other_files(tmp_path, key_env):  # noqa: F811
    dsn = f"sqlite:///{tmp_path}/j.db"
    open_store(dsn).append(events(3))
    project = tmp_path / "project"
    project.mkdir()
    (project / "README.txt").write_text("the project's own readme")
    runner = CliRunner()
    result = runner.invoke(main, ["export", "--db", dsn, "--out", str(project)])  # `--out .` in a project
    assert result.exit_code == 2 and "not an earlier bundle" in result.output, result.output
    assert (project / "README.txt").read_text() == "the project's own readme" and os.listdir(project) == ["README.txt"]
    for out in (tmp_path / "empty", tmp_path / "new" / "b"):  # an empty directory, a new one
        if out.name == "empty":
            out.mkdir()
        assert runner.invoke(main, ["export", "--db", dsn, "--out", str(out)]).exit_code == 0
    result = runner.invoke(main, ["export", "--db", dsn, "--out", str(tmp_path / "empty")])  # over an earlier bundle
    assert result.exit_code == 0, result.output
