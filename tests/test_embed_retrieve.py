from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hardneg.config import RunConfig, SearchConfig
from hardneg.embed import HashEmbedder, get_embedder
from hardneg.knn import SearchOptions
from hardneg.retrieve import (
    BM25Retriever,
    DenseRetriever,
    Ensemble,
    Retriever,
    Retrievers,
    normalise,
    search_options,
    search_stamp,
    top_k,
)


class CountingEmbedder(HashEmbedder):
    def __init__(self):
        super().__init__(32)
        self.seen = 0

    def embed_batch(self, texts, kind):
        self.seen += len(texts)
        return super().embed_batch(texts, kind)


def test_embeddings_are_normalised_and_cached(tmp_path):
    emb = CountingEmbedder()
    texts = ["alpha beta", "gamma", "alpha beta"]
    first = emb.embed(texts, "document", tmp_path, progress=False)
    assert first.shape == (3, 32) and first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, rtol=1e-3)  # float16 store
    assert emb.seen == 2  # duplicates embedded once
    again = CountingEmbedder()
    second = again.embed(texts, "document", tmp_path, progress=False)
    assert again.seen == 0  # all from the on-disk cache
    np.testing.assert_array_equal(first, second)
    again.embed(texts, "query", tmp_path, progress=False)
    assert again.seen == 2  # queries and documents are cached apart (prefix-aware models differ)


def test_unknown_model_name_is_a_clear_error():
    with pytest.raises(ValueError, match="Unknown model 'nonexistent-model'"):
        get_embedder("nonexistent-model")
    with pytest.raises(ValueError, match="bm25 is a lexical ensemble member"):
        get_embedder("bm25")


def test_minilm_resolves_to_bundled_weights():
    emb = get_embedder("minilm")
    assert Path(emb.model_name_or_path).is_dir()


def test_top_k_breaks_ties_by_id_rank():
    scores = np.array([[0.5, 0.9, 0.5, 0.5, 0.1]])
    tie_rank = np.array([4, 0, 2, 1, 3])  # doc 3 has a smaller id than doc 2, which is smaller than doc 0
    assert top_k(scores, 3, tie_rank).tolist() == [[1, 3, 2]]
    assert top_k(scores, 5, tie_rank).tolist() == [[1, 3, 2, 0, 4]]


def test_bm25_ranks_term_overlap_first(dataset):
    bm25 = BM25Retriever()
    bm25.index(dataset.corpus.full_texts(), dataset.corpus.ids)
    idx, scores = bm25.search(["espresso coffee"], 3)
    assert dataset.corpus.ids[idx[0][0]] == "d04"
    assert scores[0][0] > scores[0][1] >= scores[0][2]
    [pair_scores] = bm25.query_scores(["espresso coffee"], [idx[0]])
    np.testing.assert_allclose(pair_scores, scores[0], rtol=1e-6)


class TableRetriever(Retriever):
    """Scores from a fixed table: query text -> scores over the corpus."""

    def __init__(self, name, table):
        self.name, self.table = name, table

    def index(self, documents, doc_ids):
        self.tie_rank = np.arange(len(doc_ids))

    def query_scores(self, queries, doc_idx):
        return [np.asarray(self.table[q])[idx] for q, idx in zip(queries, doc_idx)]

    def search(self, queries, k):
        idx = top_k(np.array([self.table[q] for q in queries], dtype=float), k, self.tie_rank)
        return idx, np.array([np.asarray(self.table[q])[i] for q, i in zip(queries, idx)])


def test_zscore_fusion_by_hand():
    a = TableRetriever("a", {"q": [3.0, 2.0, 1.0, 0.0]})
    b = TableRetriever("b", {"q": [0.0, 10.0, 20.0, 30.0]})
    ens = Ensemble([a, b], fusion="zscore")
    ens.index(["w", "x", "y", "z"], ["w", "x", "y", "z"])
    [pool] = ens.candidates(["q"], depth=1)
    # pool = union of each member's top-1 = docs 0 and 3; z-scores over the pool: a: [1, -1], b: [-1, 1] -> tie
    assert pool.doc_idx.tolist() == [0, 3]  # the tie is broken by id
    np.testing.assert_allclose(pool.fused, [0.0, 0.0])
    [pool] = ens.candidates(["q"], depth=1, must_include=[[1]])
    # pool docs 0,1,3: a=[3,2,0] b=[0,10,30]
    za = (np.array([3, 2, 0]) - 5 / 3) / np.std([3, 2, 0])
    zb = (np.array([0, 10, 30]) - 40 / 3) / np.std([0, 10, 30])
    expected = dict(zip([0, 1, 3], (za + zb) / 2))
    assert pool.doc_idx.tolist() == sorted(expected, key=lambda d: -expected[d])
    np.testing.assert_allclose(pool.fused, sorted(expected.values(), reverse=True))
    assert pool.member_scores.shape == (2, 3)


def test_other_fusions():
    s = np.array([4.0, 2.0, 0.0])
    np.testing.assert_allclose(normalise(s, "minmax"), [1.0, 0.5, 0.0])
    np.testing.assert_allclose(normalise(s, "rrf", rrf_k=60), [1 / 61, 1 / 62, 1 / 63])
    with pytest.raises(ValueError, match="Unknown fusion"):
        Ensemble([TableRetriever("a", {})], fusion="median")


def test_dense_retriever_with_fake_embedder(dataset, tmp_path):
    dense = DenseRetriever(HashEmbedder(64), cache_dir=tmp_path, progress=False)
    dense.index(dataset.corpus.full_texts(), dataset.corpus.ids)
    idx, scores = dense.search(["camels survive without water"], 2)
    assert dataset.corpus.ids[idx[0][0]] == "d11"
    assert np.all(np.diff(scores[0]) <= 0)


def test_retrievers_index_each_model_once_when_first_used(dataset, tmp_path):
    config = RunConfig(dataset="tiny", ensemble=["hash", "bm25"], weights=[2.0, 1.0], progress=False)
    pool = Retrievers(dataset, config, tmp_path)
    ensemble = pool.first_stage("ensemble")
    assert ensemble.member_names == ["hash", "bm25"] and ensemble.weights.tolist() == [2.0, 1.0]
    assert pool.ensemble(["bm25"]).weights.tolist() == [1.0]  # the run's weights belong to the run's ensemble
    assert not pool._built  # building an ensemble indexes nothing
    [candidates] = ensemble.candidates(["espresso coffee"], 2)
    assert "d04" in {dataset.corpus.ids[i] for i in candidates.doc_idx}  # BM25's best joins the pool
    built = dict(pool._built)
    assert set(built) == {"hash", "bm25"}
    pool.first_stage("bm25").candidates(["camels"], 1)
    assert pool.get("bm25") is built["bm25"]  # shared, not rebuilt


def test_search_settings_stamp_only_what_differs_from_the_defaults():
    config = RunConfig(dataset="tiny", seed=7)
    assert search_stamp(config) == []
    assert search_options(config) == SearchOptions(**config.search.model_dump(), seed=7)
    changed = RunConfig(dataset="tiny", search=SearchConfig(ivf_nprobe=32))
    assert search_stamp(changed) == [{"ivf_nprobe": 32}]
