"""Selection rules for one (query, positive) pair's ranked candidate pool: window, positive-aware filter,
margins, score bounds, the geometric rule, then top-n or random sampling (and the random top-up's draw).

Each rule is a small function over arrays, so each can be tested alone; :func:`select_hard` applies them in a
fixed order and counts what each removed. :mod:`hardneg.mine` builds the pools and runs this for every pair.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .config import MiningConfig
from .retrieve import CandidatePool


@dataclass(frozen=True)
class PairContext:
    """What some rules need beyond the pool; every field is optional and per pool position."""

    allowed: np.ndarray | None = None          # (n,) bool: inside the cluster scope
    orderings: list[np.ndarray] | None = None  # positions best first per member (union) or per cluster
    flagged: np.ndarray | None = None          # (n,) bool: set aside as likely positives
    dense_rows: list[int] | None = None        # rows of member_scores that are cosines (geometric rule) ...
    dense_weights: np.ndarray | None = None    # ... and their weights
    positive_similarity: np.ndarray | None = None  # (n,) cos(positive, candidate) over the dense members
    veto: Callable[[list[int]], np.ndarray] | None = None  # cross-encoder denoising: True = drop


def similarity_ratio(candidate: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """Per-member score of each candidate as a fraction of the positive's, averaged over members.

    ``candidate`` is (members, n) raw scores, ``positive`` is (members,). Raw cosine and BM25 are both 0 for
    "nothing in common", which is what makes a fraction of the positive's score meaningful (NV-Retriever's
    TopK-PercPos). A member that scores the positive at or below 0 gives no scale and is left out of the average
    for that pair; if no member has a scale, every ratio is 0 (nothing can be judged too close). Each ratio is
    clipped to [0, 2] so one member cannot outvote the rest.
    """
    has_scale = positive > 0
    if not has_scale.any():
        return np.zeros(candidate.shape[1])
    ratio = candidate[has_scale] / positive[has_scale][:, None]
    return np.clip(ratio, 0.0, 2.0).mean(axis=0)


def likely_positive_mask(member_scores: np.ndarray, positive: np.ndarray, ratio: float) -> np.ndarray:
    """Candidates every member scores at least ``ratio`` of the positive's score (for a member that scores the
    positive at or below 0, at least the positive's score): candidates to set aside, not to use as negatives."""
    scale = np.where(positive > 0, ratio * positive, positive)
    return (member_scores >= scale[:, None]).all(axis=0)


def geometric_keep(query_sim: np.ndarray, positive_query_sim: float, positive_sim: np.ndarray) -> np.ndarray:
    """The follow-up paper's rule in cosine distance d = 1 - cos: d(Q,D) < d(Q,P) and d(Q,D) < d(P,D)."""
    d_qd = 1.0 - query_sim
    return (d_qd < 1.0 - positive_query_sim) & (d_qd < 1.0 - positive_sim)


def interleave(orderings: list[np.ndarray]) -> list[int]:
    """Round-robin over several preference lists, each position once (first list first in each round)."""
    seen: set[int] = set()
    out: list[int] = []
    for row in itertools.zip_longest(*orderings):
        for p in row:
            if p is not None and int(p) not in seen:
                seen.add(int(p))
                out.append(int(p))
    return out


def select_hard(pool: CandidatePool, positive_pos: int | None, excluded: set[int], config: MiningConfig,
                n: int, rng: np.random.Generator, removed: Counter, context: PairContext | None = None) -> list[int]:
    """Positions in ``pool`` of up to ``n`` hard negatives for one pair (in pool order), counting what each rule
    removed. Rules that compare with the positive are skipped when the positive is not in the pool."""
    ctx = context or PairContext()
    fused = pool.fused
    keep = np.array([int(d) not in excluded for d in pool.doc_idx], dtype=bool)
    removed["labelled positive"] += int((~keep).sum())

    def drop(rule: str, mask: np.ndarray) -> None:
        nonlocal keep
        hit = keep & mask
        removed[rule] += int(hit.sum())
        keep &= ~hit

    if ctx.allowed is not None:
        drop("outside cluster", ~ctx.allowed)
    orderings = ctx.orderings if ctx.orderings is not None else [np.arange(len(keep))]
    windows = [order[keep[order]][config.range_min:config.range_max] for order in orderings]
    in_window = np.zeros(len(keep), dtype=bool)
    for window in windows:
        in_window[window] = True
    drop("outside rank window", ~in_window)
    if ctx.flagged is not None:
        drop("likely positive", ctx.flagged)
    has_positive = positive_pos is not None
    if config.positive_ratio is not None and has_positive:
        ratio = similarity_ratio(pool.member_scores.astype(np.float64),
                                 pool.member_scores[:, positive_pos].astype(np.float64))
        drop("positive-aware filter", ratio >= config.positive_ratio)
    if config.absolute_margin is not None and has_positive:
        drop("absolute margin", fused > fused[positive_pos] - config.absolute_margin)
    if config.score_floor is not None:
        drop("score floor", fused < config.score_floor)
    if config.score_ceiling is not None:
        drop("score ceiling", fused > config.score_ceiling)
    if config.geometric and has_positive:
        if not ctx.dense_rows or ctx.positive_similarity is None:
            raise ValueError("the geometric rule needs a dense ensemble member (document vectors)")
        w = ctx.dense_weights if ctx.dense_weights is not None else np.ones(len(ctx.dense_rows))
        query_sim = (pool.member_scores[ctx.dense_rows].astype(np.float64) * w[:, None]).sum(axis=0) / w.sum()
        drop("geometric rule", ~geometric_keep(query_sim, float(query_sim[positive_pos]), ctx.positive_similarity))

    eligible = [window[keep[window]] for window in windows]
    if len(eligible) == 1 and ctx.veto is None:
        positions = eligible[0]
        if config.sampling == "random" and len(positions) > n:
            positions = np.sort(rng.choice(positions, size=n, replace=False))
        return [int(p) for p in positions[:n]]
    if config.sampling == "random":
        eligible = [rng.permutation(e) for e in eligible]
    preference = interleave(eligible)
    if ctx.veto is None:
        return sorted(preference[:n])
    chosen: list[int] = []
    start = 0
    while len(chosen) < n and start < len(preference):  # score only what would be picked, then its stand-ins
        batch = preference[start:start + n - len(chosen)]
        start += len(batch)
        vetoed = np.asarray(ctx.veto(batch), dtype=bool)
        removed["cross-encoder denoise"] += int(vetoed.sum())
        chosen += [p for p, v in zip(batch, vetoed) if not v]
    return sorted(chosen)


def sample_random(n_docs: int, n: int, excluded: set[int], rng: np.random.Generator) -> list[int]:
    """``n`` distinct random corpus positions outside ``excluded`` (fewer if the corpus runs out)."""
    available = n_docs - len(excluded)
    n = min(n, max(available, 0))
    chosen: list[int] = []
    seen = set(excluded)
    if available and n > available // 2:  # dense case: enumerate instead of rejection sampling
        rest = np.array([i for i in range(n_docs) if i not in seen])
        return [int(i) for i in rng.choice(rest, size=n, replace=False)]
    while len(chosen) < n:
        i = int(rng.integers(n_docs))
        if i not in seen:
            seen.add(i)
            chosen.append(i)
    return chosen
