"""Which system a run hands over: the first stage alone, a re-ranker alone, or a re-ranker interpolated with the
first stage, chosen on dev queries only (never test), and kept only when the dev evidence clearly says it helps.

Every re-ranker at every interpolation weight is a candidate; the best by mean dev ``metric`` wins. Picking the
best of many candidates on the same queries that then measure its gain favours lucky candidates (more so the
fewer the queries), so the gain that decides is cross-validated: the dev queries are split into seeded folds, the
best candidate is picked on all folds but one, and its gain is measured on the held-out fold. Those held-out
gains, one per dev query, must show the selection helps on at least ``min_queries`` dev queries: the lower end of
their paired bootstrap interval above zero and a paired randomisation test rejecting "no difference" at
``1 - level``. When they do not (too few dev queries, a small, noisy or unstable gain, a useless re-ranker), the
choice shrinks to the first stage alone and says why. The test figures written beside the choice are what to
trust.

A re-ranker is also a candidate at each re-rank depth of ``depths`` (its top ``depth`` re-ordered, the rest left in
first-stage order): a weak re-ranker often helps on the first stage's top 10 and hurts deeper, so how far to trust
it is chosen on the same dev queries, from the scores of the deepest, at no extra scoring cost.

With ``selection="one_se"`` the pick (on all dev queries and in each fold) is the simplest candidate within one
paired standard error of the best (the one-standard-error rule of Breiman et al., 1984): a first stage alone before
any re-ranker, a lower re-ranker weight before a higher, a shallower depth before a deeper. Near-equal candidates
then trade places less from fold to fold. It handed over no better systems on test than "best", the default
(docs/RESULTS.md, First-stage tuning).

Where a run tunes its first stage, :func:`choose_in_steps` makes the choice in two such steps: the first stage, then
a re-ranker over it, which must beat that first stage alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from ..data import Qrels
from .metrics import RunDict, per_query_metrics
from .runs import ALPHAS, rerank_run
from .stats import bootstrap_ci, paired_test

FIRST_STAGE = "first stage"
GATE_FOLDS = 5


@dataclass(frozen=True)
class Candidate:
    first_stage: str
    reranker: str | None      # None: the first stage alone
    weight: float             # the re-ranker's weight in the interpolation; 1.0: re-ranker alone
    depth: int | None = None  # how many of the first stage's top documents the re-ranker re-orders; None: the run's

    @property
    def mode(self) -> str:
        if self.reranker is None:
            return FIRST_STAGE
        return "rerank" if self.weight >= 1.0 else "interpolated"


@dataclass(frozen=True)
class SystemChoice:
    """The chosen system and the dev evidence behind it; gains are against the ``baseline`` first stage."""

    first_stage: str
    reranker: str | None
    mode: str                  # "first stage", "rerank" or "interpolated"
    weight: float | None       # the re-ranker's interpolation weight (1.0 alone; None without a re-ranker)
    metric: str
    baseline: str              # the untrained first stage every candidate is measured against
    dev_queries: int
    dev_first_stage: float | None
    dev_best: float | None     # the picked candidate's dev metric, handed over or not (one_se: simplest near best)
    best_candidate: dict | None
    dev_gain: float | None     # the chosen candidate's gain on all dev queries (optimistic: it was picked on them)
    dev_interval: tuple[float, float] | None
    level: float
    reason: str
    cv_gain: float | None = None       # the held-out gain of picking the best candidate (what the gate reads)
    cv_interval: tuple[float, float] | None = None
    cv_p_value: float | None = None
    folds: int | None = None
    fold_agreement: float | None = None  # share of folds whose pick is the candidate chosen on all dev queries
    selection: str = "best"            # how candidates were picked: "best" mean or "one_se"
    depth: int | None = None           # the re-ranker's re-rank depth (None without a re-ranker)
    fold_picks: list[dict] | None = None  # each fold's pick, made on the other folds' queries
    steps: list[dict] | None = None       # a choice in two steps (choose_in_steps): each step's as_dict()

    def as_dict(self) -> dict:
        out = asdict(self)
        for key in ("dev_interval", "cv_interval"):
            out[key] = list(out[key]) if out[key] else None
        return out


def described_candidate(candidate: Candidate) -> dict:
    return {"first_stage": candidate.first_stage, "reranker": candidate.reranker, "weight": candidate.weight,
            "mode": candidate.mode, "depth": candidate.depth if candidate.reranker else None}


def candidate_run(first_stage: RunDict, scores: dict[str, dict[str, float]] | None, depth: int,
                  candidate: Candidate) -> RunDict:
    """The ranking a candidate system gives ``first_stage``'s queries (``scores``: its re-ranker's)."""
    if candidate.reranker is None:
        return first_stage
    return rerank_run(first_stage, scores, candidate.depth or depth, candidate.weight)


def simplicity(candidates: list[Candidate]) -> np.ndarray:
    """Each candidate's rank for the one-standard-error rule, lower is simpler: a first stage alone, then a
    re-ranker by its weight, then by its depth: the candidates that move least from the first stage's own ranking
    first."""
    keys = [(0.0, 0) if c.reranker is None else (c.weight, c.depth or 0) for c in candidates]
    order = sorted(range(len(candidates)), key=lambda i: keys[i])
    ranks = np.empty(len(candidates))
    ranks[order] = np.arange(len(candidates))
    return ranks


def _best(values: np.ndarray, columns: np.ndarray, simplest: np.ndarray | None = None) -> int:
    """The candidate (row of ``values``) with the best mean over ``columns``; ties keep the earlier candidate:
    first stages before re-rankers, smaller weights first. ``simplest`` (see :func:`simplicity`): instead, the
    simplest candidate whose mean is within one paired standard error of the best's (ties: the earlier)."""
    means = values[:, columns].mean(axis=1)
    best = int(np.flatnonzero(means >= means.max() - 1e-12)[0])
    if simplest is None or len(columns) < 2:
        return best
    gaps = values[best, columns][None, :] - values[:, columns]
    standard_error = gaps.std(axis=1, ddof=1) / np.sqrt(len(columns))
    near = np.flatnonzero(means >= means[best] - standard_error - 1e-12)
    return int(near[np.lexsort((near, simplest[near]))[0]])


