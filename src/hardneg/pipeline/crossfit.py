"""Cross-fitting: when the dev split is too small to choose the system on, every training query becomes a dev
query, scored by a re-ranker that was trained without it.

The training queries (with the held-out dev ones) are split into seeded folds; for each fold, each cross-fitted
strategy trains a re-ranker on the mined pairs of the queries outside the fold, with the strategy's own negatives
and settings. Every query's dev score then comes from a model that never saw the query, so the system choice and
the interpolation weight are decided on all of them instead of on a handful of dev queries. The re-ranker handed
over is still the strategy's own, trained on every training query; the folds' re-rankers see (k-1)/k of its pairs,
so the evidence they give is, if anything, conservative.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field

from ..config import StrategyConfig, fingerprint
from ..splits import sample_queries
from ..train import train_reranker
from .context import RunContext
from .dev_split import SMALL_DEV, choice_queries
from .pretraining import reranker_settings
from .training import TrainedStrategy, augmented, dev_candidates

logger = logging.getLogger(__name__)
# evaluate.cross_fit "auto" cross-fits below this many dev queries. An interpolated re-ranker's per-query nDCG@10
# gain over the first stage varies with a standard deviation of about .1, and the gate asks for about 1.65 standard
# errors, so 100 queries see a gain of about +.017 and 81 missed SciFact's +.021 (docs/RESULTS.md, "Cross-fitting").
CROSS_FIT_BELOW = 100
# Folds when evaluate.cross_fit_folds is not set: two, since each fold costs a training; five under SMALL_DEV
# cross-fitted queries, where a model trained on half of them stands in poorly for the one handed over.
FOLDS, SMALL_FOLDS = 2, 5


@dataclass(frozen=True)
class HeldOut:
    """A re-ranker and the dev queries it scores: queries it was never trained on."""

    queries: tuple[str, ...]
    model: str


@dataclass(frozen=True)
class CrossFit:
    """The dev queries of a cross-fitted run and, per cross-fitted strategy, its fold re-rankers."""

    queries: list[str]
    folds: int
    held_out: dict[str, list[HeldOut]] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"queries": len(self.queries), "folds": self.folds, "strategies": list(self.held_out)}


def dev_split_queries(ctx: RunContext) -> list[str]:
    """The dev split's queries the system is chosen on when the run does not cross-fit."""
    return choice_queries(ctx.config, ctx.dev_ids)


def cross_fit_queries(ctx: RunContext, tuned_first_stage: bool = False) -> list[str]:
    """The queries the system is chosen on when this run cross-fits (every training query that is not also a test
    query, at most ``evaluate.max_dev_queries``), or [] when it does not: ``evaluate.cross_fit`` "auto" cross-fits
    under CROSS_FIT_BELOW dev queries, or under SMALL_DEV when ``tuned_first_stage`` (the run tuned a first stage
    that is a candidate of the choice: a fine-tuned embedder, or fusion weights that moved)."""
    config = ctx.config
    ev = config.evaluate
    if not config.strategies or ev.cross_fit == "never":
        return []
    dev = dev_split_queries(ctx)
    # A run with a tuned first stage cross-fits only where the dev split cannot decide at all: cross-fitting shuts
    # the tuned first stage out of the choice (it trained on the queries the choice is made on).
    below = SMALL_DEV if tuned_first_stage else CROSS_FIT_BELOW
    if ev.cross_fit == "auto" and len(dev) >= below:
        return []
    queries = sample_queries(sorted((set(ctx.train_ids) | set(ctx.dev_ids)) - ctx.test_overlap),
                             ev.max_dev_queries, config.seed)
    if ev.cross_fit == "auto":
        logger.info("%d dev queries, under %d: the system will be chosen on %d training queries, cross-fitted "
                    "(%d more trainings per cross-fitted strategy; evaluate.cross_fit: never chooses on the dev "
                    "split instead)", len(dev), below, len(queries), fold_count(ev.cross_fit_folds, len(queries)))
    return queries


