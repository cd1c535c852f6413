"""benchmarks/interpolation_weights.py re-scores finished runs at every weight; checked on a hand-worked query."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

FIRST_STAGE = {"d1": 2.0, "d2": 1.0, "d3": 0.5}
RERANKER = {"d1": 0.1, "d2": 0.9, "d3": 0.5}


def fake_run(folder: Path, dataset: str, relevant: str, tuned: float, recorded_ndcg: float,
             chunking: str = "none") -> None:
    """One query over three documents: z-scored, d2 overtakes d1 from weight 0.4 up (0.3956 by hand)."""
    (folder / "runs").mkdir(parents=True)
    (folder / "scores").mkdir()
    (folder / "runs" / "ensemble.test.trec").write_text(
        "".join(f"q Q0 {d} {i} {s} ensemble\n" for i, (d, s) in enumerate(FIRST_STAGE.items(), 1)))
    (folder / "scores" / "s.test.json").write_text(json.dumps({"fingerprint": "x", "scores": {"q": RERANKER}}))
    (folder / "analysis.json").write_text(json.dumps({"qrels": {"q": {relevant: 1}}}))
    (folder / "results.json").write_text(json.dumps({
        "settings": {"dataset": dataset, "dev_queries": 3, "config": {"seed": 1, "evaluate": {"rerank_depth": 3},
                                                                        "chunking": {"strategy": chunking}}},
        "rows": [{"first_stage": "ensemble", "reranker": "s", "mode": "rerank", "metrics": {}},
                 {"first_stage": "ensemble", "reranker": "s", "mode": "interpolated", "alpha": tuned,
                  "metrics": {"ndcg@10": recorded_ndcg, "mrr@10": 0.0}}]}))


def test_tuned_against_held_out_fixed(tmp_path, load_benchmark):
    module = load_benchmark("interpolation_weights")
    fake_run(tmp_path / "a" / "s1", "a", "d2", tuned=0.5, recorded_ndcg=1.0)  # d2 first from 0.4 up
    fake_run(tmp_path / "b" / "s1", "b", "d1", tuned=0.9, recorded_ndcg=0.7)  # d1 first up to 0.3; 0.7 is wrong
    shutil.copytree(tmp_path / "a" / "s1", tmp_path / "a" / "copy")  # the same re-ranker in a second ablation
    # chunk scores are aggregated into document scores at evaluation, which the script does not redo
    fake_run(tmp_path / "b" / "chunked", "b", "d3", tuned=0.5, recorded_ndcg=1.0, chunking="tokens")
    out = tmp_path / "out.json"
    assert module.main([str(tmp_path / "a"), str(tmp_path / "b"), "--output", str(out)]) == 0
    result = json.loads(out.read_text())
    assert len(result["records"]) == 2  # the copy is counted once, the chunked run not at all
    assert result["command"].endswith(f"--output {out}")
    assert result["not_reproduced"] == [f"{tmp_path / 'b' / 's1'}:s"]
    a = result["summary"]["a"]["mrr@10"]
    assert a["fixed"]["0.3"] == pytest.approx(0.5) and a["fixed"]["0.4"] == pytest.approx(1.0)
    assert a["tuned"] == pytest.approx(1.0) and a["oracle"] == pytest.approx(1.0)
    # b is best at 0.0-0.3; ties go to the larger weight, so a's held-out weight is 0.3, where a scores 0.5
    assert a["held_out_fixed"] == {"weight": "0.3", "value": pytest.approx(0.5), "tuned_minus": pytest.approx(0.5),
                                   "tuned_wins": 1, "tuned_losses": 0}
    b = result["summary"]["b"]["mrr@10"]
    assert b["held_out_fixed"]["weight"] == "1.0" and b["tuned"] == pytest.approx(1 / 3)  # d2, d3, then d1
    assert b["held_out_fixed"]["tuned_wins"] == 0 and b["held_out_fixed"]["tuned_losses"] == 0
    assert result["summary"]["all"]["tuned_weights"]["0.5"] == 1