def fold_assignment(n: int, folds: int, seed: int) -> np.ndarray:
    """Each of ``n`` queries' fold (at most ``n`` folds): a seeded shuffle dealt round-robin."""
    k = min(folds, n)
    fold_of = np.empty(n, dtype=int)
    fold_of[np.random.default_rng(seed).permutation(n)] = np.arange(n) % max(k, 1)
    return fold_of


def gate_folds(query_ids: list[str], folds: int = GATE_FOLDS, seed: int = 42) -> list[list[str]]:
    """The dev queries of each fold :func:`choose_system` holds out, so a first stage tuned on dev queries can be
    tuned without each fold (nested) before the gate measures it there."""
    queries = sorted(query_ids)
    fold_of = fold_assignment(len(queries), folds, seed)
    return [[q for q, f in zip(queries, fold_of) if f == fold] for fold in range(min(folds, len(queries)))]


def held_out_gains(values: np.ndarray, first: np.ndarray, folds: int, seed: int,
                   simplest: np.ndarray | None = None) -> tuple[np.ndarray, list[int]]:
    """Per dev query, the gain over ``first`` of the candidate picked on the other folds' queries (``values``:
    candidates x queries; ``simplest``: pick by the one-standard-error rule), and each fold's pick."""
    n = values.shape[1]
    k = min(folds, n)
    if k < 2:  # one query: nothing to hold out (the gate's min_queries rejects it anyway)
        pick = _best(values, np.arange(n), simplest)
        return values[pick] - first, [pick]
    fold_of = fold_assignment(n, k, seed)
    gains, picks = np.empty(n), []
    for fold in range(k):
        held = fold_of == fold
        pick = _best(values, np.flatnonzero(~held), simplest)
        picks.append(pick)
        gains[held] = values[pick, held] - first[held]
    return gains, picks


