"""How deep should a trained re-ranker re-order the first stage's candidates?

Each finished run folder keeps the first stage's test run (``runs/*.test.trec``), every re-ranker's test scores of
its top ``evaluate.rerank_depth`` (``scores/*.test.json``), the test qrels (``analysis.json``) and the
interpolation weight tuned on dev (``results.json``). This script re-ranks the test queries at every depth of
``--depths`` up to the folder's scored depth, alone and interpolated at the row's dev-tuned weight, and tests each
depth against the deepest, per query (seeded paired randomisation test; Holm over the rows of this file). Pooled:
the test queries of every re-ranker scored to all of ``--depths``, together, per depth. The system each run handed over (``results.json``) is listed
beside, with the depth its gate chose on dev queries. Nothing here is chosen on test: it measures what the depth
does, it does not pick one. Folders that re-rank chunks are skipped.

Usage:
    python benchmarks/rerank_depth.py runs/depth-study runs/scifact-default \\
        --output benchmarks/rerank_depth/rerank_depth.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from hardneg.evaluate import Row, adjust_pvalues, paired_test, per_query_metrics, ranked, read_trec, rerank_run
from hardneg.io import write_json
from hardneg.rundir import RunFolder, finished_runs

METRICS = ["ndcg@10", "mrr@10"]
DEPTHS = (10, 20, 30, 50, 100)
PERMUTATIONS = 10000  # fine enough that Holm over a few dozen tests is not floored by the test's resolution


def covered(first_stage: dict[str, dict[str, float]], scores: dict[str, dict[str, float]], depth: int) -> bool:
    """Whether ``scores`` hold every query's top ``depth`` of ``first_stage``."""
    return all(d in scores.get(q, {}) for q, docs in first_stage.items() for d in ranked(docs)[:depth])


def folder_records(folder: Path, depths: tuple[int, ...]) -> tuple[list[dict], dict | None]:
    """Per trained re-ranker of ``folder``: per-query test metrics at each depth its stored scores cover, alone and
    interpolated; and the system the run handed over."""
    run = RunFolder(folder)
    results = json.loads(run.results.read_text())
    settings = results["settings"]
    config = settings["config"]
    if (config.get("chunking") or {}).get("strategy", "none") != "none":
        return [], None
    qrels = json.loads(run.analysis.read_text())["qrels"]
    rows = [Row.from_dict(r) for r in results["rows"]]
    alphas = {(r.first_stage, r.reranker): r.alpha for r in rows if r.mode == "interpolated"}
    out = []
    for row in rows:
        if row.mode != "rerank" or row.reranker == "base":
            continue
        scores_path, trec = run.scores(row.reranker, "test"), run.trec(row.first_stage, "test")
        if not scores_path.exists() or not trec.exists():
            continue
        scores, first_stage = json.loads(scores_path.read_text())["scores"], read_trec(trec)
        alpha = alphas.get((row.first_stage, row.reranker))
        # the store may hold deeper scores than the last evaluation used (an earlier evaluation at a larger depth)
        scored = max(d for d in {config["evaluate"]["rerank_depth"], *depths} if covered(first_stage, scores, d))
        record = {"folder": str(folder), "dataset": settings["dataset"], "seed": config["seed"],
                  "first_stage": row.first_stage, "reranker": row.reranker, "scored_depth": scored,
                  "weight": alpha, "queries": sorted(qrels), "first": per_query_metrics(qrels, first_stage, METRICS),
                  "alone": {}, "interpolated": {}}
        for depth in [d for d in depths if d <= scored]:
            record["alone"][depth] = per_query_metrics(qrels, rerank_run(first_stage, scores, depth), METRICS)
            if alpha is not None:
                record["interpolated"][depth] = per_query_metrics(
                    qrels, rerank_run(first_stage, scores, depth, alpha), METRICS)
        out.append(record)
    system = results.get("system") or {}
    choice = system.get("choice") or {}
    handed = {"folder": str(folder), "dataset": settings["dataset"], "seed": config["seed"],
              "reason": choice.get("reason"), "reranker": choice.get("reranker"), "weight": choice.get("weight"),
              "depth": choice.get("depth"), "test": system.get("test")}
    return out, handed


def means(per_query: dict[str, dict[str, float]], queries: list[str]) -> dict[str, float]:
    return {m: float(np.mean([per_query[m][q] for q in queries])) for m in METRICS}


