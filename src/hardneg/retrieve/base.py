"""What every first-stage model offers: the :class:`Retriever` interface, deterministic top-k under ties, and
the :class:`CandidatePool` an ensemble hands to mining and evaluation."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np


def top_k(scores: np.ndarray, k: int, tie_rank: np.ndarray) -> np.ndarray:
    """Indices of the k best columns of each row, ordered by (-score, tie_rank): deterministic under ties."""
    k = min(k, scores.shape[1])
    if k < scores.shape[1]:
        # Keep every score tied with the k-th so ties at the cut-off are resolved by id rank, not by chance.
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        kth = np.take_along_axis(scores, part, axis=1).min(axis=1, keepdims=True)
        out = []
        for row, threshold in zip(scores, kth[:, 0]):
            cand = np.flatnonzero(row >= threshold)
            order = np.lexsort((tie_rank[cand], -row[cand]))[:k]
            out.append(cand[order])
        return np.stack(out)
    return np.stack([np.lexsort((tie_rank, -row)) for row in scores])


def id_rank(doc_ids: list[str]) -> np.ndarray:
    """Each document's position in id order: the tie-breaker every retriever of one corpus shares."""
    rank = np.empty(len(doc_ids), dtype=np.int64)
    rank[np.argsort(np.asarray(doc_ids, dtype=object), kind="stable")] = np.arange(len(doc_ids))
    return rank


class Retriever(ABC):
    """A first-stage model over one corpus."""

    name: str

    @abstractmethod
    def index(self, documents: list[str], doc_ids: list[str]) -> None:
        """Prepare to search ``documents`` (position i has id ``doc_ids[i]``)."""

    @abstractmethod
    def query_scores(self, queries: list[str], doc_idx: list[np.ndarray]) -> list[np.ndarray]:
        """Score the given documents (by corpus position) for each query."""

    @abstractmethod
    def search(self, queries: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k corpus positions and their scores per query, best first, ties broken by document id."""

    def document_vectors(self) -> np.ndarray | None:
        """The indexed documents' unit vectors (row i = corpus position i), or None for a model without any."""
        return getattr(self, "doc_vectors", None)

    def query_vectors(self, queries: list[str]) -> np.ndarray | None:
        """Unit query vectors in the documents' space, or None for a model without any (BM25)."""
        encode = getattr(self, "_queries", None)
        return None if encode is None else np.asarray(encode(queries), dtype=np.float32)


@dataclass(frozen=True)
class CandidatePool:
    """One query's candidates: corpus positions sorted best first by the fused score."""

    doc_idx: np.ndarray          # (n,) corpus positions
    member_scores: np.ndarray    # (members, n) raw scores, one row per ensemble member
    fused: np.ndarray            # (n,) fused score used for ranking