def choose_system(baseline: str, dev_qrels: Qrels, dev_runs: dict[str, RunDict],
                  dev_scores: dict[str, dict[str, dict[str, dict[str, float]]]], depth: int, metric: str = "ndcg@10",
                  level: float = 0.90, resamples: int = 1000, seed: int = 42, min_queries: int = 10,
                  weights: tuple[float, ...] = ALPHAS[1:], folds: int = GATE_FOLDS,
                  cross_fitted: bool = False, selection: str = "best",
                  depths: tuple[int, ...] | None = None, against: str | None = None) -> SystemChoice:
    """The system to hand over, from dev queries only. ``dev_runs``: each candidate first stage's dev run (the
    untrained ``baseline`` among them); ``dev_scores``: first stage -> re-ranker -> its scores of that run's top
    ``depth``. Candidates: every other first stage alone, and every re-ranker over every first stage at every
    interpolation weight of ``weights`` (the run's: all of them, its fixed weight, or 1.0 alone) and every re-rank
    depth of ``depths`` (one deeper than ``depth`` counts as ``depth``; default: ``depth`` alone). The gate reads
    the ``folds``-fold cross-validated gain of the selection, not the winner's own dev gain. ``cross_fitted``: the
    dev queries are training queries, each scored by a re-ranker trained without it (only the wording changes).
    ``selection``: "best" picks the highest dev mean, "one_se" the simplest candidate within one standard error of
    it (module docstring). ``against``: how the reason names the baseline (default "the untrained <baseline>")."""
    if selection not in ("best", "one_se"):
        raise ValueError(f"selection must be 'best' or 'one_se', not {selection!r}")
    dev = "cross-fitted training queries" if cross_fitted else "dev queries"
    base = {"metric": metric, "level": level, "baseline": baseline, "selection": selection}
    queries = sorted(q for q in dev_qrels if q in dev_runs.get(baseline, {}))
    depths = tuple(sorted({min(d, depth) for d in depths})) if depths else (depth,)
    if min(depths) < 1:
        raise ValueError(f"re-rank depths must be at least 1, not {min(depths)}")
    candidates = [Candidate(fs, None, 0.0) for fs in dev_runs if fs != baseline]
    # ties keep the earlier candidate: a lower weight first, then a shallower depth
    candidates += [Candidate(fs, reranker, float(w), d) for fs in dev_runs
                   for reranker in sorted(dev_scores.get(fs, {})) for w in weights for d in depths]
    if not queries or not candidates:
        why = ("no dev queries to choose on (dev_fraction is 0 or the training queries are too few)" if not queries
               else "nothing was trained to choose from")
        return SystemChoice(**base, first_stage=baseline, reranker=None, mode=FIRST_STAGE, weight=None,
                            dev_queries=len(queries), dev_first_stage=None, dev_best=None, best_candidate=None,
                            dev_gain=None, dev_interval=None, reason=f"first stage alone: {why}")
    qrels = {q: dev_qrels[q] for q in queries}
    runs = {fs: {q: run.get(q, {}) for q in queries} for fs, run in dev_runs.items()}

    def values(run: RunDict) -> np.ndarray:
        found = per_query_metrics(qrels, run, [metric])[metric]
        return np.array([found[q] for q in queries])

    first = values(runs[baseline])
    table = np.vstack([values(candidate_run(runs[c.first_stage], dev_scores.get(c.first_stage, {}).get(c.reranker)
                                            if c.reranker else None, depth, c)) for c in candidates])
    simplest = simplicity(candidates) if selection == "one_se" else None
    chosen = _best(table, np.arange(len(queries)), simplest)
    candidate, found = candidates[chosen], table[chosen]
    described = [described_candidate(c) for c in candidates]
    gain = found - first
    low, high = bootstrap_ci(gain, resamples, seed, level)
    held_out, picks = held_out_gains(table, first, folds, seed, simplest)
    cv_low, cv_high = bootstrap_ci(held_out, resamples, seed, level)
    p_value = paired_test(first, first + held_out, seed=seed)
    evidence = dict(dev_queries=len(queries), dev_first_stage=float(first.mean()), dev_best=float(found.mean()),
                    best_candidate=described[chosen],
                    dev_gain=float(gain.mean()), dev_interval=(low, high), cv_gain=float(held_out.mean()),
                    cv_interval=(cv_low, cv_high), cv_p_value=p_value, folds=len(picks),
                    fold_agreement=float(np.mean([p == chosen for p in picks])),
                    fold_picks=[described[p] for p in picks])
    interval = (f"{held_out.mean():+.3f} {metric} over {against or 'the untrained ' + baseline} cross-validated on "
                f"{len(queries)} {dev} ({len(picks)} folds, each measured on the others' pick), {level:.0%} interval "
                f"[{cv_low:+.3f}, {cv_high:+.3f}], p {p_value:.3f}; {gain.mean():+.3f} on all {dev}, "
                "where it was picked")
    label = candidate.first_stage + (f" + {candidate.reranker} (weight {candidate.weight:.1f}, top {candidate.depth})"
                                     if candidate.reranker else "")
    if simplest is not None:
        label += ", the simplest within one standard error of the best"
    if len(queries) >= min_queries and cv_low > 0 and p_value < 1 - level:
        return SystemChoice(**base, first_stage=candidate.first_stage, reranker=candidate.reranker,
                            mode=candidate.mode, weight=candidate.weight if candidate.reranker else None,
                            depth=candidate.depth if candidate.reranker else None,
                            **evidence, reason=f"{label} gains {interval}")
    more = "add training queries" if cross_fitted else "raise dev_fraction, cross-fit or add queries"
    why = (f"too few {dev} to decide (at least {min_queries}; {more})"
           if len(queries) < min_queries else "not a clear gain")
    return SystemChoice(**base, first_stage=baseline, reranker=None, mode=FIRST_STAGE, weight=None, **evidence,
                        reason=f"first stage alone: the best candidate, {label}, gains {interval}: {why}")