def summarise(records: list[dict], depths: tuple[int, ...], seed: int = 42) -> dict:
    """Per record: the mean of each metric by depth, each depth against the record's deepest. Pooled over the
    records scored to every one of ``depths``: the same, all their test queries together (per-query paired tests,
    Holm over everything in the file)."""
    out: dict = {"records": [], "pooled": {}}
    tests: list[tuple[dict, str, float]] = []
    for r in records:
        entry = {k: r[k] for k in ("folder", "dataset", "seed", "first_stage", "reranker", "scored_depth", "weight")}
        entry["queries"] = len(r["queries"])
        entry["first_stage_means"] = means(r["first"], r["queries"])
        for mode in ("alone", "interpolated"):
            by_depth = r[mode]
            if not by_depth:
                continue
            deepest = max(by_depth)
            entry[mode] = {}
            for depth, per_query in sorted(by_depth.items()):
                cell = means(per_query, r["queries"])
                if depth != deepest:
                    for m in METRICS:
                        a = np.array([per_query[m][q] for q in r["queries"]])
                        b = np.array([by_depth[deepest][m][q] for q in r["queries"]])
                        cell[f"{m}_minus_deepest"] = float((a - b).mean())
                        cell[f"{m}_p"] = paired_test(b, a, permutations=PERMUTATIONS, seed=seed)
                        tests.append((cell, f"{m}_holm", cell[f"{m}_p"]))
                entry[mode][str(depth)] = cell
        out["records"].append(entry)
    for mode in ("alone", "interpolated"):
        usable = [r for r in records if set(depths) <= set(r[mode])]
        if not usable:
            continue
        common, deepest = sorted(depths), max(depths)
        pooled: dict = {"records": len(usable), "queries": sum(len(r["queries"]) for r in usable)}
        for depth in common:
            cell = {}
            for m in METRICS:
                a = np.concatenate([[r[mode][depth][m][q] for q in r["queries"]] for r in usable])
                b = np.concatenate([[r[mode][deepest][m][q] for q in r["queries"]] for r in usable])
                cell[m] = float(a.mean())
                cell[f"{m}_per_record_mean"] = float(np.mean([means(r[mode][depth], r["queries"])[m]
                                                              for r in usable]))
                if depth != deepest:
                    cell[f"{m}_minus_deepest"] = float((a - b).mean())
                    cell[f"{m}_p"] = paired_test(b, a, permutations=PERMUTATIONS, seed=seed)
                    tests.append((cell, f"{m}_holm", cell[f"{m}_p"]))
            pooled[str(depth)] = cell
        out["pooled"][mode] = pooled
    for (cell, key, _), adjusted in zip(tests, adjust_pvalues([p for _, _, p in tests], "holm")):
        cell[key] = adjusted
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("roots", nargs="+", type=Path, help="folders searched for finished run folders")
    parser.add_argument("--depths", default=",".join(map(str, DEPTHS)), help="re-rank depths, comma-separated")
    parser.add_argument("--output", type=Path, required=True)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    depths = tuple(sorted(int(d) for d in args.depths.split(",")))
    records, systems = [], []
    for folder in finished_runs(args.roots):
        found, handed = folder_records(folder, depths)
        records += found
        if handed is not None:
            systems.append(handed)
    summary = summarise(records, depths)
    write_json(args.output, {"command": "python benchmarks/rerank_depth.py " + " ".join(argv),
                             "machine": {"cpus": 2, "python": platform.python_version()}, "depths": list(depths),
                             "metrics": METRICS, **summary, "systems": systems})
    print(f"{len(records)} re-rankers in {len(systems)} run folders")
    for entry in summary["records"]:
        for mode in ("alone", "interpolated"):
            if mode in entry:
                cells = "  ".join(f"@{d} {c['ndcg@10']:.3f}" for d, c in entry[mode].items())
                first = entry["first_stage_means"]["ndcg@10"]
                print(f"{entry['dataset']:<10} {entry['reranker']:<14} {mode:<12} first {first:.3f}  {cells}")
    for mode, pooled in summary["pooled"].items():
        cells = "  ".join(f"@{d} {c['ndcg@10']:.3f}" + (f" (p {c['ndcg@10_p']:.3f})" if "ndcg@10_p" in c else "")
                          for d, c in pooled.items() if isinstance(c, dict))
        print(f"pooled {mode} ({pooled['queries']} queries): {cells}")
    chosen = defaultdict(int)
    for s in systems:
        chosen[s["depth"]] += 1
    print("gate's depth per run:", dict(chosen))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
