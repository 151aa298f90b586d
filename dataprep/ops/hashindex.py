"""Pairs of 64-bit hashes within a Hamming distance, and clusters of them (union-find).

``near_pairs(hashes, mirrors, threshold)`` finds every pair ``i < j`` with
``min(d(h_i, h_j), d(h_i, m_j)) <= threshold`` (``m``: the hash of the mirrored image), so a
mirrored copy matches. Up to ``BRUTE_MAX`` hashes every pair is compared (numpy, in blocks);
beyond, a multi-index: the 64 bits are cut into ``CHUNKS`` chunks and, by the pigeonhole
principle, two hashes within ``threshold`` agree within ``threshold // CHUNKS`` bits on at least
one chunk; only the candidates found by probing those chunk neighbourhoods are compared. Both
give the same pairs (tested).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from itertools import combinations

import numpy as np

BRUTE_MAX = 4096
BLOCK = 1024
CHUNKS = 4  # 16-bit chunks
CHUNK_BITS = 64 // CHUNKS


def _popcount(x: np.ndarray) -> np.ndarray:
    return np.bitwise_count(x)


def _as_array(values: Sequence[int]) -> np.ndarray:
    return np.array([int(v) for v in values], dtype=np.uint64)


def distances(hashes: Sequence[int], mirrors: Sequence[int], i: int, j: int) -> int:
    """Distance of the pair (``i``, ``j``): the closer of ``j`` and its mirror to ``i``."""
    a = int(hashes[i])
    return min((a ^ int(hashes[j])).bit_count(), (a ^ int(mirrors[j])).bit_count())


def _brute(h: np.ndarray, m: np.ndarray, threshold: int) -> list[tuple[int, int, int]]:
    out: list[tuple[int, int, int]] = []
    n = len(h)
    for lo in range(0, n, BLOCK):
        a = h[lo:lo + BLOCK, None]
        d = np.minimum(_popcount(a ^ h[None, :]), _popcount(a ^ m[None, :]))
        rows, cols = np.nonzero(d <= threshold)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            i = lo + r
            if i < c:
                out.append((i, c, int(d[r, c])))
    return out


def _neighbourhood(value: int, radius: int) -> list[int]:
    """Every CHUNK_BITS-bit value within ``radius`` bits of ``value``."""
    out = [value]
    for r in range(1, radius + 1):
        for bits in combinations(range(CHUNK_BITS), r):
            flip = 0
            for b in bits:
                flip |= 1 << b
            out.append(value ^ flip)
    return out


def _indexed(h: np.ndarray, m: np.ndarray, threshold: int) -> list[tuple[int, int, int]]:
    radius = threshold // CHUNKS
    mask = (1 << CHUNK_BITS) - 1
    tables: list[dict[int, list[int]]] = [defaultdict(list) for _ in range(CHUNKS)]
    for idx, (a, b) in enumerate(zip(h.tolist(), m.tolist(), strict=True)):
        for c in range(CHUNKS):
            shift = c * CHUNK_BITS
            tables[c][(a >> shift) & mask].append(idx)
            if (b >> shift) & mask != (a >> shift) & mask:
                tables[c][(b >> shift) & mask].append(idx)
    found: dict[tuple[int, int], int] = {}
    for i, a in enumerate(h.tolist()):
        candidates: set[int] = set()
        for c in range(CHUNKS):
            table = tables[c]
            for probe in _neighbourhood((a >> (c * CHUNK_BITS)) & mask, radius):
                hit = table.get(probe)
                if hit:
                    candidates.update(hit)
        candidates.discard(i)
        if not candidates:
            continue
        cand = np.fromiter(candidates, dtype=np.int64, count=len(candidates))
        av = np.uint64(a)
        d = np.minimum(_popcount(av ^ h[cand]), _popcount(av ^ m[cand]))
        for j, dist in zip(cand[d <= threshold].tolist(), d[d <= threshold].tolist(),
                           strict=True):
            # d(i, j) may differ from d(j, i) (mirrors are compared one way); keep the closer
            key = (i, j) if i < j else (j, i)
            found[key] = min(found.get(key, 64), int(dist))
    return sorted((i, j, d) for (i, j), d in found.items())


def near_pairs(hashes: Sequence[int], mirrors: Sequence[int], threshold: int,
               method: str = "auto") -> list[tuple[int, int, int]]:
    """``(i, j, distance)`` for every ``i < j`` whose hashes are within ``threshold`` bits
    (either way round, each against the other's mirror too), sorted. ``method``: ``brute``,
    ``index`` or ``auto`` (brute up to ``BRUTE_MAX`` hashes)."""
    h, m = _as_array(hashes), _as_array(mirrors)
    if len(h) < 2:
        return []
    if method == "auto":
        method = "brute" if len(h) <= BRUTE_MAX else "index"
    if method == "brute":
        # symmetric: d(i, j) via j's mirror equals d(j, i) via i's mirror only if both
        # mirrors are exact; take the closer of both directions
        fwd = {(i, j): d for i, j, d in _brute(h, m, threshold)}
        back = _brute_back(h, m, threshold)
        for key, d in back.items():
            fwd[key] = min(fwd.get(key, 64), d)
        return sorted((i, j, d) for (i, j), d in fwd.items())
    return _indexed(h, m, threshold)


def _brute_back(h: np.ndarray, m: np.ndarray, threshold: int) -> dict[tuple[int, int], int]:
    """Pairs i < j found from j's side (``d(h_j, m_i)``)."""
    out: dict[tuple[int, int], int] = {}
    n = len(h)
    for lo in range(0, n, BLOCK):
        a = h[lo:lo + BLOCK, None]
        d = _popcount(a ^ m[None, :])
        rows, cols = np.nonzero(d <= threshold)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            j = lo + r
            if c < j:
                out[(c, j)] = int(d[r, c])
    return out


class UnionFind:
    """Disjoint sets over ``0..n-1`` (path halving, union by size)."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))
        self.size = [1] * n

    def find(self, x: int) -> int:
        parent = self.parent
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if self.size[ra] < self.size[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.size[ra] += self.size[rb]

    def groups(self) -> list[list[int]]:
        """Sets of two or more members, each sorted, in order of their first member."""
        by_root: dict[int, list[int]] = defaultdict(list)
        for x in range(len(self.parent)):
            by_root[self.find(x)].append(x)
        return sorted((g for g in by_root.values() if len(g) > 1), key=lambda g: g[0])


def clusters(n: int, pairs: Iterable[tuple[int, int]]) -> list[list[int]]:
    """Connected components (two or more members) of the graph of ``pairs`` over ``0..n-1``."""
    uf = UnionFind(n)
    for i, j in pairs:
        uf.union(i, j)
    return uf.groups()
