"""Which embedder recipe a user gets when they turn `embedder.enabled` on: the gain each recipe gave the ensemble over
its own untrained first stage, on the same test queries, compared per query (difference in differences).

- old defaults (`configs/collections.yaml`, `benchmarks/collections/collections.json`): one epoch at 2e-5, every mined
  negative, 128 tokens, 4 dev checkpoints; the ensemble embedded at 128 tokens; seed 42.
- recipe (`configs/scifact_system.yaml`, `benchmarks/first_stage_tuning/embedder_full_fusion_X.json`): 5 epochs at
  5e-5, one negative, 128 training tokens, the best of 5 dev checkpoints over 2,000 documents; the saved model
  embeds at 256; seed 1 (ADI: seeds 1-3, averaged per query).

SciFact (`--scifact OLD RECIPE`, two `embedder_negatives.py` records of the ensemble strategy, the same seed): the
old defaults at 128 training tokens and a dev corpus of 2,000 documents (as the recipe), against the recipe's run.

Both sides use the fixed weights (1, .5, 1) on these collections (too few dev or training queries to weigh the
fine-tuned member), so the comparison is of the embedders. Each side's untrained baseline is its own (the old runs
embedded every member at 128 tokens), so the unit is a test query's gain over its own baseline. Fisher's
randomisation test per collection, Holm over the collections; pooled over every test query once.

Usage (reads result files and run folders, trains nothing):
  HARDNEG_DATA=../shared/data python benchmarks/embedder_recipes.py --datasets adi med cacm cranfield cisi \
      --scifact benchmarks/first_stage_tuning/embedder_old_defaults_scifact_s1.json \
      benchmarks/first_stage_tuning/embedder_negatives_scifact_s1.json \
      --output benchmarks/first_stage_tuning/embedder_recipes.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from hardneg.data import data_dir, load_beir
from hardneg.evaluate import adjust_pvalues, bootstrap_ci, paired_test, per_query_metrics, read_trec
from hardneg.io import write_json

OLD = "benchmarks/collections/collections.json"
RECIPE = "benchmarks/first_stage_tuning/embedder_full_fusion_{}.json"


def old_gains(dataset: str, qrels: dict) -> dict[str, float]:
    """Per test query, the old default's fine-tuned ensemble minus its untrained ensemble (nDCG@10)."""
    files = json.loads(Path(OLD).read_text())["collections"][dataset]["files"]
    base, tuned = (per_query_metrics(qrels, read_trec(files[name]), ["ndcg@10"])["ndcg@10"]
                   for name in ("ensemble", "ensemble (fine-tuned)"))
    return {q: tuned[q] - base[q] for q in base}


def record_gains(path: str, base: str, tuned: str) -> dict[str, float]:
    """Per test query, per-query row ``tuned`` minus row ``base`` of a benchmark record, averaged over its seeds."""
    rows = [s["per_query"] for s in json.loads(Path(path).read_text())["seeds"].values()]
    return {q: float(np.mean([r[tuned][q] - r[base][q] for r in rows])) for q in sorted(rows[0][base])}


def compare(old: np.ndarray, new: np.ndarray) -> dict:
    """The two recipes' mean gains, their paired difference with a 95% bootstrap interval, and Fisher's p."""
    low, high = bootstrap_ci(new - old, 1000, 0, 0.95)
    return {"test_queries": len(old), "old_defaults_gain": float(old.mean()), "recipe_gain": float(new.mean()),
            "difference": float((new - old).mean()), "interval": [low, high], "p": paired_test(old, new)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", nargs="+", default=["adi", "med", "cacm", "cranfield", "cisi"])
    parser.add_argument("--scifact", nargs=2, metavar=("OLD", "RECIPE"), default=None,
                        help="embedder_negatives.py records of the old defaults and of the recipe")
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    out: dict = {"command": "python " + " ".join(sys.argv), "date": time.strftime("%Y-%m-%d"),
                 "unit": "test query: nDCG@10 gain of the fine-tuned ensemble over its own untrained ensemble",
                 "collections": {}}
    # the recipe: embedder_fusion.py's records; SciFact: embedder_negatives.py's (ensemble negatives)
    gains = {d: (old_gains(d, load_beir(data_dir() / d, splits=["test"]).qrels["test"]),
                 record_gains(RECIPE.format(d), "untrained, fixed weights", "fine-tuned, fixed weights"))
             for d in args.datasets}
    if args.scifact:
        gains["scifact"] = tuple(record_gains(path, "untrained ensemble", "ensemble fused") for path in args.scifact)
    arrays = {}
    for dataset, (old, new) in gains.items():
        if set(old) != set(new):
            raise SystemExit(f"{dataset}: the two records hold different test queries")
        arrays[dataset] = (np.array([old[q] for q in sorted(old)]), np.array([new[q] for q in sorted(old)]))
        out["collections"][dataset] = compare(*arrays[dataset])
    holm = adjust_pvalues([row["p"] for row in out["collections"].values()])
    for row, p in zip(out["collections"].values(), holm):
        row["p_holm"] = p
    out["pooled"] = compare(*(np.concatenate(side) for side in zip(*arrays.values())))
    write_json(Path(args.output), out)
    for name, row in {**out["collections"], "pooled": out["pooled"]}.items():
        print(f"{name:10} old {row['old_defaults_gain']:+.3f}  recipe {row['recipe_gain']:+.3f}  "
              f"difference {row['difference']:+.3f} [{row['interval'][0]:+.3f}, {row['interval'][1]:+.3f}] "
              f"p {row['p']:.3f}")


if __name__ == "__main__":
    main()
