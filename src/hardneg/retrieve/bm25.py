"""Lexical first stage: Okapi BM25 over stemmed, stopword-filtered tokens (bm25s, imported when used)."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from .base import Retriever, id_rank, top_k


class BM25Retriever(Retriever):
    """Okapi BM25 (bm25s) with English stopwords and Snowball stemming."""

    name = "bm25"

    def __init__(self, k1: float = 1.5, b: float = 0.75, progress: bool = True, memo_floats: int = 32_000_000):
        self.k1, self.b, self.progress = k1, b, progress
        # An ensemble searches, then scores its pool, with the same queries: keep recent full-corpus score rows
        # (bounded, ~128 MB by default) so BM25 scores each query once, not twice.
        self.memo_floats = memo_floats
        self._memo: OrderedDict[str, np.ndarray] = OrderedDict()

    def _tokenize(self, texts: list[str], return_ids: bool):
        import bm25s
        import Stemmer

        return bm25s.tokenize(texts, stopwords="en", stemmer=Stemmer.Stemmer("english"), return_ids=return_ids,
                              show_progress=False)

    def index(self, documents: list[str], doc_ids: list[str]) -> None:
        import bm25s

        self._memo.clear()
        self.model = bm25s.BM25(k1=self.k1, b=self.b)
        self.model.index(self._tokenize(documents, True), show_progress=False)
        self.tie_rank = id_rank(doc_ids)

    def _full_scores(self, queries: list[str]) -> np.ndarray:
        missing = [q for q in dict.fromkeys(queries) if q not in self._memo]
        fresh = {}
        if missing:
            tokens = self._tokenize(missing, False)
            fresh = {q: (self.model.get_scores(t) if t else np.zeros(len(self.tie_rank))).astype(np.float32)
                     for q, t in zip(missing, tokens, strict=True)}
        rows = np.stack([fresh[q] if q in fresh else self._memo[q] for q in queries])
        capacity = self.memo_floats // max(len(self.tie_rank), 1)
        for q, row in fresh.items():
            if capacity:
                self._memo[q] = row
                self._memo.move_to_end(q)
        while len(self._memo) > capacity:
            self._memo.popitem(last=False)
        return rows

    def query_scores(self, queries: list[str], doc_idx: list[np.ndarray]) -> list[np.ndarray]:
        out = []
        for start in range(0, len(queries), 256):
            full = self._full_scores(queries[start:start + 256])
            out.extend(row[idx] for row, idx in zip(full, doc_idx[start:start + 256]))
        return out

    def search(self, queries: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        ids, scores = [], []
        for start in range(0, len(queries), 256):
            full = self._full_scores(queries[start:start + 256])
            idx = top_k(full, k, self.tie_rank)
            ids.append(idx)
            scores.append(np.take_along_axis(full, idx, axis=1))
        return np.concatenate(ids), np.concatenate(scores)
