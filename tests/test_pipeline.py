from __future__ import annotations

import json
import logging
import os

import pytest
import yaml

from hardneg.evaluate import evaluate_run, rerank_run, tune_alpha


def test_metrics_by_hand():
    qrels = {"a": {"x": 1}, "b": {"y": 1}}
    run = {"a": {"z": 3.0, "x": 2.0, "w": 1.0}, "b": {"y": 5.0, "z": 1.0}}
    m = evaluate_run(qrels, run, ["mrr@10", "precision@1"])
    assert m["mrr@10"] == pytest.approx((0.5 + 1.0) / 2)
    assert m["precision@1"] == pytest.approx(0.5)
    # ties are ordered by document id, not by ranx's sort
    assert evaluate_run({"a": {"b": 1}}, {"a": {"c": 1.0, "b": 1.0}}, ["mrr@10"])["mrr@10"] == 1.0
    assert evaluate_run({"a": {"c": 1}}, {"a": {"c": 1.0, "b": 1.0}}, ["mrr@10"])["mrr@10"] == 0.5
    # a query the run misses counts as zero rather than vanishing from the mean
    assert evaluate_run({**qrels, "c": {"x": 1}}, run, ["mrr@10"])["mrr@10"] == pytest.approx(1.5 / 3)


def test_rerank_keeps_tail_and_interpolates():
    first = {"q": {"a": 4.0, "b": 3.0, "c": 2.0, "d": 1.0}}
    ce = {"q": {"a": 0.0, "b": 1.0, "c": 9.0}}
    order = lambda run: sorted(run["q"], key=lambda d: -run["q"][d])
    assert order(rerank_run(first, ce, 3)) == ["c", "b", "a", "d"]
    assert order(rerank_run(first, ce, 3, alpha=0.0)) == ["a", "b", "c", "d"]  # pure first stage
    alpha, curve = tune_alpha({"q": {"c": 1}}, first, ce, 3)
    assert alpha == 1.0 and curve[1.0] > curve[0.0]


