"""The dev split of a run's training queries, and whether the run fine-tunes its dense members: each decides the
other. A fine-tuned first stage trained on every training query, so the system is chosen on the dev split alone
(it cannot be cross-fitted); ``embedder.enabled: auto`` fine-tunes only where ``dev_fraction``'s split can decide,
and a run that fine-tunes then holds out ``embedder.dev_fraction``'s share of its training queries instead (0.2 by
default; null: ``dev_fraction``'s), so the gate weighs the fine-tuned first stage on more queries (at the cost of
training on fewer)."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import RunConfig
from ..embed import SentenceTransformerEmbedder, get_embedder
from ..splits import sample_queries, split_queries

# Below this many dev queries a tuned interpolation weight is noisy (the evaluation warns) and the gate cannot
# decide at all, so even a run that tunes its first stage cross-fits.
SMALL_DEV = 30


@dataclass(frozen=True)
class FineTuning:
    """Whether this run fine-tunes its dense members, and why (``embedder.enabled`` resolved for the run)."""

    on: bool
    reason: str

    def as_dict(self) -> dict:
        return {"fine_tuned": self.on, "reason": self.reason}


@dataclass(frozen=True)
class DevSplit:
    train_ids: list[str]
    dev_ids: list[str]     # without training queries that are also test queries (``excluded``)
    tuning: FineTuning
    widened: bool = False  # held out embedder.dev_fraction's share instead of dev_fraction's


def dense_members(names: list[str]) -> list[str]:
    """The members that are sentence-transformers models (the ones a SentenceTransformerTrainer can tune)."""
    return [n for n in names if n.lower() != "bm25" and isinstance(get_embedder(n), SentenceTransformerEmbedder)]


def choice_queries(config: RunConfig, dev_ids: list[str]) -> list[str]:
    """The dev queries the system is chosen on when the run does not cross-fit (at most
    ``evaluate.max_dev_queries``, seeded)."""
    return sample_queries(dev_ids, config.evaluate.max_dev_queries, config.seed)


def split_for_run(config: RunConfig, query_ids: list[str], excluded: set[str] | frozenset[str] = frozenset()
                  ) -> DevSplit:
    """(train, dev) queries of ``query_ids`` and the run's fine-tuning. Whether the run fine-tunes is decided on
    ``dev_fraction``'s split, so ``embedder.dev_fraction`` changes no run's decision; a run that fine-tunes then holds
    out ``embedder.dev_fraction`` instead, up to ``evaluate.max_dev_queries`` (never fewer than ``dev_fraction``
    would). Both are seeded hash splits, so the wider dev split holds the narrower one. Queries in ``excluded``
    (twins of test queries) leave dev and train on neither side of the choice."""
    def split(fraction: float) -> tuple[list[str], list[str]]:
        train_ids, dev_ids = split_queries(query_ids, fraction, config.seed)
        return train_ids, [q for q in dev_ids if q not in excluded]

    train_ids, dev_ids = split(config.dev_fraction)
    tuning = fine_tuning(config, len(choice_queries(config, dev_ids)))
    wider, cap = config.embedder.dev_fraction, config.evaluate.max_dev_queries
    if not (tuning.on and query_ids and wider is not None and wider > config.dev_fraction):
        return DevSplit(train_ids, dev_ids, tuning)
    count = max(round(config.dev_fraction * len(query_ids)),
                min(round(wider * len(query_ids)), cap if cap is not None else len(query_ids)))
    train_ids, dev_ids = split(count / len(query_ids))
    return DevSplit(train_ids, dev_ids, FineTuning(True, f"{tuning.reason}; it holds out {len(dev_ids)} dev queries "
                                                   f"instead (embedder.dev_fraction {wider:g}) to weigh it on"), True)


def fine_tuning(config: RunConfig, dev: int) -> FineTuning:
    """``embedder.enabled`` for a run whose system is chosen on ``dev`` dev queries (``dev_fraction``'s). ``auto``
    fine-tunes only where the fine-tuned first stage can be handed over: the system is chosen on the dev split (at
    least SMALL_DEV queries), not cross-fitted on the training queries the embedder learns from; and there is a
    strategy's negatives to learn from and a member to tune."""
    enabled, ec = config.embedder.enabled, config.embedder
    if enabled != "auto":
        return FineTuning(enabled, f"embedder.enabled: {str(enabled).lower()}")
    if ec.strategy not in [s.name for s in config.strategies]:
        return FineTuning(False, f"auto: no strategy named {ec.strategy!r} (embedder.strategy) mines its negatives")
    if not (ec.members or dense_members(config.ensemble)):
        return FineTuning(False, "auto: the ensemble has no sentence-transformers member to fine-tune")
    if config.evaluate.cross_fit == "always":
        return FineTuning(False, "auto: evaluate.cross_fit is always, so the system is chosen on the training "
                          "queries a fine-tuned member learned from, and it could not be handed over")
    if dev < SMALL_DEV:
        return FineTuning(False, f"auto: {dev} dev queries, under {SMALL_DEV}: too few to weigh a fine-tuned first "
                          "stage and choose it by (the system is chosen cross-fitted on the training queries it "
                          "would learn from, unless evaluate.cross_fit is never; embedder.enabled: true trains it "
                          "anyway)")
    return FineTuning(True, f"auto: {dev} dev queries, at least {SMALL_DEV}, to weigh the fine-tuned first stage on "
                      "and choose it by")
