"""Duplicate documents: exact (hash of normalised text) and near (MinHash LSH over word shingles, datasketch)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

_WORDS = re.compile(r"\w+")


@dataclass(frozen=True)
class DuplicateGroup:
    """Documents judged the same; ``kept`` stays in the corpus, ``removed`` are dropped and aliased to it."""

    kept: str
    removed: tuple[str, ...]
    kind: str  # "exact" or "near"

    def as_dict(self) -> dict:
        return {"kept": self.kept, "removed": list(self.removed), "kind": self.kind}


def _key(text: str) -> str:
    return hashlib.sha1(" ".join(_WORDS.findall(text.lower())).encode()).hexdigest()


def _shingles(text: str, size: int) -> set[bytes]:
    words = _WORDS.findall(text.lower())
    if len(words) < size:
        return {" ".join(words).encode()} if words else set()
    return {" ".join(words[i:i + size]).encode() for i in range(len(words) - size + 1)}


def find_duplicates(ids: list[str], texts: list[str], near: bool = True, threshold: float = 0.8,
                    num_perm: int = 128, shingle: int = 3, seed: int = 1) -> list[DuplicateGroup]:
    """Groups of duplicates; in each, the first document in ``ids`` order is kept (callers pass a stable order).

    Exact duplicates compare case- and punctuation-insensitive word sequences. Near duplicates are pairs whose
    estimated Jaccard similarity of word ``shingle``-grams is at least ``threshold``, joined transitively.
    """
    parent = list(range(len(ids)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        a, b = find(i), find(j)
        if a != b:
            parent[max(a, b)] = min(a, b)  # the earlier document is the root, so it is the one kept

    first_with: dict[str, int] = {}
    exact_pairs: set[int] = set()
    for i, text in enumerate(texts):
        key = _key(text)
        if key in first_with:
            union(first_with[key], i)
            exact_pairs.add(i)
        else:
            first_with[key] = i
    near_members: set[int] = set()
    if near:
        try:
            from datasketch import MinHash, MinHashLSH
        except ImportError:
            raise ImportError("Near-duplicate detection needs datasketch: pip install 'hardneg[ingest]' "
                              "(or dedup='exact')") from None

        lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        sketches = {}
        for i in sorted(first_with.values()):  # one representative per exact group
            mh = MinHash(num_perm=num_perm, seed=seed)
            for sh in _shingles(texts[i], shingle):
                mh.update(sh)
            for j in lsh.query(mh):
                if sketches[j].jaccard(mh) >= threshold:  # LSH candidates are verified on the estimate
                    union(j, i)
                    near_members.update((i, j))
            sketches[i] = mh
            lsh.insert(i, mh)
    groups: dict[int, list[int]] = {}
    for i in range(len(ids)):
        groups.setdefault(find(i), []).append(i)
    out = []
    for root, members in sorted(groups.items()):
        if len(members) > 1:
            kind = "near" if any(m in near_members for m in members) else "exact"
            out.append(DuplicateGroup(ids[root], tuple(ids[m] for m in members if m != root), kind))
    return out
