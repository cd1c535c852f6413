"""The report's figures (matplotlib, Agg): bars with intervals, score distributions, per-query differences."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..evaluate import Row
from ..io import atomic_write
from .labels import PRIMARY, metric_label, rows_of, system_label, system_of


def _figure(path: Path, draw) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = draw(plt)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def bar_chart(path: Path, fs: str, rows: list[Row], analysis: dict, metric: str = PRIMARY) -> Path:
    ci = analysis["first_stages"].get(fs, {}).get("ci", {})
    ordered = rows_of(rows, fs)
    labels = [system_label(system_of(r), r) for r in ordered]
    values = np.array([r.metrics[metric] for r in ordered])
    low = np.array([ci.get(system_of(r), {}).get(metric, [v, v])[0] for r, v in zip(ordered, values)])
    high = np.array([ci.get(system_of(r), {}).get(metric, [v, v])[1] for r, v in zip(ordered, values)])
    colours = ["#888888" if r.mode == "first stage" else "#c44e52" if r.reranker == "base" else
               "#4c72b0" if r.mode == "rerank" else "#55a868" for r in ordered]

    def draw(plt):
        fig, ax = plt.subplots(figsize=(8, 0.45 * len(ordered) + 1.2))
        y = np.arange(len(ordered))[::-1]
        ax.barh(y, values, color=colours, xerr=[values - low, high - values], capsize=3)
        ax.set_yticks(y, labels)
        ax.set_xlabel(f"{metric_label(metric)} (bars: 95% bootstrap CI over queries)")
        ax.set_title(f"First stage: {fs}")
        ax.set_xlim(max(0.0, float(low.min()) - 0.05), min(1.0, float(high.max()) + 0.05))
        return fig

    return _figure(path, draw)


def score_distributions(path: Path, negatives: dict[str, list[dict]]) -> Path | None:
    """Fused first-stage score of the positive vs. each hard negative, one panel per mined strategy."""
    panels = {}
    for name, pairs in negatives.items():
        pos = [p["positive_score"] for p in pairs if p.get("positive_score") is not None]
        neg = [s for p in pairs for s in p.get("negative_scores", []) if s is not None]
        if pos and neg:
            panels[name] = (pos, neg)
    if not panels:
        return None
    return _histograms(path, panels, ("hard negatives", "positives"), "fused first-stage score", bins=None)


def reranker_distributions(path: Path, scores: dict[str, dict[str, dict[str, float]]], qrels: dict) -> Path | None:
    """Each re-ranker's score of labelled positives vs. the other candidates it re-scored.

    ``scores``: per re-ranker, its score store (query -> document -> score).
    """
    panels = {}
    for system, by_query in scores.items():
        pos, other = [], []
        for q, docs in by_query.items():
            for d, v in docs.items():
                (pos if qrels.get(q, {}).get(d, 0) > 0 else other).append(v)
        if pos and other:
            panels[system] = (pos, other)
    if not panels:
        return None

    return _histograms(path, {system_label(k): v for k, v in panels.items()}, ("other candidates", "positives"),
                       "re-ranker score (sigmoid)", bins=np.linspace(0, 1, 41))


def _histograms(path: Path, panels: dict[str, tuple[list[float], list[float]]], labels: tuple[str, str],
                xlabel: str, bins: np.ndarray | None) -> Path:
    """A grid of panels, each overlaying the positives' histogram on the negatives' (density, shared bins)."""

    def draw(plt):
        cols = min(3, len(panels))
        rows = math.ceil(len(panels) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), squeeze=False)
        for ax in axes.flat[len(panels):]:
            ax.axis("off")
        for ax, (name, (pos, neg)) in zip(axes.flat, panels.items()):
            edges = bins if bins is not None else np.linspace(min(min(pos), min(neg)), max(max(pos), max(neg)), 40)
            ax.hist(neg, bins=edges, alpha=0.6, density=True, label=labels[0], color="#c44e52")
            ax.hist(pos, bins=edges, alpha=0.6, density=True, label=labels[1], color="#4c72b0")
            ax.set_title(name, fontsize=10)
            ax.set_xlabel(xlabel, fontsize=8)
        axes.flat[0].legend(fontsize=8)
        fig.tight_layout()
        return fig

    return _figure(path, draw)


def wins_chart(path: Path, deltas: list[tuple[str, float]], best: str, base: str, metric: str = PRIMARY) -> Path:
    values = np.array([d for _, d in deltas])

    def draw(plt):
        fig, ax = plt.subplots(figsize=(8, 2.8))
        ax.bar(np.arange(len(values)), values, width=1.0,
               color=["#55a868" if v > 0 else "#c44e52" if v < 0 else "#bbbbbb" for v in values])
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set_xlabel("test queries, sorted by difference")
        ax.set_ylabel(f"delta {metric_label(metric)}")
        ax.set_title(f"{system_label(best)} vs. {system_label(base)}: {int((values > 0).sum())} wins, "
                     f"{int((values == 0).sum())} ties, {int((values < 0).sum())} losses", fontsize=10)
        return fig

    return _figure(path, draw)


def interpolation_curves(path: Path, rows: list[Row]) -> Path:
    """Dev nDCG@10 against the interpolation weight, one line per interpolated re-ranker, the chosen weight marked."""

    def draw(plt):
        fig, ax = plt.subplots(figsize=(6.5, 3.2))
        for i, row in enumerate(rows):
            weights, values = zip(*row.alpha_curve)
            label = f"{system_label(row.reranker)} ({row.first_stage})"
            ax.plot(weights, values, marker=".", color=f"C{i % 10}", label=label)
            ax.scatter([row.alpha], [dict(row.alpha_curve)[row.alpha]], s=60, facecolors="none",
                       edgecolors=f"C{i % 10}", zorder=3)
        ax.set_xlabel("weight of the re-ranker (0: first stage alone)")
        ax.set_ylabel("dev nDCG@10")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
        return fig

    return _figure(path, draw)
