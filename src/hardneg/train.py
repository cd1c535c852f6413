"""Fine-tune a cross-encoder re-ranker on mined (query, positive, negatives) with CrossEncoderTrainer.

Any loss of :mod:`hardneg.losses`; optional dev evaluation during training with the best checkpoint kept;
length-grouped batches; a model card (the folder's README.md) recording the data, negatives and settings.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np

from . import lock
from .checkpoints import is_checkpoint_folder
from .config import TrainConfig
from .crossencoder import DONE_MARKER, finished_model, load_cross_encoder, training_info
from .io import atomic_write, folder_files, remove_stale_temps, temp_dir, write_json
from .losses import distill_targets, loss_spec
from .mine import MinedPair
from .modelcard import card_footer, write_card_section
from .schedule import train_resuming, trainer_arguments

logger = logging.getLogger(__name__)

DEV_METRIC = "eval_dev_ndcg@10"


def available_cores() -> int:
    """CPU cores this process may run on (the affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


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
    output_dir = Path(output_dir)
    final = finished_model(output_dir, fingerprint)
    if final is not None:
        logger.info("Re-ranker already trained at %s; reusing it", final)
        return final
    lock.acquire(output_dir / lock.LOCK_NAME, "training")  # one trainer per folder: two would clash on its files
    try:
        return _train(pairs, output_dir, config, num_negatives, seed, progress, fingerprint, dev, card, extra_pairs)
    finally:
        lock.release(output_dir / lock.LOCK_NAME)


def claim_output(output_dir: Path, fingerprint: str) -> Path:
    """Check that training may write in ``output_dir``, clear what a killed one left, and stamp the checkpoints
    folder with ``fingerprint``; returns that folder."""
    final, checkpoints = output_dir / "model", output_dir / "checkpoints"
    for folder, ours in ((final, lambda: bool(training_info(final))),
                         (checkpoints, lambda: is_checkpoint_folder(checkpoints))):
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"{folder} is a file; hardneg trains into {output_dir}/model: choose another output.")
        if folder.is_dir() and folder_files(folder, limit=1) and not ours():
            raise ValueError(f"{folder} holds files hardneg did not write; it will not replace them. Choose another "
                             "output folder for the re-ranker.")
    remove_stale_temps(output_dir, "model")
    shutil.rmtree(output_dir / ".model.tmp", ignore_errors=True)  # the staging name of earlier versions
    stamp = checkpoints / "fingerprint"
    if checkpoints.is_dir() and (not stamp.is_file() or stamp.read_text() != fingerprint):
        shutil.rmtree(checkpoints)  # checkpoints of other data or settings: never resume from them
    checkpoints.mkdir(parents=True, exist_ok=True)
    if not stamp.is_file():
        with atomic_write(stamp) as handle:  # a stamp cut off by a kill would throw the checkpoints away
            handle.write(fingerprint)
    return checkpoints


