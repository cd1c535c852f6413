"""A max_length default from measured lengths: padding every pair to 512 tokens when most need 150 wastes most of
a CPU's training time, and cutting at 64 throws away most of each document."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LengthSuggestion:
    max_length: int        # the suggestion
    percentile: float      # which percentile of pair lengths it covers
    measured: int          # that percentile, in tokens
    sampled: int           # pairs tokenised
    model_max: int         # the tokenizer's own limit (the cap)


def suggest_max_length(pairs: list[tuple[str, str]], tokenizer, percentile: float = 90.0, multiple: int = 32,
                       sample: int = 1000, seed: int = 0, minimum: int = 32) -> LengthSuggestion:
    """Tokenise a seeded sample of (query, document) pairs as a cross-encoder sees them and suggest the
    ``percentile``-th length rounded up to a multiple of ``multiple``, capped at the model's maximum."""
    if not pairs:
        raise ValueError("No training pairs to measure lengths on; set train.max_length to a number.")
    rng = np.random.default_rng(seed)
    chosen = [pairs[i] for i in sorted(rng.choice(len(pairs), size=min(sample, len(pairs)), replace=False))]
    encoded = tokenizer([q for q, _ in chosen], [d for _, d in chosen], truncation=False)["input_ids"]
    lengths = np.array([len(ids) for ids in encoded])
    measured = math.ceil(float(np.percentile(lengths, percentile)))
    model_max = int(min(getattr(tokenizer, "model_max_length", 512) or 512, 512))
    suggestion = min(max(minimum, multiple * math.ceil(measured / multiple)), model_max)
    return LengthSuggestion(suggestion, percentile, measured, len(chosen), model_max)


def resolve_max_length(config, dataset):
    """``config`` with ``train.max_length: auto`` replaced by the suggestion for its training pairs."""
    if config.train.max_length != "auto":
        return config
    from transformers import AutoTokenizer

    from .embed import resolve_st_model
    from .mine import training_pairs

    tokenizer = AutoTokenizer.from_pretrained(resolve_st_model(config.train.base_model))
    pairs = [(dataset.queries.text(q), dataset.corpus.full_text(dataset.corpus.index[d]))
             for q, d in training_pairs(dataset, config.train_split)]
    found = suggest_max_length(pairs, tokenizer, seed=config.seed)
    logger.info("train.max_length auto: %d (p%.0f of %d sampled pairs is %d tokens; model max %d)",
                found.max_length, found.percentile, found.sampled, found.measured, found.model_max)
    return config.model_copy(update={"train": config.train.model_copy(update={"max_length": found.max_length})})
