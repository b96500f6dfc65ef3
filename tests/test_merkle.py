"""RFC 9162 Merkle trees: the transparency-dev/merkle published vectors, then random trees.

Vector data copied from transparency-dev/merkle (Apache-2.0): testonly/constants.go (leaf inputs,
node and root hashes) and proof/verify_test.go (inclusion and consistency proofs).
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mit_network_audit.journal.merkle import (
    EMPTY_ROOT,
    CompactRange,
    ProofUnavailable,
    TreeView,
    hash_leaf,
    peak_layout,
    root_from_inclusion,
    root_of,
    verify_consistency,
    verify_inclusion,
    verify_range,
)

h = bytes.fromhex
LEAF_INPUTS = [h(x) for x in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                              "606162636465666768696a6b6c6d6e6f")]
NODE_HASHES = [
    [h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
     h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
     h("0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7"),
     h("07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7"),
     h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
     h("4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658"),
     h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
     h("46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1")],
    [h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
     h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
     h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
     h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0")],
    [h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
     h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")],
    [h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")],
]
ROOTS = [EMPTY_ROOT] + [h(x) for x in (
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")]
# (leaf number (1-based), tree size, proof)
INCLUSION = [
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (3, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (2, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    (1, 1, []),
]
CONSISTENCY = [
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    (6, 7, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
]
SOME_HASH = h("abacaba000000000000000000000000000000000000000000060061e00123456")
LEAVES = [hash_leaf(x) for x in LEAF_INPUTS]


def test_empty_root_is_sha256_of_nothing():
    assert EMPTY_ROOT == hashlib.sha256(b"").digest() == ROOTS[0]
    assert root_of([]) == EMPTY_ROOT and TreeView(0, lambda lo, hi: []).root() == EMPTY_ROOT


@pytest.mark.parametrize("size", range(1, 9))
def test_root_vectors(size):
    assert root_of(LEAVES[:size]) == ROOTS[size]
    assert TreeView.of_leaves(LEAVES[:size]).root() == ROOTS[size]


def test_node_vectors_and_compact_range_peaks():
    view = TreeView.of_leaves(LEAVES)
    for level, row in enumerate(NODE_HASHES):
        for index, expected in enumerate(row):
            assert view.node(level, index) == expected
    seen = {}
    cr = CompactRange(on_node=lambda level, index, hash_: seen.__setitem__((level, index), hash_))
    for size, leaf in enumerate(LEAVES, start=1):
        cr.append(leaf)
        # CompactTrees() of the reference: the peaks are the perfect subtrees of the set bits
        assert cr.peaks == [NODE_HASHES[lv][ix] for lv, ix in peak_layout(size)]
        assert cr.root() == ROOTS[size]
    assert seen == {(lv, ix): NODE_HASHES[lv][ix] for lv in range(1, 4) for ix in range(len(NODE_HASHES[lv]))}


def _inclusion_corruptions(index, size, proof, root, leaf):
    """Mirror of the reference's corruptInclusionProof()."""
    out = [(index - 1, size, root, leaf, proof), (index + 1, size, root, leaf, proof),
           (index ^ 2, size, root, leaf, proof), (index, size * 2, root, leaf, proof),
           (index, size // 2, root, leaf, proof), (index, size, root, b"WrongLeaf", proof),
           (index, size, EMPTY_ROOT, leaf, proof), (index, size, SOME_HASH, leaf, proof),
           (index, size, root, leaf, [*proof, b""]), (index, size, root, leaf, [*proof, root]),
           (index, size, root, leaf, [b"", *proof]), (index, size, root, leaf, [root, *proof])]
    for i in range(len(proof)):
        wrong = list(proof)
        wrong[i] = bytes([wrong[i][0] ^ 8]) + wrong[i][1:]
        out.append((index, size, root, leaf, wrong))
    if proof:
        out.append((index, size, root, leaf, proof[:-1]))
    if len(proof) > 1:
        out.append((index, size, root, leaf, [SOME_HASH, proof[0], *proof[1:]]))
    return out


@pytest.mark.parametrize("leaf_no,size,proof", INCLUSION)
def test_inclusion_vectors(leaf_no, size, proof):
    proof = [h(p) for p in proof]
    index, root, leaf = leaf_no - 1, ROOTS[size], LEAVES[leaf_no - 1]
    assert TreeView.of_leaves(LEAVES[:size]).inclusion_proof(index) == proof
    assert root_from_inclusion(index, size, leaf, proof) == root
    assert verify_inclusion(index, size, leaf, proof, root)
    for args in _inclusion_corruptions(index, size, proof, root, leaf):
        if args[0] == index and args[1] == size and args[2:] == (root, leaf, proof):
            continue
        assert not verify_inclusion(args[0], args[1], args[3], args[4], args[2]), args[:2]


def test_inclusion_bad_parameters():
    for index, size in ((0, 0), (1, 0), (2, 1)):
        assert not verify_inclusion(index, size, SOME_HASH, [], EMPTY_ROOT)
    leaf = hash_leaf(b"data")
    assert verify_inclusion(0, 1, leaf, [], leaf)
    assert not verify_inclusion(0, 1, b"", [], leaf) and not verify_inclusion(0, 1, leaf, [], b"")
    for bad in ((0, 0), (1, 0), (7, 7), (8, 7)):
        with pytest.raises(ValueError):
            TreeView.of_leaves(LEAVES[: bad[1]]).inclusion_proof(bad[0])


def _consistency_corruptions(m, n, r1, r2, proof):
    """Mirror of the reference's corruptConsistencyProof()."""
    out = [(m - 1, n, r1, r2, proof), (m + 1, n, r1, r2, proof), (m ^ 2, n, r1, r2, proof),
           (m, n * 2, r1, r2, proof), (m, n // 2, r1, r2, proof), (m, n, b"WrongRoot", r2, proof),
           (m, n, r1, b"WrongRoot", proof), (m, n, r2, r1, proof), (m, n, r1, r2, []),
           (m, n, r1, r2, [*proof, b""]), (m, n, r1, r2, [*proof, r1]), (m, n, r1, r2, [*proof, r2]),
           (m, n, r1, r2, [b"", *proof]), (m, n, r1, r2, [r1, *proof]), (m, n, r1, r2, [r2, *proof]),
           (m, n, r1, r2, [proof[0], *proof]), (m, n, r1, r2, proof[:-1])]
    for i in range(len(proof)):
        wrong = list(proof)
        wrong[i] = bytes([wrong[i][0] ^ 16]) + wrong[i][1:]
        out.append((m, n, r1, r2, wrong))
    return out


@pytest.mark.parametrize("m,n,proof", CONSISTENCY)
def test_consistency_vectors(m, n, proof):
    proof = [h(p) for p in proof]
    assert TreeView.of_leaves(LEAVES[:n]).consistency_proof(m) == proof
    assert verify_consistency(m, n, ROOTS[m], ROOTS[n], proof)
    if proof:
        for args in _consistency_corruptions(m, n, ROOTS[m], ROOTS[n], proof):
            assert not verify_consistency(*args), args[:2]


def test_consistency_edge_cases():
    r1, r2 = b"don't care 1", b"don't care 2"
    assert not verify_consistency(0, 0, r1, r2, [])
    assert not verify_consistency(1, 1, r1, r2, [])
    assert verify_consistency(0, 0, r1, r1, []) and verify_consistency(0, 1, r1, r2, [])
    assert verify_consistency(1, 1, r2, r2, [])
    assert not verify_consistency(1, 0, r1, r2, []) and not verify_consistency(2, 1, r1, r2, [])
    assert not verify_consistency(1, 2, r1, r2, [])
    for m, n in ((0, 0), (0, 1), (1, 1)):
        assert not verify_consistency(m, n, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT])


@pytest.mark.parametrize("index,size,hashes", [(81, 95, 6), (24, 31, 5), (10, 15, 4), (0, 7, 3)])
def test_proof_lengths_match_reference_shapes(index, size, hashes):
    # proof/proof_test.go: Inclusion(81, 95) has 8 node ids of which 3 are rehashed into one, ...
    leaves = [hash_leaf(i.to_bytes(4, "big")) for i in range(size)]
    assert len(TreeView.of_leaves(leaves).inclusion_proof(index)) == hashes


# --- random trees -------------------------------------------------------------------------------------

def _tampered(proof: list[bytes], draw_index: int, byte: int) -> list[bytes]:
    i = draw_index % len(proof)
    p = bytearray(proof[i])
    p[byte % 32] ^= 1 << (byte % 8)
    return [*proof[:i], bytes(p), *proof[i + 1:]]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(size=st.integers(1, 300), data=st.data())
def test_random_inclusion_proofs_verify_and_tampering_is_rejected(size, data):
    leaves = [hash_leaf(i.to_bytes(4, "big")) for i in range(size)]
    view = TreeView.of_leaves(leaves)
    root = view.root()
    assert root == root_of(leaves)
    index = data.draw(st.integers(0, size - 1))
    proof = view.inclusion_proof(index)
    assert len(proof) <= size.bit_length()
    assert verify_inclusion(index, size, leaves[index], proof, root)
    if proof:
        k, b = data.draw(st.integers(0, 1000)), data.draw(st.integers(0, 255))
        assert not verify_inclusion(index, size, leaves[index], _tampered(proof, k, b), root)
        assert not verify_inclusion(index, size, leaves[index], proof[:-1], root)
        assert not verify_inclusion(index, size, leaves[index], [*proof, proof[-1]], root)
    other = data.draw(st.integers(0, 2 * size))
    if other != index:
        assert not verify_inclusion(other, size, leaves[index], proof, root)
    # Wrong tree height is rejected.  (A proof does not bind the size by itself when two sizes share
    # the path's shape; the signed checkpoint binds size and root together.)
    if proof:
        assert not verify_inclusion(index, size * 2, leaves[index], proof, root)
    if index < size // 2:
        assert not verify_inclusion(index, size // 2, leaves[index], proof, root)
    assert not verify_inclusion(index, size, hash_leaf(b"other"), proof, root)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 300), data=st.data())
