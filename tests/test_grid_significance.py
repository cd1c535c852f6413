"""The ablation summary keeps per-query values, and grid_significance reads them like run folders."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest


def fake_run(folder: Path, shift: float) -> None:
    per_query = {
        "first stage": {"mrr@10": {"q1": 1.0, "q2": 0.5}, "ndcg@10": {"q1": 1.0, "q2": 0.6309297535714575},
                        "map": {"q1": 1.0, "q2": 0.5}},
        "random": {"mrr@10": {"q1": 0.5 + shift, "q2": 0.25}, "ndcg@10": {"q1": 0.6, "q2": 0.4}},
    }
    folder.mkdir(parents=True)
    (folder / "analysis.json").write_text(json.dumps({"first_stages": {"ensemble": {"per_query": per_query}}}))


def test_summary_per_query_matches_run_folders(tmp_path, load_benchmark):
    ablation, grid = load_benchmark("ablation"), load_benchmark("grid_significance")
    for seed in (1, 2):
        fake_run(tmp_path / f"run-s{seed}", shift=0.1 * seed)
    stored = {"per_query": {"scifact": {str(s): ablation.per_query(tmp_path / f"run-s{s}") for s in (1, 2)}}}
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps(stored))

    from_file, missing_file = grid.load_source(str(summary), "scifact", [1, 2, 3])
    from_folders, missing_folders = grid.load_source(str(tmp_path / "run-s{seed}"), "scifact", [1, 2])

    assert missing_file == [f"{summary} (scifact, seed 3)"] and missing_folders == []
    # Only the tested metrics are kept, rounded to 4 decimals.
    assert from_file[1]["ensemble"]["first stage"]["ndcg@10"] == {"q1": 1.0, "q2": 0.6309}
    assert "map" not in from_file[1]["ensemble"]["first stage"]
    pooled_file = grid.pooled(from_file, "ensemble")
    pooled_folders = grid.pooled(from_folders, "ensemble")
    assert pooled_file["random"]["mrr@10"] == pooled_folders["random"]["mrr@10"] == {
        "s1:q1": 0.6, "s1:q2": 0.25, "s2:q1": 0.7, "s2:q2": 0.25}


def summary_file(path: Path, dataset: str, systems: dict[str, dict[str, float]]) -> str:
    """A summary holding, for seeds 1 and 2, one first stage whose systems score ``systems`` per query."""
    per_seed = {"ensemble": {name: {"mrr@10": values, "ndcg@10": values} for name, values in systems.items()}}
    path.write_text(json.dumps({"per_query": {dataset: {"1": per_seed, "2": per_seed}}}))
    return str(path)


def test_one_label_merges_sources_and_several_datasets_pool(tmp_path, monkeypatch, capsys, load_benchmark):
    grid = load_benchmark("grid_significance")
    references = summary_file(tmp_path / "refs.json", "alpha", {"ensemble": {"q1": 0.5, "q2": 0.25}})
    new_rule = summary_file(tmp_path / "rule.json", "alpha", {"window": {"q1": 1.0, "q2": 0.5}})
    other = summary_file(tmp_path / "other.json", "beta", {"ensemble": {"q1": 0.0}, "window": {"q1": 1.0}})
    out = tmp_path / "sig.json"
    monkeypatch.setattr(sys, "argv", [
        "grid_significance.py", "--reference", "mnrl:ensemble", "--dataset", "alpha", "beta", "--seeds", "1", "2",
        "--grid", f"mnrl={references}", "--grid", f"mnrl={new_rule}", "--grid", f"mnrl={other}",
        "--permutations", "100", "--output", str(out), "--plot", str(tmp_path / "means.png")])
    grid.main()

    result = json.loads(out.read_text())
    assert result["missing_runs"] == []
    window = result["means"]["mnrl"]["window"]["mrr@10"]
    # 2 queries x 2 seeds of alpha and 1 query x 2 seeds of beta, each a unit of its own.
    assert window["units"] == 6
    assert window["dataset_means"] == {"alpha": 0.75, "beta": 1.0}
    (test,) = [t for t in result["comparisons"] if t["metric"] == "mrr@10"]
    assert (test["system"], test["units"], test["wins"], test["losses"]) == ("window", 6, 6, 0)
    assert test["delta"] == pytest.approx((0.5 + 0.25 + 1.0) * 2 / 6)
    assert "| window | mnrl | 0.750 | 1.000 |" in capsys.readouterr().out
    assert (tmp_path / "means.png").read_bytes().startswith(b"\x89PNG")


def test_seed_means_per_dataset_for_the_plot(load_benchmark):
    grid = load_benchmark("grid_significance")
    pooled = {"alpha/s1:q1": 1.0, "alpha/s1:q2": 0.0, "alpha/s2:q1": 0.5, "beta/s1:q1": 0.25}
    assert grid.dataset_seed_means(pooled) == {"alpha": {"s1": 0.5, "s2": 0.5}, "beta": {"s1": 0.25}}
    assert grid.dataset_seed_means({"s1:q1": 1.0, "s2:q1": 0.0}) == {"all": {"s1": 1.0, "s2": 0.0}}


def test_a_dataset_no_source_holds_is_reported_missing(tmp_path, monkeypatch, load_benchmark):
    grid = load_benchmark("grid_significance")
    references = summary_file(tmp_path / "refs.json", "alpha", {"ensemble": {"q1": 0.5}, "window": {"q1": 1.0}})
    out = tmp_path / "sig.json"
    monkeypatch.setattr(sys, "argv", [
        "grid_significance.py", "--reference", "mnrl:ensemble", "--dataset", "alpha", "beta", "--seeds", "1", "2",
        "--grid", f"mnrl={references}", "--output", str(out)])
    with pytest.raises(SystemExit, match=r"mnrl \(beta\)"):
        grid.main()


def _negatives_record(seed: str, strategies: dict[str, float]) -> dict:
    per_query = {"untrained minilm alone": {"q1": 0.5, "q2": 0.5}, "untrained ensemble": {"q1": 0.6, "q2": 0.6}}
    found = {}
    for name, value in strategies.items():
        found[name] = {how: {"ndcg@10": value} for how in ("alone", "fused")}
        per_query.update({f"{name} {how}": {"q1": value, "q2": value} for how in ("alone", "fused")})
    return {"command": f"run {seed} {sorted(strategies)}", "machine": "m", "dataset": "scifact", "member": "minilm",
            "metrics": ["ndcg@10"], "seeds": {seed: {"strategies": found, "per_query": per_query, "untrained": {
                "minilm alone": {"ndcg@10": 0.5}, "ensemble": {"ndcg@10": 0.6}}}}}


def test_embedder_negative_records_of_separate_runs_pool_into_one(load_benchmark):
    negatives = load_benchmark("embedder_negatives")
    records = [_negatives_record("1", {"ensemble": 0.7, "random": 0.6}), _negatives_record("2", {"ensemble": 0.8}),
               _negatives_record("2", {"random": 0.7})]
    pooled = negatives.merge(records, ["a.json", "b.json", "c.json"])
    assert sorted(pooled["seeds"]["2"]["strategies"]) == ["ensemble", "random"]
    assert pooled["summary"]["ensemble"]["alone ndcg@10"] == pytest.approx(0.75)
    assert pooled["summary"]["ensemble vs random (alone)"]["gain ndcg@10"] == pytest.approx(0.1)
    assert set(pooled["merged_from"]) == {"a.json", "b.json", "c.json"}
    with pytest.raises(ValueError, match="without every strategy"):
        negatives.merge(records[:2], ["a.json", "b.json"])
    ensemble_only = negatives.merge(records[:2], ["a.json", "b.json"], only=["ensemble"])
    assert list(ensemble_only["seeds"]["1"]["strategies"]) == ["ensemble"]
    assert not any(key.startswith("random") for key in ensemble_only["seeds"]["1"]["per_query"])
