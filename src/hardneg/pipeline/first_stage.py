"""Tuning the first stage itself, after mining: its weights and fusion learned on the training queries
(``fusion_weights.learn``) and its dense members fine-tuned on the mined negatives (``embedder.enabled``). Each
tuned first stage joins the evaluation beside the untrained one and is a candidate for the system the run hands
over; what was learned is recorded in ``first_stage.json``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..config import fingerprint
from ..embedder import dev_retrieval_data, train_embedder
from ..fusion_weights import LearnedFusion, learn_fusion
from ..io import write_json
from ..retrieve import Ensemble
from ..rundir import slug
from ..splits import sample_queries
from .context import RunContext
from .dev_split import dense_members
from .training import TrainedStrategy

logger = logging.getLogger(__name__)
LEARNED = "ensemble (learned fusion)"
FINE_TUNED = "ensemble (fine-tuned)"


Refit = Callable[[list[str]], tuple[Ensemble, LearnedFusion]]


@dataclass
class TunedFirstStages:
    ensembles: dict[str, Ensemble] = field(default_factory=dict)
    record: dict = field(default_factory=dict)
    # first stages weighed on dev queries -> the same weighing on a subset of them, so the system chosen on dev
    # queries can measure each on queries its weights never saw (nested)
    refit: dict[str, Refit] = field(default_factory=dict)


def check_tuning(ctx: RunContext) -> None:
    """Fail before any training when the embedder would have no negatives to learn from."""
    config = ctx.config
    names = [s.name for s in config.strategies]
    if config.embedder.enabled is True and config.embedder.strategy not in names:
        raise ValueError(f"embedder.strategy is {config.embedder.strategy!r}, which is not one of the run's "
                         f"strategies {names}: name the strategy whose negatives train the embedders")


def tune_first_stages(ctx: RunContext, trained: dict[str, TrainedStrategy]) -> TunedFirstStages:
    config, tuning = ctx.config, ctx.tuning
    out = TunedFirstStages()
    if config.embedder.enabled == "auto":
        out.record["embedder"] = tuning.as_dict()
        logger.info("Fine-tuning the dense members: %s (%s)", "yes" if tuning.on else "no", tuning.reason)
    weights, fusion = config.weights, config.fusion
    if config.fusion_weights.learn:
        learned = learn_ensemble_fusion(ctx, ctx.retrievers.ensemble(config.ensemble), ctx.train_ids)
        out.record["fusion"] = learned.as_dict()
        if learned.learned:
            weights, fusion = list(learned.weights), learned.fusion
            out.ensembles[LEARNED] = ctx.retrievers.ensemble(config.ensemble, fusion, weights=weights)
    if tuning.on:
        tuned = train_embedders(ctx, trained[config.embedder.strategy])
        out.record["embedders"] = {member: str(path) for member, path in tuned.items()}
        for member, path in tuned.items():
            out.ensembles[f"{Path(member).name} (fine-tuned)"] = ctx.retrievers.ensemble([str(path)])
        if tuned and len(config.ensemble) > 1:
            members = [str(tuned.get(m, m)) for m in config.ensemble]
            fused = ctx.retrievers.ensemble(members, fusion, weights=weights)
            if config.fusion_weights.fine_tuned:
                out.refit[FINE_TUNED] = refit = weigher(ctx, fused, members)
                fused, learned = refit(ctx.dev_ids)
                out.record["fine_tuned_fusion"] = learned.as_dict()
            out.ensembles[FINE_TUNED] = fused
    if out.record:
        write_json(ctx.folder.path / "first_stage.json", out.record)
    return out


def weigher(ctx: RunContext, fixed: Ensemble, members: list[str]) -> Refit:
    """Query ids -> ``fixed``'s members weighed on them (``fixed`` itself when its weights stay), and the evidence."""
    def refit(query_ids: list[str]) -> tuple[Ensemble, LearnedFusion]:
        learned = learn_ensemble_fusion(ctx, fixed, query_ids)
        if not learned.learned:
            return fixed, learned
        return ctx.retrievers.ensemble(members, learned.fusion, weights=list(learned.weights)), learned
    return refit


def learn_ensemble_fusion(ctx: RunContext, ensemble: Ensemble, query_ids: list[str]) -> LearnedFusion:
    """Weights and fusion of ``ensemble``, learned on ``query_ids`` (training or dev queries, never test); its
    own weights and fusion are the fallback."""
    config, fw = ctx.config, ctx.config.fusion_weights
    queries = sample_queries(query_ids, fw.max_queries, config.seed)
    learned = learn_fusion(ctx.dataset, queries, ctx.dataset.qrels[config.train_split],
                           ensemble, depth=fw.depth or config.evaluate.depth, seed=config.seed,
                           grid=tuple(fw.grid), fusions=tuple(fw.fusions), folds=fw.folds,
                           min_queries=fw.min_queries, metric=fw.metric)
    logger.info("Fusion of %s: %s", ", ".join(ensemble.member_names), learned.reason)
    return learned


def train_embedders(ctx: RunContext, strategy: TrainedStrategy) -> dict[str, Path]:
    """Each dense member fine-tuned on the strategy's mined pairs: member name -> model folder."""
    config, ec = ctx.config, ctx.config.embedder
    members = ec.members or dense_members(config.ensemble)
    dev = (dev_retrieval_data(ctx.dataset, ctx.dev_ids, config.train_split, ec.dev_max_queries,
                              ec.dev_max_documents, config.seed) if ec.dev_eval and ctx.dev_ids else None)
    folder = ctx.folder.strategy(ec.strategy).path / "embedders"
    card = {"dataset": ctx.dataset.name, "split": config.train_split, "strategy": ec.strategy,
            "mining": strategy.mining.get("mining")}
    return {member: train_embedder(strategy.pairs, member, folder / slug(member), ec, seed=config.seed,
                                   progress=config.progress, dev=dev, card=card,
                                   fingerprint=fingerprint(strategy.mining["fingerprint"], member, ec, config.seed))
            for member in members}
