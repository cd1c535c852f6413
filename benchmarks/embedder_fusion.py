"""Fusion weights for a first stage with a fine-tuned member, learned on the dev queries (issue 16, item 3).

The fine-tuned member was trained on the training queries, so weights learned there favour it; the dev queries
were held out of its training. For each finished seed of `benchmarks/embedder_negatives.py` this learns the
weights and fusion (the `fusion_weights` grid, cross-validated over the dev folds, the fixed weights kept unless
the grid wins held out) for the untrained and for the fine-tuned ensemble, then scores both on test against the
untrained ensemble at the fixed weights (paired test per seed; the seeds' queries pooled).

Usage (after embedder_negatives.py; first stages only, a minute a seed with the embedding cache warm):
  HARDNEG_DATA=../shared/data python benchmarks/embedder_fusion.py \
      benchmarks/first_stage_tuning/embedder_full_scifact.json --output benchmarks/first_stage_tuning/x.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from hardneg.config import config_from_dict
from hardneg.evaluate import first_stage_run, paired_test, per_query_metrics, test_comparison
from hardneg.io import write_json
from hardneg.lock import release
from hardneg.pipeline.context import prepare
from hardneg.pipeline.first_stage import learn_ensemble_fusion
from hardneg.rundir import slug

METRICS = ["ndcg@10", "mrr@10", "recall@100"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("record", help="the JSON embedder_negatives.py wrote")
    parser.add_argument("--strategy", default="ensemble")
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    record = json.loads(Path(args.record).read_text())
    member = record["member"]
    out: dict = {"command": "python " + " ".join(sys.argv), "date": time.strftime("%Y-%m-%d"),
                 "source": args.record, "member": member, "strategy": args.strategy, "seeds": {}}
    pooled: dict[str, list[float]] = {}
    for seed in record["seeds"]:
        raw = {**record["config"], "seed": int(seed),
               "output": str(Path(record["config"]["output"]).parent / f"{record['dataset']}-{seed}")}
        config = config_from_dict(raw, {}, source="embedder_fusion")
        ctx = prepare(config)
        try:
            found = run_seed(ctx, member, args.strategy, int(seed))
        finally:
            release(ctx.folder.lock)
        out["seeds"][seed] = found  # per-query nDCG@10 kept: embedder_collections.py pools them
        for name, values in found["per_query"].items():
            pooled.setdefault(name, []).extend(values[q] for q in sorted(values))
    base = np.array(pooled["untrained, fixed weights"])
    out["pooled"] = {name: {"ndcg@10": float(np.mean(v)), "gain": float(np.mean(np.array(v) - base)),
                            "p": paired_test(base, np.array(v))} for name, v in pooled.items()}
    write_json(Path(args.output), out)
    for name, row in out["pooled"].items():
        print(f"{name:40s} nDCG@10 {row['ndcg@10']:.4f}  gain {row['gain']:+.4f}  p {row['p']:.4f}")


def run_seed(ctx, member: str, strategy: str, seed: int) -> dict:
    config = ctx.config
    model = ctx.folder.strategy(strategy).path / "embedders" / slug(member) / "model"
    if not model.is_dir():
        raise SystemExit(f"{model}: no fine-tuned model (run embedder_negatives.py first)")
    test_ids = sorted(ctx.documents.positives("test"))
    qrels = {q: ctx.documents.qrels["test"][q] for q in test_ids}
    members = {"untrained": list(config.ensemble),
               "fine-tuned": [str(model) if m == member else m for m in config.ensemble]}
    runs, learned = {}, {}
    if config.weights is None:
        raise SystemExit("the run has no fixed weights to start from")
    for name, names in members.items():
        fixed = ctx.retrievers.ensemble(names, weights=list(config.weights))  # as the run fuses them
        fit = learn_ensemble_fusion(ctx, fixed, ctx.dev_ids)  # as the run weighs its fine-tuned first stage
        learned[name] = {k: v for k, v in fit.as_dict().items() if k != "candidates"}
        runs[f"{name}, fixed weights"] = first_stage_run(ctx.dataset, test_ids, fixed, config.evaluate.depth)
        tuned = ctx.retrievers.ensemble(names, fit.fusion, weights=list(fit.weights))
        runs[f"{name}, weights learned on dev"] = (  # the fixed weights kept: the same run
            first_stage_run(ctx.dataset, test_ids, tuned, config.evaluate.depth) if fit.learned
            else runs[f"{name}, fixed weights"])
    values = {name: per_query_metrics(qrels, run, METRICS) for name, run in runs.items()}
    baseline = runs["untrained, fixed weights"]
    return {"dev_queries": len(ctx.dev_ids), "test_queries": len(test_ids), "learned": learned,
            "test": {name: {m: float(np.mean(list(v[m].values()))) for m in METRICS} for name, v in values.items()},
            "against_untrained": {name: test_comparison(qrels, baseline, run, ["ndcg@10"], seed=seed)["ndcg@10"]
                                  for name, run in runs.items() if name != "untrained, fixed weights"},
            "per_query": {name: v["ndcg@10"] for name, v in values.items()}}


if __name__ == "__main__":
    main()
