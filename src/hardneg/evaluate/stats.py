"""How sure a comparison is: bootstrap intervals, seeded paired randomisation tests, family-wise correction."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data import Qrels
from .metrics import RunDict, per_query_metrics


def bootstrap_ci(values, resamples: int = 1000, seed: int = 42, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean, resampling queries with replacement (seeded)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def adjust_pvalues(pvalues: list[float], method: str = "holm") -> list[float]:
    """Family-wise corrected p-values: Holm's step-down (default), Bonferroni, or none."""
    p = np.asarray(pvalues, dtype=np.float64)
    m = len(p)
    if method == "none" or m == 0:
        return p.tolist()
    if method == "bonferroni":
        return np.minimum(p * m, 1.0).tolist()
    if method != "holm":
        raise ValueError(f"Unknown correction {method!r}: choose holm, bonferroni or none.")
    order = np.argsort(p, kind="stable")
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out.tolist()


@dataclass(frozen=True)
class Comparison:
    """One paired test between two systems on one metric, over the same queries."""

    a: str
    b: str
    metric: str
    delta: float          # mean(b) - mean(a)
    p_value: float
    p_adjusted: float
    significant: bool     # p_adjusted < alpha
    wins: int             # queries where b beats a
    ties: int
    losses: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def paired_test(control, treatment, test: str = "fisher", permutations: int = 1000, seed: int = 42) -> float:
    """Two-sided p-value that ``treatment`` and ``control`` (paired per query) have the same mean.

    ``fisher`` is the randomisation test of Smucker et al. (CIKM '07): each query's pair of values is swapped
    (the sign of its difference flipped) at random. It is done here with one seeded numpy generator rather than
    ranx's numba version, whose parallel threads draw from unseeded generators, so the same inputs gave p-values
    that differ from run to run. The estimate counts the observed assignment, (1 + hits) / (1 + permutations),
    so it is never 0. ``student`` is the paired t-test (scipy).
    """
    diff = np.asarray(treatment, dtype=np.float64) - np.asarray(control, dtype=np.float64)
    if diff.size == 0 or not np.any(diff):
        return 1.0
    if test == "student":
        from scipy.stats import ttest_rel

        p = float(ttest_rel(treatment, control).pvalue)
        return 1.0 if np.isnan(p) else p
    if test != "fisher":
        raise ValueError(f"Unknown test {test!r}: choose fisher or student.")
    observed = abs(diff.mean())
    rng = np.random.default_rng(seed)
    hits, done, chunk = 0, 0, max(1, 2_000_000 // diff.size)  # bounded memory: about 16 MB of signs at once
    while done < permutations:
        n = min(chunk, permutations - done)
        signs = rng.choice(np.array([-1.0, 1.0]), size=(n, diff.size))
        # a tiny tolerance so that a permutation equal to the observed difference counts despite rounding
        hits += int((np.abs(signs @ diff) / diff.size >= observed - 1e-12).sum())
        done += n
    return (1 + hits) / (1 + permutations)


def compare_systems(qrels: Qrels, runs: dict[str, RunDict], metrics: list[str], test: str = "fisher",
                    correction: str = "holm", alpha: float = 0.05, seed: int = 42,
                    permutations: int = 1000, per_query: dict[str, dict[str, dict[str, float]]] | None = None
                    ) -> list[Comparison]:
    """Every pair of ``runs`` tested per query (seeded Fisher randomisation or paired t-test), p-values
    corrected per metric over all pairs (Holm by default). ``per_query`` reuses already computed values."""
    names = list(runs)
    if len(names) < 2:
        return []
    if per_query is None:
        per_query = {name: per_query_metrics(qrels, runs[name], metrics) for name in names}
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    out: list[Comparison] = []
    for metric in metrics:
        queries = sorted(per_query[names[0]][metric])
        values = {name: np.array([per_query[name][metric][q] for q in queries]) for name in names}
        raw = [paired_test(values[a], values[b], test, permutations, seed) for a, b in pairs]
        for (a, b), p, adj in zip(pairs, raw, adjust_pvalues(raw, correction)):
            diff = values[b] - values[a]
            out.append(Comparison(a, b, metric, float(diff.mean()), p, adj, adj < alpha, int((diff > 0).sum()),
                                  int((diff == 0).sum()), int((diff < 0).sum())))
    return out


def analyse(qrels: Qrels, systems: dict[str, RunDict], metrics: list[str], test: str = "fisher",
            correction: str = "holm", resamples: int = 1000, seed: int = 42) -> dict:
    """Per-query metrics, bootstrap 95% CIs and corrected paired tests for systems ranking the same queries."""
    per_query = {name: per_query_metrics(qrels, run, metrics) for name, run in systems.items()}
    ci = {name: {m: list(bootstrap_ci([values[m][q] for q in sorted(values[m])], resamples, seed))
                 for m in metrics} for name, values in per_query.items()}
    comparisons = compare_systems(qrels, systems, metrics, test, correction, seed=seed, per_query=per_query)
    return {"test": test, "correction": correction, "alpha": 0.05, "bootstrap_resamples": resamples,
            "per_query": per_query, "ci": ci, "comparisons": [c.as_dict() for c in comparisons]}
