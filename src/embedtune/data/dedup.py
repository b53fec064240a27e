"""Text normalisation and duplicate detection (exact and near-duplicate).

Near-duplicates are found with MinHash locality-sensitive hashing (``datasketch``) over word shingles and then
confirmed with the exact Jaccard similarity, so the result does not depend on hashing luck beyond recall:
a reported pair is always at or above the threshold.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

import numpy as np

_WORD = re.compile(r"\w+")
_DROP_CATEGORIES = {"Cc", "Cf"}  # control and format characters (zero-width spaces, soft hyphens, BOMs)


def normalize_text(text: str) -> str:
    """NFKC-normalise, drop control/format characters and collapse all whitespace to single spaces."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(ch if unicodedata.category(ch) not in _DROP_CATEGORIES or ch in "\t\n\r" else "" for ch in text)
    return " ".join(text.split())


def dedup_key(text: str) -> str:
    """Key under which two texts count as exact duplicates: case- and whitespace-insensitive."""
    return " ".join(normalize_text(text).casefold().split())


def shingles(text: str, size: int) -> set[str]:
    """Word n-grams of ``size`` words (the whole text if it is shorter), case-folded."""
    words = _WORD.findall(text.casefold())
    if len(words) <= size:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i : i + size]) for i in range(len(words) - size + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def near_duplicate_pairs(
    texts: Sequence[str],
    threshold: float,
    shingle_size: int,
    num_perm: int = 128,
) -> list[tuple[int, int, float]]:
    """All index pairs (i < j) whose shingle Jaccard similarity is ``>= threshold``.

    LSH proposes candidates at a slightly lower threshold for recall; each candidate is then checked exactly.
    """
    from datasketch import MinHash, MinHashLSH

    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"near-duplicate threshold must be in (0, 1], got {threshold}")
    sets = [shingles(t, shingle_size) for t in texts]
    lsh = MinHashLSH(threshold=max(0.05, threshold - 0.1), num_perm=num_perm)
    signatures: list[MinHash | None] = []
    for index, items in enumerate(sets):
        if not items:
            signatures.append(None)
            continue
        signature = MinHash(num_perm=num_perm, seed=1)
        signature.update_batch([s.encode("utf-8") for s in items])
        lsh.insert(index, signature)
        signatures.append(signature)
    pairs: list[tuple[int, int, float]] = []
    for i, signature in enumerate(signatures):
        if signature is None:
            continue
        for j in lsh.query(signature):
            if j > i:
                similarity = jaccard(sets[i], sets[j])
                if similarity >= threshold:
                    pairs.append((i, int(j), similarity))
    pairs.sort()
    return pairs


def group_pairs(n: int, pairs: Sequence[tuple[int, int, float]]) -> np.ndarray:
    """Union-find over index pairs: returns, for each index, the smallest index of its group."""
    parent = np.arange(n)

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:  # path compression
            parent[x], x = root, parent[x]
        return int(root)

    for i, j, _ in pairs:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    return np.array([find(i) for i in range(n)])
