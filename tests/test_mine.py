from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from hardneg.config import MiningConfig
from hardneg.embed import HashEmbedder
from hardneg.mine import mine, pair_rng, sample_random, select_hard, similarity_ratio, training_pairs
from hardneg.retrieve import BM25Retriever, CandidatePool, DenseRetriever, Ensemble


def _pool(member_scores):
    scores = np.asarray(member_scores, dtype=np.float64)
    fused = scores.mean(axis=0)
    order = np.argsort(-fused, kind="stable")
    return CandidatePool(np.arange(scores.shape[1])[order], scores[:, order], fused[order])


def test_similarity_ratio_by_hand():
    cand = np.array([[0.9, 0.5, -0.2], [4.0, 1.0, 0.0]])
    pos = np.array([1.0, 2.0])
    # member 1: 0.9, 0.5, 0 (clipped); member 2: 2.0, 0.5, 0.0 -> means 1.45, 0.5, 0.0
    np.testing.assert_allclose(similarity_ratio(cand, pos), [1.45, 0.5, 0.0])
    # a member that scores the positive at 0 gives no scale: it is left out; with no scale at all nothing is judged
    np.testing.assert_allclose(similarity_ratio(np.array([[0.0, 0.3, -0.1]]), np.array([0.0])), [0.0, 0.0, 0.0])
    both = np.array([[5.0, 1.0], [0.9, 0.45]])
    np.testing.assert_allclose(similarity_ratio(both, np.array([0.0, 0.9])), [1.0, 0.5])


def test_positive_aware_filter_removes_candidates_close_to_the_positive():
    # doc 0 is the positive (score 1.0); doc 1 scores 0.97 (a likely false negative); docs 2.. score less
    pool = _pool([[1.0, 0.97, 0.9, 0.6, 0.5, 0.4]])
    removed = Counter()
    cfg = MiningConfig(num_negatives=2, positive_ratio=0.95)
    chosen = select_hard(pool, 0, {0}, cfg, 2, pair_rng(0, "q", "p"), removed)
    assert [int(pool.doc_idx[c]) for c in chosen] == [2, 3]
    assert removed == {"labelled positive": 1, "positive-aware filter": 1, "outside rank window": 0}
    no_filter = select_hard(pool, 0, {0}, MiningConfig(positive_ratio=None), 2, pair_rng(0, "q", "p"), Counter())
    assert [int(pool.doc_idx[c]) for c in no_filter] == [1, 2]


def test_rank_window_and_random_sampling():
    pool = _pool([[1.0, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]])
    removed = Counter()
    cfg = MiningConfig(positive_ratio=None, range_min=1, range_max=4)
    chosen = select_hard(pool, 0, {0}, cfg, 5, pair_rng(0, "q", "p"), removed)
    # ranks among non-positives: doc1=0, doc2=1, ... window [1, 4) -> docs 2, 3, 4
    assert [int(pool.doc_idx[c]) for c in chosen] == [2, 3, 4]
    assert removed["outside rank window"] == 3
    cfg = MiningConfig(positive_ratio=None, sampling="random", range_max=6)
    picks = {tuple(select_hard(pool, 0, {0}, cfg, 2, pair_rng(s, "q", "p"), Counter())) for s in range(20)}
    assert len(picks) > 1 and all(len(p) == 2 for p in picks)


def test_sample_random_excludes_and_reports_shortfall():
    rng = np.random.default_rng(0)
    picks = sample_random(10, 4, {0, 1, 2}, rng)
    assert len(set(picks)) == 4 and not set(picks) & {0, 1, 2}
    assert sorted(sample_random(5, 10, {0, 1}, rng)) == [2, 3, 4]


@pytest.fixture(scope="module")
def members(request):
    from hardneg.data import load_beir

    from .conftest import write_beir
    import tempfile
    from pathlib import Path

    folder = write_beir(Path(tempfile.mkdtemp()) / "tiny")
    ds = load_beir(folder)
    dense = DenseRetriever(HashEmbedder(64), progress=False)
    bm25 = BM25Retriever()
    for m in (dense, bm25):
        m.index(ds.corpus.full_texts(), ds.corpus.ids)
    return ds, dense, bm25


def test_mine_ensemble_end_to_end(members):
    ds, dense, bm25 = members
    pairs = training_pairs(ds, "train")
    result = mine(ds, pairs, Ensemble([dense, bm25]), MiningConfig(num_negatives=3, depth=12), "ensemble",
                  progress=False)
    assert len(result.pairs) == len(pairs) == 6
    q5 = [p for p in result.pairs if p.query_id == "q5"]
    for p in q5:  # q5 has two positives: neither may be the other's negative
        assert not {"d01", "d03"} & set(p.negative_ids)
    for p in result.pairs:
        assert len(p.negatives) == 3
        hard_scores = [s for s, src in zip(p.negative_scores, p.negative_sources) if src == "hard"]
        assert hard_scores == sorted(hard_scores, reverse=True)
        assert p.positive == ds.corpus.full_text(ds.corpus.index[p.positive_id])
    assert result.summary.removed["labelled positive"] >= len(pairs)


