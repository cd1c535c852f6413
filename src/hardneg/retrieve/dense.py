"""Dense first stage: cosine similarity of an embedder's unit vectors, searched with FAISS."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..embed import Embedder
from ..knn import SearchOptions, build_index
from ..knn import search as knn_search
from .base import Retriever, id_rank


class DenseRetriever(Retriever):
    """Cosine similarity of an embedder's normalised vectors: FAISS candidates, queries in blocks (bounded memory).

    Document vectors are kept as ``dtype`` (float16 by default: half the memory, ~1e-3 error in a cosine).
    """

    def __init__(self, embedder: Embedder, cache_dir: str | Path | None = None, progress: bool = True,
                 block_size: int = 4096, search: SearchOptions | None = None, dtype: str = "float16",
                 workers: int = 1):
        self.embedder = embedder
        self.name = embedder.name
        self.cache_dir = cache_dir
        self.progress = progress
        self.search_options = search or SearchOptions(query_block=block_size)
        self.dtype = np.dtype(dtype)
        self.workers = workers
        self.doc_vectors: np.ndarray | None = None
        self._index = None
        self._query_cache: dict[str, np.ndarray] = {}

    def index(self, documents: list[str], doc_ids: list[str]) -> None:
        self.doc_vectors = self.embedder.embed(documents, "document", self.cache_dir, self.progress,
                                               dtype=self.dtype, workers=self.workers)
        self.tie_rank = id_rank(doc_ids)
        self._index = None  # built on first search: a retriever used only to score pools never needs one

    def _queries(self, queries: list[str]) -> np.ndarray:
        missing = [q for q in dict.fromkeys(queries) if q not in self._query_cache]
        if missing:
            vectors = self.embedder.embed(missing, "query", self.cache_dir, self.progress, dtype=self.dtype,
                                          workers=self.workers)
            self._query_cache.update(zip(missing, vectors))
        return np.stack([self._query_cache[q] for q in queries])

    def query_scores(self, queries: list[str], doc_idx: list[np.ndarray]) -> list[np.ndarray]:
        q = self._queries(queries).astype(np.float32)
        return [self.doc_vectors[idx].astype(np.float32) @ q[i] for i, idx in enumerate(doc_idx)]

    def search(self, queries: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        if self._index is None:
            self._index = build_index(self.doc_vectors, self.search_options)
        return knn_search(self._index, self.doc_vectors, self._queries(queries), k, self.tie_rank,
                          self.search_options)
