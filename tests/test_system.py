"""The system a run hands over: chosen on dev queries only, shrunk to the first stage when training does not
clearly help, saved whole as system.json, and searchable."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import hardneg.evaluate.choice as choice_module
import hardneg.pipeline.evaluation as evaluation_stage
from hardneg import load_config, run
from hardneg.config import RunConfig
from hardneg.cli import app
from hardneg.evaluate import choose_in_steps, choose_system
from hardneg.system import System


def _dev(n: int, seed: int = 0):
    """n dev queries, each with one positive among 10 candidates; the first stage puts it at rank 3-10."""
    rng = np.random.default_rng(seed)
    qrels, first = {}, {}
    for i in range(n):
        q = f"q{i:03d}"
        docs = [f"{q}-d{j}" for j in range(10)]
        positive = docs[int(rng.integers(2, 10))]
        qrels[q] = {positive: 1}
        first[q] = {d: float(10 - j) for j, d in enumerate(docs)}
    return qrels, first


def test_a_reranker_that_clearly_helps_is_chosen():
    qrels, first = _dev(40)
    oracle = {q: {d: (5.0 if d in qrels[q] else 0.0) for d in docs} for q, docs in first.items()}
    choice = choose_system("ensemble", qrels, {"ensemble": first}, {"ensemble": {"good": oracle}}, depth=10)
    assert (choice.first_stage, choice.reranker) == ("ensemble", "good")
    assert choice.weight == 0.5  # the smallest weight that already ranks as well as the re-ranker alone
    # each fold's pick is recorded, so a gate that scatters among near-equal candidates can be read
    assert len(choice.fold_picks) == choice.folds == 5 and choice.fold_agreement == 1.0
    assert all(pick == choice.best_candidate for pick in choice.fold_picks)
    assert choice.dev_gain > 0.3 and choice.dev_interval[0] > 0 and choice.dev_queries == 40


def test_a_useless_reranker_shrinks_to_the_first_stage():
    qrels, first = _dev(40)
    rng = np.random.default_rng(1)
    noise = {q: {d: float(rng.normal()) for d in docs} for q, docs in first.items()}
    choice = choose_system("ensemble", qrels, {"ensemble": first}, {"ensemble": {"noise": noise}}, depth=10)
    assert choice.reranker is None and choice.mode == "first stage"
    assert "not a clear gain" in choice.reason and choice.best_candidate["reranker"] == "noise"


def test_a_fine_tuned_member_alone_is_no_candidate_beside_an_ensemble_weighed_with_it():
    def ensemble(*members):
        return SimpleNamespace(member_names=list(members))

    tuned = {"ensemble (fine-tuned)": ensemble("runs/x/minilm", "wordllama", "bm25"),
             "minilm (fine-tuned)": ensemble("runs/x/minilm"), "e5 (fine-tuned)": ensemble("runs/x/e5")}
    # the weighed ensemble's grid holds the member alone; a member outside it stays a candidate
    assert evaluation_stage.offered(tuned, {"ensemble (fine-tuned)"}) == ["ensemble (fine-tuned)", "e5 (fine-tuned)"]
    # at fixed weights the member alone is an option the ensemble does not give
    assert evaluation_stage.offered(tuned, set()) == list(tuned)


def test_the_gate_reads_held_out_gains_so_the_luckiest_of_many_useless_rerankers_is_not_handed_over():
    rng = np.random.default_rng(2)
    # a first stage that ranks the positive anywhere in its top 10: a random re-ranking is no better on average
    first = {f"q{i:03d}": {f"q{i:03d}-d{j}": float(10 - j) for j in range(10)} for i in range(30)}
    qrels = {q: {f"{q}-d{int(rng.integers(0, 10))}": 1} for q in first}
    noisy = {f"noise{i:02d}": {q: {d: float(rng.normal()) for d in docs} for q, docs in first.items()}
             for i in range(100)}
    choice = choose_system("ensemble", qrels, {"ensemble": first}, {"ensemble": noisy}, depth=10, weights=(1.0,))
    # picked on the dev queries themselves, the luckiest candidate looks clearly better than the first stage ...
    assert choice.dev_gain > 0 and choice.dev_interval[0] > 0
    # ... but picked on other folds and measured on held-out ones, the selection does not help
    assert choice.reranker is None and choice.cv_gain < choice.dev_gain and choice.folds == 5
    assert "cross-validated" in choice.reason


def test_the_gate_chooses_how_deep_to_trust_a_reranker_that_helps_on_top_and_hurts_below():
    rng = np.random.default_rng(3)
    qrels, first = {}, {}
    for i in range(40):
        q = f"q{i:03d}"
        docs = [f"{q}-d{j:02d}" for j in range(20)]
        qrels[q] = {docs[int(rng.integers(2, 10))]: 1}
        first[q] = {d: float(20 - j) for j, d in enumerate(docs)}
    # right about the first stage's top 10, but it scores every deeper candidate above the positive
    shallow = {q: {d: 5.0 if d in qrels[q] else 10.0 if j >= 10 else 0.0 for j, d in enumerate(docs)}
               for q, docs in first.items()}
    choice = choose_system("ensemble", qrels, {"ensemble": first}, {"ensemble": {"r": shallow}}, depth=20,
                           depths=(10, 20, 50))
    assert (choice.reranker, choice.depth) == ("r", 10) and choice.best_candidate["depth"] == 10
    assert "top 10" in choice.reason and choice.as_dict()["depth"] == 10
    # held to the scored depth, the same re-ranker cannot help: the first stage stays
    deep = choose_system("ensemble", qrels, {"ensemble": first}, {"ensemble": {"r": shallow}}, depth=20,
                         weights=(1.0,))
    assert deep.reranker is None and deep.depth is None and deep.best_candidate["depth"] == 20
    with pytest.raises(ValueError, match="at least 1"):
        choose_system("ensemble", qrels, {"ensemble": first}, {"ensemble": {"r": shallow}}, depth=20, depths=(0,))
    with pytest.raises(ValueError, match="gate_depths"):
        RunConfig(dataset="x", evaluate={"gate_depths": [0, 20]})


def test_a_clear_winner_is_picked_by_every_fold():
    qrels, first = _dev(40)
    oracle = {q: {d: (5.0 if d in qrels[q] else 0.0) for d in docs} for q, docs in first.items()}
    choice = choose_system("ensemble", qrels, {"ensemble": first}, {"ensemble": {"good": oracle}}, depth=10)
    assert choice.fold_agreement == 1.0 and choice.cv_gain == pytest.approx(choice.dev_gain)
    assert choice.as_dict()["cv_interval"][0] > 0


def _near_tie(n: int = 40):
    """A tuned first stage that ranks the positive first on all but 3 dev queries, and a re-ranker that moves it up
    on two of those and down on one other: better on average, within the noise of the dev queries."""
    qrels, first = _dev(n)
    tuned, reranked = {}, {}
    for i, (q, docs) in enumerate(first.items()):
        positive = next(iter(qrels[q]))
        others = [d for d in docs if d != positive]
        top, second = [positive, *others], [others[0], positive, *others[1:]]
        tuned[q] = {d: float(10 - j) for j, d in enumerate(second if i >= n - 3 else top)}
        order = top if i in (n - 3, n - 2) else second if i in (0, n - 1) else top
        reranked[q] = {d: float(10 - j) for j, d in enumerate(order)}
    return qrels, {"ensemble": first, "tuned": tuned}, {"ensemble": {"r": reranked}, "tuned": {"r": reranked}}


def test_one_se_picks_the_simplest_candidate_the_dev_queries_cannot_tell_from_the_best():
    qrels, runs, scores = _near_tie()
    best = choose_system("ensemble", qrels, runs, scores, depth=10, weights=(1.0,))
    assert best.reranker == "r" and best.selection == "best"  # ahead by one query's worth: 2 up, 1 down
    simplest = choose_system("ensemble", qrels, runs, scores, depth=10, weights=(1.0,), selection="one_se")
    assert (simplest.first_stage, simplest.reranker, simplest.mode) == ("tuned", None, "first stage")
    assert simplest.fold_agreement >= 0.8 and simplest.dev_gain < best.dev_gain
    assert "simplest within one standard error" in simplest.reason and simplest.as_dict()["selection"] == "one_se"
    # a re-ranker well ahead of everything simpler is still picked
    qrels, first = _dev(40)
    oracle = {q: {d: (5.0 if d in qrels[q] else 0.0) for d in docs} for q, docs in first.items()}
    clear = choose_system("ensemble", qrels, {"ensemble": first}, {"ensemble": {"good": oracle}}, depth=10,
                          selection="one_se")
    assert clear.reranker == "good" and clear.weight == 0.5
    with pytest.raises(ValueError, match="one_se"):
        choose_system("ensemble", qrels, {"ensemble": first}, {}, depth=10, selection="simplest")


def test_few_dev_queries_are_not_enough_evidence_and_none_at_all_says_so():
    qrels, first = _dev(2)
    oracle = {q: {d: (5.0 if d in qrels[q] else 0.0) for d in docs} for q, docs in first.items()}
    weak = choose_system("ensemble", {"q000": qrels["q000"]}, {"ensemble": first}, {"ensemble": {"good": oracle}},
                         depth=10)
    assert weak.reranker is None and "too few dev queries" in weak.reason
    none = choose_system("ensemble", {}, {"ensemble": first}, {"ensemble": {"good": oracle}}, depth=10)
    assert none.reranker is None and "no dev queries" in none.reason


def _config(tmp_path, beir_dir, tiny_bert):
    cfg = {"dataset": str(beir_dir), "output": str(tmp_path / "run"), "seed": 7, "dev_fraction": 0.4,
           "ensemble": ["hash", "bm25"], "progress": False, "mining": {"num_negatives": 2, "depth": 8},
           "strategies": ["ensemble"],
           "train": {"base_model": tiny_bert, "epochs": 1, "batch_size": 4, "max_length": 32},
           "evaluate": {"depth": 10, "rerank_depth": 5, "batch_size": 16, "include_base": False}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_the_choice_never_sees_test_queries_and_the_system_is_saved_whole(tmp_path, beir_dir, tiny_bert,
                                                                           monkeypatch):
    seen: list[set[str]] = []
    real = choice_module.choose_system

    def spy(baseline, dev_qrels, dev_runs, dev_scores, *args, **kwargs):
        seen.append(set(dev_qrels) | {q for run in dev_runs.values() for q in run}
                    | {q for by_model in dev_scores.values() for s in by_model.values() for q in s})
        return real(baseline, dev_qrels, dev_runs, dev_scores, *args, **kwargs)

    # the pipeline's own name and the one choose_in_steps calls
    monkeypatch.setattr(evaluation_stage, "choose_system", spy)
    monkeypatch.setattr(choice_module, "choose_system", spy)
    result = run(load_config(_config(tmp_path, beir_dir, tiny_bert)))
    test_queries = {"q6", "q7", "q8", "q9"}
    assert seen and seen[0] and not seen[0] & test_queries
    assert result.system["choice"]["dev_queries"] == len(seen[0])
    assert "## The trained system" in result.markdown
    # A capped dev set (a large query log): the choice sees a seeded sample of the same dev queries, no more.
    all_dev = seen.pop()
    capped = run(load_config(_config(tmp_path, beir_dir, tiny_bert), {"evaluate.max_dev_queries": 1}))
    assert capped.system["choice"]["dev_queries"] == 1 and seen[-1] <= all_dev

    out = tmp_path / "run"
    saved = json.loads((out / "system.json").read_text())
    assert saved["members"] == ["hash", "bm25"] and saved["depth"] == 10 and saved["rerank_depth"] == 5
    assert json.loads((out / "results.json").read_text())["system"]["choice"] == saved["choice"]
    gate_run = {line.split()[0] for line in (out / "runs" / "ensemble.gate.trec").read_text().splitlines()}
    assert gate_run and not gate_run & test_queries  # the dev run the choice was made on is kept, test-free
    system = System.load(out)
    hits = system.search("how do solar panels make electricity", 3)
    assert [h.rank for h in hits] == [1, 2, 3] and hits[0].doc_id == "d01"
    order = system.rerank("coffee roasting flavour", ["Solar panels make power.", "Roasting coffee beans.",
                                                      "Camels store fat."])
    assert order[0][0] == 1 and sorted(i for i, _ in order) == [0, 1, 2]

    # The same system with its trained re-ranker interpolated: search re-scores the head with it.
    saved.update(reranker="ensemble", model="strategies/ensemble/model", mode="interpolated", weight=0.5)
    (out / "system.json").write_text(json.dumps(saved))
    hits = System.load(out).search("how do solar panels make electricity", 5)
    assert len(hits) == 5 and all(h.reranker_score is not None for h in hits)
    bare = System.load(out).rerank("solar", ["Solar panels.", "Coffee."], bare=True)
    assert sorted(i for i, _ in bare) == [0, 1]

    runner = CliRunner()
    found = runner.invoke(app, ["search", "which birds live in rainforests", "--run", str(out), "-k", "2", "--json"])
    assert found.exit_code == 0, found.output
    rows = [json.loads(line) for line in found.stdout.splitlines() if line.startswith("{")]
    assert [r["rank"] for r in rows] == [1, 2] and rows[0]["doc_id"] == "d10"
    docs = tmp_path / "docs.txt"
    docs.write_text("Toucans live in rainforests.\nEspresso is coffee.\n")
    reranked = runner.invoke(app, ["rerank", "--run", str(out), "-q", "rainforest birds", "--docs", str(docs)])
    assert reranked.exit_code == 0, reranked.output
    neither = runner.invoke(app, ["rerank", "-q", "x", "--docs", str(docs)])
    assert neither.exit_code == 2 and "--run" in neither.output
    missing = runner.invoke(app, ["search", "x", "--run", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "no saved system" in missing.output


def test_a_tuned_first_stage_alone_can_be_chosen_and_ties_keep_the_untrained_one():
    qrels, first = _dev(40)
    better = {q: {d: (20.0 if d in qrels[q] else s) for d, s in docs.items()} for q, docs in first.items()}
    choice = choose_system("ensemble", qrels, {"ensemble": first, "ensemble (fine-tuned)": better}, {}, depth=10)
    assert (choice.first_stage, choice.reranker, choice.mode) == ("ensemble (fine-tuned)", None, "first stage")
    assert choice.baseline == "ensemble" and choice.dev_gain > 0.3
    same = choose_system("ensemble", qrels, {"ensemble": first, "copy": dict(first)}, {}, depth=10)
    assert same.first_stage == "ensemble" and same.reranker is None


def _better(qrels, first, share: float, seed: int = 3):
    """``first`` with the positive moved to the top for about ``share`` of the queries (a tuned first stage)."""
    rng = np.random.default_rng(seed)
    lucky = {q for q in first if rng.random() < share}
    return {q: {d: (20.0 if q in lucky and d in qrels[q] else s) for d, s in docs.items()} for q, docs in first.items()}


def test_in_steps_the_first_stage_is_chosen_first_and_a_reranker_must_beat_it():
    qrels, first = _dev(60)
    tuned = _better(qrels, first, 0.6)
    rng = np.random.default_rng(5)
    # many re-rankers of pure noise over the tuned first stage: none helps it
    noisy = {f"noise{i}": {q: {d: float(rng.normal()) for d in docs} for q, docs in tuned.items()} for i in range(4)}
    runs = {"ensemble": first, "ensemble (fine-tuned)": tuned}
    choice = choose_in_steps("ensemble", qrels, runs, {"ensemble": {}, "ensemble (fine-tuned)": noisy}, depth=10)
    assert (choice.first_stage, choice.reranker, choice.mode) == ("ensemble (fine-tuned)", None, "first stage")
    assert choice.baseline == "ensemble" and choice.reason.startswith("in two steps")
    first_step, second_step = choice.steps
    # the evidence is the first step's: the tuned first stage against the untrained one
    assert first_step["first_stage"] == "ensemble (fine-tuned)" and first_step["reranker"] is None
    assert choice.cv_gain == first_step["cv_gain"] > 0.1 and choice.cv_interval[0] > 0
    assert second_step["baseline"] == "ensemble (fine-tuned)" and second_step["reranker"] is None
    assert "over ensemble (fine-tuned) alone" in second_step["reason"]
    assert json.loads(json.dumps(choice.as_dict()))["steps"][0]["cv_interval"] == list(choice.cv_interval)

    # a re-ranker that clearly helps the kept first stage is added over it
    oracle = {q: {d: (5.0 if d in qrels[q] else 0.0) for d in docs} for q, docs in tuned.items()}
    both = choose_in_steps("ensemble", qrels, runs, {"ensemble (fine-tuned)": {**noisy, "good": oracle}}, depth=10)
    assert (both.first_stage, both.reranker) == ("ensemble (fine-tuned)", "good")
    assert both.steps[1]["reranker"] == "good" and both.cv_gain == both.steps[0]["cv_gain"]


def test_in_steps_an_unclear_tuned_first_stage_leaves_the_rerankers_over_the_untrained_one():
    qrels, first = _dev(60)
    copy = dict(first)  # a tuned first stage no better than the untrained
    oracle = {q: {d: (5.0 if d in qrels[q] else 0.0) for d in docs} for q, docs in first.items()}
    runs = {"ensemble": first, "ensemble (fine-tuned)": copy}
    choice = choose_in_steps("ensemble", qrels, runs, {"ensemble": {"good": oracle}, "ensemble (fine-tuned)":
                                                        {"good": oracle}}, depth=10)
    assert (choice.first_stage, choice.reranker) == ("ensemble", "good")
    assert choice.steps[0]["first_stage"] == "ensemble" and choice.cv_gain == choice.steps[1]["cv_gain"] > 0.3
    # without a tuned first stage it is the one-step choice
    alone = choose_in_steps("ensemble", qrels, {"ensemble": first}, {"ensemble": {"good": oracle}}, depth=10)
    assert alone == choose_system("ensemble", qrels, {"ensemble": first}, {"ensemble": {"good": oracle}}, depth=10)
    assert alone.steps is None


def test_a_broken_system_file_names_itself(tmp_path):
    (tmp_path / "system.json").write_text("{nope")
    with pytest.raises(ValueError, match="system.json: not valid JSON"):
        System.load(tmp_path)


def test_a_run_tunes_its_first_stage_and_offers_it_as_the_system(tmp_path, beir_dir, tiny_bert, tiny_st):
    """Learned fusion and a fine-tuned dense member join the evaluation as first stages of their own."""
    path = _config(tmp_path, beir_dir, tiny_bert)
    cfg = yaml.safe_load(path.read_text())
    cfg.update(ensemble=[tiny_st, "bm25"],
               embedder={"enabled": True, "epochs": 1, "batch_size": 2, "dev_eval": False, "threads": 1},
               fusion_weights={"learn": True, "min_queries": 2, "folds": 2})
    cfg.setdefault("evaluate", {})["cross_fit"] = "never"  # cross-fitted, tuned first stages are no candidates
    path.write_text(yaml.safe_dump(cfg))
    result = run(load_config(path))
    stages = {r.first_stage for r in result.rows if r.mode == "first stage"}
    name = f"{tiny_st.rstrip('/').rsplit('/', 1)[-1]} (fine-tuned)"
    assert {"ensemble", "ensemble (fine-tuned)", name} <= stages
    record = json.loads((tmp_path / "run" / "first_stage.json").read_text())
    assert record["fusion"]["queries"] >= 2 and set(record["embedders"]) == {tiny_st}
    model = record["embedders"][tiny_st]
    assert model.startswith(str(tmp_path / "run" / "strategies" / "ensemble" / "embedders"))
    # the first stage with the fine-tuned member is weighed on the dev queries its training never saw
    assert record["fine_tuned_fusion"]["members"] == [model, "bm25"]
    # and the gate measures it on dev folds its weights never saw (nested)
    nested = result.system["nested_dev_runs"]["ensemble (fine-tuned)"]
    assert sum(f["held_out"] for f in nested) == result.system["choice"]["dev_queries"]
    assert "are nested" in result.system["choice"]["reason"]
    # the fine-tuned member alone and inside the ensemble is re-ranked too
    assert ("ensemble (fine-tuned)", "ensemble", "rerank") in {(r.first_stage, r.reranker, r.mode) for r in result.rows}
    assert result.system["choice"]["baseline"] == "ensemble"
    saved = json.loads((tmp_path / "run" / "system.json").read_text())
    assert saved["first_stage"] == result.system["choice"]["first_stage"]
    assert System.load(tmp_path / "run").search("solar panels electricity", 2)


def test_the_embedder_strategy_must_be_one_of_the_runs(tmp_path, beir_dir, tiny_bert):
    path = _config(tmp_path, beir_dir, tiny_bert)
    with pytest.raises(ValueError, match="embedder.strategy is 'bm25'"):
        run(load_config(path, {"embedder": {"enabled": True, "strategy": "bm25"}}))
