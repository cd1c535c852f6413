"""Ensemble weights and fusion learned per collection, on its training queries only.

The ensemble's candidate pools are computed once for the training queries; every point of a small grid (a weight
per member from ``grid``, times each fusion) re-fuses the pools' member scores and is scored per query by ranx.
The queries are cut into seeded validation folds: a candidate's validation score is the mean of its fold means,
and the candidate with the best one wins (ties go to fewer members, then to the fixed fallback). Single members
and the fallback are grid points, so the choice is never below the best single member on validation, and a
member that only hurts gets weight 0. Each fold is also scored as held out (the choice made on the other folds),
an honest estimate of what learning the weights is worth. With fewer than ``min_queries`` training queries the
fixed fallback stays, with the reason.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import asdict, dataclass

import numpy as np

from .data import Dataset, Qrels
from .evaluate import per_query_metrics
from .retrieve import CandidatePool, Ensemble, fuse_scores, fusion_spec

DEFAULT_GRID = (0.0, 0.25, 0.5, 1.0)
DEFAULT_FUSIONS = ("zscore", "minmax", "rrf")


@dataclass(frozen=True)
class FusionCandidate:
    """One grid point and how it scored: the mean of its fold means, and each fold's mean."""

    fusion: str
    weights: tuple[float, ...]
    score: float
    fold_scores: tuple[float, ...]

    @property
    def members_used(self) -> int:
        return sum(w > 0 for w in self.weights)


@dataclass(frozen=True)
class LearnedFusion:
    """The weights and fusion to use, whether they were learned, and the evidence for them."""

    members: tuple[str, ...]
    weights: tuple[float, ...]
    fusion: str
    learned: bool
    reason: str
    metric: str
    queries: int
    folds: int
    score: float | None = None               # the choice's validation score
    fallback_score: float | None = None      # the fixed weights' validation score
    best_single: tuple[str, float] | None = None  # the best single member and its validation score
    held_out: float | None = None            # mean over folds of the choice made without that fold
    candidates: tuple[FusionCandidate, ...] = ()

    def as_dict(self) -> dict:
        return asdict(self)


def weight_grid(members: int, grid: tuple[float, ...] = DEFAULT_GRID) -> list[tuple[float, ...]]:
    """Every weight vector over ``grid`` with a positive member, scaled so its largest weight is 1 (weights are
    relative: (0.5, 0.5) ranks as (1, 1)), without repeats, in grid order."""
    seen: dict[tuple[float, ...], None] = {}
    for point in itertools.product(sorted(set(grid)), repeat=members):
        top = max(point)
        if top > 0:
            seen.setdefault(tuple(round(w / top, 6) for w in point))
    return list(seen)


def _cutoff(metric: str) -> int | None:
    """How many documents of a ranking a metric reads (None: all)."""
    found = re.search(r"@(\d+)$", metric)
    return int(found.group(1)) if found else None


def rankings(pools: list[CandidatePool], tie_rank: np.ndarray, weights: tuple[float, ...], fusion: str,
             keep: int | None) -> list[tuple[int, ...]]:
    """Each pool's first ``keep`` corpus positions as these weights and this fusion rank them (ties by id)."""
    spec = fusion_spec(fusion)
    w = np.asarray(weights, dtype=np.float64)
    out = []
    for pool in pools:
        fused = fuse_scores(pool.member_scores, w, spec)
        out.append(tuple(pool.doc_idx[np.lexsort((tie_rank[pool.doc_idx], -fused))[:keep]].tolist()))
    return out


def score_rankings(ranked: set[tuple[str, tuple[int, ...]]], qrels: Qrels, doc_ids: list[str],
                   metric: str) -> dict[tuple[str, tuple[int, ...]], float]:
    """The metric of each distinct (query, ranking), in one ranx call: grid points that rank a query alike
    share one evaluation."""
    keys = sorted(ranked)
    names = [str(i) for i in range(len(keys))]
    run = {n: {doc_ids[d]: float(len(r) - i) for i, d in enumerate(r)} for n, (_, r) in zip(names, keys)}
    values = per_query_metrics({n: qrels[q] for n, (q, _) in zip(names, keys)}, run, [metric])[metric]
    return {key: values[n] for n, key in zip(names, keys)}


def fold_of(query_ids: list[str], folds: int, seed: int) -> np.ndarray:
    """Each query's validation fold: a seeded shuffle dealt round-robin, so folds differ in size by one at most."""
    order = np.random.default_rng(seed).permutation(len(query_ids))
    out = np.empty(len(query_ids), dtype=np.int64)
    out[order] = np.arange(len(query_ids)) % folds
    return out


def _rank_key(score: float, candidate: FusionCandidate, fallback: tuple[str, tuple[float, ...]]) -> tuple:
    """Best first: higher score, then fewer members, then the fallback, then grid order (kept by a stable sort)."""
    return (-round(score, 10), candidate.members_used, (candidate.fusion, candidate.weights) != fallback)


