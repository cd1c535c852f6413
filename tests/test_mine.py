from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hardneg.config import MiningConfig
from hardneg.embed import HashEmbedder
from hardneg.mine import mine, pair_rng, training_pairs
from hardneg.retrieve import BM25Retriever, CandidatePool, DenseRetriever, Ensemble
from hardneg.rules import (
    PairContext,
    geometric_keep,
    likely_positive_mask,
    sample_random,
    select_hard,
    similarity_ratio,
)

from .helpers import top_n


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
    cfg = top_n(num_negatives=2, positive_ratio=0.95)
    chosen = select_hard(pool, 0, {0}, cfg, 2, pair_rng(0, "q", "p"), removed)
    assert [int(pool.doc_idx[c]) for c in chosen] == [2, 3]
    assert removed == {"labelled positive": 1, "positive-aware filter": 1, "outside rank window": 0}
    no_filter = select_hard(pool, 0, {0}, top_n(positive_ratio=None), 2, pair_rng(0, "q", "p"), Counter())
    assert [int(pool.doc_idx[c]) for c in no_filter] == [1, 2]


def test_rank_window_and_random_sampling():
    pool = _pool([[1.0, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]])
    removed = Counter()
    cfg = top_n(positive_ratio=None, range_min=1, range_max=4)
    chosen = select_hard(pool, 0, {0}, cfg, 5, pair_rng(0, "q", "p"), removed)
    # ranks among non-positives: doc1=0, doc2=1, ... window [1, 4) -> docs 2, 3, 4
    assert [int(pool.doc_idx[c]) for c in chosen] == [2, 3, 4]
    assert removed["outside rank window"] == 3
    cfg = top_n(positive_ratio=None, sampling="random", range_max=6)
    picks = {tuple(select_hard(pool, 0, {0}, cfg, 2, pair_rng(s, "q", "p"), Counter())) for s in range(20)}
    assert len(picks) > 1 and all(len(p) == 2 for p in picks)


def _picked(pool, chosen):
    return [int(pool.doc_idx[c]) for c in chosen]


def test_absolute_margin_floor_and_ceiling_by_hand():
    pool = _pool([[1.0, 0.95, 0.8, 0.6, 0.5, 0.2]])  # fused = raw; doc 0 is the positive
    removed = Counter()
    cfg = top_n(positive_ratio=None, absolute_margin=0.1)
    # kept: fused <= 1.0 - 0.1 -> docs 2.. (0.95 is within the margin)
    assert _picked(pool, select_hard(pool, 0, {0}, cfg, 2, pair_rng(0, "q", "p"), removed)) == [2, 3]
    assert removed["absolute margin"] == 1
    removed = Counter()
    cfg = top_n(positive_ratio=None, score_floor=0.55, score_ceiling=0.9)
    assert _picked(pool, select_hard(pool, 0, {0}, cfg, 5, pair_rng(0, "q", "p"), removed)) == [2, 3]
    assert removed["score ceiling"] == 1 and removed["score floor"] == 2
    with pytest.raises(ValueError, match="score_floor"):
        top_n(score_floor=1.0, score_ceiling=0.5)


def test_geometric_rule_by_hand():
    # cos(Q,D) = .9, .9, .5 ; cos(Q,P) = .8 ; cos(P,D) = .95, .3, .1
    # d(Q,D) = .1, .1, .5 ; d(Q,P) = .2 ; d(P,D) = .05, .7, .9 -> only the second passes both
    keep = geometric_keep(np.array([0.9, 0.9, 0.5]), 0.8, np.array([0.95, 0.3, 0.1]))
    assert keep.tolist() == [False, True, False]
    pool = _pool([[0.9, 0.8, 0.9, 0.5]])  # pool order: docs 0, 2, 1, 3 (doc 1 is the positive)
    assert pool.doc_idx.tolist() == [0, 2, 1, 3]
    ctx = PairContext(dense_rows=[0], positive_similarity=np.array([0.95, 0.3, 1.0, 0.1]))
    removed = Counter()
    chosen = select_hard(pool, 2, {1}, top_n(positive_ratio=None, geometric=True), 3, pair_rng(0, "q", "p"),
                         removed, ctx)
    assert _picked(pool, chosen) == [2] and removed["geometric rule"] == 2
    with pytest.raises(ValueError, match="dense"):
        select_hard(pool, 2, {1}, top_n(geometric=True), 3, pair_rng(0, "q", "p"), Counter())


