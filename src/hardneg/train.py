"""Fine-tune a cross-encoder re-ranker on mined (query, positive, negatives) with CrossEncoderTrainer.

Any loss of :mod:`hardneg.losses`; optional dev evaluation during training with the best checkpoint kept;
length-grouped batches; a model card (the folder's README.md) recording the data, negatives and settings.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np
from sentence_transformers.base.sampler import DefaultBatchSampler

from .config import TrainConfig
from .embed import resolve_st_model
from .io import atomic_write, write_json
from .mine import MinedPair

logger = logging.getLogger(__name__)

DONE_MARKER = "hardneg_training.json"
DEV_METRIC = "eval_dev_ndcg@10"


def load_cross_encoder(name_or_path: str, max_length: int | None = None, seed: int | None = None):
    """A ``CrossEncoder`` with one output, from a registered name, a folder or a hub id.

    ``seed``: a base model's scoring head is new and randomly initialised; seeded here, it does not depend on
    whatever drew from torch's generator earlier in the process (a cold embedding cache loads models, a warm one
    does not). A trained folder's head is loaded, so the seed changes nothing there.
    """
    from sentence_transformers import CrossEncoder

    if seed is not None:
        from transformers import set_seed

        set_seed(seed)
    path = resolve_st_model(name_or_path)
    try:
        return CrossEncoder(path, num_labels=1, max_length=max_length)
    except OSError as exc:
        raise ValueError(f"Cannot load cross-encoder {name_or_path!r} (resolved to {path!r}): {exc}") from None


def available_cores() -> int:
    """CPU cores this process may run on (the affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def row_lengths(dataset) -> np.ndarray:
    """Characters per training row over its text columns (a cheap, tokenizer-free proxy for its token count)."""
    total = np.zeros(len(dataset), dtype=np.int64)
    for name in dataset.column_names:
        if name in ("label", "labels", "score", "scores"):
            continue
        column = dataset[name]
        if column and isinstance(column[0], str):
            total += np.fromiter((len(t) for t in column), dtype=np.int64, count=len(column))
        elif column and isinstance(column[0], list):
            total += np.fromiter((sum(len(t) for t in row) for row in column), dtype=np.int64, count=len(column))
    return total


def length_grouped_batches(lengths: np.ndarray, batch_size: int, seed: int, group: int = 16) -> list[list[int]]:
    """Shuffle, then sort each window of ``group`` batches by length and cut it into batches; batches shuffled.

    Rows in a batch have similar lengths, so dynamic padding (the tokenizer pads to the longest row of each
    batch) wastes little; the batch order stays random, so training does not see short rows first.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(lengths))
    window = batch_size * group
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = order[start:start + window]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches += [chunk[i:i + batch_size].tolist() for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


class LengthGroupedBatchSampler(DefaultBatchSampler):
    """A sentence-transformers batch sampler over :func:`length_grouped_batches`, reseeded each epoch."""

    def __init__(self, dataset, batch_size, drop_last, valid_label_columns=None, generator=None, seed=0):
        super().__init__(dataset, batch_size, drop_last, valid_label_columns, generator, seed)
        self.lengths = row_lengths(dataset)

    def _batches(self) -> list[list[int]]:
        batches = length_grouped_batches(self.lengths, self.batch_size, self.seed + self.epoch)
        return [b for b in batches if len(b) == self.batch_size] if self.drop_last else batches

    def __iter__(self):
        yield from self._batches()

    def __len__(self) -> int:
        n = len(self.lengths)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)


def dev_evaluator(samples: list[dict], batch_size: int = 64):
    """Re-ranking nDCG@10/MRR@10/MAP on dev queries' first-stage candidates (sentence-transformers' evaluator)."""
    from sentence_transformers.cross_encoder.evaluation import (
        CrossEncoderRerankingEvaluator,
    )

    return CrossEncoderRerankingEvaluator(samples, at_k=10, name="dev", batch_size=batch_size, write_csv=False,
                                          always_rerank_positives=True)


def dev_samples(dataset, first_stage: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]],
                depth: int, max_queries: int | None = None) -> list[dict]:
    """Evaluator samples for dev queries: their positives and their first stage's top ``depth`` documents."""
    corpus = dataset.corpus
    out = []
    for qid in sorted(first_stage)[:max_queries]:
        positives = [corpus.full_text(corpus.index[d]) for d, r in sorted(qrels.get(qid, {}).items())
                     if r > 0 and d in corpus.index]
        if not positives:
            continue
        top = sorted(first_stage[qid], key=lambda d: (-first_stage[qid][d], d))[:depth]
        out.append({"query": dataset.queries.text(qid), "positive": positives,
                    "documents": [corpus.full_text(corpus.index[d]) for d in top]})
    return out


