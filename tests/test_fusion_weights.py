"""Fusion weights learned on training queries only: scripted members whose quality differs between the training
and the test queries show that nothing about the test queries reaches the choice."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from hardneg.data import load_beir
from hardneg.fusion_weights import fold_of, learn_fusion, weight_grid
from hardneg.retrieve import Ensemble, Retriever, id_rank, top_k
from tests.conftest import write_beir

DOCS = 40
TRAIN = [f"q{i:03d}" for i in range(60)]
TEST = [f"q{i:03d}" for i in range(60, 100)]


def positive_of(qid: str) -> str:
    return f"d{int(qid[1:]) % DOCS:02d}"


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    docs = [(f"d{i:02d}", f"title {i}", f"document number {i}") for i in range(DOCS)]
    queries = [(q, f"query text {q}") for q in TRAIN + TEST]
    root = write_beir(tmp_path_factory.mktemp("fusion") / "c", docs=docs, queries=queries,
                      train=[(q, positive_of(q)) for q in TRAIN], test=[(q, positive_of(q)) for q in TEST])
    return load_beir(root)


class Scripted(Retriever):
    """Seeded random scores per (query, document); the positive scores highest for the queries it 'knows'."""

    def __init__(self, name: str, knows: set[str], asked: list[str]):
        self.name, self.knows, self.asked = name, knows, asked

    def index(self, documents, doc_ids):
        self.doc_ids = doc_ids
        self.tie_rank = id_rank(doc_ids)

    def _row(self, query: str) -> np.ndarray:
        qid = query.removeprefix("query text ")
        seed = int(hashlib.md5(f"{self.name}{qid}".encode()).hexdigest()[:8], 16)
        row = np.random.default_rng(seed).random(len(self.doc_ids))
        if qid in self.knows:
            row[self.doc_ids.index(positive_of(qid))] = 5.0
        return row

    def query_scores(self, queries, doc_idx):
        return [self._row(q)[idx] for q, idx in zip(queries, doc_idx)]

    def search(self, queries, k):
        self.asked.extend(queries)
        full = np.stack([self._row(q) for q in queries])
        idx = top_k(full, k, self.tie_rank)
        return idx, np.take_along_axis(full, idx, axis=1)


def ensemble(collection, asked: list[str]) -> Ensemble:
    members = [Scripted("train-expert", set(TRAIN), asked), Scripted("test-expert", set(TEST), asked),
               Scripted("noise", set(), asked)]
    out = Ensemble(members, fusion="zscore", weights=[1.0, 1.0, 1.0])
    out.index(collection.corpus.full_texts(), collection.corpus.ids)
    return out


def test_weight_grid_is_relative_and_without_repeats():
    grid = weight_grid(2)
    assert len(grid) == len(set(grid)) == 7 and all(max(w) == 1 for w in grid)
    assert (0.0, 1.0) in grid and (1.0, 0.5) in grid and (0.0, 0.0) not in grid


def test_folds_are_seeded_and_balanced():
    ids = [f"q{i}" for i in range(23)]
    folds = fold_of(ids, 5, seed=3)
    assert sorted(np.bincount(folds).tolist()) == [4, 4, 5, 5, 5]
    assert folds.tolist() == fold_of(ids, 5, seed=3).tolist() != fold_of(ids, 5, seed=4).tolist()


def test_weights_are_chosen_on_training_queries_only(collection):
    asked: list[str] = []
    learned = learn_fusion(collection, TRAIN, collection.qrels["train"], ensemble(collection, asked), depth=10,
                           seed=1, fallback_weights=[1.0, 0.5, 1.0], fallback_fusion="zscore")
    assert learned.learned and learned.queries == len(TRAIN)
    # The member that is perfect on the test queries but useless on the training ones gets no weight, as does
    # pure noise; learning never saw a test query.
    assert learned.weights == (1.0, 0.0, 0.0)
    assert asked and set(asked) <= {collection.queries.text(q) for q in TRAIN}
    assert learned.score >= learned.best_single[1] and learned.score >= learned.fallback_score
    assert learned.best_single[0] == "train-expert"
    assert "weight 0 for test-expert, noise" in learned.reason
    assert len(learned.candidates) == 3 * len(weight_grid(3))  # the fallback (1, .5, 1) is a grid point
    assert learned.held_out is not None and 0 <= learned.held_out <= 1
    assert learned == learn_fusion(collection, TRAIN, collection.qrels["train"], ensemble(collection, []), depth=10,
                                   seed=1, fallback_weights=[1.0, 0.5, 1.0], fallback_fusion="zscore")


def test_the_check_would_catch_test_queries_leaking_in(collection):
    """Counter-check: learned on training and test queries together, the test expert earns a weight."""
    qrels = {**collection.qrels["train"], **collection.qrels["test"]}
    leaked = learn_fusion(collection, TRAIN + TEST, qrels, ensemble(collection, []), depth=10, seed=1)
    assert leaked.weights[1] > 0


def test_too_few_training_queries_keep_the_fixed_weights(collection):
    asked: list[str] = []
    few = learn_fusion(collection, TRAIN[:12], collection.qrels["train"], ensemble(collection, asked), depth=10,
                       seed=1, min_queries=30, fallback_weights=[1.0, 0.5, 1.0], fallback_fusion="rrf")
    assert not few.learned and few.weights == (1.0, 0.5, 1.0) and few.fusion == "rrf"
    assert "12 training queries" in few.reason and "fewer than 30" in few.reason
    assert few.candidates == () and not asked  # nothing was even retrieved
    unlabelled = learn_fusion(collection, TRAIN + ["nope"] * 5, collection.qrels["train"],
                              ensemble(collection, []), depth=10, min_queries=61)
    assert not unlabelled.learned and unlabelled.queries == 60  # queries without a positive do not count


def test_learning_needs_a_fusion_of_the_members_own_scores(collection):
    members = ensemble(collection, []).members
    with pytest.raises(ValueError, match="concat-pca"):
        learn_fusion(collection, TRAIN, collection.qrels["train"], Ensemble(members, fusion="concat-pca"))


def test_a_grid_no_better_held_out_than_the_fixed_weights_keeps_them(collection):
    """Three copies of one member: every weighting ranks alike, so the grid's pick (ties go to fewer members) is no
    better on held-out folds than the fixed weights, and those stay."""
    members = [Scripted("same", set(TRAIN[::2]), []) for _ in range(3)]
    copies = Ensemble(members, fusion="zscore", weights=[1.0, 1.0, 1.0])
    copies.index(collection.corpus.full_texts(), collection.corpus.ids)
    learned = learn_fusion(collection, TRAIN, collection.qrels["train"], copies, depth=10, seed=1,
                           fusions=("zscore",))
    assert not learned.learned and learned.weights == (1.0, 1.0, 1.0) and learned.fusion == "zscore"
    assert learned.held_out <= learned.fallback_score and "held-out" in learned.reason


def test_a_fine_tuned_first_stage_is_weighed_on_dev_queries_only(collection):
    """A fine-tuned member has seen the training queries: weighed there it would look perfect. The run weighs the
    first stage it joins on the dev queries, which its training never saw (and never on test queries)."""
    from types import SimpleNamespace

    from hardneg.config import RunConfig
    from hardneg.pipeline.first_stage import learn_ensemble_fusion

    dev, trained_on = TRAIN[:30], TRAIN[30:]
    asked: list[str] = []
    members = [Scripted("memoriser", set(trained_on), asked), Scripted("dev-and-test", set(dev + TEST), asked),
               Scripted("noise", set(), asked)]
    fused = Ensemble(members, fusion="zscore", weights=[1.0, 0.5, 1.0])
    fused.index(collection.corpus.full_texts(), collection.corpus.ids)
    ctx = SimpleNamespace(config=RunConfig(dataset="x", evaluate={"depth": 10}), dataset=collection,
                          dev_ids=dev, train_ids=trained_on)
    learned = learn_ensemble_fusion(ctx, fused, ctx.dev_ids)
    assert learned.learned and learned.queries == len(dev) and learned.weights == (0.0, 1.0, 0.0)
    assert set(asked) == {collection.queries.text(q) for q in dev}
    # counter-check: weighed on the queries it was trained on, the memoriser wins
    assert learn_ensemble_fusion(ctx, fused, ctx.train_ids).weights[0] > 0


def test_a_first_stage_weighed_on_dev_queries_is_measured_on_each_gate_fold_at_weights_learned_without_it(
        collection):
    """The gate measures its candidates on folds of the dev queries; a first stage whose weights were learned on
    those same queries would look better there than on test. Its dev run is nested: each fold of the gate is ranked
    at the weights learned on the other dev queries (a leak of a fold into its own weights fails here)."""
    from types import SimpleNamespace

    from hardneg.config import RunConfig
    from hardneg.evaluate import gate_folds
    from hardneg.fusion_weights import LearnedFusion
    from hardneg.pipeline.evaluation import Evaluation

    dev = TRAIN[:30]
    weighed_on: list[list[str]] = []
    ranked_with: dict[str, int] = {}

    class Recording(Ensemble):
        def candidates(self, queries, depth):
            for text in queries:
                ranked_with[text.removeprefix("query text ")] = self.weighing
            return super().candidates(queries, depth)

    def refit(query_ids):
        weighed_on.append(list(query_ids))
        fused = Recording([Scripted("a", set(), []), Scripted("b", set(), [])], fusion="zscore", weights=[1.0, 1.0])
        fused.weighing = len(weighed_on) - 1
        fused.index(collection.corpus.full_texts(), collection.corpus.ids)
        return fused, LearnedFusion(("a", "b"), (1.0, 1.0), "zscore", False, "fixed", "ndcg@10", len(query_ids), 5)

    config = RunConfig(dataset="x", seed=3, evaluate={"depth": 10})
    evaluation = Evaluation.__new__(Evaluation)
    evaluation.ctx = SimpleNamespace(config=config, dataset=collection, dev_ids=dev, chunks=None)
    evaluation.config, evaluation.ev, evaluation.dev_ids = config, config.evaluate, dev
    evaluation.refit, evaluation.nested = {"tuned": refit}, {}
    run = evaluation.nested_dev_run("tuned")
    folds = gate_folds(dev, seed=3)
    assert sorted(run) == sorted(dev) and len(weighed_on) == len(folds) == 5
    for number, held in enumerate(folds):
        assert not set(held) & set(weighed_on[number])          # the fold's weights never saw it
        assert sorted(weighed_on[number] + held) == sorted(dev)  # and saw every other dev query
        assert {ranked_with[q] for q in held} == {number}      # the fold is ranked at its own weights
    assert [f["held_out"] for f in evaluation.nested["tuned"]] == [len(f) for f in folds]


def test_the_gate_folds_are_the_folds_the_gate_holds_out():
    """held_out_gains picks on all folds but one: a candidate that is best on exactly one gate fold is picked for
    the other folds' held-out queries, never for its own."""
    from hardneg.evaluate.choice import gate_folds, held_out_gains

    queries = [f"q{i:02d}" for i in range(23)]
    folds = gate_folds(list(reversed(queries)), seed=7)  # the gate sorts the queries first
    assert sorted(q for f in folds for q in f) == queries and len(folds) == 5
    for target, held in enumerate(folds):
        base = np.zeros(len(queries))
        lucky = np.array([3.0 if q in held else -0.1 for q in queries])   # best overall, but only on its fold
        steady = np.full(len(queries), 0.1)
        gains, picks = held_out_gains(np.vstack([lucky, steady]), base, 5, 7)
        assert picks[target] == 1 and all(p == 0 for i, p in enumerate(picks) if i != target)
