"""Signed proof bundles for auditors, their offline verification, and single-row proofs.

A bundle (a directory, or the same files in a .zip) holds::

    rows.jsonl      a contiguous run of rows, every field + chain_seq/leaf_hash/prev_hash/row_hash,
                    one canonical JSON object per line (sorted keys, no spaces)
    checkpoint.txt  the signed checkpoint (C2SP note) that covers the run
    proof.json      the range proof: Merkle left edge of the rows before the run + the RFC 9162
                    consistency proof from the end of the run to the checkpoint's tree size
    key.pub         the signer's public key (C2SP verifier key)
    README.txt      what to do with it (docs/auditor.md)
    MANIFEST        SHA-256 of every file above, as a note signed by the same key

Verification needs nothing but the bundle (and, ideally, the public key obtained independently):
every leaf is recomputed from its row, every link re-chained, the left edge + leaves give the tree
at the end of the run, the consistency proof extends it to the signed root, and the manifest
signature covers the remaining bytes.  docs/verify_bundle_standalone.py re-implements this.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import dataclass, field

from ..interceptor.event import FIELD_NAMES
from .checkpoint import (
    NoteError,
    TamperDetected,
    latest_checkpoint,
    make_checkpoint,
    open_note,
    sign_note,
    tree_view,
    unb64_canonical,
)
from .keys import KeyProblem, SigningKey, Verifier, load_signing_key, load_verifier
from .merkle import CompactRange, peak_layout, verify_consistency, verify_inclusion

FORMAT = "mit-network-audit-bundle/1"
FILES = ("rows.jsonl", "checkpoint.txt", "proof.json", "key.pub", "README.txt")
ROW_KEYS = frozenset(FIELD_NAMES) | {"chain_seq", "leaf_hash", "prev_hash", "row_hash"}
_canon = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode

README = """MIT Network Audit - proof bundle
=================================

This directory proves that rows.jsonl is an unaltered, gapless run of the journal {origin},
rows {first}..{last} of {size}, as committed to by the signed checkpoint in checkpoint.txt.

Check it with either verifier (neither needs the database or the network):

    mit-network-audit verify-bundle THIS_BUNDLE --public-key KEY
    python verify_bundle_standalone.py THIS_BUNDLE KEY      (standard library + cryptography)

KEY is the operator's public key obtained independently of this bundle (key.pub inside it
is {vkey} ; compare at least its 8-hex key id).  The full procedure is in docs/auditor.md.
"""


class BundleError(ValueError):
    pass


# --- writing ----------------------------------------------------------------------------------------

def _seq_range(store, since_us: int | None, until_us: int | None) -> tuple[int, int] | None:
    low, high = store.min_seq(), store.execute_raw("SELECT coalesce(max(chain_seq), 0) FROM egress_log")[0][0]
    if low is None:
        return None
    first, last = low, int(high)
    if since_us is not None:
        got = store.execute_raw("SELECT min(chain_seq) FROM egress_log WHERE logged_at_us >= %s", (since_us,))[0][0]
        if got is None:
            return None
        first = int(got)
    if until_us is not None:
        got = store.execute_raw("SELECT max(chain_seq) FROM egress_log WHERE logged_at_us < %s", (until_us,))[0][0]
        if got is None:
            return None
        last = int(got)
    return (first, last) if first <= last else None


def _manifest_body(origin: str, files: dict[str, bytes]) -> str:
    lines = [FORMAT, origin] + [f"{hashlib.sha256(files[n]).hexdigest()} {n}" for n in FILES]
    return "\n".join(lines) + "\n"


def _keys(key: SigningKey | None, verifier: Verifier | None) -> tuple[SigningKey | None, Verifier]:
    """The signing key when configured (it may sign a fresh checkpoint) and a verifier: the one
    given, the key's, or the configured public key; no key at all is an error that says what to do."""
    if key is None:
        try:
            key = load_signing_key()
        except KeyProblem:
            key = None
    verifier = verifier or (key.verifier if key else load_verifier())
    if verifier is None:
        raise BundleError("no signing or public key configured: run `mit-network-audit keys init` first")
    return key, verifier