def test_likely_positives_need_every_member():
    cand = np.array([[1.2, 1.2, 0.5], [2.0, 0.5, 2.5]])
    pos = np.array([1.0, 2.0])
    # candidate 0: both >= positive; 1: only member 1; 2: only member 2
    assert likely_positive_mask(cand, pos, 1.0).tolist() == [True, False, False]
    assert likely_positive_mask(cand, pos, 0.2).tolist() == [True, True, True]
    # a member that scores the positive at or below 0 compares raw scores
    assert likely_positive_mask(np.array([[-0.5, -2.0]]), np.array([-1.0]), 1.0).tolist() == [True, False]
    pool = _pool([[1.0, 1.1, 0.5, 0.4]])
    removed = Counter()
    ctx = PairContext(flagged=np.array([True, False, False, False]))  # pool order: doc 1 (flagged), 0, 2, 3
    chosen = select_hard(pool, 1, {0}, top_n(positive_ratio=None), 3, pair_rng(0, "q", "p"), removed, ctx)
    assert _picked(pool, chosen) == [2, 3] and removed["likely positive"] == 1


def test_cross_encoder_veto_replaces_dropped_picks():
    pool = _pool([[1.0, 0.9, 0.8, 0.7, 0.6]])
    seen = []

    def veto(positions):
        seen.append(list(positions))
        return np.array([int(pool.doc_idx[p]) == 1 for p in positions])  # the judge thinks doc 1 is relevant

    removed = Counter()
    chosen = select_hard(pool, 0, {0}, top_n(positive_ratio=None), 2, pair_rng(0, "q", "p"), removed,
                         PairContext(veto=veto))
    assert _picked(pool, chosen) == [2, 3] and removed["cross-encoder denoise"] == 1
    assert seen == [[1, 2], [3]]  # only what would be picked is scored, then one stand-in


def test_sample_random_excludes_and_reports_shortfall():
    rng = np.random.default_rng(0)
    picks = sample_random(10, 4, {0, 1, 2}, rng)
    assert len(set(picks)) == 4 and not set(picks) & {0, 1, 2}
    assert sorted(sample_random(5, 10, {0, 1}, rng)) == [2, 3, 4]