def choose_in_steps(baseline: str, dev_qrels: Qrels, dev_runs: dict[str, RunDict],
                    dev_scores: dict[str, dict[str, dict[str, dict[str, float]]]], depth: int,
                    **gate) -> SystemChoice:
    """:func:`choose_system` in two steps when there are tuned first stages besides the untrained ``baseline``:
    first the first stage (the tuned ones alone against the baseline), then a re-ranker over the one kept (every
    re-ranker, weight and depth against that first stage alone), each step with its own cross-validated gate.

    Chosen in one step, a clearly better tuned first stage competes among hundreds of re-ranker, weight and depth
    combinations over it; the folds then pick different combinations, each fitted to the other folds' queries, and
    the held-out gain of that scattered pick can hide the first stage's own gain (docs/RESULTS.md, The embedder by
    default). In steps, the first stage is judged among a few candidates, and a re-ranker is added only if it
    clearly helps the first stage kept. ``gate``: :func:`choose_system`'s settings. The choice's evidence is the
    step that measured against the untrained baseline: the first step when it kept a tuned first stage, else the
    second; both steps are in ``steps``."""
    tuned = [fs for fs in dev_runs if fs != baseline]
    if not tuned:
        return choose_system(baseline, dev_qrels, dev_runs, dev_scores, depth, **gate)
    first = choose_system(baseline, dev_qrels, dev_runs, {}, depth, **gate)
    kept = first.first_stage
    against = None if kept == baseline else f"{kept} alone"
    second = choose_system(kept, dev_qrels, {kept: dev_runs[kept]}, {kept: dev_scores.get(kept, {})}, depth,
                           against=against, **gate)
    evidence = first if kept != baseline else second
    over = kept if kept != baseline else f"the untrained {baseline}"
    reason = f"in two steps. The first stage: {first.reason}. A re-ranker over {over}: {second.reason}"
    return replace(evidence, first_stage=kept, reranker=second.reranker, mode=second.mode, weight=second.weight,
                   depth=second.depth, baseline=baseline, reason=reason, steps=[first.as_dict(), second.as_dict()])


def test_comparison(qrels: Qrels, first_stage: RunDict, chosen: RunDict, metrics: list[str], resamples: int = 1000,
                    seed: int = 42, level: float = 0.95) -> dict[str, dict[str, float]]:
    """The chosen system against the first stage on the (test) queries of ``qrels``: per metric the means, the
    gain with its paired bootstrap interval, and the paired randomisation test's p-value."""
    fs = per_query_metrics(qrels, first_stage, metrics)
    ch = per_query_metrics(qrels, chosen, metrics)
    out = {}
    for m in metrics:
        queries = sorted(fs[m])
        a = np.array([fs[m][q] for q in queries])
        b = np.array([ch[m][q] for q in queries])
        low, high = bootstrap_ci(b - a, resamples, seed, level)
        out[m] = {"first_stage": float(a.mean()), "system": float(b.mean()), "gain": float((b - a).mean()),
                  "low": low, "high": high, "p_value": paired_test(a, b, seed=seed), "queries": len(queries)}
    return out