def learn_fusion(dataset: Dataset, query_ids: list[str], qrels: Qrels, ensemble: Ensemble, depth: int = 100,
                 seed: int = 42, grid: tuple[float, ...] = DEFAULT_GRID, fusions: tuple[str, ...] = DEFAULT_FUSIONS,
                 folds: int = 5, min_queries: int = 30, metric: str = "ndcg@10",
                 fallback_weights: list[float] | None = None, fallback_fusion: str | None = None) -> LearnedFusion:
    """Learn the ensemble's member weights and fusion on ``query_ids`` (training queries: never the evaluated).

    ``qrels``: the training split's; queries without a positive in it are left out. ``fallback_weights`` and
    ``fallback_fusion`` (default: the ensemble's own) stay when there are fewer than ``min_queries`` queries, and
    are themselves a candidate otherwise.
    """
    for fusion in (ensemble.fusion, fallback_fusion, *fusions):
        spec = fusion_spec(fusion) if fusion else None
        if spec and (spec.representation != "members" or spec.picking != "fused"):
            raise ValueError(f"learned weights fuse the members' own scores in fused order; fusion {fusion!r} "
                             "does not (use zscore, minmax, rrf or mean)")
    members = tuple(ensemble.member_names)
    fallback = (fallback_fusion or ensemble.fusion,
                tuple(float(w) for w in (fallback_weights if fallback_weights is not None else ensemble.weights)))
    if len(fallback[1]) != len(members) or min(fallback[1]) < 0 or max(fallback[1]) <= 0:
        raise ValueError(f"fallback weights {list(fallback[1])} for {len(members)} members: need one "
                         "non-negative weight per member, one of them positive")
    labelled = [q for q in dict.fromkeys(query_ids) if any(r > 0 for r in qrels.get(q, {}).values())]

    def fixed(reason: str, **evidence) -> LearnedFusion:
        return LearnedFusion(members, fallback[1], fallback[0], False, reason, metric, len(labelled), folds,
                             **evidence)

    if len(members) == 1:
        return fixed("one member: nothing to weigh")
    if len(labelled) < min_queries:
        return fixed(f"{len(labelled)} training queries with a positive, fewer than {min_queries}: the fixed "
                     f"weights {list(fallback[1])} and {fallback[0]} fusion are kept (a grid chosen on so few "
                     "queries overfits)")

    pools = ensemble.candidates([dataset.queries.text(q) for q in labelled], depth)
    folds = min(folds, len(labelled))
    fold = fold_of(labelled, folds, seed)
    doc_ids, tie = dataset.corpus.ids, ensemble.tie_rank
    top = max(fallback[1])
    points = [(f, w) for f in dict.fromkeys(fusions) for w in weight_grid(len(members), grid)]
    fallback_point = (fallback[0], tuple(round(w / top, 6) for w in fallback[1]))
    if fallback_point not in points:
        points.append(fallback_point)
    ranked = [rankings(pools, tie, weights, fusion, _cutoff(metric)) for fusion, weights in points]
    scores = score_rankings({(q, r) for point in ranked for q, r in zip(labelled, point)}, qrels, doc_ids, metric)
    candidates, values = [], []
    for (fusion, weights), point in zip(points, ranked):
        per_query = np.array([scores[(q, r)] for q, r in zip(labelled, point)])
        fold_means = tuple(float(per_query[fold == f].mean()) for f in range(folds))
        candidates.append(FusionCandidate(fusion, weights, float(np.mean(fold_means)), fold_means))
        values.append(fold_means)
    best = min(candidates, key=lambda c: _rank_key(c.score, c, fallback_point))  # min: the first of equals
    singles = [c for c in candidates if c.members_used == 1]
    single = max(singles, key=lambda c: (round(c.score, 10), -candidates.index(c)))
    held_out = []
    for f in range(folds):
        others = [f2 for f2 in range(folds) if f2 != f]
        chosen = min(range(len(candidates)), key=lambda i: _rank_key(
            float(np.mean([values[i][o] for o in others])), candidates[i], fallback_point))
        held_out.append(values[chosen][f])
    fallback_score = next(c.score for c in candidates if (c.fusion, c.weights) == fallback_point)
    dropped = [m for m, w in zip(members, best.weights) if w == 0]
    reason = (f"best of {len(candidates)} grid points on {folds} validation folds of {len(labelled)} training "
              f"queries: {metric} {best.score:.4f} (fixed weights {fallback_score:.4f}, best single member "
              f"{members[single.weights.index(1.0)]} {single.score:.4f})"
              + (f"; weight 0 for {', '.join(dropped)} (it did not help)" if dropped else ""))
    evidence = dict(score=best.score, fallback_score=fallback_score,
                    best_single=(members[single.weights.index(1.0)], single.score),
                    held_out=float(np.mean(held_out)), candidates=tuple(candidates))
    # The held-out score rates the procedure (pick on the other folds, score on this one); the fixed weights need
    # no picking, so their score is already honest. A grid that wins only on the folds it was picked on overfits.
    if evidence["held_out"] <= fallback_score and (best.fusion, best.weights) != fallback_point:
        return fixed(f"{reason}; but chosen on the other folds the grid scores {evidence['held_out']:.4f} on the "
                     f"held-out one, not above the fixed weights' {fallback_score:.4f}: the fixed weights "
                     f"{list(fallback[1])} and {fallback[0]} fusion are kept", **evidence)
    return LearnedFusion(members, best.weights, best.fusion, True, reason, metric, len(labelled), folds, **evidence)
