"""Two finished runs of the same collection and test queries, row by row: what did the setting that differs change?

For every results row (first stage, re-ranker, mode) found in both run folders, and for the system each run handed
over (the row "handed over", with each run's choice in the record), the per-query test nDCG@10 and
MRR@10 of run B against run A from their TREC run files: the means, the difference, a seeded paired randomisation
test and its Holm correction over every row and metric of the comparison. Rows are matched by name, so the two runs
should differ in one setting (e.g. ``train.max_length``) and share the seed and the test queries.

Usage:
    python benchmarks/compare_runs.py runs/scifact-default-192 runs/scifact-default \\
        --label-a "max_length 192" --label-b "max_length 128" --output benchmarks/default_run/max_length.json
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
from pathlib import Path

import numpy as np

from hardneg.evaluate import Row, adjust_pvalues, paired_test, per_query_metrics, read_trec
from hardneg.io import write_json
from hardneg.rundir import RunFolder

METRICS = ["ndcg@10", "mrr@10"]


def rows_of(folder: Path) -> dict[tuple[str, str, str], Path]:
    """(first stage, re-ranker, mode) -> the row's test TREC file, for each row whose file exists."""
    run = RunFolder(folder)
    results = json.loads(run.results.read_text())
    split = results["settings"]["config"]["evaluate"]["split"]
    out = {}
    for row in map(Row.from_dict, results["rows"]):
        path = run.trec_for(row, split)
        if path.exists():
            out[(row.first_stage, row.reranker, row.mode)] = path
    if run.system_trec(split).exists():
        out[("system", "", "handed over")] = run.system_trec(split)
    return out


def choice_of(folder: Path) -> str | None:
    """Why the run handed over what it did (the gate's reason), if it chose a system."""
    choice = json.loads(RunFolder(folder).results.read_text()).get("system", {}).get("choice") or {}
    return choice.get("reason")


def compare(folder_a: Path, folder_b: Path, seed: int = 42) -> list[dict]:
    qrels_a = json.loads(RunFolder(folder_a).analysis.read_text())["qrels"]
    qrels_b = json.loads(RunFolder(folder_b).analysis.read_text())["qrels"]
    if qrels_a != qrels_b:
        raise SystemExit(f"{folder_a} and {folder_b} were evaluated on different test queries or judgements")
    queries = sorted(qrels_a)
    a_rows, b_rows = rows_of(folder_a), rows_of(folder_b)
    out = []
    for key in sorted(set(a_rows) & set(b_rows)):
        found = [per_query_metrics(qrels_a, read_trec(path), METRICS) for path in (a_rows[key], b_rows[key])]
        entry: dict = {"first_stage": key[0], "reranker": key[1], "mode": key[2], "queries": len(queries)}
        for m in METRICS:
            a = np.array([found[0][m][q] for q in queries])
            b = np.array([found[1][m][q] for q in queries])
            entry[m] = {"a": float(a.mean()), "b": float(b.mean()), "b_minus_a": float((b - a).mean()),
                        "p": paired_test(a, b, permutations=10000, seed=seed)}
        out.append(entry)
    cells = [e[m] for e in out for m in METRICS]
    for cell, adjusted in zip(cells, adjust_pvalues([c["p"] for c in cells], "holm")):
        cell["holm"] = adjusted
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    parser.add_argument("--label-a", default="A")
    parser.add_argument("--label-b", default="B")
    parser.add_argument("--output", type=Path, required=True)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    rows = compare(args.run_a, args.run_b)
    write_json(args.output, {"command": "python benchmarks/compare_runs.py " + shlex.join(argv),
                             "machine": {"cpus": 2, "python": platform.python_version()},
                             "a": {"folder": str(args.run_a), "label": args.label_a, "choice": choice_of(args.run_a)},
                             "b": {"folder": str(args.run_b), "label": args.label_b, "choice": choice_of(args.run_b)},
                             "rows": rows})
    print(f"{'row':<40} {'metric':<8} {args.label_a:>14} {args.label_b:>14} {'diff':>7} {'p':>6} {'Holm':>6}")
    for e in rows:
        name = (e["mode"] if e["first_stage"] == "system" else e["first_stage"] if e["mode"] == "first stage"
                else f"{e['reranker']} ({e['mode']})")
        for m in METRICS:
            c = e[m]
            print(f"{name:<40} {m:<8} {c['a']:>14.3f} {c['b']:>14.3f} {c['b_minus_a']:>+7.3f} {c['p']:>6.3f} "
                  f"{c['holm']:>6.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
