"""docs/hashing.md's published vectors are exactly what the code computes (an auditor relies on them)."""

import os
import re

from mit_network_audit.journal.canonical import ZERO_HASH, leaf_hash, link_hash

DOC = open(os.path.join(os.path.dirname(os.path.dirname(__file__)), "docs", "hashing.md"), encoding="utf-8").read()


def test_vectors_match_the_code():
    blocks = re.findall(r"```\n(\{.*?\})\n```", DOC, re.S)
    leaves = re.findall(r"`leaf_hash` = `([0-9a-f]{64})`", DOC)
    prevs = re.findall(r"`prev_hash` = `([0-9a-f]{64})`", DOC)
    rows = re.findall(r"`row_hash`  = `([0-9a-f]{64})`", DOC)
    assert len(blocks) == len(leaves) == len(rows) == 2
    prev = ZERO_HASH
    for canon, leaf_hex, prev_hex, row_hex in zip(blocks, leaves, prevs, rows, strict=True):
        leaf = leaf_hash(canon.encode("utf-8"))
        assert leaf.hex() == leaf_hex and prev.hex() == prev_hex
        prev = link_hash(prev, leaf)
        assert prev.hex() == row_hex
