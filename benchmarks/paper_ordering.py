"""The paper's ordering over several seeds: the ensemble-negative re-ranker against the random, BM25 and single-model
ones, each re-ranking the same first stage alone, from finished runs of one collection (one run folder a seed).

Each run's rows are read from its TREC files (as `compare_runs.py` does); the unit is a (seed, test query) pair, so
the seeds pool. Per baseline: the mean gap of the ensemble's negatives over it (MRR@10 and nDCG@10), each seed's
gap, a paired bootstrap interval and a seeded randomisation test, Holm over the baselines and metrics; and issue
17's margins (+.05 over random, +.03 over BM25, +.02 over the best single model, MRR@10) met or not.

Usage (reads run folders, trains nothing):
  python benchmarks/paper_ordering.py runs/scifact-default runs/scifact-default-s2 runs/scifact-auto-s3 \
      --output benchmarks/default_run/paper_ordering_3seeds.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np

from hardneg.evaluate import Row, adjust_pvalues, bootstrap_ci, paired_test, per_query_metrics, read_trec
from hardneg.io import write_json
from hardneg.rundir import RunFolder

METRICS = ["mrr@10", "ndcg@10"]
ENSEMBLE = "ensemble"
MARGINS = {"random": 0.05, "bm25": 0.03, "dense:minilm": 0.02}  # issue 17, MRR@10 alone


def alone_rows(folder: Path, first_stage: str) -> tuple[dict, dict[str, Path], int]:
    """The run's test qrels, its re-rankers' 'alone' TREC files over ``first_stage``, and its seed."""
    run = RunFolder(folder)
    results = json.loads(run.results.read_text())
    config = results["settings"]["config"]
    qrels = json.loads(run.analysis.read_text())["qrels"]
    rows = {}
    for row in map(Row.from_dict, results["rows"]):
        if row.first_stage == first_stage and row.reranker != "none" and row.mode == "rerank":
            path = run.trec_for(row, config["evaluate"]["split"])
            if path.exists():
                rows[row.reranker] = path
    return qrels, rows, int(config["seed"])


def ordering(folders: list[Path], first_stage: str) -> dict:
    per_seed: dict[int, dict[str, dict[str, dict[str, float]]]] = {}
    for folder in folders:
        qrels, rows, seed = alone_rows(folder, first_stage)
        if seed in per_seed:
            raise SystemExit(f"{folder}: seed {seed} twice")
        if ENSEMBLE not in rows:
            raise SystemExit(f"{folder}: no re-ranker named {ENSEMBLE!r} re-ranking {first_stage!r} alone")
        per_seed[seed] = {name: per_query_metrics(qrels, read_trec(path), METRICS) for name, path in rows.items()}
    baselines = sorted(set.intersection(*(set(r) for r in per_seed.values())) - {ENSEMBLE})
    out: dict = {"seeds": sorted(per_seed), "first_stage": first_stage, "baselines": {}}
    for name in baselines:
        entry: dict = {}
        for m in METRICS:
            ens, base, seeds = [], [], {}
            for seed, rows in sorted(per_seed.items()):
                queries = sorted(rows[ENSEMBLE][m])
                e = np.array([rows[ENSEMBLE][m][q] for q in queries])
                b = np.array([rows[name][m][q] for q in queries])
                seeds[str(seed)] = {"ensemble": float(e.mean()), "baseline": float(b.mean()),
                                    "gap": float((e - b).mean())}
                ens.append(e)
                base.append(b)
            e, b = np.concatenate(ens), np.concatenate(base)
            low, high = bootstrap_ci(e - b)
            entry[m] = {"ensemble": float(e.mean()), "baseline": float(b.mean()), "gap": float((e - b).mean()),
                        "low": low, "high": high, "p": paired_test(b, e, permutations=10000), "units": int(len(e)),
                        "per_seed": seeds}
        if name in MARGINS:
            entry["target_mrr@10"] = MARGINS[name]
            entry["target_met"] = entry["mrr@10"]["gap"] >= MARGINS[name]
        out["baselines"][name] = entry
    cells = [entry[m] for entry in out["baselines"].values() for m in METRICS]
    for cell, adjusted in zip(cells, adjust_pvalues([c["p"] for c in cells])):
        cell["holm"] = adjusted
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+", help="finished run folders, one per seed")
    parser.add_argument("--first-stage", default="ensemble", help="the first stage the re-rankers re-rank")
    parser.add_argument("--output", type=Path, required=True)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    result = ordering(args.runs, args.first_stage)
    write_json(args.output, {"command": "python benchmarks/paper_ordering.py " + shlex.join(argv),
                             "runs": [str(r) for r in args.runs], **result})
    for name, entry in result["baselines"].items():
        for m in METRICS:
            c = entry[m]
            seeds = ", ".join(f"{s} {v['gap']:+.3f}" for s, v in c["per_seed"].items())
            print(f"ensemble - {name:<13} {m:<8} {c['gap']:+.3f} [{c['low']:+.3f}, {c['high']:+.3f}] "
                  f"p {c['p']:.4f} Holm {c['holm']:.4f}; by seed: {seeds}")
        if "target_met" in entry:
            print(f"  issue 17 margin +{entry['target_mrr@10']:.2f} MRR@10: {'met' if entry['target_met'] else 'not met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
