"""The training stage: one strategy's re-ranker per mining round, reused when its fingerprint (the negatives'
fingerprint, the training settings and the seed) is unchanged; an interrupted training resumes."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..augment import augment_pairs
from ..config import StrategyConfig, TrainConfig, fingerprint
from ..evaluate import first_stage_run
from ..mine import MinedPair, pairs_from_hf_dataset, read_mined_pairs
from ..train import dev_samples, train_reranker
from .context import RunContext
from .mining import mine_strategy
from .pretraining import reranker_settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainedStrategy:
    model: Path               # the last round's re-ranker
    mining: dict              # the last round's mining.json, earlier rounds nested under "round1", ...
    pairs: list[MinedPair]    # the last round's mined pairs


def dev_candidates(ctx: RunContext, exclude: frozenset[str] = frozenset()) -> list[dict] | None:
    """The dev queries' first-stage candidates that pick each training run's best checkpoint: the same for every
    strategy, so the pick is fair. ``exclude``: dev queries the checkpoint must not be picked on (a
    cross-fitting fold's own)."""
    config = ctx.config
    queries = [q for q in ctx.dev_ids if q not in exclude]
    if not (config.train.dev_eval and queries):
        return None
    first = ctx.retrievers.first_stage(config.evaluate.first_stages[0])
    return dev_samples(ctx.dataset, first_stage_run(ctx.dataset, queries, first, config.train.dev_depth),
                       ctx.dataset.qrels[config.train_split], config.train.dev_depth, config.train.dev_max_queries)


def train_strategy(ctx: RunContext, strategy: StrategyConfig, dev: list[dict] | None) -> TrainedStrategy:
    """Mine and train one strategy, ``config.rounds`` times: from the second round on, the re-ranker just trained
    denoises a fresh mining (``mining.denoise_model``) and a new one is trained on it. Random negatives have
    nothing to denoise, so they get one round."""
    config = ctx.config
    rounds = config.rounds if strategy.kind != "random" else 1
    base = ctx.folder.strategy(strategy.name)
    model: Path | None = None
    info: dict | None = None
    card: dict = {}
    for number in range(1, rounds + 1):
        mining = None
        if model is not None:
            mining = config.mining_for(strategy).model_copy(update={
                "denoise_model": str(model), "denoise_max_length": config.train.max_length})
        folder = base.round(number)
        mined, saved = mine_strategy(ctx, strategy, folder, mining)
        num_negatives = (mining or config.mining_for(strategy)).num_negatives
        if number == 1:
            card = {"dataset": ctx.dataset.name, "split": config.train_split, "strategy": strategy.name,
                    "members": saved["members"], "mining": saved["mining"]}
            info = saved
        else:
            card = {**card, "mining": saved["mining"], "round": number}
            info = {**saved, f"round{number - 1}": info}
        settings = reranker_settings(ctx)
        model = train_reranker(
            mined, folder.path, settings, num_negatives, seed=config.seed, progress=config.progress,
            fingerprint=fingerprint(saved["fingerprint"], settings, config.seed), dev=dev, card=card,
            extra_pairs=augmented(ctx, strategy, num_negatives))
    return TrainedStrategy(model, info, mined)


def augmented(ctx: RunContext, strategy: StrategyConfig, num_negatives: int) -> list[MinedPair]:
    """Corpus-made pairs (train.augment_*), negatives from the strategy's own ensemble (random for random)."""
    config = ctx.config
    t = config.train
    if not (t.augment_title_pairs or t.augment_sentence_pairs):
        return []
    ensemble = ctx.retrievers.ensemble(config.members_for(strategy)) if strategy.kind != "random" else None
    return [p for kind, n in (("title", t.augment_title_pairs), ("sentence", t.augment_sentence_pairs)) if n
            for p in augment_pairs(ctx.dataset.corpus, kind, n, num_negatives, config.seed, ensemble)]


@dataclass(frozen=True)
class TrainedModel:
    model: Path         # a folder ``CrossEncoder(folder)`` loads
    pairs: int
    num_negatives: int


def train_from_negatives(negatives: str | Path, output: str | Path, config: TrainConfig,
                         num_negatives: int | None = None, seed: int = 42, progress: bool = True) -> TrainedModel:
    """Train a re-ranker on mined pairs saved by ``hardneg mine`` (JSONL) or as a Hugging Face dataset folder
    (``save_to_disk``, columns query, positive, negative_1..n) into ``output/model``; the training stage of a run,
    without dev evaluation. Rerunning with the same file and settings reuses the model; an interrupted run
    resumes from its last checkpoint."""
    path = Path(negatives)
    if path.is_dir():
        from datasets import load_from_disk  # optional heavy dependency, only for dataset folders

        pairs = pairs_from_hf_dataset(load_from_disk(str(path)))
    elif path.is_file():
        pairs = read_mined_pairs(path)
    else:
        raise FileNotFoundError(f"{path}: no such file or dataset folder.")
    if not pairs:
        raise ValueError(f"{path}: no mined pairs to train on.")
    if num_negatives is None:
        counts = Counter(len(p.negatives) for p in pairs)
        num_negatives = max(counts, key=lambda n: (counts[n], n))
        logger.info("Training on %d negatives per pair (the most common count in %s)", num_negatives, path)
    if num_negatives < 1:
        raise ValueError(f"{path}: the pairs have no negatives to train on.")
    card = {"dataset": str(path), "split": "mined pairs", "strategy": "from file"}
    model = train_reranker(pairs, output, config, num_negatives, seed=seed, progress=progress,
                           fingerprint=fingerprint([p.as_dict() for p in pairs], config, num_negatives, seed), card=card)
    return TrainedModel(model, len(pairs), num_negatives)
