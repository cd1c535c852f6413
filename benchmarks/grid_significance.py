"""Significance across a multi-seed grid: each setting against a reference, per negative strategy, pooled over seeds.

The runs of ``benchmarks/ablation.py`` share their seeded test queries within a seed, so a (seed, query) pair is one
paired unit: for every strategy, the re-ranker trained with setting X and the one trained with the reference
setting are compared on the same units with ranx's Fisher randomisation test, and p-values are corrected with Holm
over every comparison of the grid. Bootstrap 95% intervals are given for each mean and each difference.

Each ``--grid LABEL=SOURCE`` is either a run-folder pattern with ``{seed}`` (read from each run's analysis.json) or
a summary written by ``benchmarks/ablation.py`` (which keeps the per-query values, so the test needs no run folder).

Usage:
    python benchmarks/grid_significance.py --reference triplet \\
        --grid triplet=benchmarks/ablation_losses_triplet.json \\
        --grid bce=runs/ablation-bce/ablation_losses-scifact-s{seed} ... \\
        --seeds 1 2 3 --output benchmarks/losses_significance_scifact.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from ablation import (  # benchmarks/ablation.py, next to this script
    PER_QUERY_METRICS,
    per_query,
)
from ranx.statistical_tests import fisher_randomization_test

from hardneg.evaluate import adjust_pvalues, bootstrap_ci
from hardneg.io import write_json

METRICS = list(PER_QUERY_METRICS)


def pooled(by_seed: dict[int, dict], first_stage: str) -> dict[str, dict[str, dict[str, float]]]:
    """Per-query values of every system, with queries renamed ``s{seed}:{query}`` so seeds pool."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for seed, runs in sorted(by_seed.items()):
        for system, metrics in runs[first_stage].items():
            for metric, values in metrics.items():
                out.setdefault(system, {}).setdefault(metric, {}).update(
                    {f"s{seed}:{q}": v for q, v in values.items()})
    return out


def load_source(source: str, dataset: str, seeds: list[int]) -> tuple[dict[int, dict], list[str]]:
    """seed -> first stage -> system -> metric -> query -> value, and what is missing, from a summary or folders."""
    if source.endswith(".json"):
        stored = json.loads(Path(source).read_text()).get("per_query", {}).get(dataset, {})
        found = {s: stored[str(s)] for s in seeds if stored.get(str(s))}
        return found, [f"{source} ({dataset}, seed {s})" for s in seeds if s not in found]
    folders = {s: Path(source.format(seed=s)) for s in seeds}
    absent = [str(f) for f in folders.values() if not (f / "analysis.json").is_file()]
    # The same reader ablation.py stores with, so a folder and its summary give the same values.
    return {s: per_query(f) for s, f in folders.items() if str(f) not in absent}, absent


def reference_of(grid: dict, reference: str, label: str, system: str):
    """The per-query values ``system`` of ``label`` is tested against, or None (it is the reference itself).

    ``reference`` is a setting (``triplet``: the same system trained with that setting) or a setting and a system
    (``triplet:ensemble``: that one re-ranker, re-ranking alone or interpolated like ``system``).
    """
    ref_label, _, ref_system = reference.partition(":")
    if system == "first stage":
        return None
    if ref_system:
        suffix = " + first stage" if system.endswith(" + first stage") else ""
        target = ref_system + suffix
        if (label, system) == (ref_label, target):
            return None
        return grid[ref_label].get(target)
    if label == ref_label:
        return None
    return grid[ref_label].get(system)


def seed_means(values: dict[str, float], seeds: list[int]) -> list[float]:
    return [float(np.mean([v for q, v in values.items() if q.startswith(f"s{seed}:")])) for seed in seeds]


