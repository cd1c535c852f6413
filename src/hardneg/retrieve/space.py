"""The concat-pca representation: several dense members' vectors as one PCA-reduced dense space."""

from __future__ import annotations

import logging

import numpy as np

from .base import Retriever, top_k

logger = logging.getLogger(__name__)


def _unit(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.maximum(norms, 1e-12)).astype(np.float32)


class ConcatPCA(Retriever):
    """Dense members' unit vectors concatenated (each scaled by the square root of its weight) and reduced by
    PCA to the components that keep ``kept_variance`` of the variance, then re-normalised: one dense space.

    Without the PCA step, the cosine in this space is the weighted mean of the members' cosines; PCA drops the
    directions the members share little variance on. PCA is fitted on a seeded sample of at most ``fit_sample``
    documents and the corpus is projected in blocks, so the full concatenation is never held in memory.
    """

    def __init__(self, members: list[Retriever], weights: list[float] | None = None, kept_variance: float = 0.95,
                 seed: int = 0, fit_sample: int = 50_000, block_size: int = 65_536):
        if not members:
            raise ValueError("concat-pca needs at least one dense member.")
        if not 0 < kept_variance <= 1:
            raise ValueError(f"kept_variance must be in (0, 1], got {kept_variance}")
        self.members = members
        self.scale = np.sqrt(np.asarray(weights if weights is not None else [1.0] * len(members), dtype=np.float64))
        self.kept_variance, self.seed = kept_variance, seed
        self.fit_sample, self.block_size = fit_sample, block_size
        self.name = "concat-pca(" + "+".join(m.name for m in members) + ")"
        self.doc_vectors: np.ndarray | None = None

    @property
    def tie_rank(self) -> np.ndarray:
        return self.members[0].tie_rank

    def _concat(self, parts: list[np.ndarray]) -> np.ndarray:
        return np.hstack([np.asarray(p, dtype=np.float32) * s for p, s in zip(parts, self.scale)])

    def index(self, documents: list[str] | None = None, doc_ids: list[str] | None = None) -> None:
        """Fit the PCA on the members' (already indexed) document vectors and project the corpus."""
        from sklearn.decomposition import PCA

        vectors = [m.document_vectors() for m in self.members]
        missing = [m.name for m, v in zip(self.members, vectors) if v is None]
        if missing:
            raise ValueError(f"concat-pca: {missing} have no document vectors (only dense models can be concatenated)")
        n = len(vectors[0])
        rng = np.random.default_rng(self.seed)
        sample = np.sort(rng.choice(n, size=self.fit_sample, replace=False)) if n > self.fit_sample else np.arange(n)
        fit = self._concat([v[sample] for v in vectors])
        components = self.kept_variance if self.kept_variance < 1 else None
        self.pca = PCA(n_components=components, svd_solver="full", random_state=self.seed).fit(fit)
        blocks = [self.pca.transform(self._concat([v[s:s + self.block_size] for v in vectors]))
                  for s in range(0, n, self.block_size)]
        self.doc_vectors = _unit(np.concatenate(blocks))
        logger.info("concat-pca: %d dims -> %d components keep %.1f%% of the variance", fit.shape[1],
                    self.pca.n_components_, 100 * float(self.pca.explained_variance_ratio_.sum()))

    def query_vectors(self, queries: list[str]) -> np.ndarray:
        if self.doc_vectors is None:
            self.index()
        return _unit(self.pca.transform(self._concat([m.query_vectors(queries) for m in self.members])))

    def document_vectors(self) -> np.ndarray:
        if self.doc_vectors is None:
            self.index()
        return self.doc_vectors

    def query_scores(self, queries: list[str], doc_idx: list[np.ndarray]) -> list[np.ndarray]:
        q = self.query_vectors(queries)
        return [self.doc_vectors[idx] @ q[i] for i, idx in enumerate(doc_idx)]

    def search(self, queries: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        q = self.query_vectors(queries)
        ids, scores = [], []
        for start in range(0, len(queries), 1024):
            block = q[start:start + 1024] @ self.doc_vectors.T
            idx = top_k(block, k, self.tie_rank)
            ids.append(idx)
            scores.append(np.take_along_axis(block, idx, axis=1))
        return np.concatenate(ids), np.concatenate(scores)