def _train(pairs: list[MinedPair], output_dir: Path, config: TrainConfig, num_negatives: int, seed: int,
           progress: bool, fingerprint: str, dev: list[dict] | None, card: dict | None,
           extra_pairs: list[MinedPair] | None) -> Path:
    import torch
    from sentence_transformers.cross_encoder import (
        CrossEncoderTrainer,
        CrossEncoderTrainingArguments,
    )

    final = output_dir / "model"
    checkpoints = claim_output(output_dir, fingerprint)
    torch.set_num_threads(config.threads or available_cores())
    pairs = cap_pairs(pairs, config.max_train_pairs, seed)
    likely = sum(p.positive_source == "likely" for p in pairs)
    labelled = len(pairs) - likely
    pairs = pairs + list(extra_pairs or [])
    spec = loss_spec(config.loss)
    teacher = distill_targets(pairs, config.distill_scale) if spec.needs_teacher else None
    dataset, dropped = spec.layout.build(pairs, num_negatives, teacher)
    if len(dataset) == 0:
        raise ValueError(f"No training rows for loss {config.loss!r}: every pair was left out (too few negatives"
                         + (f", or no fused scores to distil: {config.loss} needs a mined strategy, not random)"
                            if spec.needs_teacher else ")."))
    if dropped:
        logger.warning("%d of %d pairs left out of %s training (too few negatives or no teacher scores)",
                       dropped, len(pairs), config.loss)
    model = load_cross_encoder(config.base_model, config.max_length, seed=seed)
    loss = spec.build(model, num_negatives, config.margin, config.in_batch_negatives)

    # A step sees batch_size queries with their positive and negatives, whatever the layout: where a row is a
    # single (query, passage) pair, a batch holds (1 + n) times as many rows.
    batch = config.batch_size * spec.layout.rows_per_query(num_negatives)
    use_dev = config.dev_eval and bool(dev)
    extra = {}
    if config.group_by_length:
        from .sampler import LengthGroupedBatchSampler  # lazy: it loads sentence-transformers

        extra["batch_sampler"] = LengthGroupedBatchSampler
    args = CrossEncoderTrainingArguments(**trainer_arguments(checkpoints, len(dataset), batch, config, seed, progress,
                                                             DEV_METRIC if use_dev else None), **extra)
    evaluator = dev_evaluator(dev) if use_dev else None
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=dataset, loss=loss, evaluator=evaluator)
    seconds, budget = train_resuming(trainer, checkpoints, logger, max_minutes=config.max_minutes)

    # Save next to the target, then rename: a folder named "model" is always complete.
    staging = temp_dir(output_dir, "model")
    try:
        final = _save(model, trainer, staging, final, {
            "fingerprint": fingerprint, "base_model": config.base_model, "settings": config.model_dump(),
            "loss": config.loss, "num_negatives": num_negatives, "rows": len(dataset), "labelled_pairs": labelled,
            "likely_positive_pairs": likely, "augmented_pairs": len(pairs) - labelled - likely,
            "rows_dropped": dropped, "rows_dropped_short": dropped,
            "steps": trainer.state.global_step, "train_seconds": round(seconds, 1), "time_budget": budget,
            "sequences_per_second": round(trainer.state.global_step * batch
                                          * spec.layout.sequences_per_row(num_negatives) / seconds, 2)
            if seconds > 0 else None,
            "seed": seed, "card": card or {}}, dev if use_dev else None)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(checkpoints, ignore_errors=True)
    logger.info("Trained re-ranker in %.0fs (%d rows, %d steps) -> %s", seconds, len(dataset),
                trainer.state.global_step, final)
    return final


def _save(model, trainer, staging: Path, final: Path, info: dict, dev: list[dict] | None) -> Path:
    """Write the model, its record and card into ``staging``, then rename it to ``final``."""
    model.save_pretrained(str(staging))
    history = [dict(entry) for entry in trainer.state.log_history]
    dev_scores = [(e["step"], e[DEV_METRIC]) for e in history if DEV_METRIC in e]
    card = info.pop("card")
    info["dev"] = {"queries": len(dev or []), "metric": DEV_METRIC, "curve": dev_scores,
                   "best_checkpoint": trainer.state.best_model_checkpoint and
                   Path(trainer.state.best_model_checkpoint).name,
                   "best": trainer.state.best_metric} if dev is not None else None
    info.update(card=card, log_history=history)
    write_json(staging / DONE_MARKER, info)
    write_model_card(staging, info)
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
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
    mining, footer = card_footer(card, s, "CrossEncoder")
    lines += mining
    if info.get("dev"):
        d = info["dev"]
        lines.append(f"- **Dev evaluation**: {d['queries']} dev queries, `{d['metric']}`, best "
                     f"{d['best']:.4f} at {d['best_checkpoint']}; curve {d['curve']}.")
    return "\n".join(lines + footer)


def write_model_card(folder: Path, info: dict) -> None:
    write_card_section(folder, model_card_section(info), "Cross-encoder re-ranker")