def fold_count(folds: int | None, queries: int) -> int:
    """How many folds cross-fit ``queries`` queries: ``folds`` when set, else FOLDS (SMALL_FOLDS under SMALL_DEV
    queries); never more folds than queries."""
    chosen = folds or (SMALL_FOLDS if queries < SMALL_DEV else FOLDS)
    return min(chosen, queries)


def split_folds(queries: list[str], folds: int, seed: int, same: dict[str, str] | None = None) -> list[list[str]]:
    """``queries`` dealt into ``folds`` seeded folds of (nearly) equal size, each in the input order. ``same``:
    query -> a key (its normalised text) that keeps queries asked the same way in one fold, so no fold model
    trains on a twin of a query it scores."""
    def key(group: str) -> str:
        return hashlib.sha256(f"{seed}\x00fold\x00{group}".encode()).hexdigest()

    group_of = {q: (same or {}).get(q, q) for q in queries}
    groups = sorted(set(group_of.values()), key=key)
    fold_of_group = {g: i % folds for i, g in enumerate(groups)}
    return [[q for q in queries if fold_of_group[group_of[q]] == i] for i in range(folds)]


def train_folds(ctx: RunContext, strategy: StrategyConfig, trained: TrainedStrategy,
                folds: list[list[str]]) -> list[HeldOut] | None:
    """The strategy's re-ranker trained once per fold without that fold's queries (reused when finished, resumed
    when interrupted, as every training); None when some fold would have no pairs to train on."""
    config = ctx.config
    num_negatives = config.mining_for(strategy).num_negatives
    folder = ctx.folder.strategy(strategy.name)
    kept = [[p for p in trained.pairs if p.query_id not in set(fold)] for fold in folds]
    if not all(kept):  # checked before any training, so no fold is trained in vain
        logger.warning("Cross-fitting %s: a fold holds every training query; not cross-fitted", strategy.name)
        return None
    extra = augmented(ctx, strategy, num_negatives)
    settings = reranker_settings(ctx)
    out = []
    for number, (fold, pairs) in enumerate(zip(folds, kept), start=1):
        held = frozenset(fold)
        card = {"dataset": ctx.dataset.name, "split": config.train_split, "strategy": strategy.name,
                "cross_fit": f"fold {number} of {len(folds)}: trained without {len(held)} queries"}
        model = train_reranker(
            pairs, folder.fold(number), settings, num_negatives, seed=config.seed, progress=config.progress,
            fingerprint=fingerprint(trained.mining["fingerprint"], settings, config.seed, sorted(held)),
            dev=dev_candidates(ctx, exclude=held), card=card, extra_pairs=extra)
        out.append(HeldOut(tuple(fold), str(model)))
    return out


def cross_fit(ctx: RunContext, trained: dict[str, TrainedStrategy], queries: list[str]) -> CrossFit:
    """Train the cross-fitted strategies' fold re-rankers over ``queries``. Every other re-ranker but the untrained
    base model (a strategy not cross-fitted, an extra one) is scored by the evaluation on the held-out dev queries
    only, so it cannot be the system handed over."""
    config = ctx.config
    k = fold_count(config.evaluate.cross_fit_folds, len(queries))
    held_out: dict[str, list[HeldOut]] = {}
    if config.rounds > 1:
        logger.warning("Cross-fitting with rounds: %d: the folds train on the last round's negatives, which the "
                       "previous round's re-ranker (trained on every training query) denoised", config.rounds)
    texts = {q: " ".join(ctx.dataset.queries.text(q).lower().split()) for q in queries}
    folds = split_folds(queries, k, config.seed, texts) if k >= 2 else []
    for strategy in config.cross_fitted() if k >= 2 else []:
        logger.info("Cross-fitting %s over %d training queries (%d folds)", strategy.name, len(queries), k)
        found = train_folds(ctx, strategy, trained[strategy.name], folds)
        if found is not None:
            held_out[strategy.name] = found
    return CrossFit(queries, k, held_out)
