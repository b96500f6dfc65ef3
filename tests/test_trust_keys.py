"""The signing key: C2SP/Go note formats (known answer), 0600 file, env var, never in the database."""

from __future__ import annotations

import base64
import hashlib
import os
import stat

import pytest
from click.testing import CliRunner

from mit_network_audit.cli import main
from mit_network_audit.journal import open_store
from mit_network_audit.journal.checkpoint import make_checkpoint, open_note, sign_note
from mit_network_audit.journal.keys import KeyProblem, SigningKey, Verifier, init_key, load_signing_key
from trust_support import events, key_env  # noqa: F401  (fixture)

# golang.org/x/mod/sumdb/note documentation example (the reference implementation of signed notes)
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
GO_SIG = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"


def test_go_note_known_answer():
    key = SigningKey.parse(GO_SKEY)
    assert key.encode() == GO_SKEY
    assert key.verifier.vkey == GO_VKEY
    assert Verifier.parse(GO_VKEY) == key.verifier
    assert sign_note(GO_TEXT, key) == GO_TEXT + "\n" + GO_SIG


def test_key_id_is_the_c2sp_key_hash():
    key = SigningKey.generate("example.com/log")
    expected = hashlib.sha256(b"example.com/log\n\x01" + key.public).digest()[:4]
    assert key.key_id == expected and key.verifier.vkey.split("+")[1] == expected.hex()


@pytest.mark.parametrize("bad", ["", "a+b", "Peter+c74f20a3+AAAA", GO_VKEY.replace("c74f20a3", "c74f20a4"),
                                 GO_VKEY[:-2], "Peter Neumann+c74f20a3+ARpc"])
def test_malformed_verifier_keys_are_refused(bad):
    with pytest.raises(KeyProblem):
        Verifier.parse(bad)


def test_init_writes_0600_refuses_overwrite_and_prints_the_key_id(tmp_path, monkeypatch):
    monkeypatch.delenv("MNA_SIGNING_KEY", raising=False)
    path = tmp_path / "k" / "signing.key"
    result = CliRunner().invoke(main, ["keys", "init", "--out", str(path), "--name", "erp.example/1"])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    key = load_signing_key(str(path))
    assert f"key id:     {key.key_id.hex()}" in result.output and key.verifier.vkey in result.output
    assert (tmp_path / "k" / "signing.key.pub").read_text().strip() == key.verifier.vkey
    again = CliRunner().invoke(main, ["keys", "init", "--out", str(path)])
    assert again.exit_code == 2 and "refusing to replace" in again.output
    assert load_signing_key(str(path)) == key
    os.chmod(path, 0o644)
    with pytest.raises(KeyProblem, match="chmod 600"):
        load_signing_key(str(path))


def test_env_var_seed_or_full_key(tmp_path, monkeypatch):
    seed = os.urandom(32)
    monkeypatch.setenv("MNA_SIGNING_KEY", base64.b64encode(seed).decode())
    monkeypatch.setenv("MNA_SIGNING_KEY_NAME", "ci.example/runner")
    key = load_signing_key(str(tmp_path / "absent"))
    assert key.seed == seed and key.name == "ci.example/runner"
    monkeypatch.setenv("MNA_SIGNING_KEY", GO_SKEY)
    assert load_signing_key().verifier.vkey == GO_VKEY
    monkeypatch.setenv("MNA_SIGNING_KEY", "bm90IGEga2V5")
    with pytest.raises(KeyProblem):
        load_signing_key()


def test_the_private_key_never_reaches_the_database(tmp_path, key_env):  # noqa: F811
    store = open_store(f"sqlite:///{tmp_path}/j.db")
    store.append(events(20))
    cp = make_checkpoint(store)
    assert open_note(cp.note, key_env.verifier).size == 20
    blob = open(store.path, "rb").read() + open(store.path + "-wal", "rb").read()
    seed_forms = [key_env.seed, key_env.seed.hex().encode(), base64.b64encode(key_env.seed),
                  base64.b64encode(b"\x01" + key_env.seed)]
    assert not any(form in blob for form in seed_forms)
    store.close()


def test_rotation_with_force(tmp_path):
    path = str(tmp_path / "signing.key")
    first, _ = init_key(path, name="a.example/x")
    second, _ = init_key(path, name="a.example/x", force=True)
    assert first.public != second.public and load_signing_key(path) == second