def cap_pairs(pairs: list[MinedPair], cap: int | None, seed: int) -> list[MinedPair]:
    """At most ``cap`` labelled pairs, drawn with ``seed``, plus the likely-positive pairs of the queries kept."""
    labelled = [p for p in pairs if p.positive_source != "likely"]
    if cap is None or len(labelled) <= cap:
        return pairs
    keep = set(np.random.default_rng(seed).choice(len(labelled), cap, replace=False).tolist())
    kept = [p for i, p in enumerate(labelled) if i in keep]
    queries = {p.query_id for p in kept}
    return kept + [p for p in pairs if p.positive_source == "likely" and p.query_id in queries]


def train_reranker(pairs: list[MinedPair], output_dir: str | Path, config: TrainConfig, num_negatives: int,
                   seed: int = 42, progress: bool = True, fingerprint: str = "", dev: list[dict] | None = None,
                   card: dict | None = None, extra_pairs: list[MinedPair] | None = None) -> Path:
    """Train and save a re-ranker to ``output_dir/model`` (loadable with ``CrossEncoder(folder)``).

    ``fingerprint`` names the data and settings: a finished model with the same fingerprint is reused, one with
    another is retrained; an interrupted run with the same fingerprint resumes from its last checkpoint.
    ``dev``: :func:`dev_samples` for evaluation during training (best checkpoint kept, if ``config.dev_eval``).
    ``card``: what the model card records about the data and negatives. ``extra_pairs``: corpus-made pairs
    (:mod:`hardneg.augment`) added to the labelled ones.
    """
    import torch
    from sentence_transformers.cross_encoder import (
        CrossEncoderTrainer,
        CrossEncoderTrainingArguments,
    )
    from transformers.trainer_utils import get_last_checkpoint

    from .augment import distill_targets
    from .losses import loss_dataset, make_loss

    output_dir = Path(output_dir)
    final = output_dir / "model"
    checkpoints = output_dir / "checkpoints"
    if training_info(final).get("fingerprint") == fingerprint:
        logger.info("Re-ranker already trained at %s; reusing it", final)
        return final
    stamp = checkpoints / "fingerprint"
    if checkpoints.is_dir() and (not stamp.is_file() or stamp.read_text() != fingerprint):
        shutil.rmtree(checkpoints)  # checkpoints of other data or settings: never resume from them
    checkpoints.mkdir(parents=True, exist_ok=True)
    stamp.write_text(fingerprint)
    torch.set_num_threads(config.threads or available_cores())
    pairs = cap_pairs(pairs, config.max_train_pairs, seed)
    likely = sum(p.positive_source == "likely" for p in pairs)
    labelled = len(pairs) - likely
    pairs = pairs + list(extra_pairs or [])
    teacher = distill_targets(pairs, config.distill_scale) if config.loss == "margin_mse" else None
    dataset, dropped = loss_dataset(pairs, config.loss, num_negatives, teacher)
    if len(dataset) == 0:
        raise ValueError(f"No training rows for loss {config.loss!r}: every pair was left out (too few negatives"
                         + (", or no fused scores to distil: margin_mse needs a mined strategy, not random)"
                            if config.loss == "margin_mse" else ")."))
    if dropped:
        logger.warning("%d of %d pairs left out of %s training (too few negatives or no teacher scores)",
                       dropped, len(pairs), config.loss)
    model = load_cross_encoder(config.base_model, config.max_length, seed=seed)
    loss = make_loss(config.loss, model, num_negatives, config.margin, config.in_batch_negatives)

    # A step sees batch_size queries with their positive and negatives, whatever the layout: bce rows are
    # single (query, passage) pairs, so its batches hold (1 + n) times as many rows.
    batch = config.batch_size * (1 + num_negatives) if config.loss == "bce" else config.batch_size
    steps_per_epoch = math.ceil(len(dataset) / batch)
    total_steps = max(1, math.ceil(steps_per_epoch * config.epochs))
    use_dev = config.dev_eval and bool(dev)
    every = max(1, math.ceil(total_steps / config.dev_evals))
    extra = {}
    if use_dev:
        extra = {"eval_strategy": "steps", "eval_steps": every, "load_best_model_at_end": True,
                 "metric_for_best_model": DEV_METRIC, "greater_is_better": True}
    if config.group_by_length:
        extra["batch_sampler"] = LengthGroupedBatchSampler
    args = CrossEncoderTrainingArguments(
        output_dir=str(checkpoints), num_train_epochs=config.epochs, per_device_train_batch_size=batch,
        learning_rate=config.learning_rate, warmup_steps=int(config.warmup_ratio * total_steps), seed=seed,
        data_seed=seed, save_strategy="steps", save_steps=every if use_dev else max(10, total_steps // 4),
        save_total_limit=1, logging_steps=max(1, total_steps // 20), report_to="none", disable_tqdm=not progress,
        dataloader_drop_last=False, use_cpu=not torch.cuda.is_available(), **extra)
    evaluator = dev_evaluator(dev) if use_dev else None
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=dataset, loss=loss, evaluator=evaluator)
    resume = get_last_checkpoint(str(checkpoints))
    if resume:
        logger.info("Resuming training from %s", resume)
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume)
    seconds = time.perf_counter() - started

    # Save next to the target, then rename: a folder named "model" is always complete.
    staging = output_dir / ".model.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(str(staging))
    history = [dict(entry) for entry in trainer.state.log_history]
    dev_scores = [(e["step"], e[DEV_METRIC]) for e in history if DEV_METRIC in e]
    info = {
        "fingerprint": fingerprint, "base_model": config.base_model, "settings": config.model_dump(),
        "loss": config.loss, "num_negatives": num_negatives, "rows": len(dataset), "labelled_pairs": labelled,
        "likely_positive_pairs": likely, "augmented_pairs": len(pairs) - labelled - likely,
        "rows_dropped": dropped, "rows_dropped_short": dropped,
        "steps": trainer.state.global_step, "train_seconds": round(seconds, 1),
        "sequences_per_second": round(trainer.state.global_step * batch * (1 if config.loss == "bce"
                                                                           else 1 + num_negatives) / seconds, 2)
        if seconds > 0 else None,
        "seed": seed, "dev": {"queries": len(dev or []), "metric": DEV_METRIC, "curve": dev_scores,
                              "best_checkpoint": trainer.state.best_model_checkpoint and
                              Path(trainer.state.best_model_checkpoint).name,
                              "best": trainer.state.best_metric} if use_dev else None,
        "card": card or {}, "log_history": history}
    write_json(staging / DONE_MARKER, info)
    write_model_card(staging, info)
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    shutil.rmtree(checkpoints, ignore_errors=True)
    logger.info("Trained re-ranker in %.0fs (%d rows, %d steps) -> %s", seconds, len(dataset),
                trainer.state.global_step, final)
    return final


