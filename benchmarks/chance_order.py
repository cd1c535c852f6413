"""What re-ranking by chance scores: the first stage's top K of each test query put in a random order, averaged over
seeded shuffles. A re-ranker that scores below this orders the candidates worse than a coin would, so the
reference tells "learned a little" from "learned nothing" (or worse) in the re-ranking grids, whose re-rankers
re-score the same top K of the same queries.

Usage: python benchmarks/chance_order.py --runs 'runs/lr-2e-5/ablation_mining-{dataset}-s1' \\
           --datasets adi med cisi cacm cranfield scifact --depth 10 --output benchmarks/learning_rate/chance_order.json
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys

import numpy as np

from hardneg.data import load_beir, resolve_dataset
from hardneg.evaluate import per_query_metrics, ranked, read_trec
from hardneg.io import write_json
from hardneg.rundir import RunFolder

METRICS = ["ndcg@10", "mrr@10"]


def chance(run: dict, qrels: dict, depth: int, shuffles: int, seed: int) -> dict[str, float]:
    """Mean metrics of ``run``'s top ``depth`` in random orders (``shuffles`` seeded draws per query)."""
    rng = np.random.default_rng(seed)
    totals = {m: [] for m in METRICS}
    for _ in range(shuffles):
        shuffled = {}
        for q, docs in run.items():
            top = ranked(docs)[:depth]
            order = rng.permutation(len(top))
            shuffled[q] = {d: float(len(top) - order[i]) for i, d in enumerate(top)}
        found = per_query_metrics(qrels, shuffled, METRICS)
        for m in METRICS:
            totals[m].append(float(np.mean([found[m][q] for q in sorted(found[m])])))
    return {m: float(np.mean(v)) for m, v in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", required=True, help="run folder pattern with {dataset}")
    parser.add_argument("--datasets", nargs="+", required=True)
    parser.add_argument("--first-stage", default="ensemble")
    parser.add_argument("--split", default="test")
    parser.add_argument("--depth", type=int, default=10)
    parser.add_argument("--shuffles", type=int, default=200)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--data-dir", default=os.environ.get("HARDNEG_DATA"))
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    out = {}
    for name in args.datasets:
        folder = RunFolder(args.runs.format(dataset=name))
        run = read_trec(folder.trec(args.first_stage, args.split))
        qrels_all = load_beir(resolve_dataset(name, args.data_dir)).qrels[args.split]
        qrels = {q: qrels_all[q] for q in run if q in qrels_all}
        first = per_query_metrics(qrels, run, METRICS)
        out[name] = {"queries": len(qrels),
                     "first_stage": {m: float(np.mean([first[m][q] for q in sorted(first[m])])) for m in METRICS},
                     "chance_order": chance(run, qrels, args.depth, args.shuffles, args.seed)}
        print(name, out[name], flush=True)
    write_json(args.output, {"command": "python " + shlex.join(["benchmarks/chance_order.py", *sys.argv[1:]]),
                             "machine": f"{platform.platform()}, {os.cpu_count()} cores", "depth": args.depth,
                             "shuffles": args.shuffles, "seed": args.seed, "results": out})


if __name__ == "__main__":
    main()
