""""Prove this row": an RFC 9162 inclusion proof of one journal row in the newest signed checkpoint.

The download is self-contained — anyone holding the verifier key can check it offline:

1. ``leaf_hash == SHA-256(0x00 || JCS(row fields + chain_seq))`` (docs/hashing.md),
2. the inclusion proof takes ``leaf_hash`` at ``leaf_index`` to the checkpoint's root (RFC 9162 §2.1.3.2),
3. the checkpoint note is signed by the verifier key (C2SP signed note, Ed25519).

The server checks all three before it offers the file, and says plainly why it cannot when the row is
newer than the newest checkpoint, no key is configured, or the row was removed by the vacuum.

The document is the one ``mit-network-audit prove`` writes (``journal.export.prove``; checked by
``journal.export.verify_proof``) plus explanatory fields.  Unlike the CLI, a page view never signs a
new checkpoint: a GET has no side effects, and the dashboard can run with the public key only.
"""

from __future__ import annotations

import contextlib
import json

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse

from ...journal import checkpoint as ckpt
from ...journal import merkle
from ...journal.canonical import event_canonical, leaf_hash
from ...journal.keys import KeyProblem, Verifier, load_verifier
from ..params import SEQ
from ..registry import Context, page_module

FORMAT = "mit-network-audit/row-inclusion-proof/v1"


class ProofProblem(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _verifier(store) -> tuple[Verifier | None, bool]:
    """The configured public key, else the one the witness file names (trust on first use, flagged)."""
    try:
        verifier = load_verifier()
    except KeyProblem:
        verifier = None
    if verifier is not None:
        return verifier, False
    with contextlib.suppress(Exception):
        for record in ckpt.read_witness(ckpt.default_witness_path(store)) or []:
            if "vkey" in record:
                return Verifier.parse(record["vkey"]), True
    return None, False


def build_proof(store, seq: int) -> dict:
    row = store.get(seq)
    if row is None:
        raise ProofProblem(404, f"no row {seq} (never written, or removed by the retention vacuum)")
    canon = event_canonical(row.event, seq)
    if leaf_hash(canon).hex() != row.leaf_hash:
        raise ProofProblem(409, f"row {seq} does not match its own leaf hash: it was altered after it was "
                                "written — run Verify")
    verifier, pinned = _verifier(store)
    if verifier is None:
        raise ProofProblem(409, "no checkpoint key is configured on this server (run `mit-network-audit keys "
                                "init`, then `mit-network-audit checkpoint`, or set MNA_PUBLIC_KEY)")
    ckpt.ensure_tables(store)
    cp = ckpt.latest_checkpoint(store, verifier)
    if cp is None:
        raise ProofProblem(409, "no signed checkpoint yet: run `mit-network-audit checkpoint`")
    if seq > cp.size:
        raise ProofProblem(409, f"row {seq} is newer than the newest checkpoint (rows 1..{cp.size:,}): "
                                "it can be proven after the next checkpoint")
    leaf = bytes.fromhex(row.leaf_hash)
    try:
        path = ckpt.tree_view(store, cp.size).inclusion_proof(seq - 1)
        if not merkle.verify_inclusion(seq - 1, cp.size, leaf, path, cp.root):
            # the persisted interior nodes are a cache: rebuild from the leaves before crying wolf
            path = ckpt.tree_view(store, cp.size, use_stored_nodes=False).inclusion_proof(seq - 1)
    except (merkle.ProofUnavailable, ckpt.TamperDetected) as exc:
        raise ProofProblem(409, f"cannot build the proof: {exc}") from None
    if not merkle.verify_inclusion(seq - 1, cp.size, leaf, path, cp.root):
        raise ProofProblem(409, f"row {seq} is not in the tree signed at size {cp.size:,}: the journal was "
                                "rewritten after that checkpoint — run Verify")
    return {
        "format": FORMAT,
        "row": row.as_dict(),
        "canonical": canon.decode("utf-8"),
        "leaf_index": seq - 1,
        "tree_size": cp.size,
        "leaf_hash": row.leaf_hash,
        "inclusion_proof": [p.hex() for p in path],
        "root_hash": cp.root.hex(),
        "checkpoint": cp.note,
        "public_key": verifier.vkey,
        "verifier_pinned_from_witness": pinned,
        "how_to_verify": [
            "leaf_hash = SHA-256(0x00 || canonical) and canonical = JCS(row without leaf_hash, prev_hash, "
            "row_hash), chain_seq included (docs/hashing.md)",
            "RFC 9162 section 2.1.3.2: inclusion_proof takes leaf_hash at leaf_index in a tree of tree_size "
            "leaves to root_hash",
            "root_hash is the base64 root on line 3 of the checkpoint, a C2SP signed note signed by "
            "public_key (Ed25519); `mit-network-audit` users: journal.export.verify_proof(doc, verifier)",
        ],
    }


@page_module("auditor")
def proof_pages(ctx: Context) -> APIRouter:
    router = APIRouter()

    @router.get("/row/{seq}/proof", response_class=HTMLResponse)
    def proof_page(request: Request, seq: int = SEQ):
        try:
            proof, problem = build_proof(ctx.store, seq), None
        except ProofProblem as exc:
            proof, problem = None, exc
        response = ctx.page(request, "proof.html", seq=seq, proof=proof,
                            problem=problem.message if problem else None)
        if problem is not None:
            response.status_code = problem.status
        return response

    @router.get("/api/rows/{seq}/proof")
    def api_proof(seq: int = SEQ, download: bool = False):
        """An inclusion proof of row ``seq`` in the newest signed checkpoint, verifiable offline."""
        try:
            proof = build_proof(ctx.store, seq)
        except ProofProblem as exc:
            raise HTTPException(exc.status, exc.message) from None
        headers = {"Content-Disposition": f'attachment; filename="row-{seq}-proof.json"'} if download else {}
        return JSONResponse(json.loads(json.dumps(proof)), headers=headers)

    return router
