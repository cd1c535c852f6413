"""Fine-tune a cross-encoder re-ranker on mined (query, positive, negatives) with CrossEncoderTrainer."""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from pathlib import Path

import numpy as np

from .config import TrainConfig
from .embed import resolve_st_model
from .io import write_json
from .mine import MinedPair, as_hf_dataset

logger = logging.getLogger(__name__)

DONE_MARKER = "hardneg_training.json"


def load_cross_encoder(name_or_path: str, max_length: int | None = None):
    """A ``CrossEncoder`` with one output, from a registered name, a folder or a hub id."""
    from sentence_transformers import CrossEncoder

    path = resolve_st_model(name_or_path)
    try:
        return CrossEncoder(path, num_labels=1, max_length=max_length)
    except OSError as exc:
        raise ValueError(f"Cannot load cross-encoder {name_or_path!r} (resolved to {path!r}): {exc}") from None


def train_reranker(pairs: list[MinedPair], output_dir: str | Path, config: TrainConfig, num_negatives: int,
                   seed: int = 42, progress: bool = True, fingerprint: str = "") -> Path:
    """Train and save a re-ranker to ``output_dir/model`` (loadable with ``CrossEncoder(folder)``).

    ``fingerprint`` names the data and settings: a finished model with the same fingerprint is reused, one with
    another is retrained; an interrupted run with the same fingerprint resumes from its last checkpoint.
    """
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss
    from transformers.trainer_utils import get_last_checkpoint
    import torch

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
    if config.max_train_pairs is not None and len(pairs) > config.max_train_pairs:
        keep = set(np.random.default_rng(seed).choice(len(pairs), config.max_train_pairs, replace=False).tolist())
        pairs = [p for i, p in enumerate(pairs) if i in keep]
    dataset, dropped = as_hf_dataset(pairs, "labeled-pair" if config.loss == "bce" else "n-tuple", num_negatives)
    if len(dataset) == 0:
        raise ValueError("No training rows: every mined pair had fewer negatives than requested.")
    if dropped:
        logger.warning("%d pairs had fewer than %d negatives and were left out of triplet training",
                       dropped, num_negatives)
    model = load_cross_encoder(config.base_model, config.max_length)
    if config.loss == "triplet":
        from .losses import TripletMarginLoss

        loss = TripletMarginLoss(model, margin=config.margin)
    else:
        loss = BinaryCrossEntropyLoss(model, pos_weight=torch.tensor(float(num_negatives)))

    steps_per_epoch = math.ceil(len(dataset) / config.batch_size)
    total_steps = max(1, math.ceil(steps_per_epoch * config.epochs))
    args = CrossEncoderTrainingArguments(
        output_dir=str(checkpoints), num_train_epochs=config.epochs, per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate, warmup_steps=int(config.warmup_ratio * total_steps), seed=seed,
        data_seed=seed, save_strategy="steps", save_steps=max(10, total_steps // 4), save_total_limit=1,
        logging_steps=max(1, total_steps // 20), report_to="none", disable_tqdm=not progress,
        dataloader_drop_last=False, use_cpu=not torch.cuda.is_available())
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=dataset, loss=loss)
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
    history = [{k: v for k, v in entry.items()} for entry in trainer.state.log_history]
    write_json(staging / DONE_MARKER, {
        "fingerprint": fingerprint, "base_model": config.base_model, "settings": config.model_dump(), "num_negatives": num_negatives,
        "rows": len(dataset), "rows_dropped_short": dropped, "steps": trainer.state.global_step,
        "train_seconds": round(seconds, 1), "seed": seed, "log_history": history})
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    shutil.rmtree(checkpoints, ignore_errors=True)
    logger.info("Trained re-ranker in %.0fs (%d rows, %d steps) -> %s", seconds, len(dataset),
                trainer.state.global_step, final)
    return final


def training_info(model_dir: str | Path) -> dict:
    """What hardneg recorded when it trained ``model_dir`` (empty for a model it did not train)."""
    path = Path(model_dir) / DONE_MARKER
    return json.loads(path.read_text()) if path.is_file() else {}
