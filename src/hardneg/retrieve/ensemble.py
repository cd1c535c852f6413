"""The fused ensemble: several retrievers' top-k pooled, scored by every member and fused into one ranking.

The ensemble takes the union of its members' top-k, asks every member to score that pool (and any documents the
caller must see, such as the labelled positives), normalises each member's scores per query and averages them,
as its fusion's :class:`~hardneg.retrieve.fusion.FusionSpec` says.
"""

from __future__ import annotations

import logging

import numpy as np

from ..config import Fusion
from .base import CandidatePool, Retriever
from .fusion import FusionSpec, fuse_scores, fusion_spec
from .space import ConcatPCA

logger = logging.getLogger(__name__)


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
        self.spec: FusionSpec = fusion_spec(fusion)  # fails early on an unknown fusion name
        self.members = members
        self.fusion = fusion
        self.weights = np.asarray(weights if weights is not None else [1.0] * len(members), dtype=np.float64)
        self.kept_variance, self.seed = kept_variance, seed
        self.name = "+".join(m.name for m in members)
        self._space: ConcatPCA | None = None
        self._scoring: tuple[list[Retriever], np.ndarray] | None = None

    @property
    def picks_per_member(self) -> bool:
        """Whether mining takes each member's own top picks in turn rather than the fused order."""
        return self.spec.picking == "union"

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
        """The retrievers whose scores are fused and their weights: the members themselves, or for the concat-pca
        representation the one PCA space standing for all dense members (weight = their sum), then the sparse."""
        if self.spec.representation == "members":
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
        return fuse_scores(member_scores, self.scoring_members()[1], self.spec)

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
