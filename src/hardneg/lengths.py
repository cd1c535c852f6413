"""Document and pair lengths: every metric reported separately for queries whose positives fit the re-ranker's
max length and for those with a positive longer than it (the paper's split); and a max_length default measured
from the training pairs (padding every pair to 512 tokens when most need 150 wastes most of a CPU's training
time, and cutting at 64 throws away most of each document)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from .data import Corpus, Qrels
from .embed import resolve_st_model
from .evaluate import evaluate_run
from .mine import training_pairs


def document_tokens(corpus: Corpus, tokenizer, doc_ids: list[str] | None = None,
                    batch_size: int = 256) -> dict[str, int]:
    """Model tokens (no special tokens) of each document's title + text."""
    ids = list(doc_ids) if doc_ids is not None else corpus.ids
    out: dict[str, int] = {}
    for start in range(0, len(ids), batch_size):
        batch = ids[start:start + batch_size]
        encoded = tokenizer([corpus.full_text(corpus.index[d]) for d in batch], add_special_tokens=False)
        out.update({d: len(tokens) for d, tokens in zip(batch, encoded["input_ids"], strict=True)})
    return out


@dataclass(frozen=True)
class LengthSplit:
    """Queries whose positives all fit in ``threshold`` tokens (short) and those with a longer one (long)."""

    threshold: int
    short: tuple[str, ...]
    long: tuple[str, ...]

    def subsets(self) -> dict[str, tuple[str, ...]]:
        return {"short": self.short, "long": self.long}

    def as_dict(self) -> dict:
        return {"threshold_tokens": self.threshold, "short_queries": len(self.short), "long_queries": len(self.long)}


def split_by_length(qrels: Qrels, doc_tokens: dict[str, int], threshold: int) -> LengthSplit:
    """A query is long when any of its positive documents has more than ``threshold`` tokens."""
    short, long = [], []
    for q in sorted(qrels):
        positives = [d for d, rel in qrels[q].items() if rel > 0]
        if not positives:
            continue
        (long if any(doc_tokens.get(d, 0) > threshold for d in positives) else short).append(q)
    return LengthSplit(threshold, tuple(short), tuple(long))


def metrics_by_length(qrels: Qrels, run: dict[str, dict[str, float]], metrics: list[str],
                      split: LengthSplit) -> dict[str, dict[str, float]]:
    """``{"short": {...}, "long": {...}}`` over the queries in ``qrels`` (the evaluated ones, e.g. a
    ``max_queries`` sample); a subset with no such query is left out."""
    out = {}
    for name, qids in split.subsets().items():
        qids = [q for q in qids if q in qrels]
        if qids:
            out[name] = evaluate_run({q: qrels[q] for q in qids}, run, metrics)
    return out


def length_table(rows, metrics: list[str], split: LengthSplit) -> str:
    """Markdown: one line per row and subset, for rows carrying ``by_length`` metrics."""
    head = ["first stage", "re-ranker", "mode", "documents"] + metrics
    lines = [(f"## Short and long documents (threshold {split.threshold} tokens: {len(split.short)} short, "
             f"{len(split.long)} long queries)"), "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        for subset, values in (row.by_length or {}).items():
            lines.append("| " + " | ".join([row.first_stage, row.reranker, row.mode, subset]
                                           + [f"{values[m]:.3f}" for m in metrics]) + " |")
    return "\n".join(lines) + "\n"


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

    tokenizer = AutoTokenizer.from_pretrained(resolve_st_model(config.train.base_model))
    pairs = [(dataset.queries.text(q), dataset.corpus.full_text(dataset.corpus.index[d]))
             for q, d in training_pairs(dataset, config.train_split)]
    found = suggest_max_length(pairs, tokenizer, seed=config.seed)
    logger.info("train.max_length auto: %d (p%.0f of %d sampled pairs is %d tokens; model max %d)",
                found.max_length, found.percentile, found.sampled, found.measured, found.model_max)
    return config.model_copy(update={"train": config.train.model_copy(update={"max_length": found.max_length})})