def _config(tmp_path, beir_dir, tiny_bert, **extra):
    cfg = {
        "dataset": str(beir_dir), "output": str(tmp_path / "run"), "seed": 7, "dev_fraction": 0.2,
        "ensemble": ["hash", "bm25"], "progress": False,
        "mining": {"num_negatives": 2, "depth": 8},
        "strategies": ["random", "bm25", "dense:hash", "ensemble"],
        "train": {"base_model": tiny_bert, "epochs": 1, "batch_size": 4, "max_length": 32, "learning_rate": 1e-3},
        "evaluate": {"depth": 10, "rerank_depth": 5, "batch_size": 16, "include_base": True},
        **extra,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_run_end_to_end_and_resume(tmp_path, beir_dir, tiny_bert, caplog):
    from sentence_transformers import CrossEncoder

    from hardneg import load_config, run

    path = _config(tmp_path, beir_dir, tiny_bert)
    with caplog.at_level(logging.WARNING, logger="hardneg.pipeline"):
        result = run(load_config(path))
    assert "tuned on only" in caplog.text  # the fixture's handful of dev queries
    out = tmp_path / "run"
    systems = {(r.first_stage, r.reranker, r.mode) for r in result.rows}
    assert ("ensemble", "none", "first stage") in systems
    for name in ("base", "random", "bm25", "dense:hash", "ensemble"):
        assert ("ensemble", name, "rerank") in systems
        assert ("ensemble", name, "interpolated") in systems
    for row in result.rows:
        assert set(row.metrics) == {"mrr@3", "mrr@10", "ndcg@10", "precision@1", "precision@5", "recall@10",
                                    "recall@100", "map"}
        assert all(0.0 <= v <= 1.0 for v in row.metrics.values())
    saved = json.loads((out / "results.json").read_text())
    assert saved["settings"]["train_pairs"] + saved["settings"]["dev_queries"] >= 5
    assert "| none (base model, no fine-tuning) |" in (out / "results.md").read_text()
    # embedder.enabled: auto says why it did not fine-tune (the fixture's ensemble has no sentence-transformers model)
    assert not saved["settings"]["fine_tuning"]["fine_tuned"]
    assert "dense members were not fine-tuned (auto: the ensemble has no" in (out / "results.md").read_text()
    for strategy in ("random", "bm25", "dense_hash", "ensemble"):
        folder = out / "strategies" / strategy
        CrossEncoder(str(folder / "model"))  # loads in plain sentence-transformers
        mined = [json.loads(line) for line in (folder / "negatives.jsonl").read_text().splitlines()]
        assert all(m["positive_id"] not in m["negative_ids"] for m in mined)
    assert (out / "runs" / "ensemble.test.trec").is_file()

    # A second run reuses every finished stage: no model is retrained.
    model_file = out / "strategies" / "ensemble" / "model" / "hardneg_training.json"
    before = os.stat(model_file).st_mtime_ns
    again = run(load_config(path))
    assert os.stat(model_file).st_mtime_ns == before
    assert [r.metrics for r in again.rows] == [r.metrics for r in result.rows]

    # A fixed interpolation weight replaces the dev-tuned one (without retraining) and reorders by that weight.
    fixed = run(load_config(path, {"evaluate": {"depth": 10, "rerank_depth": 5, "batch_size": 16,
                                                "include_base": True, "interpolation_weight": 0.3}}))
    assert os.stat(model_file).st_mtime_ns == before
    mixed = [r for r in fixed.rows if r.mode == "interpolated"]
    assert len(mixed) == 5 and all(r.alpha == 0.3 and r.alpha_curve is None for r in mixed)
    assert [r.metrics for r in fixed.rows if r.mode == "rerank"] == [r.metrics for r in result.rows
                                                                      if r.mode == "rerank"]

    # Changing the mining settings re-mines and retrains that strategy only.
    random_model = out / "strategies" / "random" / "model" / "hardneg_training.json"
    before_random = os.stat(random_model).st_mtime_ns
    run(load_config(path, {"strategies": ["random", {"name": "ensemble", "kind": "ensemble",
                                                     "mining": {"range_min": 1}}]}))
    assert os.stat(model_file).st_mtime_ns != before
    assert os.stat(random_model).st_mtime_ns == before_random


def test_cli_run_and_mine(tmp_path, beir_dir, tiny_bert):
    from typer.testing import CliRunner

    from hardneg.cli import app

    path = _config(tmp_path, beir_dir, tiny_bert, strategies=["random"], evaluate={"depth": 10, "rerank_depth": 3,
                                                                                   "interpolate": False,
                                                                                   "include_base": True})
    runner = CliRunner()
    result = runner.invoke(app, ["run", str(path), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "MRR@10" in result.output and "none (base model, no fine-tuning)" in result.output

    out = tmp_path / "neg.jsonl"
    result = runner.invoke(app, ["mine", "-d", str(beir_dir), "-o", str(out), "--models", "hash,bm25",
                                 "--num-negatives", "3", "--cache-dir", str(tmp_path / "cache"), "--no-progress"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 6 and all(len(r["negatives"]) == 3 for r in rows)
    summary = json.loads(out.with_suffix(".summary.json").read_text())
    assert summary["summary"]["pairs"] == 6
    assert (summary["mining"]["range_min"], summary["mining"]["range_max"], summary["mining"]["sampling"]) == (
        5, 50, "random")
    # --mining overrides a named option (range_max has no "none" on the command line otherwise).
    result = runner.invoke(app, ["mine", "-d", str(beir_dir), "-o", str(out), "--models", "hash,bm25",
                                 "--range-min", "0", "--mining", "range_max=null", "--cache-dir",
                                 str(tmp_path / "cache"), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert json.loads(out.with_suffix(".summary.json").read_text())["mining"]["range_max"] is None
    result = runner.invoke(app, ["mine", "-d", str(beir_dir), "-o", str(out), "--models", "hash", "--strategy",
                                 "dense:hash", "-n", "2", "--cache-dir", str(tmp_path / "cache"), "--no-progress",
                                 "--hf-dataset", str(tmp_path / "hf")])
    assert result.exit_code == 0, result.output
    from datasets import load_from_disk

    assert load_from_disk(str(tmp_path / "hf")).column_names == ["query", "positive", "negative_1", "negative_2"]

    bad = runner.invoke(app, ["mine", "-d", str(beir_dir), "-o", str(out), "--models", "no-such-model",
                              "--no-progress"])
    assert bad.exit_code == 2 and "Unknown model 'no-such-model'" in bad.output

    out = tmp_path / "clustered.jsonl"
    result = runner.invoke(app, ["mine", "-d", str(beir_dir), "-o", str(out), "--models", "hash,bm25", "-n", "2",
                                 "--fusion", "concat-pca", "--mining", "cluster=kmeans", "--mining", "clusters=3",
                                 "--mining", "likely_positive_ratio=0.5", "--cache-dir", str(tmp_path / "cache"),
                                 "--no-progress"])
    assert result.exit_code == 0, result.output
    summary = json.loads(out.with_suffix(".summary.json").read_text())
    assert summary["summary"]["clusters"]["k"] == 3 and summary["mining"]["fusion"] is None
    bad = runner.invoke(app, ["mine", "-d", str(beir_dir), "-o", str(out), "--mining", "no_such_rule=1"])
    assert bad.exit_code == 2 and "no_such_rule" in bad.output


def test_cli_train_and_evaluate_stages(tmp_path, beir_dir, tiny_bert):
    """`hardneg mine` -> `hardneg train` -> `hardneg evaluate`: each stage on its own, as `hardneg run` chains them."""
    from sentence_transformers import CrossEncoder
    from typer.testing import CliRunner

    from hardneg.cli import app

    runner = CliRunner()
    negatives = tmp_path / "neg.jsonl"
    mined = runner.invoke(app, ["mine", "-d", str(beir_dir), "-o", str(negatives), "--models", "hash,bm25", "-n", "2",
                                "--cache-dir", str(tmp_path / "cache"), "--no-progress"])
    assert mined.exit_code == 0, mined.output
    trained = runner.invoke(app, ["train", str(negatives), "-o", str(tmp_path / "reranker"), "--set",
                                  f"base_model={tiny_bert}", "--set", "train.max_length=32", "--set", "batch_size=4",
                                  "--set", "dev_eval=false", "--no-progress"])
    assert trained.exit_code == 0, trained.output
    assert "6 pairs, 2 negatives each" in trained.output
    model = tmp_path / "reranker" / "model"
    CrossEncoder(str(model))
    info = json.loads((model / "hardneg_training.json").read_text())
    assert info["num_negatives"] == 2 and info["labelled_pairs"] == 6
    # Training again on the same file and settings reuses the model.
    before = os.stat(model / "hardneg_training.json").st_mtime_ns
    again = runner.invoke(app, ["train", str(negatives), "-o", str(tmp_path / "reranker"), "--set",
                                f"base_model={tiny_bert}", "--set", "max_length=32", "--set", "batch_size=4",
                                "--set", "dev_eval=false", "--no-progress"])
    assert again.exit_code == 0, again.output
    assert os.stat(model / "hardneg_training.json").st_mtime_ns == before

    out = tmp_path / "eval"
    evaluated = runner.invoke(app, ["evaluate", str(model), "-d", str(beir_dir), "-o", str(out), "--set",
                                    'ensemble=["hash","bm25"]', "--set", f"train.base_model={tiny_bert}",
                                    "--set", "train.max_length=32", "--set", "evaluate.depth=10",
                                    "--set", "evaluate.rerank_depth=5", "--set", "evaluate.include_base=true",
                                    "--no-progress"])
    assert evaluated.exit_code == 0, evaluated.output
    assert "MRR@10" in evaluated.output
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert {(r["reranker"], r["mode"]) for r in rows} >= {("none", "first stage"), ("base", "rerank"),
                                                          (str(model), "rerank")}
    assert (out / "runs" / "ensemble.test.trec").is_file() and (out / "analysis.json").is_file()

    bad = runner.invoke(app, ["train", str(tmp_path / "missing.jsonl"), "-o", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "missing.jsonl" in bad.output
    broken = tmp_path / "broken.jsonl"
    broken.write_text(negatives.read_text().splitlines()[0] + "\n{not json\n")
    bad = runner.invoke(app, ["train", str(broken), "-o", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "broken.jsonl:2" in bad.output


def test_bad_config_names_the_field(tmp_path):
    from hardneg import load_config

    path = tmp_path / "c.yaml"
    path.write_text("dataset: x\nmining:\n  num_negatives: 0\n")
    with pytest.raises(ValueError, match=r"c\.yaml: invalid config: mining\.num_negatives"):
        load_config(path)
    path.write_text("dataset: x\nstrategies: [dense]\n")
    with pytest.raises(ValueError, match="dense:<model>"):
        load_config(path)


def test_query_sampling_and_dev_split_are_seeded_and_sized():
    from hardneg.splits import sample_queries, split_queries

    ids = [f"q{i}" for i in range(100)]
    assert len(sample_queries(ids, 20, seed=1)) == 20
    assert sample_queries(ids, 20, seed=1) == sample_queries(ids, 20, seed=1)
    assert sample_queries(ids, None, seed=1) == ids
    train, dev = split_queries(ids, 0.1, seed=3)
    assert len(dev) == 10 and not set(train) & set(dev) and sorted(train + dev) == sorted(ids)


def test_rerank_subset_without_base(tmp_path, beir_dir, tiny_bert, monkeypatch, caplog):
    import hardneg.pipeline.evaluation as evaluation_stage
    from hardneg import load_config, run

    path = _config(tmp_path, beir_dir, tiny_bert, strategies=["bm25"],
                   evaluate={"first_stages": ["ensemble", "bm25"], "rerank": ["bm25"], "include_base": False,
                             "depth": 10, "rerank_depth": 4, "interpolate": False, "engine": "torch"})
    result = run(load_config(path))
    assert {(r.first_stage, r.reranker, r.mode) for r in result.rows} == {
        ("ensemble", "none", "first stage"), ("bm25", "none", "first stage"), ("bm25", "bm25", "rerank")}
    with pytest.raises(ValueError, match=r"evaluate\.rerank names \['hash'\]"):
        load_config(path, {"evaluate.rerank": ["hash"]})
    # the same run re-ranked by OpenVINO: the torch scores are not reused (another engine), the metrics barely move
    pytest.importorskip("openvino")
    store = result.output / "scores" / "bm25.test.json"
    torch_fingerprint = json.loads(store.read_text())["fingerprint"]
    # a model OpenVINO cannot convert: auto scores it with torch (here: reuses torch's stored scores), an engine
    # named outright fails
    def unconvertible(model, engine="torch"):
        if engine == "openvino":
            raise RuntimeError("unsupported operation")
        return model

    scored = []
    monkeypatch.setattr(evaluation_stage, "reranking_engine", unconvertible)
    monkeypatch.setattr(evaluation_stage, "score_pairs", lambda *a, **k: scored.append(a))
    with caplog.at_level(logging.WARNING, logger="hardneg.pipeline"):
        fallback = run(load_config(path, {"evaluate.engine": "auto"}))
    assert "OpenVINO could not convert it (RuntimeError: unsupported operation); scoring it with torch" in caplog.text
    assert not scored and json.loads(store.read_text())["fingerprint"] == torch_fingerprint
    assert [r.metrics for r in fallback.rows] == [r.metrics for r in result.rows]
    with pytest.raises(RuntimeError, match="unsupported operation"):
        run(load_config(path, {"evaluate.engine": "openvino"}))
    monkeypatch.undo()
    again = run(load_config(path, {"evaluate.engine": "openvino"}))
    assert json.loads(store.read_text())["fingerprint"] != torch_fingerprint
    before, after = ([r.metrics["ndcg@10"] for r in rows if r.mode == "rerank"] for rows in (result.rows, again.rows))
    assert after == pytest.approx(before, abs=0.05)


def test_score_store_discards_scores_of_another_model(tmp_path):
    import numpy as np

    from hardneg.crossencoder import ScoreStore

    path = tmp_path / "s.json"
    store = ScoreStore(path, "model-a")
    store.add([("q", "d1"), ("q", "d2")], np.array([0.5, 0.25]))
    assert ScoreStore(path, "model-a").missing([("q", "d1"), ("q", "d3")]) == [("q", "d3")]
    assert ScoreStore(path, "model-b").missing([("q", "d1")]) == [("q", "d1")]


def test_new_mining_settings_at_default_keep_old_fingerprints():
    from hardneg.config import MiningConfig

    # Runs mined before these settings existed must be reused, so at their defaults they are not fingerprinted.
    assert set(MiningConfig().stamp()) == {"num_negatives", "depth", "positive_ratio", "range_min", "range_max",
                                           "sampling", "random_share", "fill_shortfall"}
    assert MiningConfig(geometric=True).stamp()["geometric"] is True


def test_second_round_denoises_with_the_first_model(tmp_path, beir_dir, tiny_bert):
    from hardneg import load_config, run

    strategy = {"name": "ens", "kind": "ensemble", "mining": {"likely_positive_ratio": 0.5, "fusion": "union"}}
    path = _config(tmp_path, beir_dir, tiny_bert, rounds=2, strategies=[strategy],
                   evaluate={"depth": 10, "rerank_depth": 5, "batch_size": 16, "include_base": False})
    result = run(load_config(path))
    folder = tmp_path / "run" / "strategies" / "ens"
    info = result.mining["ens"]
    assert info["mining"]["denoise_model"] == str(folder / "model")
    assert info["round1"]["mining"]["denoise_model"] is None
    assert (folder / "round2" / "model" / "hardneg_training.json").is_file()
    for sub in (folder, folder / "round2"):
        assert (sub / "likely_positives.jsonl").is_file()
        diag = json.loads((sub / "diagnostics.json").read_text())
        assert diag["pairs"] > 0 and "positive_scores" in diag
        assert (sub / "score_distributions.png").stat().st_size > 1000
    assert "cross-encoder denoise" in info["summary"]["removed"]