def markdown(means: dict, tests: list[dict], reference: str, metric: str) -> str:
    """Rows: system x setting; mean ± seed std, pooled 95% CI, and the difference from the reference setting."""
    by_key = {(t["setting"], t["system"], t["metric"]): t for t in tests}
    systems = sorted({s for label in means.values() for s in label}, key=lambda s: (s != "first stage", s))
    header = f"| system | setting | {metric} mean ± seed std | 95% CI (queries x seeds) | vs {reference} (Holm p) |"
    lines = [header, "|---|---|---|---|---|"]
    for system in systems:
        for label, rows in means.items():
            if system not in rows or (system == "first stage" and label != reference.partition(":")[0]):
                continue
            cell = rows[system][metric]
            spread = float(np.std(cell["seed_means"], ddof=1)) if len(cell["seed_means"]) > 1 else 0.0
            test = by_key.get((label, system, metric))
            versus = "-" if test is None else (f"{test['delta']:+.3f} ({test['p_holm']:.3f})"
                                               + (" *" if test["significant"] else ""))
            lines.append(f"| {system} | {label} | {cell['mean']:.3f} ± {spread:.3f} | "
                         f"[{cell['ci95'][0]:.3f}, {cell['ci95'][1]:.3f}] | {versus} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--grid", action="append", required=True, help="LABEL=FOLDER pattern with {seed}")
    parser.add_argument("--reference", required=True,
                        help="LABEL (each system against itself under that setting) or LABEL:SYSTEM (every "
                             "re-ranker against that one)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--first-stage", default="ensemble")
    parser.add_argument("--dataset", default="scifact", help="Which dataset of a summary file to read.")
    parser.add_argument("--permutations", type=int, default=10000)
    parser.add_argument("--output", required=True)
    args = parser.parse_args()

    grid: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    missing: list[str] = []
    for item in args.grid:
        label, _, source = item.partition("=")
        by_seed, absent = load_source(source, args.dataset, args.seeds)
        if absent:
            missing += absent
            continue
        grid[label] = pooled(by_seed, args.first_stage)
    if args.reference.partition(":")[0] not in grid:
        sys.exit(f"reference {args.reference!r} has unfinished runs: {', '.join(missing)}")

    means: dict = {}
    tests: list[dict] = []
    for label, systems in grid.items():
        for system, metrics in systems.items():
            values = {m: np.array([metrics[m][q] for q in sorted(metrics[m])]) for m in METRICS if m in metrics}
            means.setdefault(label, {})[system] = {
                m: {"mean": float(v.mean()), "ci95": list(bootstrap_ci(v.tolist())), "units": int(v.size),
                    "seed_means": seed_means(metrics[m], args.seeds)}
                for m, v in values.items()}
            control_values = reference_of(grid, args.reference, label, system)
            if control_values is None:
                continue
            for metric in METRICS:
                units = sorted(set(control_values[metric]) & set(metrics[metric]))
                control = np.array([control_values[metric][q] for q in units])
                treatment = np.array([metrics[metric][q] for q in units])
                p, _ = fisher_randomization_test(control, treatment, args.permutations, 0.05, 42)
                diff = treatment - control
                tests.append({"setting": label, "system": system, "metric": metric, "units": len(units),
                              "delta": float(diff.mean()), "delta_ci95": list(bootstrap_ci(diff.tolist())),
                              "wins": int((diff > 0).sum()), "ties": int((diff == 0).sum()),
                              "losses": int((diff < 0).sum()), "p": float(p)})
    for metric in METRICS:
        rows = [t for t in tests if t["metric"] == metric]
        for row, adjusted in zip(rows, adjust_pvalues([r["p"] for r in rows], "holm")):
            row["p_holm"] = adjusted
            row["significant"] = adjusted < 0.05
    write_json(args.output, {"command": " ".join(["python", *sys.argv]), "reference": args.reference,
                             "seeds": args.seeds, "first_stage": args.first_stage, "test": "fisher (ranx), Holm",
                             "missing_runs": missing, "means": means, "comparisons": tests})
    for metric in METRICS:
        print(f"\n{markdown(means, tests, args.reference, metric)}\n")
    if missing:
        print(f"left out (unfinished): {', '.join(missing)}", file=sys.stderr)


if __name__ == "__main__":
    main()
