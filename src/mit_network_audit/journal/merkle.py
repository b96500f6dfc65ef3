"""RFC 9162 (Certificate Transparency v2) Merkle trees over the journal's leaf hashes.

The journal already stores ``leaf_hash = SHA-256(0x00 || canon)`` per row (DESIGN §4), so every
function here takes *leaf hashes*, never leaf data.  Interior nodes are ``SHA-256(0x01 || l || r)``
and the tree of ``n`` leaves splits at the largest power of two smaller than ``n`` (RFC 9162 §2.1.1).

* ``CompactRange`` — the left-edge "peaks" of a prefix ``[0, size)``: one perfect subtree per set bit
  of ``size``.  Appending is O(1) amortised, the root is a fold over at most 64 peaks, and the peaks
  are the whole state to persist (a list of hashes).
* ``TreeView`` — proofs (inclusion §2.1.3.1, consistency §2.1.4.1) over a tree whose nodes come
  from callbacks: leaf hashes from the journal, perfect-subtree hashes persisted every ``STRIDE``
  levels, and the peaks of a vacuumed prefix.  A node is fetched in aligned blocks of
  ``2**STRIDE`` and cached, so one proof at 1M leaves costs about ``levels / STRIDE`` block reads
  and a few hundred hashes; with ``fetch_many`` every leaf and stored node a proof reads comes back
  from storage in a single round trip (what matters on PostgreSQL).
* ``verify_inclusion`` / ``verify_consistency`` — RFC 9162 §2.1.3.2 and §2.1.4.2 verbatim.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
STRIDE = 4  # persist perfect-subtree hashes at levels 4, 8, 12, ...  (~n/15 stored nodes)
_sha256 = hashlib.sha256


class ProofUnavailable(LookupError):
    """The nodes a proof needs are gone (e.g. below a retention vacuum's cut)."""


def hash_leaf(data: bytes) -> bytes:
    return _sha256(b"\x00" + data).digest()


def hash_children(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


def largest_power_of_two_below(n: int) -> int:
    """The ``k`` of RFC 9162: largest power of two strictly smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def peak_layout(size: int) -> list[tuple[int, int]]:
    """(level, index) of each peak of the prefix ``[0, size)``, left to right."""
    out, start = [], 0
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            out.append((level, start >> level))
            start += 1 << level
    return out


class CompactRange:
    """Peaks of the prefix ``[0, size)``; ``on_node(level, index, hash)`` sees every node completed."""

    __slots__ = ("size", "peaks", "on_node")

    def __init__(self, size: int = 0, peaks: Sequence[bytes] = (),
                 on_node: Callable[[int, int, bytes], None] | None = None) -> None:
        if len(peaks) != bin(size).count("1"):
            raise ValueError(f"a compact range of size {size} has {bin(size).count('1')} peaks, got {len(peaks)}")
        if any(len(p) != HASH_SIZE for p in peaks):
            raise ValueError("peaks must be 32-byte hashes")
        self.size = size
        self.peaks = list(peaks)
        self.on_node = on_node

    def append(self, leaf: bytes) -> None:
        index, h, level = self.size, leaf, 0
        peaks = self.peaks
        while index >> level & 1:
            h = _sha256(b"\x01" + peaks.pop() + h).digest()
            level += 1
            if self.on_node is not None:
                self.on_node(level, index >> level, h)
        peaks.append(h)
        self.size = index + 1

    def extend(self, leaves) -> None:
        for leaf in leaves:
            self.append(leaf)

    def root(self) -> bytes:
        if not self.peaks:
            return EMPTY_ROOT
        r = self.peaks[-1]
        for p in reversed(self.peaks[:-1]):
            r = _sha256(b"\x01" + p + r).digest()
        return r

    def copy(self) -> CompactRange:
        return CompactRange(self.size, self.peaks)

    def to_hex(self) -> list[str]:
        return [p.hex() for p in self.peaks]

    @classmethod
    def from_hex(cls, size: int, peaks: Sequence[str]) -> CompactRange:
        return cls(size, [bytes.fromhex(p) for p in peaks])


def root_of(leaves: Sequence[bytes]) -> bytes:
    """MTH over leaf hashes."""
    cr = CompactRange()
    cr.extend(leaves)
    return cr.root()


# --- proofs over a tree whose nodes come from storage ----------------------------------------------

LeafFetcher = Callable[[int, int], Sequence[bytes]]  # (lo, hi) -> leaf hashes of [lo, hi)
NodeFetcher = Callable[[int, int, int], dict]  # (level, lo, hi) -> {index: hash} of stored nodes
# ([(lo, hi) leaf ranges], [(level, lo, hi) stored-node ranges]) -> ({leaf index: hash}, {(level, index): hash})
ManyFetcher = Callable[[list, list], tuple[dict, dict]]


class TreeView:
    """Read-only view of the tree of ``size`` leaves for proof generation.

    ``base`` is a compact range of a prefix whose leaves are no longer available (vacuumed rows);
    its peaks stand in for them.  ``fetch_nodes`` returns persisted perfect-subtree hashes at levels
    that are multiples of ``stride`` (any may be missing: they are recomputed from below).
    """

    def __init__(self, size: int, fetch_leaves: LeafFetcher, fetch_nodes: NodeFetcher | None = None, *,
                 base: CompactRange | None = None, stride: int = STRIDE, fetch_many: ManyFetcher | None = None) -> None:
        if size < 0:
            raise ValueError("negative tree size")
        self.size = size
        self._fetch_leaves = fetch_leaves
        self._fetch_nodes = fetch_nodes
        self._fetch_many = fetch_many
        self.stride = stride
        self.base_size = 0
        self._known: dict[tuple[int, int], bytes] = {}
        if base is not None and base.size:
            if base.size > size:
                raise ValueError("base range is larger than the tree")
            self.base_size = base.size
            for (level, index), h in zip(peak_layout(base.size), base.peaks, strict=True):
                self._known[(level, index)] = h
        self._leaf_blocks: dict[int, tuple[int, Sequence[bytes]]] = {}
        self._node_blocks: dict[tuple[int, int], dict] = {}

    @classmethod
    def of_leaves(cls, leaves: Sequence[bytes]) -> TreeView:
        return cls(len(leaves), lambda lo, hi: leaves[lo:hi])

    # -- nodes ---------------------------------------------------------------------------------
    def node(self, level: int, index: int) -> bytes:
        """Hash of the perfect subtree covering leaves ``[index * 2**level, (index + 1) * 2**level)``."""
        key = (level, index)
        h = self._known.get(key)
        if h is not None:
            return h
        start = index << level
        if start + (1 << level) > self.size:
            raise ValueError(f"node ({level}, {index}) is not complete in a tree of size {self.size}")
        if level == 0:
            h = self._leaf(start)
        else:
            if self._fetch_nodes is not None and level % self.stride == 0:
                h = self._stored(level, index)
            if h is None:
                h = _sha256(b"\x01" + self.node(level - 1, 2 * index) + self.node(level - 1, 2 * index + 1)).digest()
        self._known[key] = h
        return h

    def _leaf(self, i: int) -> bytes:
        if i < self.base_size:
            raise ProofUnavailable(f"leaf {i} was removed by a retention vacuum (cut at {self.base_size})")
        block = i >> self.stride
        got = self._leaf_blocks.get(block)
        if got is None:
            lo = max(block << self.stride, self.base_size)
            hi = min((block + 1) << self.stride, self.size)
            got = (lo, self._fetch_leaves(lo, hi))
            if len(got[1]) != hi - lo:
                raise ProofUnavailable(f"leaves {lo}..{hi - 1}: storage returned {len(got[1])} of {hi - lo}")
            self._leaf_blocks[block] = got
        lo, leaves = got
        return leaves[i - lo]

    def _stored(self, level: int, index: int) -> bytes | None:
        block = index >> self.stride
        got = self._node_blocks.get((level, block))
        if got is None:
            got = self._fetch_nodes(level, block << self.stride, (block + 1) << self.stride)
            self._node_blocks[(level, block)] = got
        return got.get(index)

    def range_hash(self, lo: int, hi: int) -> bytes:
        """MTH of leaves ``[lo, hi)`` where ``lo`` is aligned as in RFC 9162's recursion."""
        n = hi - lo
        if n <= 0:
            raise ValueError("empty range")
        if n & (n - 1) == 0 and lo % n == 0:
            return self.node(n.bit_length() - 1, lo // n)
        k = largest_power_of_two_below(n)
        return hash_children(self.range_hash(lo, lo + k), self.range_hash(lo + k, hi))

    def root(self) -> bytes:
        return EMPTY_ROOT if self.size == 0 else self._hash_ranges([(0, self.size)])[0]

    # -- batching: one storage round trip per proof ----------------------------------------------
    @staticmethod
    def _perfect_nodes(lo: int, hi: int, out: list) -> None:
        n = hi - lo
        if n & (n - 1) == 0 and lo % n == 0:
            out.append((n.bit_length() - 1, lo // n))
            return
        k = largest_power_of_two_below(n)
        TreeView._perfect_nodes(lo, lo + k, out)
        TreeView._perfect_nodes(lo + k, hi, out)

    def _prefetch(self, ranges: list[tuple[int, int]]) -> None:
        """Ask ``fetch_many`` once for every stored node and leaf the ranges' hashes will read."""
        if self._fetch_many is None:
            return
        nodes: list[tuple[int, int]] = []
        for lo, hi in ranges:
            self._perfect_nodes(lo, hi, nodes)
        leaf_ranges, node_ranges = [], []
        for level, index in nodes:
            if (level, index) in self._known:
                continue
            base = level - level % self.stride if self._fetch_nodes is not None else 0
            lo, hi = index << (level - base), (index + 1) << (level - base)
            if base == 0:
                lo = max(lo, self.base_size)
                if lo < hi:
                    leaf_ranges.append((lo, hi))
            else:
                node_ranges.append((base, lo, hi))
        if not leaf_ranges and not node_ranges:
            return
        leaves, stored = self._fetch_many(leaf_ranges, node_ranges)
        for i, h in leaves.items():
            self._known.setdefault((0, i), h)
        for key, h in stored.items():
            self._known.setdefault(key, h)

    def _hash_ranges(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        self._prefetch(ranges)
        return [self.range_hash(lo, hi) for lo, hi in ranges]

    # -- proofs --------------------------------------------------------------------------------
    def inclusion_proof(self, index: int) -> list[bytes]:
        """RFC 9162 §2.1.3.1 PATH(index, D[size])."""
        if not 0 <= index < self.size:
            raise ValueError(f"leaf index {index} outside a tree of size {self.size}")
        ranges: list[tuple[int, int]] = []
        lo, hi, m = 0, self.size, index
        while hi - lo > 1:
            k = largest_power_of_two_below(hi - lo)
            if m < k:
                ranges.append((lo + k, hi))
                hi = lo + k
            else:
                ranges.append((lo, lo + k))
                lo, m = lo + k, m - k
        ranges.reverse()
        return self._hash_ranges(ranges)

    def consistency_proof(self, old_size: int) -> list[bytes]:
        """RFC 9162 §2.1.4.1 PROOF(old_size, D[size])."""
        if not 0 <= old_size <= self.size:
            raise ValueError(f"old size {old_size} outside 0..{self.size}")
        if old_size == 0 or old_size == self.size:
            return []
        ranges: list[tuple[int, int]] = []
        lo, hi, m, complete = 0, self.size, old_size, True
        while m != hi - lo:
            k = largest_power_of_two_below(hi - lo)
            if m <= k:
                ranges.append((lo + k, hi))
                hi = lo + k
            else:
                ranges.append((lo, lo + k))
                lo, m, complete = lo + k, m - k, False
        if not complete:
            ranges.append((lo, hi))
        ranges.reverse()
        return self._hash_ranges(ranges)


# --- verification (RFC 9162 §2.1.3.2, §2.1.4.2) -----------------------------------------------------

def _ok_hash(h) -> bool:
    return isinstance(h, bytes | bytearray) and len(h) == HASH_SIZE


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes | None:
    if not (0 <= index < size) or not _ok_hash(leaf) or not all(_ok_hash(p) for p in proof):
        return None
    fn, sn, r = index, size - 1, bytes(leaf)
    for p in proof:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = hash_children(p, r)
            if not fn & 1:
                while not (fn & 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            r = hash_children(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> bool:
    got = root_from_inclusion(index, size, leaf, proof)
    return got is not None and _ok_hash(root) and got == root


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes,
                       proof: Sequence[bytes]) -> bool:
    if not (0 <= old_size <= new_size) or not all(_ok_hash(p) for p in proof):
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        return not proof  # the empty tree is a prefix of every tree
    if not proof or not _ok_hash(old_root) or not _ok_hash(new_root):
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, bytes(old_root))
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = hash_children(c, fr)
            sr = hash_children(c, sr)
            if not fn & 1:
                while not (fn & 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            sr = hash_children(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root


def verify_range(size: int, left: CompactRange, leaves: Sequence[bytes], proof: Sequence[bytes],
                    root: bytes) -> bool:
    """A contiguous run of leaves is in the tree: the peaks left of it plus the run give the tree
    of ``left.size + len(leaves)`` leaves, which the consistency ``proof`` extends to ``root``."""
    cr = left.copy()
    cr.extend(leaves)
    return verify_consistency(cr.size, size, cr.root(), root, proof)
