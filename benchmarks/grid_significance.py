"""Significance across a multi-seed grid: each setting against a reference, per negative strategy, pooled over seeds.

The runs of ``benchmarks/ablation.py`` share their seeded test queries within a seed, so a (seed, query) pair is one
paired unit: for every strategy, the re-ranker trained with setting X and the one trained with the reference
setting are compared on the same units with a seeded Fisher randomisation test, and p-values are corrected with Holm
over every comparison of the grid. Bootstrap 95% intervals are given for each mean and each difference.

Each ``--grid LABEL=SOURCE`` is either a run-folder pattern with ``{seed}`` (read from each run's analysis.json) or
a summary written by ``benchmarks/ablation.py`` (which keeps the per-query values, so the test needs no run folder).
A label given several times merges its sources' systems (e.g. the references from one ablation and new strategies
from another). Several ``--dataset`` values pool every collection's (seed, query) units into one test, and the
means are also reported per collection.

Usage:
    python benchmarks/grid_significance.py --reference triplet \\
        --grid triplet=benchmarks/losses/ablation_losses_triplet.json \\
        --grid bce=runs/ablation-bce/ablation_losses-scifact-s{seed} ... \\
        --seeds 1 2 3 --output benchmarks/losses/losses_significance_scifact.json
    python benchmarks/grid_significance.py --reference mnrl:ensemble --dataset scifact cranfield med \\
        --grid mnrl=benchmarks/losses/ablation_losses_mnrl.json --grid mnrl=benchmarks/mining/ablation_mining_mnrl_scifact.json ...
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

import numpy as np
from ablation import (  # benchmarks/ablation.py, next to this script
    PER_QUERY_METRICS,
    per_query,
)

from hardneg.evaluate import adjust_pvalues, bootstrap_ci, paired_test
from hardneg.io import write_json
from hardneg.rundir import RunFolder

METRICS = list(PER_QUERY_METRICS)


def pooled(by_seed: dict[int, dict], first_stage: str, prefix: str = "") -> dict[str, dict[str, dict]]:
    """Per-query values of every system, with queries renamed ``{prefix}s{seed}:{query}`` so seeds (and datasets,
    through ``prefix``) pool."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for seed, runs in sorted(by_seed.items()):
        for system, metrics in runs[first_stage].items():
            for metric, values in metrics.items():
                out.setdefault(system, {}).setdefault(metric, {}).update(
                    {f"{prefix}s{seed}:{q}": v for q, v in values.items()})
    return out


def merge(sources: list[dict[int, dict]]) -> dict[int, dict]:
    """One seed -> first stage -> system mapping from several; a system found twice must be one measurement."""
    merged: dict[int, dict] = {}
    for by_seed in sources:
        for seed, stages in by_seed.items():
            for stage, systems in stages.items():
                target = merged.setdefault(seed, {}).setdefault(stage, {})
                for system, values in systems.items():
                    if system in target and system != "first stage" and target[system] != values:
                        raise SystemExit(f"{system!r} (seed {seed}, {stage}) differs between two sources of "
                                         "one label; give them different labels")
                    target.setdefault(system, values)
    return merged


@functools.cache
def stored_per_query(summary: str) -> dict:
    """A summary's per-query values, read once however many datasets ask (summaries run to megabytes)."""
    return json.loads(Path(summary).read_text()).get("per_query", {})


def load_source(source: str, dataset: str, seeds: list[int]) -> tuple[dict[int, dict], list[str]]:
    """seed -> first stage -> system -> metric -> query -> value, and what is missing, from a summary or folders."""
    if source.endswith(".json"):
        stored = stored_per_query(source).get(dataset, {})
        found = {s: stored[str(s)] for s in seeds if stored.get(str(s))}
        return found, [f"{source} ({dataset}, seed {s})" for s in seeds if s not in found]
    folders = {s: Path(source.format(seed=s)) for s in seeds}
    absent = [str(f) for f in folders.values() if not RunFolder(f).analysis.is_file()]
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
    """Mean per seed (over every pooled dataset's queries of that seed)."""
    by_seed = {seed: [v for q, v in values.items() if q.rpartition("/")[2].startswith(f"s{seed}:")]
               for seed in seeds}
    return [float(np.mean(v)) for v in by_seed.values() if v]


