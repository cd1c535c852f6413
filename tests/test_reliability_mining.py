"""Issue 20, mining invariants as properties (hypothesis) over random labels: whatever the qrels, in any split, no
labelled positive (nor a copy of one) is ever a negative, no pair has a negative twice, and every pair gets exactly
the negatives asked for or its shortfall is counted. Tiny fixtures, the ``hash`` and ``bm25`` retrievers."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hardneg.config import MiningConfig
from hardneg.data import Corpus, Dataset, LoadReport, Queries
from hardneg.embed import HashEmbedder
from hardneg.io import write_jsonl
from hardneg.mine import mine, read_mined_pairs, training_pairs
from hardneg.retrieve import BM25Retriever, DenseRetriever, Ensemble

from .conftest import DOCS, QUERIES

# Two documents repeat another's text: a copy of a positive must never be a negative either.
COPIES = [("d13", *DOCS[0][1:]), ("d14", *DOCS[3][1:])]
CORPUS = DOCS + COPIES
DOC_IDS = [d for d, _, _ in CORPUS]
QUERY_IDS = [q for q, _ in QUERIES]


@pytest.fixture(scope="module")
def indexed():
    corpus = Corpus.from_records(DOC_IDS, [t for _, t, _ in CORPUS], [x for _, _, x in CORPUS])
    queries = Queries.from_records(QUERY_IDS, [t for _, t in QUERIES])
    dense = DenseRetriever(HashEmbedder(64), progress=False)
    bm25 = BM25Retriever()
    for member in (dense, bm25):
        member.index(corpus.full_texts(), corpus.ids)
    return corpus, queries, {"hash": [dense], "bm25": [bm25], "hash+bm25": [dense, bm25], "random": None}


labels = st.dictionaries(st.sampled_from(QUERY_IDS), st.sets(st.sampled_from(DOC_IDS), min_size=1, max_size=4),
                         min_size=1, max_size=6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(train=labels, test=labels, num_negatives=st.integers(1, 14), depth=st.integers(1, 14),
       members=st.sampled_from(["hash", "bm25", "hash+bm25", "random"]), share=st.sampled_from([0.0, 0.5, 1.0]),
       fill=st.sampled_from(["random", "none"]), window=st.sampled_from([(0, None), (1, 4), (5, 50)]),
       sampling=st.sampled_from(["top", "random"]), ratio=st.sampled_from([None, 0.95]), seed=st.integers(0, 3))
def test_no_positive_is_a_negative_none_twice_and_every_shortfall_is_counted(
        indexed, train, test, num_negatives, depth, members, share, fill, window, sampling, ratio, seed):
    corpus, queries, retrievers = indexed
    qrels = {"train": {q: {d: 1 for d in docs} for q, docs in train.items()},
             "test": {q: {d: 1 for d in docs} for q, docs in test.items()}}
    dataset = Dataset("random-labels", corpus, queries, qrels, LoadReport())
    config = MiningConfig(num_negatives=num_negatives, depth=depth, random_share=share, fill_shortfall=fill,
                          range_min=window[0], range_max=window[1], sampling=sampling, positive_ratio=ratio)
    chosen = retrievers[members]
    pairs = training_pairs(dataset, "train")
    result = mine(dataset, pairs, None if chosen is None else Ensemble(chosen, seed=seed), config, members,
                  seed=seed, progress=False)

    positives = dataset.all_positives()  # every split: a test positive is no negative for training either
    text = {d: corpus.full_text(corpus.index[d]) for d in DOC_IDS}
    short = {(s["query_id"], s["positive_id"]): s["negatives"] for s in result.summary.short_pairs}
    mined = {(p.query_id, p.positive_id): p for p in result.pairs}
    assert len(mined) == len(result.pairs) <= len(pairs)
    for q, d in pairs:
        forbidden = positives[q] | {c for c in DOC_IDS if text[c] in {text[x] for x in positives[q]}}
        if (q, d) not in mined:  # skipped: counted, and only when there was nothing to give
            assert short[(q, d)] == 0 and result.summary.skipped_pairs["no negative available"] >= 1
            continue
        negatives = mined[(q, d)].negative_ids
        assert not set(negatives) & forbidden, (q, negatives, forbidden)
        assert len(set(negatives)) == len(negatives)
        assert len(negatives) == num_negatives or short[(q, d)] == len(negatives)
        if fill == "random" and ratio is None:  # a shortfall is real: the corpus had no more to give
            assert len(negatives) == min(num_negatives, len(DOC_IDS) - len(forbidden))
    assert result.summary.pairs == len(result.pairs)
    assert sum(result.summary.skipped_pairs.values()) == len(pairs) - len(result.pairs)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(train=labels, num_negatives=st.integers(1, 5), seed=st.integers(0, 3))
def test_mined_pairs_survive_their_file(indexed, tmp_path_factory, train, num_negatives, seed):
    """The negatives file a resumed run reads back is the mining it wrote, pair for pair."""
    corpus, queries, retrievers = indexed
    dataset = Dataset("labels", corpus, queries, {"train": {q: {d: 1 for d in docs} for q, docs in train.items()}},
                      LoadReport())
    result = mine(dataset, training_pairs(dataset, "train"), Ensemble(retrievers["hash+bm25"]),
                  MiningConfig(num_negatives=num_negatives), "ensemble", seed=seed, progress=False)
    path = tmp_path_factory.mktemp("mined") / "negatives.jsonl"
    write_jsonl(path, (p.as_dict() for p in result.pairs))
    assert read_mined_pairs(path) == result.pairs