def test_random_consistency_proofs_verify_and_tampering_is_rejected(n, data):
    leaves = [hash_leaf(i.to_bytes(4, "big")) for i in range(n)]
    m = data.draw(st.integers(1, n))
    view = TreeView.of_leaves(leaves)
    r1, r2 = root_of(leaves[:m]), view.root()
    proof = view.consistency_proof(m)
    assert verify_consistency(m, n, r1, r2, proof)
    if m == n:
        assert proof == []
        return
    k, b = data.draw(st.integers(0, 1000)), data.draw(st.integers(0, 255))
    assert not verify_consistency(m, n, r1, r2, _tampered(proof, k, b))
    assert not verify_consistency(m, n, r1, r2, proof[:-1])
    assert not verify_consistency(m, n, r1, r2, [*proof, proof[0]])
    wrong_m = data.draw(st.integers(1, n))
    if wrong_m != m:
        assert not verify_consistency(wrong_m, n, root_of(leaves[:wrong_m]), r2, proof) or \
            view.consistency_proof(wrong_m) == proof
    # a different history of the same size is not consistent
    forged = [*leaves[: m - 1], hash_leaf(b"forged")]
    assert not verify_consistency(m, n, root_of(forged), r2, proof)


@settings(max_examples=150, deadline=None)
@given(n=st.integers(1, 200), data=st.data())
def test_views_with_stored_nodes_and_a_vacuumed_prefix_give_the_same_proofs(n, data):
    leaves = [hash_leaf(i.to_bytes(4, "big")) for i in range(n)]
    stored: dict[tuple[int, int], bytes] = {}
    full = CompactRange(on_node=lambda lv, ix, hh: stored.__setitem__((lv, ix), hh) if lv % 4 == 0 else None)
    full.extend(leaves)
    cut = data.draw(st.integers(0, n))
    base = CompactRange()
    base.extend(leaves[:cut])
    fetched = []

    def fetch_leaves(lo, hi):
        assert lo >= cut, "a vacuumed leaf was read"
        fetched.append((lo, hi))
        return leaves[lo:hi]

    def fetch_nodes(level, lo, hi):
        return {ix: hh for (lv, ix), hh in stored.items() if lv == level and lo <= ix < hi}

    calls = []

    def fetch_many(leaf_ranges, node_ranges):
        calls.append(1)
        got = {i: leaves[i] for lo, hi in leaf_ranges for i in range(lo, hi)}
        assert all(i >= cut for i in got), "a vacuumed leaf was read"
        return got, {(lv, ix): hh for (lv, ix), hh in stored.items()
                     if any(lv == level and lo <= ix < hi for level, lo, hi in node_ranges)}

    view = TreeView(n, fetch_leaves, fetch_nodes, base=base)
    batched = TreeView(n, fetch_leaves, fetch_nodes, base=base, fetch_many=fetch_many)
    plain = TreeView.of_leaves(leaves)
    assert view.root() == plain.root() == full.root()
    if cut < n:
        index = data.draw(st.integers(cut, n - 1))
        assert view.inclusion_proof(index) == plain.inclusion_proof(index)
        fetched.clear()
        calls.clear()
        assert batched.inclusion_proof(index) == plain.inclusion_proof(index)
        assert len(calls) <= 1 and not fetched  # one round trip, no block-by-block reads
    m = data.draw(st.integers(max(cut, 1), n))
    assert view.consistency_proof(m) == plain.consistency_proof(m)
    assert batched.consistency_proof(m) == plain.consistency_proof(m)
    if cut >= 2:  # leaf 0 is gone and is no peak of the vacuumed prefix
        with pytest.raises(ProofUnavailable):
            TreeView(n, fetch_leaves, None, base=base).node(0, 0)


@settings(max_examples=150, deadline=None)
@given(n=st.integers(1, 200), data=st.data())
def test_range_proofs(n, data):
    leaves = [hash_leaf(i.to_bytes(4, "big")) for i in range(n)]
    a = data.draw(st.integers(0, n - 1))
    b = data.draw(st.integers(a + 1, n))
    left = CompactRange()
    left.extend(leaves[:a])
    view = TreeView.of_leaves(leaves)
    proof = view.consistency_proof(b)
    assert verify_range(n, left, leaves[a:b], proof, view.root())
    forged = list(leaves[a:b])
    forged[data.draw(st.integers(0, len(forged) - 1))] = hash_leaf(b"forged")
    assert not verify_range(n, left, forged, proof, view.root())
    if b - a > 1:
        assert not verify_range(n, left, leaves[a:b - 1], proof, view.root())


def test_compact_range_validates_its_state():
    with pytest.raises(ValueError):
        CompactRange(3, [SOME_HASH])
    with pytest.raises(ValueError):
        CompactRange(1, [b"short"])
    cr = CompactRange.from_hex(3, [NODE_HASHES[1][0].hex(), NODE_HASHES[0][2].hex()])
    assert cr.root() == ROOTS[3]