@pytest.fixture(scope="module")
def members(request):
    import tempfile
    from pathlib import Path

    from hardneg.data import load_beir

    from .conftest import write_beir

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
    result = mine(ds, pairs, Ensemble([dense, bm25]), top_n(num_negatives=3, depth=12), "ensemble",
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
    cfg = top_n(num_negatives=4, depth=12, random_share=0.5, positive_ratio=None)
    result = mine(ds, training_pairs(ds, "train"), Ensemble([dense, bm25]), cfg, "mix", progress=False)
    for p in result.pairs:
        assert p.negative_sources == ["hard", "hard", "random", "random"]
        assert p.negative_scores[2:] == [None, None]


RULES = {
    "none": {},
    "absolute margin": {"absolute_margin": 0.3},
    "floor+ceiling": {"score_floor": -1.0, "score_ceiling": 1.5},
    "geometric": {"geometric": True},
    "likely positives": {"likely_positive_ratio": 1.0},
    "likely positives added": {"likely_positive_ratio": 0.9, "add_likely_positives": True},
}
CLUSTERS = {
    "none": {},
    "kmeans query": {"cluster": "kmeans", "clusters": 3, "cluster_scope": "query"},
    "kmeans positive": {"cluster": "kmeans", "cluster_scope": "positive"},
    "agglomerative stratified": {"cluster": "agglomerative", "clusters": 4, "cluster_scope": "stratified",
                                 "cluster_near": 2},
    "gmm query": {"cluster": "gmm", "clusters": 2},
    "kmeans silhouette": {"cluster": "kmeans", "cluster_rule": "silhouette"},
}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(num_negatives=st.integers(1, 12), depth=st.integers(1, 12), ratio=st.sampled_from([None, 0.5, 0.95]),
       range_min=st.integers(0, 3), width=st.one_of(st.none(), st.integers(1, 6)),
       sampling=st.sampled_from(["top", "random"]), share=st.sampled_from([0.0, 0.25, 1.0]),
       fill=st.sampled_from(["random", "none"]), use_members=st.sampled_from(["dense", "bm25", "both", "random"]),
       fusion=st.sampled_from(["zscore", "minmax", "rrf", "mean", "concat-pca", "union"]),
       rule=st.sampled_from(sorted(RULES)), cluster=st.sampled_from(sorted(CLUSTERS)), seed=st.integers(0, 3))
def test_mining_invariants(members, num_negatives, depth, ratio, range_min, width, sampling, share, fill,
                           use_members, fusion, rule, cluster, seed):
    ds, dense, bm25 = members
    cfg = top_n(num_negatives=num_negatives, depth=depth, positive_ratio=ratio, range_min=range_min,
                       range_max=None if width is None else range_min + width, sampling=sampling,
                       random_share=share, fill_shortfall=fill, **RULES[rule], **CLUSTERS[cluster])
    chosen = {"dense": [dense], "bm25": [bm25], "both": [dense, bm25], "random": None}[use_members]
    needs_vectors = fusion == "concat-pca" or rule == "geometric" or cluster != "none"

    def ensemble():
        return None if chosen is None else Ensemble(chosen, fusion=fusion, seed=seed)

    pairs = training_pairs(ds, "train")
    if use_members == "bm25" and needs_vectors and share < 1.0:
        with pytest.raises(ValueError, match="dense"):
            mine(ds, pairs, ensemble(), cfg, "s", seed=seed, progress=False)
        return
    first = mine(ds, pairs, ensemble(), cfg, "s", seed=seed, progress=False)
    labelled = ds.all_positives()
    short = {(s["query_id"], s["positive_id"]) for s in first.summary.short_pairs}
    likely = {(r["query_id"], r["doc_id"]) for r in first.likely_positives}
    for p in first.pairs:
        assert not set(p.negative_ids) & labelled[p.query_id]          # never a labelled positive
        assert not {(p.query_id, d) for d in p.negative_ids} & likely   # nor a likely one
        assert len(set(p.negative_ids)) == len(p.negative_ids)          # no duplicates
        assert p.positive_id not in p.negative_ids
        extra = p.positive_id not in labelled[p.query_id]               # a likely positive added as a pair
        assert extra <= bool(cfg.add_likely_positives)
        assert p.positive_source == ("likely" if extra else "labelled")  # what the training cap relies on
        assert len(p.negative_ids) == num_negatives or (p.query_id, p.positive_id) in short or extra
    for q, d in pairs:  # 12 documents minus the query's positives is all there is: more must be reported short
        if num_negatives > 12 - len(labelled[q]):
            assert (q, d) in short
    again = mine(ds, pairs, ensemble(), cfg, "s", seed=seed, progress=False)
    assert [p.as_dict() for p in again.pairs] == [p.as_dict() for p in first.pairs]  # same seed, same output
    assert again.likely_positives == first.likely_positives


def test_cluster_scope_keeps_negatives_in_the_querys_cluster(members):
    from hardneg.cluster import cluster_documents

    ds, dense, bm25 = members
    cfg = top_n(num_negatives=3, depth=12, positive_ratio=None, cluster="kmeans", clusters=3,
                       fill_shortfall="none")
    ens = Ensemble([dense, bm25], seed=0)
    result = mine(ds, training_pairs(ds, "train"), ens, cfg, "c", seed=0, progress=False)
    space = ens.space()
    clustering = cluster_documents(space.document_vectors(), "kmeans", 3, seed=0)
    for p in result.pairs:
        qc = clustering.assign(space.query_vectors([p.query]))[0]
        assert all(clustering.labels[ds.corpus.index[d]] == qc for d in p.negative_ids)
    assert result.summary.clusters["k"] == 3


def test_output_formats_for_sentence_transformers_losses(members):
    from hardneg.losses import as_hf_dataset

    ds, dense, bm25 = members
    result = mine(ds, training_pairs(ds, "train"), Ensemble([dense, bm25]), top_n(num_negatives=2, depth=12),
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
        result = mine(ds, pairs, ens, top_n(num_negatives=11, depth=13, positive_ratio=None), "s",
                      progress=False)
        assert "d99" not in result.pairs[0].negative_ids
        assert len(result.pairs[0].negative_ids) == 11  # the other 11 documents
        assert result.summary.removed["copy of a positive"] == 1


def test_default_window_is_ranks_5_to_50_sampled_at_random():
    # The measured default (docs/RESULTS.md, "Which ranks"): skip the 5 nearest candidates, sample the rest
    # of the top 50 at random; the positive-aware filter stays on.
    defaults = MiningConfig()
    assert (defaults.range_min, defaults.range_max, defaults.sampling, defaults.positive_ratio) == (5, 50, "random",
                                                                                                    0.95)
    pool = _pool([[1.0] + [0.9 - 0.01 * i for i in range(60)]])
    removed = Counter()
    chosen = select_hard(pool, 0, {0}, defaults, 4, pair_rng(0, "q", "p"), removed)
    assert len(chosen) == 4 and all(5 <= c < 50 for c in chosen)
    assert chosen == select_hard(pool, 0, {0}, defaults, 4, pair_rng(0, "q", "p"), Counter())
    with pytest.raises(ValueError, match="defaults are 5 and 50"):
        MiningConfig(range_min=60)


def test_read_mined_pairs_round_trips_and_names_bad_lines(members, tmp_path):
    import json

    from hardneg.io import write_jsonl
    from hardneg.mine import read_mined_pairs

    ds, dense, bm25 = members
    result = mine(ds, training_pairs(ds, "train"), Ensemble([dense, bm25]), top_n(num_negatives=2, depth=12),
                  "e", progress=False)
    path = tmp_path / "negatives.jsonl"
    write_jsonl(path, (p.as_dict() for p in result.pairs))
    assert read_mined_pairs(path) == result.pairs
    row = result.pairs[0].as_dict()
    for bad, message in (("{not json", r"negatives.jsonl:2: not valid JSON"),
                         ("[1, 2]", r"negatives.jsonl:2: expected a mined pair"),
                         (json.dumps({k: v for k, v in row.items() if k != "positive"}),
                          r"negatives.jsonl:2: not a mined pair: missing field\(s\) positive\."),
                         (json.dumps({**row, "extra": 1}), r"negatives.jsonl:2: .*unknown field\(s\) extra"),
                         (json.dumps({**row, "negatives": row["negatives"][:1]}), r"negatives.jsonl:2: .*same length")):
        path.write_text(json.dumps(row) + "\n" + bad + "\n\n")
        with pytest.raises(ValueError, match=message):
            read_mined_pairs(path)
    old = {k: v for k, v in row.items() if k != "positive_source"}  # files written before the field existed
    path.write_text("\n" + json.dumps(old) + "\n")
    assert read_mined_pairs(path)[0].positive_source == "labelled"


def test_pairs_from_hf_dataset_reads_a_saved_n_tuple_dataset(members, tmp_path):
    from datasets import Dataset, load_from_disk

    from hardneg.losses import as_hf_dataset
    from hardneg.mine import pairs_from_hf_dataset

    ds, dense, bm25 = members
    result = mine(ds, training_pairs(ds, "train"), Ensemble([dense, bm25]), top_n(num_negatives=2, depth=12),
                  "e", progress=False)
    hf, _ = as_hf_dataset(result.pairs, "n-tuple", 2)
    hf.save_to_disk(str(tmp_path / "hf"))
    pairs = pairs_from_hf_dataset(load_from_disk(str(tmp_path / "hf")))
    assert [(p.query, p.positive, p.negatives) for p in pairs] == [
        (p.query, p.positive, p.negatives) for p in result.pairs]
    assert pairs[1].query_id == "1" and pairs[1].negative_ids == ["1:negative_1", "1:negative_2"]
    assert pairs[0].negative_sources == ["hard", "hard"] and pairs[0].negative_scores == [None, None]
    assert pairs[0].positive_score is None and pairs[0].positive_source == "labelled"
    # negative_10 sorts after negative_2; an empty negative is skipped
    wide = Dataset.from_dict({"query": ["q"], "positive": ["p"], "negative_10": ["c"], "negative_2": ["b"],
                              "negative_1": [""]})
    assert pairs_from_hf_dataset(wide)[0].negatives == ["b", "c"]
    single = Dataset.from_dict({"query": ["q"], "positive": ["p"], "negative": ["n"]})
    assert pairs_from_hf_dataset(single)[0].negatives == ["n"]
    with pytest.raises(ValueError, match="Expected columns query, positive and negative_1..n"):
        pairs_from_hf_dataset(Dataset.from_dict({"anchor": ["q"], "positive": ["p"], "negative": ["n"]}))