def test_random_share_mixes_random_negatives(members):
    ds, dense, bm25 = members
    cfg = MiningConfig(num_negatives=4, depth=12, random_share=0.5, positive_ratio=None)
    result = mine(ds, training_pairs(ds, "train"), Ensemble([dense, bm25]), cfg, "mix", progress=False)
    for p in result.pairs:
        assert p.negative_sources == ["hard", "hard", "random", "random"]
        assert p.negative_scores[2:] == [None, None]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(num_negatives=st.integers(1, 12), depth=st.integers(1, 12), ratio=st.sampled_from([None, 0.5, 0.95]),
       range_min=st.integers(0, 3), width=st.one_of(st.none(), st.integers(1, 6)),
       sampling=st.sampled_from(["top", "random"]), share=st.sampled_from([0.0, 0.25, 1.0]),
       fill=st.sampled_from(["random", "none"]), use_members=st.sampled_from(["dense", "bm25", "both", "random"]),
       seed=st.integers(0, 3))
def test_mining_invariants(members, num_negatives, depth, ratio, range_min, width, sampling, share, fill,
                           use_members, seed):
    ds, dense, bm25 = members
    cfg = MiningConfig(num_negatives=num_negatives, depth=depth, positive_ratio=ratio, range_min=range_min,
                       range_max=None if width is None else range_min + width, sampling=sampling,
                       random_share=share, fill_shortfall=fill)
    ens = {"dense": Ensemble([dense]), "bm25": Ensemble([bm25]), "both": Ensemble([dense, bm25]),
           "random": None}[use_members]
    pairs = training_pairs(ds, "train")
    first = mine(ds, pairs, ens, cfg, "s", seed=seed, progress=False)
    labelled = ds.all_positives()
    short = {(s["query_id"], s["positive_id"]) for s in first.summary.short_pairs}
    for p in first.pairs:
        assert not set(p.negative_ids) & labelled[p.query_id]          # never a labelled positive
        assert len(set(p.negative_ids)) == len(p.negative_ids)          # no duplicates
        assert len(p.negative_ids) == num_negatives or (p.query_id, p.positive_id) in short
    for q, d in pairs:  # 12 documents minus the query's positives is all there is: more must be reported short
        if num_negatives > 12 - len(labelled[q]):
            assert (q, d) in short
    again = mine(ds, pairs, ens, cfg, "s", seed=seed, progress=False)
    assert [p.as_dict() for p in again.pairs] == [p.as_dict() for p in first.pairs]  # same seed, same output


def test_output_formats_for_sentence_transformers_losses(members):
    from hardneg.mine import as_hf_dataset

    ds, dense, bm25 = members
    result = mine(ds, training_pairs(ds, "train"), Ensemble([dense, bm25]), MiningConfig(num_negatives=2, depth=12),
                  "e", progress=False)
    ntuple, dropped = as_hf_dataset(result.pairs, "n-tuple", 2)
    assert ntuple.column_names == ["query", "positive", "negative_1", "negative_2"] and dropped == 0
    assert len(ntuple) == len(result.pairs)
    triplet, _ = as_hf_dataset(result.pairs, "triplet")
    assert triplet.column_names == ["query", "positive", "negative"] and len(triplet) == 2 * len(result.pairs)
    labeled, _ = as_hf_dataset(result.pairs, "labeled-pair")
    assert sum(labeled["label"]) == len(result.pairs) and len(labeled) == 3 * len(result.pairs)
    short, dropped = as_hf_dataset(result.pairs, "n-tuple", 3)  # nobody has 3: all left out, and counted
    assert len(short) == 0 and dropped == len(result.pairs)
    with pytest.raises(ValueError, match="Unknown output format"):
        as_hf_dataset(result.pairs, "csv")


def test_a_copy_of_the_positive_is_never_a_negative(tmp_path):
    from hardneg.data import load_beir

    from .conftest import DOCS, write_beir

    docs = DOCS + [("d99", DOCS[0][1], DOCS[0][2])]  # d99 duplicates d01, the positive of q1
    ds = load_beir(write_beir(tmp_path / "dup", docs=docs))
    bm25 = BM25Retriever()
    bm25.index(ds.corpus.full_texts(), ds.corpus.ids)
    pairs = [("q1", "d01")]
    for ens in (Ensemble([bm25]), None):
        result = mine(ds, pairs, ens, MiningConfig(num_negatives=11, depth=13, positive_ratio=None), "s",
                      progress=False)
        assert "d99" not in result.pairs[0].negative_ids
        assert len(result.pairs[0].negative_ids) == 11  # the other 11 documents
        assert result.summary.removed["copy of a positive"] == 1