def export_bundle(store, out: str, *, since_us: int | None = None, until_us: int | None = None,
                  key: SigningKey | None = None, verifier: Verifier | None = None,
                  witness_path: str | None = None) -> dict:
    """Write a bundle for the rows logged in [since, until).  Signs a fresh checkpoint when the rows
    are newer than the newest one and the key is at hand; otherwise exports only what is covered."""
    _check_out(out)
    key, verifier = _keys(key, verifier)
    span = _seq_range(store, since_us, until_us)
    if span is None:
        raise BundleError("no rows in that period")
    first, last = span
    cp = latest_checkpoint(store, verifier, witness_path)
    if (cp is None or cp.size < last) and key is not None:
        cp = make_checkpoint(store, key, witness_path=witness_path) or latest_checkpoint(store, verifier, witness_path)
    if cp is None:
        raise BundleError("no checkpoint covers these rows: run `mit-network-audit checkpoint` with the key")
    note = ""
    if cp.size < last:
        note = f"rows {cp.size + 1}..{last} are newer than the newest checkpoint and were left out"
        last = cp.size
        if last < first:
            raise BundleError("no checkpointed rows in that period: " + note)
    view = tree_view(store, cp.size)
    left = CompactRange(first - 1, [view.node(lv, ix) for lv, ix in peak_layout(first - 1)])
    proof = view.consistency_proof(last)

    rows_blob = bytearray()
    leaves = []
    expected = first
    for row in store.iter_range(first, last):
        if row.chain_seq != expected:
            raise TamperDetected(f"chain_seq {expected} is missing")
        rows_blob += _canon(row.as_dict()).encode("utf-8") + b"\n"
        leaves.append(bytes.fromhex(row.leaf_hash))
        expected += 1
    if expected != last + 1:
        raise TamperDetected(f"rows {expected}..{last} are missing")
    cr = left.copy()
    cr.extend(leaves)
    if not verify_consistency(last, cp.size, cr.root(), cp.root, proof):
        raise TamperDetected("the exported rows do not prove against the checkpoint: run `mit-network-audit verify`")
    proof_doc = {"format": FORMAT, "first_seq": first, "last_seq": last, "tree_size": cp.size,
                 "left_edge": [h.hex() for h in left.peaks], "consistency": [h.hex() for h in proof]}
    files = {
        "rows.jsonl": bytes(rows_blob),
        "checkpoint.txt": cp.note.encode("utf-8"),
        "proof.json": _canon(proof_doc).encode("utf-8") + b"\n",
        "key.pub": (verifier.vkey + "\n").encode("utf-8"),
        "README.txt": README.format(origin=cp.origin, first=first, last=last, size=cp.size,
                                    vkey=verifier.vkey).encode("utf-8"),
    }
    body = _manifest_body(cp.origin, files)
    if key is not None:
        files["MANIFEST"] = sign_note(body, key).encode("utf-8")
    else:
        files["MANIFEST"] = body.encode("utf-8")
    _write(out, files)
    return {"out": out, "first_seq": first, "last_seq": last, "rows": last - first + 1, "tree_size": cp.size,
            "manifest_signed": key is not None, "note": note}


def _check_out(out: str) -> None:
    """A directory bundle goes into a new or empty directory, or over an earlier bundle: never over
    other files (``--out .`` replaced the project's own README.txt)."""
    if out.endswith(".zip") or not os.path.isdir(out):
        return
    entries = set(os.listdir(out))
    others = sorted(entries - {*FILES, "MANIFEST"}) or sorted(entries if "MANIFEST" not in entries else ())
    if others:
        raise BundleError(f"{out!r} is a directory that is not an earlier bundle (it holds {', '.join(others[:3])}"
                          f"{', ...' if len(others) > 3 else ''}): give a new or empty directory, or a path ending "
                          "in .zip")


def _write(out: str, files: dict[str, bytes]) -> None:
    if out.endswith(".zip"):
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in files.items():
                info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, data)
        return
    os.makedirs(out, exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(out, name), "wb") as fh:
            fh.write(data)


# --- verifying --------------------------------------------------------------------------------------

