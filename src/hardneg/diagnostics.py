"""Per-strategy mining diagnostics: score distributions (numbers + a PNG), rule removals, overlap, shortfalls.

:func:`mining_diagnostics` turns a :class:`~hardneg.mine.MiningResult` into plain numbers; :func:`write_diagnostics`
writes them as ``diagnostics.json`` and, with matplotlib (the ``plots`` extra), ``score_distributions.png``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .io import atomic_write, write_json
from .mine import MiningResult

logger = logging.getLogger(__name__)

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def describe(values: list[float]) -> dict:
    """Count, mean, std and quantiles of a list of numbers (empty -> count 0 only)."""
    if not values:
        return {"count": 0}
    x = np.asarray(values, dtype=np.float64)
    out = {"count": len(x), "mean": round(float(x.mean()), 4), "std": round(float(x.std()), 4)}
    out.update({f"q{int(q * 100):02d}": round(float(v), 4) for q, v in zip(QUANTILES, np.quantile(x, QUANTILES))})
    return out


def score_lists(result: MiningResult) -> tuple[list[float], list[float], list[float]]:
    """Fused first-stage scores of positives and of hard negatives, and per pair positive minus its best hard
    negative (negative margins mean a negative outranks the positive: a false-negative risk)."""
    positives, negatives, margins = [], [], []
    for pair in result.pairs:
        hard = [s for s, src in zip(pair.negative_scores, pair.negative_sources) if src == "hard" and s is not None]
        negatives += hard
        if pair.positive_score is not None:
            positives.append(pair.positive_score)
            if hard:
                margins.append(pair.positive_score - max(hard))
    return positives, negatives, margins


def mining_diagnostics(result: MiningResult) -> dict:
    summary = result.summary
    positives, negatives, margins = score_lists(result)
    sources = [s for p in result.pairs for s in p.negative_sources]
    return {
        "strategy": summary.strategy,
        "pairs": summary.pairs,
        "negatives": len(sources),
        "hard_share": round(sources.count("hard") / len(sources), 4) if sources else 0.0,
        "positive_scores": describe(positives),
        "negative_scores": describe(negatives),
        "margin_to_hardest": describe(margins),
        "negative_above_positive": round(float(np.mean(np.asarray(margins) < 0)), 4) if margins else 0.0,
        "removed": dict(summary.removed),
        "pairs_short": len(summary.short_pairs),
        "pairs_short_of_hard": summary.hard_short,
        "random_fill": summary.random_fill,
        "likely_positives": summary.likely_positives,
        "member_overlap": summary.member_overlap,
        "clusters": summary.clusters,
    }


def plot_distributions(result: MiningResult, path: str | Path, title: str | None = None) -> Path:
    """Histograms of positive vs hard-negative fused scores, and of each pair's margin to its hardest negative."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError("Plots need matplotlib: pip install 'hardneg[plots]'") from None
    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    positives, negatives, margins = score_lists(result)
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3), dpi=80)
    bins = np.histogram_bin_edges(positives + negatives or [0.0], bins=30)
    for values, label in ((negatives, "hard negatives"), (positives, "positives")):
        if values:  # a random-only strategy has no scored negatives
            left.hist(values, bins=bins, alpha=0.6, density=True, label=f"{label} ({len(values)})")
    left.set_xlabel("fused first-stage score")
    if positives or negatives:
        left.legend(fontsize=7)
    right.hist(margins or [0.0], bins=30, color="grey")
    right.axvline(0.0, color="red", linewidth=1)
    right.set_xlabel("positive minus hardest negative")
    fig.suptitle(title or result.summary.strategy, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    with atomic_write(path, "wb") as handle:
        fig.savefig(handle, format="png")
    plt.close(fig)
    return path


def write_diagnostics(result: MiningResult, folder: str | Path, plots: bool = True) -> dict:
    """``diagnostics.json`` (and ``score_distributions.png``) in ``folder``; returns the numbers."""
    folder = Path(folder)
    numbers = mining_diagnostics(result)
    write_json(folder / "diagnostics.json", numbers)
    if plots:
        plot_distributions(result, folder / "score_distributions.png")
    return numbers
