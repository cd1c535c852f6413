"""Fusions of an ensemble, on hand-computed cases: normalisations, weights, concat-PCA and union picks."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import get_args

import numpy as np
import pytest

from hardneg.config import Fusion as ConfigFusion
from hardneg.data import load_beir
from hardneg.mine import mine, pair_rng
from hardneg.retrieve import (
    FUSIONS,
    METHODS,
    NORMALISATIONS,
    CandidatePool,
    ConcatPCA,
    Ensemble,
    Fusion,
    FusionSpec,
    Retriever,
    fuse_scores,
    normalise,
)
from hardneg.rules import PairContext, interleave, select_hard

from .conftest import write_beir
from .helpers import top_n


class Vectors(Retriever):
    """A dense retriever over fixed unit vectors; queries are looked up by text."""

    def __init__(self, name, docs, queries):
        self.name = name
        self.doc_vectors = _unit(np.asarray(docs, dtype=np.float32))
        self.queries = {k: _unit(np.asarray([v], dtype=np.float32))[0] for k, v in queries.items()}
        self.tie_rank = np.arange(len(docs))

    def index(self, documents, doc_ids):
        pass

    def _queries(self, queries):
        return np.stack([self.queries[q] for q in queries])

    def query_scores(self, queries, doc_idx):
        q = self._queries(queries)
        return [self.doc_vectors[idx] @ q[i] for i, idx in enumerate(doc_idx)]

    def search(self, queries, k):
        scores = self._queries(queries) @ self.doc_vectors.T
        idx = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return idx, np.take_along_axis(scores, idx, axis=1)


class Fixed(Retriever):
    """A sparse retriever with a fixed score per document (no vectors)."""

    def __init__(self, name, scores):
        self.name, self.scores, self.tie_rank = name, np.asarray(scores, dtype=np.float32), np.arange(len(scores))

    def index(self, documents, doc_ids):
        pass

    def query_scores(self, queries, doc_idx):
        return [self.scores[idx] for idx in doc_idx]

    def search(self, queries, k):
        idx = np.argsort(-self.scores, kind="stable")[:k]
        return np.tile(idx, (len(queries), 1)), np.tile(self.scores[idx], (len(queries), 1))


def _unit(m):
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def test_fusion_registry_keys_are_the_config_names():
    assert tuple(FUSIONS) == get_args(ConfigFusion)
    assert Fusion is ConfigFusion  # one list of names, in config


def test_fusion_specs_separate_normalisation_method_representation_and_picking():
    assert FUSIONS["mean"] == FusionSpec("none")
    assert FUSIONS["concat-pca"] == FusionSpec("zscore", representation="concat-pca")
    assert FUSIONS["union"] == FusionSpec("zscore", picking="union")
    assert {spec.normalisation for spec in FUSIONS.values()} == set(NORMALISATIONS)
    assert {spec.method for spec in FUSIONS.values()} <= set(METHODS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        FUSIONS["zscore"].normalisation = "minmax"
    with pytest.raises(TypeError):
        FUSIONS["max"] = FusionSpec("minmax")
    # concat-pca and union rank a pool by z-scores: they differ in what is fused and how mining picks
    s = np.array([3.0, 1.0, 2.0])
    for name in ("concat-pca", "union"):
        np.testing.assert_array_equal(normalise(s, name), normalise(s, "zscore"))
    a = Fixed("a", [1.0, 0.0])
    assert Ensemble([a], fusion="union").picks_per_member
    assert not any(Ensemble([a], fusion=name).picks_per_member for name in FUSIONS if name != "union")


def test_fuse_scores_is_the_ensembles_fusion():
    rows = np.array([[1.0, 0.0, 0.5], [0.0, 10.0, 5.0]], dtype=np.float32)
    weights = [2.0, 1.0]
    for name in ("zscore", "minmax", "rrf", "mean", "union"):
        ens = Ensemble([Fixed("a", rows[0]), Fixed("b", rows[1])], fusion=name, weights=weights)
        np.testing.assert_array_equal(ens.fuse(rows), fuse_scores(rows, np.asarray(weights), FUSIONS[name]))


def test_normalisations_by_hand():
    s = np.array([3.0, 1.0, 2.0])
    np.testing.assert_allclose(normalise(s, "minmax"), [1.0, 0.0, 0.5])
    np.testing.assert_allclose(normalise(s, "zscore"), [1.224745, -1.224745, 0.0], atol=1e-6)
    np.testing.assert_allclose(normalise(s, "rrf", rrf_k=60), [1 / 61, 1 / 63, 1 / 62])
    np.testing.assert_allclose(normalise(s, "mean"), s)
    np.testing.assert_allclose(normalise(np.ones(3), "zscore"), 0.0)  # no spread: no information
    with pytest.raises(ValueError, match="Unknown fusion"):
        normalise(s, "max")


def test_weighted_minmax_fusion_by_hand():
    a = Fixed("a", [1.0, 0.0, 0.5])
    b = Fixed("b", [0.0, 10.0, 5.0])
    ens = Ensemble([a, b], fusion="minmax", weights=[3.0, 1.0])
    # minmax: a -> [1, 0, .5], b -> [0, 1, .5]; weighted mean (3a + b) / 4 -> [.75, .25, .5]
    np.testing.assert_allclose(ens.fuse(np.array([[1.0, 0.0, 0.5], [0.0, 10.0, 5.0]])), [0.75, 0.25, 0.5])
    pool = ens.candidates(["q"], 3)[0]
    assert pool.doc_idx.tolist() == [0, 2, 1]


def test_concat_pca_keeps_the_requested_variance_and_scores_by_hand():
    rng = np.random.default_rng(0)
    # Two members whose documents vary along one direction each (plus tiny noise): ~2 components carry it all.
    base = rng.normal(size=(40, 2))
    a = np.hstack([base[:, :1] * 5, rng.normal(scale=0.01, size=(40, 3))]) + [0, 1, 1, 1]
    b = np.hstack([base[:, 1:] * 5, rng.normal(scale=0.01, size=(40, 3))]) + [0, 1, 1, 1]
    qa, qb = {"q": [1.0, 1.0, 1.0, 1.0]}, {"q": [-1.0, 1.0, 1.0, 1.0]}
    ma, mb = Vectors("a", a, qa), Vectors("b", b, qb)
    space = ConcatPCA([ma, mb], kept_variance=0.95, seed=0)
    space.index()
    assert space.pca.n_components_ <= 3 and space.doc_vectors.shape == (40, space.pca.n_components_)
    np.testing.assert_allclose(np.linalg.norm(space.doc_vectors, axis=1), 1.0, rtol=1e-5)
    # By hand: concatenate the unit vectors, project with the fitted PCA, normalise, take the dot product.
    concat_q = np.hstack([ma.queries["q"], mb.queries["q"]])[None]
    q = space.pca.transform(concat_q)[0]
    d = space.pca.transform(np.hstack([ma.doc_vectors, mb.doc_vectors]))
    expected = (d / np.linalg.norm(d, axis=1, keepdims=True)) @ (q / np.linalg.norm(q))
    np.testing.assert_allclose(space.query_scores(["q"], [np.arange(40)])[0], expected, rtol=1e-4, atol=1e-5)
    # kept_variance=1 keeps every component: the same space up to rotation, so the same cosines as plain concat
    full = ConcatPCA([ma, mb], kept_variance=1.0)
    assert full.document_vectors().shape[1] == 8


def test_concat_pca_ensemble_replaces_dense_members_and_keeps_sparse_ones():
    rng = np.random.default_rng(1)
    docs = rng.normal(size=(10, 4))
    dense1 = Vectors("d1", docs, {"q": [1, 0, 0, 0]})
    dense2 = Vectors("d2", docs[:, ::-1], {"q": [0, 0, 0, 1]})
    sparse = Fixed("bm25", np.arange(10)[::-1])
    ens = Ensemble([dense1, sparse, dense2], fusion="concat-pca", weights=[1.0, 2.0, 3.0])
    assert ens.member_names == ["concat-pca(d1+d2)", "bm25"]
    assert ens.scoring_members()[1].tolist() == [4.0, 2.0]  # dense weights summed
    pool = ens.candidates(["q"], 4)[0]
    assert pool.member_scores.shape[0] == 2 and len(set(pool.doc_idx.tolist())) == len(pool.doc_idx)
    with pytest.raises(ValueError, match="no dense member"):
        Ensemble([sparse], fusion="concat-pca").candidates(["q"], 3)


def test_union_takes_each_members_top_picks_in_turn():
    assert interleave([np.array([3, 1, 2]), np.array([3, 4, 1])]) == [3, 1, 4, 2]
    # member a prefers docs 1, 2, 3; member b prefers 4, 5, 1; fused order is the pool order 0..5 (0 = positive)
    member_scores = np.array([[1.0, 0.9, 0.8, 0.7, 0.1, 0.0], [1.0, 0.3, 0.1, 0.0, 0.9, 0.8]])
    pool = CandidatePool(np.arange(6), member_scores, np.linspace(1, 0, 6))
    ties = np.arange(6)
    orderings = [np.lexsort((ties, -row)) for row in member_scores]
    cfg = top_n(positive_ratio=None)
    chosen = select_hard(pool, 0, {0}, cfg, 3, pair_rng(0, "q", "p"), Counter(), PairContext(orderings=orderings))
    assert chosen == [1, 2, 4]  # a's 1st (1), b's 1st (4), a's 2nd (2): returned in fused order
    # a window of rank 1 only (range_min=1, range_max=2) per member: a's 2nd (2) and b's 2nd (5)
    cfg = top_n(positive_ratio=None, range_min=1, range_max=2)
    removed = Counter()
    chosen = select_hard(pool, 0, {0}, cfg, 3, pair_rng(0, "q", "p"), removed, PairContext(orderings=orderings))
    assert chosen == [2, 5] and removed["outside rank window"] == 3


def test_union_fusion_mines_from_every_member(tmp_path):
    ds = load_beir(write_beir(tmp_path / "tiny"))
    n = len(ds.corpus)
    a = Fixed("a", np.linspace(1, 0, n))          # prefers the first documents
    b = Fixed("b", np.linspace(0, 1, n))          # prefers the last ones
    cfg = top_n(num_negatives=2, depth=n, positive_ratio=None, fill_shortfall="none")
    union = mine(ds, [("q2", "d04")], Ensemble([a, b], fusion="union"), cfg, "u", progress=False)
    assert set(union.pairs[0].negative_ids) == {"d01", "d12"}  # a's best and b's best
    assert set(union.summary.member_overlap) == {"a & b"} and union.summary.member_overlap["a & b"] == 0.0
    with pytest.raises(ValueError, match="fuses by 'zscore'"):
        mine(ds, [("q2", "d04")], Ensemble([a, b]), top_n(fusion="union"), "u", progress=False)