@dataclass
class BundleResult:
    ok: bool
    rows: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    tree_size: int | None = None
    origin: str = ""
    key: str = ""
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def read_bundle(path: str) -> dict[str, bytes]:
    if os.path.isdir(path):
        out = {}
        for name in os.listdir(path):
            full = os.path.join(path, name)
            if os.path.isfile(full):
                with open(full, "rb") as fh:
                    out[name] = fh.read()
        return out
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def verify_bundle(path: str, public_key: str | None = None) -> BundleResult:
    """Offline check of a bundle; needs nothing but the bundle (and the trusted public key)."""
    res = BundleResult(False)
    try:
        files = read_bundle(path)
        _verify_files(files, public_key, res)
    except (BundleError, NoteError, KeyProblem, ValueError, KeyError, zipfile.BadZipFile, OSError,
            TypeError, AttributeError, RecursionError) as exc:  # whatever a hostile bundle holds: a verdict
        res.problems.append(f"{type(exc).__name__}: {exc}")
    res.ok = not res.problems
    return res


def _text(files: dict[str, bytes], name: str) -> str:
    if name not in files:
        raise BundleError(f"{name} is missing")
    return files[name].decode("utf-8")  # strict: a byte flip into invalid UTF-8 fails here


def _verify_files(files: dict[str, bytes], public_key: str | None, res: BundleResult) -> None:
    bundled = Verifier.parse(_text(files, "key.pub"))
    verifier = bundled
    if public_key:
        verifier = load_verifier(public_key)
        if verifier != bundled:
            raise BundleError(f"key.pub ({bundled.vkey}) is not the trusted key ({verifier.vkey})")
    else:
        res.warnings.append(f"no --public-key given: trusting key.pub from the bundle ({bundled.name}+"
                            f"{bundled.key_id.hex()}); compare its key id with the operator's")
    res.key = verifier.vkey
    cp = open_note(_text(files, "checkpoint.txt"), verifier)
    res.origin, res.tree_size = cp.origin, cp.size
    if _text(files, "checkpoint.txt") != cp.note:
        raise BundleError("checkpoint.txt is not canonical")

    # the manifest covers every byte of every file
    manifest = _text(files, "MANIFEST")
    body = _manifest_body(cp.origin, {n: files[n] for n in FILES if n in files}) if all(n in files for n in FILES) \
        else None
    if body is None:
        raise BundleError("a bundle file is missing: " + ", ".join(n for n in FILES if n not in files))
    if manifest == body:
        res.warnings.append("MANIFEST is not signed (exported without the signing key): README.txt and key.pub "
                            "are not authenticated; the rows still are, by the checkpoint")
    else:
        split = manifest.rfind("\n\n")
        if split < 0 or manifest[: split + 1] != body:
            raise BundleError("MANIFEST does not match the files (a file was changed)")
        sig_line = manifest[split + 2:]
        prefix = f"— {verifier.name} "
        if not sig_line.startswith(prefix) or not sig_line.endswith("\n") or sig_line.count("\n") != 1:
            raise BundleError("MANIFEST signature line is malformed")
        raw = unb64_canonical(sig_line[len(prefix):-1], "MANIFEST signature")
        if raw[:4] != verifier.key_id or not verifier.verify(body.encode("utf-8"), raw[4:]):
            raise BundleError("MANIFEST signature does not verify")
    extra = sorted(set(files) - set(FILES) - {"MANIFEST"})
    if extra:
        raise BundleError(f"unexpected files in the bundle: {extra}")

    proof_text = _text(files, "proof.json")
    doc = json.loads(proof_text)
    if _canon(doc) + "\n" != proof_text or doc.get("format") != FORMAT:
        raise BundleError("proof.json is not a canonical " + FORMAT + " document")
    first, last, size = doc["first_seq"], doc["last_seq"], doc["tree_size"]
    if not all(type(n) is int for n in (first, last, size)):
        raise BundleError("proof.json: first_seq, last_seq and tree_size must be integers")
    if size != cp.size or not 1 <= first <= last <= size:
        raise BundleError(f"proof.json sizes ({first}..{last} of {size}) do not fit the checkpoint ({cp.size})")
    res.first_seq, res.last_seq = first, last
    left = CompactRange(first - 1, [bytes.fromhex(h) for h in doc["left_edge"]])
    proof = [bytes.fromhex(h) for h in doc["consistency"]]

    cr = left.copy()
    prev_row = None
    seq = first
    rows_text = _text(files, "rows.jsonl")
    if not rows_text.endswith("\n"):
        raise BundleError("rows.jsonl does not end with a newline")
    for line in rows_text[:-1].split("\n"):
        row = json.loads(line)
        if not isinstance(row, dict) or set(row) != ROW_KEYS:
            raise BundleError(f"row {seq}: unexpected or missing fields")
        if _canon(row) != line:
            raise BundleError(f"row {seq}: not canonical JSON (altered)")
        if row["chain_seq"] != seq:
            raise BundleError(f"row {seq}: chain_seq {row['chain_seq']} out of order")
        fields = {k: v for k, v in row.items() if k not in ("leaf_hash", "prev_hash", "row_hash")}
        leaf = hashlib.sha256(b"\x00" + _canon(fields).encode("utf-8")).digest()
        if leaf.hex() != row["leaf_hash"]:
            raise BundleError(f"row {seq}: content does not match its leaf_hash")
        if prev_row is not None and row["prev_hash"] != prev_row:
            raise BundleError(f"row {seq}: prev_hash does not link to row {seq - 1}")
        link = hashlib.sha256(b"\x02" + bytes.fromhex(row["prev_hash"]) + leaf).hexdigest()
        if link != row["row_hash"]:
            raise BundleError(f"row {seq}: row_hash does not match")
        prev_row = link
        cr.append(leaf)
        seq += 1
    if seq != last + 1:
        raise BundleError(f"rows.jsonl holds rows {first}..{seq - 1}, proof.json says {first}..{last}")
    if not verify_consistency(last, size, cr.root(), cp.root, proof):
        raise BundleError("the rows are not the ones committed to by the signed checkpoint (Merkle proof fails)")
    if last == size and prev_row != cp.head.hex():
        raise BundleError("the last row is not the signed chain head")
    res.rows = last - first + 1


