"""First-stage retrieval: single retrievers (dense or BM25) and their fused ensemble.

Every member answers two questions about a corpus it has indexed: the top-k documents for each query, and its
score for given (query, document) pairs. The ensemble takes the union of its members' top-k, asks every member
to score that pool (and any documents the caller must see, such as the labelled positives), normalises each
member's scores per query and averages them. Two fusions change what is fused: ``concat-pca`` concatenates the
dense members' unit vectors and reduces them by PCA to one representation (sparse members are then z-score fused
with it), and ``union`` keeps z-score ranking but lets mining take each member's own top picks in turn.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from .embed import Embedder, get_embedder
from .knn import SearchOptions, build_index
from .knn import search as knn_search

logger = logging.getLogger(__name__)

Fusion = Literal["zscore", "minmax", "rrf", "mean", "concat-pca", "union"]
FUSIONS = ("zscore", "minmax", "rrf", "mean", "concat-pca", "union")


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


def _id_rank(doc_ids: list[str]) -> np.ndarray:
    rank = np.empty(len(doc_ids), dtype=np.int64)
    rank[np.argsort(np.asarray(doc_ids, dtype=object), kind="stable")] = np.arange(len(doc_ids))
    return rank


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
        self.tie_rank = _id_rank(doc_ids)
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
        self.tie_rank = _id_rank(doc_ids)

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


def make_retriever(name: str, cache_dir: str | Path | None = None, progress: bool = True,
                   max_seq_length: int | None = None, search: SearchOptions | None = None, dtype: str = "float16",
                   workers: int = 1) -> Retriever:
    """``bm25`` or any embedder name (see :func:`hardneg.embed.get_embedder`)."""
    if name.lower() == "bm25":
        return BM25Retriever(progress=progress)
    return DenseRetriever(get_embedder(name, max_seq_length=max_seq_length), cache_dir=cache_dir, progress=progress,
                          search=search, dtype=dtype, workers=workers)


@dataclass(frozen=True)
class CandidatePool:
    """One query's candidates: corpus positions sorted best first by the fused score."""

    doc_idx: np.ndarray          # (n,) corpus positions
    member_scores: np.ndarray    # (members, n) raw scores, one row per ensemble member
    fused: np.ndarray            # (n,) fused score used for ranking


def normalise(scores: np.ndarray, method: Fusion, rrf_k: int = 60) -> np.ndarray:
    """Per-query normalisation of one member's scores over a candidate pool.

    ``concat-pca`` and ``union`` rank a pool by z-scores (their difference lies in what is fused and how mining
    picks, see :class:`Ensemble`).
    """
    if method in ("zscore", "concat-pca", "union"):
        std = scores.std()
        return (scores - scores.mean()) / std if std > 0 else np.zeros_like(scores)
    if method == "minmax":
        span = scores.max() - scores.min()
        return (scores - scores.min()) / span if span > 0 else np.zeros_like(scores)
    if method == "rrf":
        ranks = np.empty(len(scores))
        ranks[np.argsort(-scores, kind="stable")] = np.arange(1, len(scores) + 1)
        return 1.0 / (rrf_k + ranks)
    if method == "mean":
        return scores
    raise ValueError(f"Unknown fusion {method!r}: choose one of {', '.join(FUSIONS)}.")


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


def _unit(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.maximum(norms, 1e-12)).astype(np.float32)


