"""Pretraining the re-ranker (``train.pretrain_queries``): before any labelled pair, the base model learns the run's
ensemble on queries made from the corpus (one sentence of a document as the query for the rest of it), with the
fused scores as teacher. Done once per run, so every strategy and every cross-fitting fold starts from the same
model and the negatives comparison stays fair. It uses no dev queries (the last step is kept), so the gate's
estimates from them stay unbiased."""

from __future__ import annotations

import logging
from pathlib import Path

from ..augment import augment_pairs
from ..config import TrainConfig, fingerprint
from ..crossencoder import finished_model
from ..train import train_reranker
from .context import RunContext

logger = logging.getLogger(__name__)

DEPTH = 30  # the ensemble's candidates per made query that the negatives (and their teacher scores) come from


def pretraining_settings(train: TrainConfig) -> TrainConfig:
    """The labelled training's settings with the pretraining's loss and epochs, and nothing added to the data."""
    return train.model_copy(update={
        "loss": train.pretrain_loss, "epochs": train.pretrain_epochs, "pretrain_queries": 0, "dev_eval": False,
        "augment_title_pairs": 0, "augment_sentence_pairs": 0, "max_train_pairs": None})


def pretrained_model(ctx: RunContext) -> Path:
    """The pretrained re-ranker, trained now unless a finished one with the same fingerprint is there. Its folder
    is named by that fingerprint, so a re-ranker trained on top of it (whose settings name the folder) is retrained
    whenever the pretraining changes."""
    config = ctx.config
    settings = pretraining_settings(config.train)
    num_negatives = config.mining.num_negatives
    stamp = fingerprint("pretrain", ctx.dataset.signature, list(config.ensemble), config.weights, config.fusion,
                        settings, config.train.pretrain_queries, num_negatives, DEPTH, config.seed)
    folder = ctx.folder.pretrained(stamp)
    if (finished := finished_model(folder, stamp)) is not None:
        return finished  # checked before the pairs are made: they cost a retrieval over the made queries
    pairs = augment_pairs(ctx.dataset.corpus, "sentence", config.train.pretrain_queries, num_negatives, config.seed,
                          ctx.retrievers.ensemble(list(config.ensemble)), depth=DEPTH, spread=True)
    if not pairs:
        raise ValueError(f"train.pretrain_queries: no document of {ctx.dataset.name} has two sentences to make a "
                         "query from; set train.pretrain_queries: 0.")
    logger.info("Pretraining the re-ranker on %d queries made from the corpus (%s, teacher: the ensemble)",
                len(pairs), settings.loss)
    card = {"dataset": ctx.dataset.name, "split": "corpus (sentence queries)", "strategy": "ensemble (pretraining)",
            "members": list(config.ensemble)}
    return train_reranker(pairs, folder, settings, num_negatives, seed=config.seed, progress=config.progress,
                          fingerprint=stamp, card=card)


def reranker_settings(ctx: RunContext) -> TrainConfig:
    """What each of the run's re-rankers trains with: ``config.train``, from the pretrained model when asked."""
    train = ctx.config.train
    if not train.pretrain_queries:
        return train
    return train.model_copy(update={"base_model": str(pretrained_model(ctx))})