# --- one row ----------------------------------------------------------------------------------------

def prove(store, seq: int, *, key: SigningKey | None = None, verifier: Verifier | None = None,
          witness_path: str | None = None) -> dict:
    """One row with its RFC 9162 inclusion proof against the newest checkpoint covering it."""
    key, verifier = _keys(key, verifier)
    row = store.get(seq)
    if row is None:
        raise BundleError(f"no row {seq} (removed by the retention vacuum, or not written yet)")
    cp = latest_checkpoint(store, verifier, witness_path)
    if (cp is None or cp.size < seq) and key is not None:
        cp = make_checkpoint(store, key, witness_path=witness_path) or latest_checkpoint(store, verifier, witness_path)
    if cp is None or cp.size < seq:
        raise BundleError(f"row {seq} is newer than the newest checkpoint: run `mit-network-audit checkpoint`")
    leaf = bytes.fromhex(row.leaf_hash)
    path = tree_view(store, cp.size).inclusion_proof(seq - 1)
    if not verify_inclusion(seq - 1, cp.size, leaf, path, cp.root):
        # the persisted interior nodes are a cache; rebuild from the leaves and say so
        path = tree_view(store, cp.size, use_stored_nodes=False).inclusion_proof(seq - 1)
        if not verify_inclusion(seq - 1, cp.size, leaf, path, cp.root):
            raise TamperDetected(f"row {seq} is not in the tree signed at size {cp.size}: run `mit-network-audit verify`")
    return {"row": row.as_dict(), "leaf_index": seq - 1, "tree_size": cp.size,
            "inclusion_proof": [h.hex() for h in path], "checkpoint": cp.note, "public_key": verifier.vkey}


def verify_proof(doc: dict, verifier: Verifier) -> bool:
    """Check a ``prove`` document: the row's leaf hash, its inclusion proof and the checkpoint signature."""
    cp = open_note(doc["checkpoint"], verifier)
    row = doc["row"]
    fields = {k: v for k, v in row.items() if k not in ("leaf_hash", "prev_hash", "row_hash")}
    leaf = hashlib.sha256(b"\x00" + _canon(fields).encode("utf-8")).digest()
    return (leaf.hex() == row["leaf_hash"] and doc["tree_size"] == cp.size and doc["leaf_index"] == row["chain_seq"] - 1
            and verify_inclusion(doc["leaf_index"], cp.size, leaf, [bytes.fromhex(h) for h in doc["inclusion_proof"]],
                                 cp.root))