class Ensemble:
    """Several retrievers fused into one ranking (a one-member ensemble is just that model)."""

    def __init__(self, members: list[Retriever], fusion: Fusion = "zscore", weights: list[float] | None = None,
                 kept_variance: float = 0.95, seed: int = 0):
        if not members:
            raise ValueError("An ensemble needs at least one member.")
        if weights is not None and len(weights) != len(members):
            raise ValueError(f"{len(weights)} weights given for {len(members)} ensemble members.")
        if weights is not None and (min(weights) < 0 or sum(weights) <= 0):
            raise ValueError(f"ensemble weights must be non-negative with a positive sum, got {weights}.")
        normalise(np.zeros(2), fusion)  # fail early on an unknown fusion name
        self.members = members
        self.fusion = fusion
        self.weights = np.asarray(weights if weights is not None else [1.0] * len(members), dtype=np.float64)
        self.kept_variance, self.seed = kept_variance, seed
        self.name = "+".join(m.name for m in members)
        self._space: ConcatPCA | None = None
        self._scoring: tuple[list[Retriever], np.ndarray] | None = None

    def space(self) -> ConcatPCA:
        """The dense members concatenated and PCA-reduced: the fused representation (built once, on first use)."""
        if self._space is None:
            dense = [(m, w) for m, w in zip(self.members, self.weights) if m.document_vectors() is not None]
            if not dense:
                raise ValueError(f"ensemble {self.name!r} has no dense member: concat-pca fusion and clustering need "
                                 "embeddings (add a dense model such as minilm)")
            self._space = ConcatPCA([m for m, _ in dense], [float(w) for _, w in dense], self.kept_variance,
                                    self.seed)
            self._space.index()
        return self._space

    def scoring_members(self) -> tuple[list[Retriever], np.ndarray]:
        """The retrievers whose scores are fused and their weights: the members themselves, or for concat-pca
        the one PCA space standing for all dense members (weight = their sum), followed by the sparse ones."""
        if self.fusion != "concat-pca":
            return self.members, self.weights
        if self._scoring is None:
            space = self.space()
            dense = {id(m) for m in space.members}
            rest = [(m, w) for m, w in zip(self.members, self.weights) if id(m) not in dense]
            weight = float(sum(w for m, w in zip(self.members, self.weights) if id(m) in dense))
            self._scoring = ([space] + [m for m, _ in rest], np.asarray([weight] + [w for _, w in rest]))
        return self._scoring

    @property
    def member_names(self) -> list[str]:
        """Names of the rows of each :class:`CandidatePool`'s ``member_scores``."""
        return [m.name for m in self.scoring_members()[0]]

    def dense_rows(self) -> tuple[list[int], np.ndarray]:
        """Which rows of ``member_scores`` are cosine similarities of unit vectors, and their weights."""
        members, weights = self.scoring_members()
        rows = [i for i, m in enumerate(members) if m.document_vectors() is not None]
        return rows, weights[rows]

    def doc_similarity(self, doc: int, others: np.ndarray) -> np.ndarray | None:
        """Weighted mean over the dense scoring members of cos(doc, other); None if no member is dense."""
        members = self.scoring_members()[0]
        rows, w = self.dense_rows()
        if not rows:
            return None
        sims = [members[r].document_vectors()[others].astype(np.float32) @
                members[r].document_vectors()[doc].astype(np.float32) for r in rows]
        return (np.stack(sims) * w[:, None]).sum(axis=0) / w.sum()

    def index(self, documents: list[str], doc_ids: list[str]) -> None:
        for member in self.members:
            logger.info("Indexing %d documents with %s", len(documents), member.name)
            member.index(documents, doc_ids)

    @property
    def tie_rank(self) -> np.ndarray:
        """Every member indexes the same corpus, so any member's id order breaks ties."""
        return self.members[0].tie_rank

    def fuse(self, member_scores: np.ndarray) -> np.ndarray:
        """Weighted mean of each scoring member's normalised scores (rows as in :meth:`scoring_members`)."""
        weights = self.scoring_members()[1]
        normalised = np.stack([normalise(row.astype(np.float64), self.fusion) for row in member_scores])
        return (weights[:, None] * normalised).sum(axis=0) / weights.sum()

    def candidates(self, queries: list[str], depth: int,
                   must_include: list[list[int]] | None = None) -> list[CandidatePool]:
        """Union of each member's top ``depth`` (plus ``must_include``), scored by all members and fused."""
        if must_include is not None and len(must_include) != len(queries):
            raise ValueError(f"must_include has {len(must_include)} entries for {len(queries)} queries")
        pools: list[set[int]] = [set(extra) for extra in must_include] if must_include else [set() for _ in queries]
        members = self.scoring_members()[0]
        for member in members:
            idx, _ = member.search(queries, depth)
            for pool, row in zip(pools, idx, strict=True):
                pool.update(int(i) for i in row)
        # Pools in id order, so any order-dependent step (RRF ranks under ties) breaks ties by id.
        tie = self.tie_rank
        doc_idx = [np.fromiter(sorted(pool, key=lambda i: tie[i]), dtype=np.int64, count=len(pool)) for pool in pools]
        per_member = [member.query_scores(queries, doc_idx) for member in members]
        out = []
        for qi, idx in enumerate(doc_idx):
            raw = np.stack([scores[qi] for scores in per_member]).astype(np.float32)
            fused = self.fuse(raw)
            order = np.lexsort((self.tie_rank[idx], -fused))
            out.append(CandidatePool(idx[order], raw[:, order], fused[order]))
        return out
