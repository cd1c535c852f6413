"""Cross-fitting: with too few dev queries, the system is chosen on every training query, each scored by a
re-ranker that never trained on it; nothing of the test split takes part."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import yaml

import hardneg.pipeline.crossfit as crossfit_stage
import hardneg.pipeline.evaluation as evaluation_stage
from hardneg import load_config, run
from hardneg.config import config_from_dict
from hardneg.pipeline.crossfit import CROSS_FIT_BELOW, SMALL_DEV, cross_fit_queries, fold_count, split_folds
from hardneg.pipeline.dev_split import FineTuning, fine_tuning, split_for_run

TRAIN_QUERIES = {"q1", "q2", "q3", "q4", "q5"}
TEST_QUERIES = {"q6", "q7", "q8", "q9"}


def test_folds_are_disjoint_balanced_seeded_and_keep_the_input_order():
    queries = [f"q{i:02d}" for i in range(23)]
    folds = split_folds(queries, 5, seed=3)
    assert sorted(q for f in folds for q in f) == queries
    assert sorted(len(f) for f in folds) == [4, 4, 5, 5, 5]
    assert all(f == sorted(f) for f in folds)
    assert split_folds(queries, 5, seed=3) == folds and split_folds(queries, 5, seed=4) != folds
    # a query's fold does not depend on the other queries' order
    assert split_folds(list(reversed(queries)), 5, seed=3) == [list(reversed(f)) for f in folds]
    # queries asked the same way share a fold, so no fold model trains on a twin of a query it scores
    twins = split_folds(queries, 5, seed=3, same={"q00": "how", "q11": "how", "q22": "how"})
    assert any({"q00", "q11", "q22"} <= set(f) for f in twins)


def test_auto_cross_fits_below_the_threshold_only_and_never_on_test_twins():
    def queries(dev: int, mode: str = "auto", tuned: bool = False) -> list[str]:
        config = config_from_dict({"dataset": "x", "output": "y", "strategies": ["ensemble"],
                                   "evaluate": {"cross_fit": mode}})
        ctx = SimpleNamespace(config=config, train_ids=[f"t{i}" for i in range(300)],
                              dev_ids=[f"d{i}" for i in range(dev)], test_overlap=frozenset({"t0"}))
        return cross_fit_queries(ctx, tuned_first_stage=tuned)

    below = queries(CROSS_FIT_BELOW - 1)
    assert len(below) == 300 + CROSS_FIT_BELOW - 1 - 1 and "t0" not in below  # a twin of a test query stays out
    assert queries(CROSS_FIT_BELOW) == []
    assert len(queries(CROSS_FIT_BELOW, "always")) == 300 + CROSS_FIT_BELOW - 1
    assert queries(10, "never") == []
    # cross-fitting would shut a tuned first stage out of the choice: only a dev split too small to decide does
    assert queries(SMALL_DEV, tuned=True) == [] and queries(SMALL_DEV - 1, tuned=True)


def test_auto_fine_tunes_only_where_the_fine_tuned_first_stage_can_be_chosen():
    def config(**settings):
        return config_from_dict({"dataset": "x", "output": "y", "strategies": ["random", "ensemble"],
                                 "embedder": {"members": ["minilm"]}, **settings})

    def context(dev: int, **settings) -> SimpleNamespace:
        return SimpleNamespace(config=config(**settings), train_ids=[f"t{i}" for i in range(300)],
                               dev_ids=[f"d{i}" for i in range(dev)], test_overlap=frozenset())

    def tuning(dev: int, **settings) -> FineTuning:
        return fine_tuning(config(**settings), dev)

    assert tuning(SMALL_DEV).on and "30 dev queries" in tuning(SMALL_DEV).reason
    assert not tuning(SMALL_DEV - 1).on and "29 dev queries, under 30" in tuning(SMALL_DEV - 1).reason
    # it agrees with cross-fitting: a run fine-tunes exactly when the system is chosen on its dev split
    for dev in (SMALL_DEV - 1, SMALL_DEV):
        assert tuning(dev).on == (cross_fit_queries(context(dev), tuned_first_stage=True) == [])
    assert not tuning(200, evaluate={"cross_fit": "always"}).on
    assert not tuning(200, embedder={"strategy": "bm25", "members": ["minilm"]}).on
    assert not tuning(200, ensemble=["bm25"], embedder={}).on  # nothing to fine-tune
    assert tuning(3, embedder={"enabled": True}).on and not tuning(200, embedder={"enabled": False}).on


def test_a_run_that_fine_tunes_holds_out_the_embedders_wider_dev_split():
    def split(queries: int, excluded=frozenset(), **settings):
        config = config_from_dict({"dataset": "x", "output": "y", "strategies": ["random", "ensemble"], "seed": 5,
                                   **settings, "embedder": {"members": ["minilm"], "dev_fraction": 0.2,
                                                            **settings.get("embedder", {})}})
        return split_for_run(config, [f"q{i:03d}" for i in range(queries)], excluded)

    wide, narrow = split(400), split(400, embedder={"enabled": False})
    assert wide.tuning.on and len(wide.dev_ids) == 80 and "40 dev queries" in wide.tuning.reason
    assert "80 dev queries instead (embedder.dev_fraction 0.2)" in wide.tuning.reason
    assert not narrow.tuning.on and len(narrow.dev_ids) == 40
    assert set(narrow.dev_ids) < set(wide.dev_ids)  # the wider split holds the narrower one
    assert sorted(wide.train_ids + wide.dev_ids) == [f"q{i:03d}" for i in range(400)]
    assert split(400, embedder={"dev_fraction": None}).dev_ids == narrow.dev_ids  # null: dev_fraction
    assert config_from_dict({"dataset": "x"}).embedder.dev_fraction == 0.2  # the default
    assert len(split(400, embedder={"enabled": True}).dev_ids) == 80
    # evaluate.max_dev_queries caps the widening, never below dev_fraction's share
    assert len(split(400, evaluate={"max_dev_queries": 50}).dev_ids) == 50
    assert len(split(400, dev_fraction=0.3).dev_ids) == 120
    assert not split(400, evaluate={"max_dev_queries": 20}).tuning.on  # the dev queries the choice is made on count
    # the decision is dev_fraction's: 16 dev queries cannot weigh a fine-tuned member, though 20% would be 32
    small = split(160)
    assert not small.tuning.on and len(small.dev_ids) == 16 and "16 dev queries, under 30" in small.tuning.reason
    assert len(split(160, embedder={"enabled": True}).dev_ids) == 32  # turned on, it holds out the wider share
    assert split(0, embedder={"enabled": True}).dev_ids == []  # no training queries (evaluating ready models)
    # twins of test queries leave dev, and the decision counts the queries left
    twins = frozenset(narrow.dev_ids[:15])
    assert not split(400, twins).tuning.on and not twins & set(split(400, twins).dev_ids)


def test_two_folds_unless_the_cross_fitted_queries_are_few():
    assert fold_count(None, 500) == fold_count(None, SMALL_DEV) == 2
    assert fold_count(None, SMALL_DEV - 1) == 5 and fold_count(None, 3) == 3  # never more folds than queries
    assert fold_count(4, 500) == fold_count(4, 10) == 4  # a set fold count is kept


def _config(tmp_path, beir_dir, tiny_bert, **evaluate):
    cfg = {"dataset": str(beir_dir), "output": str(tmp_path / "run"), "seed": 7, "dev_fraction": 0.2,
           "ensemble": ["hash", "bm25"], "progress": False, "mining": {"num_negatives": 2, "depth": 8},
           "strategies": ["random", "ensemble"],
           "train": {"base_model": tiny_bert, "epochs": 1, "batch_size": 4, "max_length": 32},
           "evaluate": {"depth": 10, "rerank_depth": 5, "batch_size": 16, "include_base": False,
                        "cross_fit_folds": 3, **evaluate}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_each_fold_model_never_trains_on_the_queries_it_scores(tmp_path, beir_dir, tiny_bert, monkeypatch):
    trained: list[tuple[str, set[str]]] = []
    real_train = crossfit_stage.train_reranker

    def spy_train(pairs, output_dir, *args, **kwargs):
        trained.append((str(output_dir), {p.query_id for p in pairs}))
        return real_train(pairs, output_dir, *args, **kwargs)

    seen: list[dict] = []
    real_choose = evaluation_stage.choose_system

    def spy_choose(baseline, dev_qrels, dev_runs, dev_scores, *args, **kwargs):
        seen.append({"queries": set(dev_qrels), "scored": {r: set(s) for by in dev_scores.values()
                                                           for r, s in by.items()}})
        return real_choose(baseline, dev_qrels, dev_runs, dev_scores, *args, **kwargs)

    monkeypatch.setattr(crossfit_stage, "train_reranker", spy_train)
    monkeypatch.setattr(evaluation_stage, "choose_system", spy_choose)
    # auto: 1 dev query, so it cross-fits. The extra re-ranker may have been trained on these training queries
    # elsewhere, so it is scored on the held-out dev query only and is no candidate.
    result = run(load_config(_config(tmp_path, beir_dir, tiny_bert, extra_rerankers=[tiny_bert])))

    assert result.system["cross_fit"] == {"queries": 5, "folds": 3, "strategies": ["ensemble"]}
    assert len(trained) == 3  # only the ensemble strategy is cross-fitted
    scores = tmp_path / "run" / "scores"
    for number in (1, 2, 3):
        _, trained_on = next((o, q) for o, q in trained if o.endswith(f"crossfit/fold{number}"))
        scored = set(json.loads((scores / f"ensemble.dev.fold{number}.json").read_text())["scores"])
        assert trained_on and scored and not trained_on & scored  # never scores a query it trained on
        assert (tmp_path / "run" / "strategies" / "ensemble" / "crossfit" / f"fold{number}" / "model").is_dir()
    # The choice sees every training query and no test query; only the cross-fitted re-ranker is a candidate (the
    # random one trained on four of the five queries, so it scores only the held-out dev query).
    choice = seen[-1]
    assert choice["queries"] == TRAIN_QUERIES and not choice["queries"] & TEST_QUERIES
    assert set(choice["scored"]) == {"ensemble"} and choice["scored"]["ensemble"] == TRAIN_QUERIES
    assert result.system["choice"]["dev_queries"] == 5 and "cross-fitted" in result.system["choice"]["reason"]
    assert "5 training queries, each scored by a re-ranker trained without it" in result.markdown
    scored = [set(json.loads(p.read_text())["scores"]) for p in sorted(scores.glob("ensemble.dev.fold*.json"))]
    assert sorted(q for s in scored for q in s) == sorted(TRAIN_QUERIES)  # each query scored once

    # A rerun reuses every fold model and every stored score.
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "run").rglob("model.safetensors")}
    again = run(load_config(_config(tmp_path, beir_dir, tiny_bert, extra_rerankers=[tiny_bert])))
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert again.system["choice"] == result.system["choice"]


def test_never_keeps_the_dev_split_and_the_strategy_names_are_checked(tmp_path, beir_dir, tiny_bert):
    result = run(load_config(_config(tmp_path, beir_dir, tiny_bert, cross_fit="never")))
    assert "cross_fit" not in result.system and result.system["choice"]["dev_queries"] == 1
    assert not (tmp_path / "run" / "strategies" / "ensemble" / "crossfit").exists()
    with pytest.raises(ValueError, match="cross_fit_strategies names \\['bm25'\\]"):
        load_config(_config(tmp_path, beir_dir, tiny_bert, cross_fit_strategies=["bm25"]))
