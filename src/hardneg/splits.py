"""Seeded, hash-based query splits: a query's side depends only on its id and the seed, so it is stable as
queries are added."""

from __future__ import annotations

import hashlib


def split_queries(query_ids: list[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Deterministic (train, dev) split by hashing each id with the seed; both keep the input order."""
    def key(q: str) -> str:
        return hashlib.sha256(f"{seed}\x00{q}".encode()).hexdigest()

    ordered = sorted(query_ids, key=key)
    n_dev = int(round(fraction * len(ordered)))
    dev = set(ordered[:n_dev])
    return [q for q in query_ids if q not in dev], [q for q in query_ids if q in dev]


def sample_queries(query_ids: list[str], n: int | None, seed: int) -> list[str]:
    """At most ``n`` of ``query_ids`` (all of them for ``None``), a seeded hash sample in the input order."""
    if n is None or n >= len(query_ids):
        return query_ids
    keep = set(split_queries(query_ids, n / len(query_ids), seed + 1)[1])
    return [q for q in query_ids if q in keep]
