"""Issue 16 across collections: the first stage with the fine-tuned member (weighed on dev as a run weighs it;
the fixed weights where the dev queries are too few) against the untrained first stage, per collection and pooled.

Reads the files `benchmarks/embedder_fusion.py` wrote (one per collection, with per-query nDCG@10). Per collection,
each test query's nDCG@10 is averaged over the seeds that collection has; the gain is paired per query (Fisher's
randomisation test), Holm-corrected over the collections. Pooled: every test query of every collection, once each,
and the mean of the collections' gains (each collection counted once).

Usage:
  python benchmarks/embedder_collections.py benchmarks/first_stage_tuning/embedder_full_fusion_*.json \
      --output benchmarks/first_stage_tuning/embedder_full_collections.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from hardneg.evaluate import adjust_pvalues, bootstrap_ci, paired_test
from hardneg.io import write_json

BASELINE = "untrained, fixed weights"
TUNED = "fine-tuned, weights learned on dev"


def per_query_mean(seeds: dict, row: str) -> dict[str, float]:
    """Each test query's nDCG@10 for ``row``, averaged over the seeds."""
    queries = sorted(next(iter(seeds.values()))["per_query"][row])
    return {q: float(np.mean([s["per_query"][row][q] for s in seeds.values()])) for q in queries}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("records", nargs="+", help="embedder_fusion.py outputs, one per collection")
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    out: dict = {"command": "python " + " ".join(sys.argv), "date": time.strftime("%Y-%m-%d"), "baseline": BASELINE,
                 "tuned": TUNED, "collections": {}}
    base_all, tuned_all, tests = [], [], []
    for path in args.records:
        record = json.loads(Path(path).read_text())
        seeds = record["seeds"]
        if any("per_query" not in s for s in seeds.values()):
            raise SystemExit(f"{path}: no per-query values (rerun embedder_fusion.py)")
        dataset = json.loads(Path(record["source"]).read_text())["dataset"]
        base, tuned = per_query_mean(seeds, BASELINE), per_query_mean(seeds, TUNED)
        a, b = np.array([base[q] for q in base]), np.array([tuned[q] for q in base])
        low, high = bootstrap_ci(b - a, 1000, 0, 0.95)
        learned = [s["learned"]["fine-tuned"] for s in seeds.values()]
        out["collections"][dataset] = {
            "seeds": sorted(seeds, key=int), "test_queries": len(a),
            "dev_queries": [s["dev_queries"] for s in seeds.values()],
            "untrained": float(a.mean()), "fine_tuned": float(b.mean()), "gain": float((b - a).mean()),
            "interval": [low, high], "p": paired_test(a, b),
            "weights_learned": [f["learned"] for f in learned],
            "why_fixed": sorted({f["reason"] for f in learned if not f["learned"]}),
            "fine_tuned_fixed_weights_per_seed": [s["test"]["fine-tuned, fixed weights"]["ndcg@10"]
                                                  for s in seeds.values()]}
        tests.append(dataset)
        base_all.append(a)
        tuned_all.append(b)
    holm = adjust_pvalues([out["collections"][d]["p"] for d in tests], "holm")
    for dataset, p in zip(tests, holm):
        out["collections"][dataset]["p_holm"] = float(p)
    a, b = np.concatenate(base_all), np.concatenate(tuned_all)
    low, high = bootstrap_ci(b - a, 1000, 0, 0.95)
    out["pooled_queries"] = {"queries": len(a), "untrained": float(a.mean()), "fine_tuned": float(b.mean()),
                             "gain": float((b - a).mean()), "interval": [low, high], "p": paired_test(a, b)}
    gains = [out["collections"][d]["gain"] for d in tests]
    out["mean_of_collections"] = {"collections": len(gains), "gain": float(np.mean(gains)),
                                  "positive": sum(g > 0 for g in gains)}
    write_json(Path(args.output), out)
    for dataset in tests:
        c = out["collections"][dataset]
        print(f"{dataset:10s} seeds {','.join(c['seeds']):6s} {c['untrained']:.3f} -> {c['fine_tuned']:.3f} "
              f"({c['gain']:+.3f}, p {c['p']:.3f}, Holm {c['p_holm']:.3f})")
    pooled = out["pooled_queries"]
    print(f"pooled over {pooled['queries']} queries: {pooled['untrained']:.3f} -> {pooled['fine_tuned']:.3f} "
          f"({pooled['gain']:+.3f} [{low:+.3f}, {high:+.3f}], p {pooled['p']:.3f}); mean of collections' gains "
          f"{out['mean_of_collections']['gain']:+.3f}")


if __name__ == "__main__":
    main()