def model_card_section(info: dict) -> str:
    """The model card's hardneg section: data, negatives and every training setting."""
    card = info.get("card", {})
    s = info["settings"]
    lines = ["", "## Trained with hardneg", "",
             (f"- **Base model**: `{info['base_model']}`; loss **{info['loss']}**, {info['steps']} steps, "
              f"seed {info['seed']}, {info['train_seconds']} s."),
             f"- **Data**: {card.get('dataset', 'unknown dataset')}, split `{card.get('split', '?')}`: "
             f"{info['labelled_pairs']} labelled (query, positive) pairs"
             + (f" + {info['augmented_pairs']} made from the corpus" if info.get("augmented_pairs") else "")
             + f"; {info['rows']} training rows ({info['rows_dropped']} pairs left out).",
             f"- **Negatives**: strategy `{card.get('strategy', '?')}`"
             + (f" (members: {', '.join(card['members'])})" if card.get("members") else "")
             + f", {info['num_negatives']} per pair.",
             ]
    if card.get("mining"):
        lines.append(f"- **Mining settings**: `{json.dumps(card['mining'], sort_keys=True)}`")
    if info.get("dev"):
        d = info["dev"]
        lines.append(f"- **Dev evaluation**: {d['queries']} dev queries, `{d['metric']}`, best "
                     f"{d['best']:.4f} at {d['best_checkpoint']}; curve {d['curve']}.")
    lines += ["", "Training settings:", "", "```json", json.dumps(s, indent=2, sort_keys=True), "```",
              "", f"Load it with `CrossEncoder(\"{'<this folder>'}\")`; `hardneg_training.json` holds the full log.", ""]
    return "\n".join(lines)


def write_model_card(folder: Path, info: dict) -> None:
    """Put hardneg's section in the README.md sentence-transformers wrote, before its model details (or start one)."""
    readme = Path(folder) / "README.md"
    text = readme.read_text(encoding="utf-8") if readme.is_file() else "# Cross-encoder re-ranker\n"
    section = model_card_section(info)
    at = text.find("\n## Model Details")
    text = text[:at] + "\n" + section + text[at:] if at >= 0 else text.rstrip() + "\n" + section
    with atomic_write(readme) as handle:
        handle.write(text)


def training_info(model_dir: str | Path) -> dict:
    """What hardneg recorded when it trained ``model_dir`` (empty for a model it did not train)."""
    path = Path(model_dir) / DONE_MARKER
    return json.loads(path.read_text()) if path.is_file() else {}
