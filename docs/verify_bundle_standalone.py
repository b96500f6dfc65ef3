#!/usr/bin/env python3
"""Independent verifier for MIT Network Audit proof bundles (standard library + cryptography only).

    python verify_bundle_standalone.py BUNDLE_DIR_OR_ZIP 'NAME+KEYID+BASE64'   (or a file holding that key)

Written from docs/auditor.md and docs/hashing.md alone, sharing no code with the product.
Exit status 0 when the bundle verifies, 1 otherwise.
"""
import base64
import hashlib
import json
import os
import sys
import zipfile

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

FILES = ("rows.jsonl", "checkpoint.txt", "proof.json", "key.pub", "README.txt")
HASHES = ("leaf_hash", "prev_hash", "row_hash")


def sha(*parts):
    return hashlib.sha256(b"".join(parts)).digest()


def canon(obj):  # RFC 8785 on this schema (strings, small ints, bools, null, lists of strings)
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def parse_vkey(text):  # C2SP signed-note verifier key: name+keyid+base64(0x01 || 32-byte key)
    name, keyid, b64 = text.strip().split("+", 2)
    raw = base64.b64decode(b64, validate=True)
    if len(raw) != 33 or raw[0] != 1 or sha(name.encode(), b"\n\x01", raw[1:])[:4].hex() != keyid:
        fail("malformed public key")
    return name, bytes.fromhex(keyid), raw[1:]


def open_note(note, key):  # returns the note body if a signature line by key verifies
    name, keyid, pub = key
    body, sep, sigs = note.rpartition("\n\n")
    if not sep or not note.endswith("\n"):
        fail("not a signed note")
    body += "\n"
    for line in sigs.splitlines():
        if line.startswith(f"— {name} "):
            tok = line.split(" ")[2]
            raw = base64.b64decode(tok, validate=True)  # and canonical: spare bits set = another file
            if raw[:4] == keyid and base64.b64encode(raw).decode() == tok:
                Ed25519PublicKey.from_public_bytes(pub).verify(raw[4:], body.encode())  # raises if bad
                return body
    fail("note not signed by the trusted key")


def mth_peaks_root(peaks):
    root = peaks[-1]
    for p in reversed(peaks[:-1]):
        root = sha(b"\x01", p, root)
    return root


def append(size, peaks, leaf):  # compact range: merge equal-sized peaks while the size bit is set
    h, i = leaf, size
    while i & 1:
        h, i = sha(b"\x01", peaks.pop(), h), i >> 1
    peaks.append(h)
    return size + 1


def consistent(m, n, r1, r2, proof):  # RFC 9162 section 2.1.4.2
    if m == n:
        return not proof and r1 == r2
    if not proof or not 0 < m < n:
        return False
    path = ([r1] if m & (m - 1) == 0 else []) + proof
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = sha(b"\x01", c, fr), sha(b"\x01", c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = sha(b"\x01", sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == r1 and sr == r2


def main(path, key_arg):
    if os.path.isdir(path):
        files = {n: open(os.path.join(path, n), "rb").read() for n in os.listdir(path)}
    else:
        with zipfile.ZipFile(path) as zf:
            files = {n: zf.read(n) for n in zf.namelist()}
    if sorted(files) != sorted(FILES + ("MANIFEST",)):
        fail(f"unexpected file set {sorted(files)}")
    text = {n: b.decode("utf-8") for n, b in files.items()}
    key = parse_vkey(open(key_arg).read() if os.path.exists(key_arg) else key_arg)
    if parse_vkey(text["key.pub"]) != key:
        fail("key.pub is not the trusted key")
    # 1. the signed checkpoint: origin, size, root, head, time
    origin, size, root, head, when = open_note(text["checkpoint.txt"], key).splitlines()
    size, root = int(size), base64.b64decode(root, validate=True)
    head = base64.b64decode(head.removeprefix("head "), validate=True)
    # 2. the signed manifest covers every byte of the other files
    manifest = "\n".join(["mit-network-audit-bundle/1", origin]
                         + [f"{hashlib.sha256(files[n]).hexdigest()} {n}" for n in FILES]) + "\n"
    if open_note(text["MANIFEST"], key) != manifest:
        fail("MANIFEST does not match the files")
    # 3. every row: canonical, leaf recomputed, chain re-linked
    proof = json.loads(text["proof.json"])
    first, last = proof["first_seq"], proof["last_seq"]
    n, peaks, prev = first - 1, [bytes.fromhex(h) for h in proof["left_edge"]], None
    if proof["tree_size"] != size or not 1 <= first <= last <= size or len(peaks) != bin(n).count("1"):
        fail("proof.json does not fit the checkpoint")
    lines = text["rows.jsonl"].split("\n")
    if lines.pop() != "" or len(lines) != last - first + 1:
        fail("rows.jsonl does not hold exactly the rows announced")
    for seq, line in enumerate(lines, first):
        row = json.loads(line)
        if canon(row) != line or row["chain_seq"] != seq:
            fail(f"row {seq}: altered or out of order")
        leaf = sha(b"\x00", canon({k: v for k, v in row.items() if k not in HASHES}).encode())
        link = sha(b"\x02", bytes.fromhex(row["prev_hash"]), leaf)
        if leaf.hex() != row["leaf_hash"] or link.hex() != row["row_hash"] or prev not in (None, row["prev_hash"]):
            fail(f"row {seq}: hashes or chain link do not match its content")
        prev = row["row_hash"]
        n = append(n, peaks, leaf)
    # 4. the run's tree extends to the signed root (RFC 9162 consistency proof)
    if not consistent(last, size, mth_peaks_root(peaks), root, [bytes.fromhex(h) for h in proof["consistency"]]):
        fail("rows are not the ones the checkpoint commits to")
    if last == size and bytes.fromhex(prev) != head:
        fail("last row is not the signed chain head")
    print(f"OK: rows {first}..{last} of {origin} (tree size {size}, {when}) verified")


if __name__ == "__main__":
    try:
        main(*sys.argv[1:3]) if len(sys.argv) == 3 else sys.exit(__doc__)
    except Exception as exc:  # any parse or signature error is a failed verification
        fail(f"{type(exc).__name__}: {exc}")
