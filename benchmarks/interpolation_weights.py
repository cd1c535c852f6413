"""How good is the dev-tuned interpolation weight, against fixed weights, by the size of the dev set?

Every finished run folder keeps what the question needs: the first stage's test run (``runs/*.test.trec``), the
re-ranker's test scores (``scores/*.test.json``), the test qrels (``analysis.json``), the tuned weight and the dev
size (``results.json``). For each interpolated row this script re-scores the test queries at every weight of the
grid, so the tuned weight can be set against each fixed weight and against the best weight in hindsight (the
oracle), grouped by collection. Identical re-rankers found in several folders (the same strategy and seed shared
by two ablations) are counted once. Folders that re-rank chunks are skipped (their document scores are
aggregated from chunk scores, which this script does not redo).

Usage:
    python benchmarks/interpolation_weights.py runs/mining-mnrl-* runs/ablation-* \\
        --output benchmarks/interpolation/interpolation_weights.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from hardneg.evaluate import ALPHAS, Row, evaluate_run, read_trec, rerank_run
from hardneg.io import write_json
from hardneg.rundir import RunFolder, finished_runs

METRICS = ["ndcg@10", "mrr@10"]


def weight_rows(folder: Path, seen: set[str]) -> list[dict]:
    """One record per interpolated row of ``folder`` not in ``seen``: the test metrics at every weight of the grid.

    A row already in ``seen`` (the same re-ranker found in another ablation's folder) is skipped before the costly
    re-scoring; each new row's identity is added to ``seen``.
    """
    run = RunFolder(folder)
    results = json.loads(run.results.read_text())
    settings = results["settings"]
    if (settings["config"].get("chunking") or {}).get("strategy", "none") != "none":
        return []
    qrels = json.loads(run.analysis.read_text())["qrels"]
    judged = json.dumps(qrels, sort_keys=True).encode()
    depth = settings["config"]["evaluate"]["rerank_depth"]
    out = []
    for row in map(Row.from_dict, results["rows"]):
        if row.mode != "interpolated":
            continue
        scores_path = run.scores(row.reranker, "test")
        trec = run.trec(row.first_stage, "test")
        if not scores_path.exists() or not trec.exists():
            continue
        raw = scores_path.read_bytes()
        # what makes two rows the same: the re-ranker's scores, the first stage they mix with, the judged queries
        identity = hashlib.sha1(raw + trec.read_bytes() + judged).hexdigest()
        if identity in seen:
            continue
        seen.add(identity)
        scores, first_stage = json.loads(raw)["scores"], read_trec(trec)
        by_weight = {a: evaluate_run(qrels, rerank_run(first_stage, scores, depth, a), METRICS) for a in ALPHAS}
        out.append({"folder": str(folder), "dataset": settings["dataset"], "seed": settings["config"]["seed"],
                    "reranker": row.reranker, "dev_queries": settings.get("dev_queries"),
                    "tuned": row.alpha, "recorded": {m: row.metrics[m] for m in METRICS},
                    "by_weight": {str(a): v for a, v in by_weight.items()},
                    "identity": identity})
    return out


def fixed_means(rows: list[dict], metric: str) -> dict[str, float]:
    """The mean test ``metric`` of each fixed weight over ``rows``."""
    return {str(a): float(np.mean([r["by_weight"][str(a)][metric] for r in rows])) for a in ALPHAS}


def best_weight(means: dict[str, float]) -> str:
    return max(means, key=lambda a: (means[a], a))


def summarise(records: list[dict]) -> dict:
    """Per collection and pooled: the mean test metric of the tuned weight, each fixed weight and the oracle.

    The best fixed weight of a collection is chosen on its own test queries, so it flatters the fixed choice; the
    fair alternative to tuning is ``held_out_fixed``: the weight that is best over the *other* collections.
    """
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        groups[r["dataset"]].append(r)
    collections = sorted(groups)
    groups["all"] = records
    out = {}
    for name, rows in groups.items():
        summary = {"rows": len(rows), "dev_queries": sorted({r["dev_queries"] for r in rows}),
                   "tuned_weights": {str(a): sum(float(r["tuned"]) == float(a) for r in rows) for a in ALPHAS}}
        for m in METRICS:
            fixed = fixed_means(rows, m)
            tuned_each = [r["by_weight"][str(r["tuned"])][m] for r in rows]
            tuned = float(np.mean(tuned_each))
            oracle = float(np.mean([max(v[m] for v in r["by_weight"].values()) for r in rows]))
            best_fixed = best_weight(fixed)
            summary[m] = {"tuned": tuned, "oracle": oracle, "fixed": fixed, "best_fixed": best_fixed,
                          "tuned_minus_best_fixed": tuned - fixed[best_fixed],
                          "tuned_minus_0.5": tuned - fixed["0.5"]}
            if name != "all":
                others = [r for c in collections if c != name for r in groups[c]]
                weight = best_weight(fixed_means(others, m))
                deltas = [t - r["by_weight"][weight][m] for t, r in zip(tuned_each, rows)]
                summary[m]["held_out_fixed"] = {"weight": weight, "value": fixed[weight],
                                                "tuned_minus": tuned - fixed[weight],
                                                "tuned_wins": sum(d > 1e-12 for d in deltas),
                                                "tuned_losses": sum(d < -1e-12 for d in deltas)}
        out[name] = summary
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("roots", nargs="+", type=Path, help="folders searched for finished run folders")
    parser.add_argument("--output", type=Path, required=True)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    seen: set[str] = set()
    records = [record for folder in finished_runs(args.roots) for record in weight_rows(folder, seen)]
    mismatched = [r["folder"] + ":" + r["reranker"] for r in records
                  if abs(r["by_weight"][str(r["tuned"])]["ndcg@10"] - r["recorded"]["ndcg@10"]) > 1e-6]
    summary = summarise(records)
    write_json(args.output, {"command": "python benchmarks/interpolation_weights.py " + " ".join(argv),
                             "grid": list(ALPHAS), "not_reproduced": mismatched, "summary": summary,
                             "records": records})
    print(f"{len(records)} interpolated rows; {len(mismatched)} did not reproduce their recorded nDCG@10")
    for metric in METRICS:
        print(f"\ntest {metric}")
        print(f"{'collection':<11}{'rows':>5} {'dev q':>6} {'tuned':>7} {'w=0.5':>7} {'held-out fixed':>16} "
              f"{'tuned W-L':>10} {'best fixed':>14} {'oracle':>7}")
        for name, s in summary.items():
            m = s[metric]
            dev = "-".join(str(d) for d in sorted({s["dev_queries"][0], s["dev_queries"][-1]}))
            held = m.get("held_out_fixed")
            held_text = f"{held['value']:>8.3f} @{held['weight']:<4}" if held else ""
            record = f"{held['tuned_wins']}-{held['tuned_losses']}" if held else ""
            print(f"{name:<11}{s['rows']:>5} {dev:>6} {m['tuned']:>7.3f} {m['fixed']['0.5']:>7.3f} "
                  f"{held_text:>16} {record:>10} {m['fixed'][m['best_fixed']]:>8.3f} @{m['best_fixed']:<4} "
                  f"{m['oracle']:>7.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