def dataset_means(values: dict[str, float]) -> dict[str, float]:
    """Mean per pooled dataset (queries are ``{dataset}/s{seed}:{query}``); empty for a single dataset."""
    return {d: float(np.mean([v for seed in seeds.values() for v in seed]))
            for d, seeds in by_dataset_and_seed(values).items() if d != "all"}


def by_dataset_and_seed(values: dict[str, float]) -> dict[str, dict[str, list[float]]]:
    """dataset (``all`` when not pooled) -> seed (``s1``) -> values, from ``{dataset}/s{seed}:{query}`` keys."""
    groups: dict[str, dict[str, list[float]]] = {}
    for q, v in values.items():
        dataset, slash, rest = q.rpartition("/")
        groups.setdefault(dataset if slash else "all", {}).setdefault(rest.partition(":")[0], []).append(v)
    return {d: dict(sorted(seeds.items())) for d, seeds in sorted(groups.items())}


def dataset_seed_means(values: dict[str, float]) -> dict[str, dict[str, float]]:
    """dataset (``all`` when not pooled) -> seed -> mean."""
    return {d: {s: float(np.mean(v)) for s, v in seeds.items()} for d, seeds in by_dataset_and_seed(values).items()}


def plot(grid: dict, metrics: list[str], path: str) -> None:
    """Grouped bars, one panel per metric: each re-ranker's mean per collection (and pooled), seeds as dots.

    Interpolated rows are left out (they sit at the first stage's level); the first stage is drawn as a bar too.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    first_label = next(iter(grid))  # the first stage is the same under every label: one bar for it
    bars = [(label, system) for label, systems in grid.items()
            for system in sorted(systems, key=lambda s: (s != "first stage", s))
            if not system.endswith(" + first stage") and (system != "first stage" or label == first_label)]
    several_labels = len(grid) > 1
    figure, axes = plt.subplots(len(metrics), 1, figsize=(max(7, 1.2 * len(bars) + 3), 3.2 * len(metrics)),
                                squeeze=False)
    for axis, metric in zip(axes[:, 0], metrics):
        per_bar = [by_dataset_and_seed(grid[label][system][metric]) for label, system in bars]
        datasets = sorted({d for cells in per_bar for d in cells})
        groups = datasets + (["pooled"] if len(datasets) > 1 else [])
        width = 0.8 / len(bars)
        for i, ((label, system), cells) in enumerate(zip(bars, per_bar)):
            xs, heights, dots = [], [], []
            for g, group in enumerate(groups):
                x = g + (i - (len(bars) - 1) / 2) * width
                if group == "pooled":
                    xs.append(x)
                    heights.append(float(np.mean(list(grid[label][system][metric].values()))))
                elif group in cells:
                    xs.append(x)
                    heights.append(float(np.mean([v for seed in cells[group].values() for v in seed])))
                    dots += [(x, float(np.mean(seed))) for seed in cells[group].values()]
            name = f"{label}: {system}" if several_labels and system != "first stage" else system
            axis.bar(xs, heights, width * 0.95, label=name, color=f"C{i % 10}")
            if dots:
                axis.scatter(*zip(*dots), s=8, color="black", zorder=3)
        axis.set_xticks(range(len(groups)), groups)
        axis.set_ylabel(metric)
        axis.set_ylim(0, 1)
        axis.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    axes[0, 0].set_title("re-ranking alone: mean per collection (bars), one dot per seed", fontsize=9)
    figure.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight")  # keeps the legend beside the plot
    plt.close(figure)


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


def by_dataset_markdown(means: dict, metric: str) -> str:
    """Rows: system x setting; the mean on each pooled dataset."""
    datasets = sorted({d for rows in means.values() for cell in rows.values()
                       for d in cell[metric]["dataset_means"]})
    lines = [f"| system | setting | {' | '.join(datasets)} |", "|---|---|" + "---|" * len(datasets)]
    for label, rows in means.items():
        for system, cell in sorted(rows.items(), key=lambda item: (item[0] != "first stage", item[0])):
            values = cell[metric]["dataset_means"]
            lines.append(f"| {system} | {label} | "
                         + " | ".join(f"{values[d]:.3f}" if d in values else "-" for d in datasets) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--grid", action="append", required=True, help="LABEL=FOLDER pattern with {seed}")
    parser.add_argument("--reference", required=True,
                        help="LABEL (each system against itself under that setting) or LABEL:SYSTEM (every "
                             "re-ranker against that one)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--first-stage", default="ensemble")
    parser.add_argument("--dataset", nargs="+", default=["scifact"],
                        help="Which dataset(s) of the summary files to read; several are pooled.")
    parser.add_argument("--permutations", type=int, default=10000)
    parser.add_argument("--output", required=True)
    parser.add_argument("--plot", help="Also write a PNG of the means per collection and seed (matplotlib).")
    args = parser.parse_args()

    sources: dict[str, list[str]] = {}
    for item in args.grid:
        label, _, source = item.partition("=")
        sources.setdefault(label, []).append(source)
    grid: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    missing: list[str] = []
    for label, label_sources in sources.items():
        systems: dict[str, dict[str, dict[str, float]]] = {}
        complete = True
        for dataset in args.dataset:
            loaded = [load_source(source, dataset, args.seeds) for source in label_sources]
            # A source that holds nothing of this dataset is another dataset's source of the label, not a gap,
            # as long as some source of the label has it.
            present = [(found, absent) for found, absent in loaded if found]
            if not present:
                missing += [f"{label} ({dataset})"]
                complete = False
                continue
            for found, absent in present:
                if absent:
                    missing += absent
                    complete = False
            prefix = f"{dataset}/" if len(args.dataset) > 1 else ""
            for system, metrics in pooled(merge([f for f, _ in present]), args.first_stage, prefix).items():
                for metric, values in metrics.items():
                    systems.setdefault(system, {}).setdefault(metric, {}).update(values)
        if complete:
            grid[label] = systems
    if args.reference.partition(":")[0] not in grid:
        sys.exit(f"reference {args.reference!r} has unfinished runs: {', '.join(missing)}")

    means: dict = {}
    tests: list[dict] = []
    for label, systems in grid.items():
        for system, metrics in systems.items():
            values = {m: np.array([metrics[m][q] for q in sorted(metrics[m])]) for m in METRICS if m in metrics}
            means.setdefault(label, {})[system] = {
                m: {"mean": float(v.mean()), "ci95": list(bootstrap_ci(v.tolist())), "units": int(v.size),
                    "seed_means": seed_means(metrics[m], args.seeds), "dataset_means": dataset_means(metrics[m])}
                for m, v in values.items()}
            control_values = reference_of(grid, args.reference, label, system)
            if control_values is None:
                continue
            for metric in METRICS:
                units = sorted(set(control_values[metric]) & set(metrics[metric]))
                control = np.array([control_values[metric][q] for q in units])
                treatment = np.array([metrics[metric][q] for q in units])
                p = paired_test(control, treatment, "fisher", args.permutations, 42)
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
                             "datasets": args.dataset, "seeds": args.seeds, "first_stage": args.first_stage,
                             "test": "fisher (seeded numpy sign flips), Holm",
                             "missing_runs": missing, "means": means, "comparisons": tests})
    for metric in METRICS:
        print(f"\n{markdown(means, tests, args.reference, metric)}\n")
        if len(args.dataset) > 1:
            print(f"\n{by_dataset_markdown(means, metric)}\n")
    if args.plot:
        plot(grid, METRICS, args.plot)
        print(f"plot: {args.plot}")
    if missing:
        print(f"left out (unfinished): {', '.join(missing)}", file=sys.stderr)


if __name__ == "__main__":
    main()
