"""Fine-tune a bi-encoder (sentence-transformers embedding model) on mined (query, positive, negatives).

``SentenceTransformerTrainer`` with a contrastive loss over (anchor, positive, negative_1..n) columns: the hard
negatives plus every other row's documents as in-batch negatives; batches without duplicate texts, so an in-batch
negative is never another row's positive. The best checkpoint is chosen by retrieval nDCG@10 on the dev queries
(sentence-transformers' ``InformationRetrievalEvaluator``). The result is a folder ``SentenceTransformer(folder)``
loads, with a model card and hardneg's training record; by its folder name it joins an ensemble like any model
(:func:`hardneg.embed.get_embedder`), its embeddings cached under its content fingerprint.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple

import numpy as np

from . import lock
from .crossencoder import DONE_MARKER, finished_model, training_info
from .data import Dataset
from .device import autocast, current, current_device
from .embed import resolve_st_model
from .first_stage_config import EmbedderConfig
from .io import temp_dir, write_json
from .mine import MinedPair
from .modelcard import card_footer, write_card_section
from .schedule import train_resuming, trainer_arguments
from .train import available_cores, cap_pairs, claim_output

logger = logging.getLogger(__name__)

DEV_NAME = "dev"
DEV_METRIC = f"eval_{DEV_NAME}_cosine_ndcg@10"


class DevRetrieval(NamedTuple):
    """What ``InformationRetrievalEvaluator`` takes: query id -> text, doc id -> text, query id -> relevant ids."""

    queries: dict[str, str]
    corpus: dict[str, str]
    relevant: dict[str, set[str]]


def dev_retrieval_data(dataset: Dataset, dev_ids: list[str], qrels_split: str, max_queries: int | None = None,
                       max_documents: int | None = None, seed: int = 0) -> DevRetrieval:
    """The dev queries with a positive in ``qrels_split`` (the first ``max_queries`` of them), and a corpus: the
    whole one, or their positives plus a seeded sample of other documents up to ``max_documents``."""
    qrels = dataset.qrels.get(qrels_split, {})
    corpus = dataset.corpus
    relevant = {}
    for qid in dev_ids:
        positives = {d for d, r in qrels.get(qid, {}).items() if r > 0 and d in corpus.index}
        if positives:
            relevant[qid] = positives
    relevant = dict(list(relevant.items())[:max_queries])
    keep = np.arange(len(corpus))
    if max_documents is not None and max_documents < len(corpus):
        wanted = sorted({corpus.index[d] for docs in relevant.values() for d in docs})
        others = np.setdiff1d(keep, wanted)
        room = max(0, max_documents - len(wanted))
        sample = np.random.default_rng(seed).choice(others, min(room, len(others)), replace=False)
        keep = np.sort(np.concatenate([np.asarray(wanted, dtype=np.int64), sample]))
    return DevRetrieval({q: dataset.queries.text(q) for q in relevant},
                        {corpus.ids[i]: corpus.full_text(i) for i in keep}, relevant)


def training_rows(pairs: list[MinedPair], num_negatives: int,
                  per_row: int | None = None) -> tuple[dict[str, list[str]], int]:
    """Columns anchor, positive, negative_1..n (pairs with fewer negatives are left out) and how many were.

    ``per_row``: a loss that takes fewer negatives per row (GISTEmbedLoss: one) gets one row per group of that
    many negatives, the pair's query and positive repeated.
    """
    kept = [p for p in pairs if len(p.negatives) >= num_negatives]
    width = num_negatives if per_row is None else min(per_row, num_negatives)
    starts = range(0, num_negatives - width + 1, width) if width else [0]
    groups = [(p, p.negatives[start:start + width]) for p in kept for start in starts]
    columns = {"anchor": [p.query for p, _ in groups], "positive": [p.positive for p, _ in groups]}
    for i in range(width):
        columns[f"negative_{i + 1}"] = [negatives[i] for _, negatives in groups]
    return columns, len(pairs) - len(kept)


def _losses():
    try:  # sentence-transformers 6 moved the bi-encoder classes into their own package
        from sentence_transformers.sentence_transformer import losses
    except ImportError:
        from sentence_transformers import losses
    return losses


def _mnrl(model, config: EmbedderConfig, guide):
    return _losses().MultipleNegativesRankingLoss(model, scale=config.scale)


def _cached_mnrl(model, config: EmbedderConfig, guide):
    return _losses().CachedMultipleNegativesRankingLoss(model, scale=config.scale,
                                                        mini_batch_size=config.mini_batch_size)


def _gist(model, config: EmbedderConfig, guide):
    return _losses().GISTEmbedLoss(model, guide)


def _cached_gist(model, config: EmbedderConfig, guide):
    return _losses().CachedGISTEmbedLoss(model, guide, mini_batch_size=config.mini_batch_size)


@dataclass(frozen=True)
class EmbedderLossSpec:
    """How one loss is built, whether it needs a guide model, and how many negatives a row may hold (None: any)."""

    build: Callable
    needs_guide: bool = False
    negatives_per_row: int | None = None


LOSSES: Mapping[str, EmbedderLossSpec] = MappingProxyType({
    "mnrl": EmbedderLossSpec(_mnrl),
    "cached_mnrl": EmbedderLossSpec(_cached_mnrl),
    "gist": EmbedderLossSpec(_gist, needs_guide=True, negatives_per_row=1),
    "cached_gist": EmbedderLossSpec(_cached_gist, needs_guide=True),
})


def step_memory_estimate(model, rows: int, texts_per_row: int) -> int | None:
    """Bytes of activations one step of plain MNRL holds for backpropagation: every layer's, for every text of the
    batch at the training length (None for a model that is not a transformer encoder). Per text and layer, 64 bytes
    per token and hidden unit and 12 per attention weight: all-MiniLM-L6-v2 at 32 rows of 3 texts of 128 tokens
    comes to 3.2 GB, against 2.3 GB measured above cached MNRL's peak (docs/EVIDENCE.md, First-stage tuning)."""
    config = getattr(getattr(model[0], "auto_model", None), "config", None)
    try:
        hidden, layers, heads = config.hidden_size, config.num_hidden_layers, config.num_attention_heads
    except AttributeError:
        return None
    tokens = model.max_seq_length
    return rows * texts_per_row * layers * tokens * (hidden * 64 + heads * tokens * 12)


def available_memory(device: str) -> int | None:
    """Bytes free for training on ``device``: the GPU's free memory on CUDA, the system's available memory on the
    CPU; None where it is not known (MPS, or no psutil)."""
    kind = device.split(":")[0]
    if kind == "cuda":
        import torch

        return torch.cuda.mem_get_info(torch.device(device))[0]
    if kind != "cpu":
        return None
    try:
        import psutil
    except ImportError:
        return None
    return psutil.virtual_memory().available


def choose_loss(config: EmbedderConfig, model, rows: int, texts_per_row: int) -> tuple[str, str]:
    """The loss to train with and why. ``auto``: plain MNRL where a step's activations fit in a third of the memory
    free on the model's device, else cached MNRL, the same loss and gradient computed in mini-batches, in bounded
    memory but with a second forward pass (about 1.4x the time)."""
    if config.loss != "auto":
        return config.loss, "as configured"
    needed = step_memory_estimate(model, rows, texts_per_row)
    free = available_memory(str(model.device))
    if needed is None or free is None:
        return "cached_mnrl", "auto: the memory a step needs is not known here"
    gib = 1024 ** 3
    if needed * 3 <= free:
        return "mnrl", f"auto: a step's activations (about {needed / gib:.1f} GiB) fit in a third of the " \
                       f"{free / gib:.1f} GiB free"
    return "cached_mnrl", f"auto: a step's activations (about {needed / gib:.1f} GiB) exceed a third of the " \
                          f"{free / gib:.1f} GiB free"


def build_loss(model, config: EmbedderConfig, base_model: str, loss_name: str | None = None):
    """The configured loss (or ``loss_name``, the one :func:`choose_loss` resolved), in MatryoshkaLoss when
    ``matryoshka_dims`` are set."""
    from sentence_transformers import SentenceTransformer

    spec = LOSSES[loss_name or config.loss]
    guide = None
    if spec.needs_guide:
        guide = SentenceTransformer(resolve_st_model(config.guide_model or base_model), device=model.device)
        guide.eval()
    loss = spec.build(model, config, guide)
    if config.matryoshka_dims:
        # renamed in sentence-transformers 6
        dim = (getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension)()
        if dim is not None and max(config.matryoshka_dims) > dim:
            raise ValueError(f"matryoshka_dims {config.matryoshka_dims} exceed the model's {dim} dimensions")
        loss = _losses().MatryoshkaLoss(model, loss, matryoshka_dims=config.matryoshka_dims)
    return loss


def prompts_for(model, config: EmbedderConfig) -> dict[str, str]:
    """The query and document prompts: the configured ones, else the model's own ('' for none)."""
    own = dict(getattr(model, "prompts", None) or {})
    document = next((own[k] for k in ("document", "passage", "corpus") if k in own), "")
    return {"query": config.query_prompt if config.query_prompt is not None else own.get("query", ""),
            "document": config.document_prompt if config.document_prompt is not None else document}


def dev_evaluator(dev: DevRetrieval, prompts: dict[str, str], batch_size: int = 64, progress: bool = False):
    """Retrieval nDCG@10 (with MRR@10, recall@10, MAP@100) of the dev queries over the dev corpus, by cosine."""
    try:
        from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator
    except ImportError:
        from sentence_transformers.evaluation import InformationRetrievalEvaluator
    from sentence_transformers.util import cos_sim

    class Evaluator(InformationRetrievalEvaluator):
        """Embeds in the run's inference precision (``compute.precision``), as the corpus is embedded after
        training; the similarities are computed in float32."""

        def embed_inputs(self, model, sentences, *args, **kwargs):
            with autocast(str(model.device), current().precision):
                vectors = super().embed_inputs(model, sentences, *args, **kwargs)
            return vectors.float() if hasattr(vectors, "float") else vectors

    return Evaluator(
        dev.queries, dev.corpus, dev.relevant, name=DEV_NAME, ndcg_at_k=[10], mrr_at_k=[10], accuracy_at_k=[1],
        precision_recall_at_k=[10], map_at_k=[100], batch_size=batch_size, show_progress_bar=progress,
        write_csv=False, score_functions={"cosine": cos_sim}, main_score_function="cosine",
        query_prompt=prompts["query"] or None, corpus_prompt=prompts["document"] or None)


def train_embedder(pairs: list[MinedPair], base_model: str, output_dir: str | Path, config: EmbedderConfig,
                   seed: int = 42, progress: bool = True, fingerprint: str = "", dev: DevRetrieval | None = None,
                   card: dict | None = None) -> Path:
    """Fine-tune ``base_model`` (a registered name, folder or hub id) and save it to ``output_dir/model``.

    ``fingerprint`` names the data and settings: a finished model with the same fingerprint is reused, one with
    another is retrained; an interrupted run with the same fingerprint resumes from its last checkpoint.
    ``dev``: :func:`dev_retrieval_data` for the best checkpoint (if ``config.dev_eval``). ``card``: what the model
    card records about the data and negatives (dataset, split, strategy, members, mining).
    """
    output_dir = Path(output_dir)
    final = finished_model(output_dir, fingerprint)
    if final is not None:
        logger.info("Embedder already trained at %s; reusing it", final)
        return final
    lock.acquire(output_dir / lock.LOCK_NAME, "embedder training")  # one trainer per folder
    try:
        return _train(pairs, base_model, output_dir, config, seed, progress, fingerprint, dev, card)
    finally:
        lock.release(output_dir / lock.LOCK_NAME)


def _train(pairs: list[MinedPair], base_model: str, output_dir: Path, config: EmbedderConfig, seed: int,
           progress: bool, fingerprint: str, dev: DevRetrieval | None, card: dict | None) -> Path:
    import torch
    from datasets import Dataset as HFDataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from transformers import set_seed

    final = output_dir / "model"
    checkpoints = claim_output(output_dir, fingerprint)  # the re-ranker's discipline: stamp, stale temps
    torch.set_num_threads(config.threads or available_cores())

    pairs = cap_pairs(pairs, config.max_train_pairs, seed)
    counts = Counter(len(p.negatives) for p in pairs)
    num_negatives = (config.num_negatives if config.num_negatives is not None
                     else max(counts, key=lambda n: (counts[n], n)) if counts else 0)
    # auto is mnrl or cached_mnrl, which take rows of any width
    per_row = None if config.loss == "auto" else LOSSES[config.loss].negatives_per_row
    columns, dropped = training_rows(pairs, num_negatives, per_row)
    if not columns["anchor"]:
        raise ValueError(f"No training rows: every one of {len(pairs)} pairs has fewer than {num_negatives} "
                         "negatives (set embedder.num_negatives lower).")
    if dropped:
        logger.warning("%d of %d pairs left out of embedder training (fewer than %d negatives)", dropped,
                       len(pairs), num_negatives)
    dataset = HFDataset.from_dict(columns)

    set_seed(seed)
    model = SentenceTransformer(resolve_st_model(base_model), device=current_device())
    native_length = model.max_seq_length
    if config.max_seq_length:
        model.max_seq_length = config.max_seq_length
    prompts = prompts_for(model, config)
    document_columns = [c for c in columns if c != "anchor"]
    column_prompts = {c: prompts["document"] for c in document_columns if prompts["document"]}
    if prompts["query"]:
        column_prompts["anchor"] = prompts["query"]
    loss_name, loss_reason = choose_loss(config, model, config.batch_size, len(columns))
    logger.info("Embedder loss: %s (%s)", loss_name, loss_reason)
    loss = build_loss(model, config, base_model, loss_name)

    use_dev = config.dev_eval and dev is not None and bool(dev.queries)
    evaluator = dev_evaluator(dev, prompts, progress=progress) if use_dev else None
    base_dev = _base_score(evaluator, model, checkpoints / ".base_dev.json") if use_dev else None
    extra = {"batch_sampler": "no_duplicates"} if config.no_duplicates else {}
    args = SentenceTransformerTrainingArguments(
        **trainer_arguments(checkpoints, len(dataset), config.batch_size, config, seed, progress,
                            DEV_METRIC if use_dev else None), prompts=column_prompts or None, **extra)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=loss,
                                         evaluator=evaluator)
    seconds, budget = train_resuming(trainer, checkpoints, logger, "embedder ", config.max_minutes)

    # The prompts it was trained with go with the model: encode_query / encode_document apply them.
    model.prompts = {**(model.prompts or {}), **{k: v for k, v in prompts.items() if v}}
    # A short training length is a cost setting, not the model's limit: it embeds at its own (or the longer one).
    if native_length and config.max_seq_length:
        model.max_seq_length = max(native_length, config.max_seq_length)
    # Save next to the target, then rename: a folder named "model" is always complete.
    staging = temp_dir(output_dir, "model")
    try:
        model.save_pretrained(str(staging))
        history = [dict(entry) for entry in trainer.state.log_history]
        curve = [(e["step"], e[DEV_METRIC]) for e in history if DEV_METRIC in e]
        info = {
            "fingerprint": fingerprint, "kind": "embedder", "base_model": base_model,
            "settings": config.model_dump(), "loss": loss_name, "loss_reason": loss_reason,
            "num_negatives": num_negatives,
            "rows": len(dataset), "rows_dropped": dropped,
            "labelled_pairs": sum(p.positive_source != "likely" for p in pairs),
            "likely_positive_pairs": sum(p.positive_source == "likely" for p in pairs), "prompts": prompts,
            "steps": trainer.state.global_step, "train_seconds": round(seconds, 1), "time_budget": budget,
            "seed": seed,
            "dev": {"queries": len(dev.queries), "documents": len(dev.corpus), "metric": DEV_METRIC,
                    "base": base_dev, "curve": curve, "best": trainer.state.best_metric,
                    "best_checkpoint": trainer.state.best_model_checkpoint
                    and Path(trainer.state.best_model_checkpoint).name} if use_dev else None,
            "card": card or {}, "log_history": history}
        write_json(staging / DONE_MARKER, info)
        write_model_card(staging, info)
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(checkpoints, ignore_errors=True)
    logger.info("Trained embedder in %.0fs (%d rows, %d steps) -> %s", seconds, len(dataset),
                trainer.state.global_step, final)
    return final


def _base_score(evaluator, model, path: Path) -> float:
    """The untrained model's dev score (kept beside the checkpoints, so a resumed run does not pay for it twice)."""
    if path.is_file():
        return json.loads(path.read_text())["score"]
    score = float(evaluator(model)[DEV_METRIC.removeprefix("eval_")])
    write_json(path, {"score": score})
    return score


def model_card_section(info: dict) -> str:
    """The model card's hardneg section: data, negatives and every training setting."""
    card = info.get("card", {})
    lines = ["", "## Trained with hardneg", "",
             f"- **Base model**: `{info['base_model']}`; loss **{info['loss']}**, {info['steps']} steps, "
             f"seed {info['seed']}, {info['train_seconds']} s.",
             f"- **Data**: {card.get('dataset', 'unknown dataset')}, split `{card.get('split', '?')}`: "
             f"{info['labelled_pairs']} labelled (query, positive) pairs"
             + (f" + {info['likely_positive_pairs']} likely positives" if info.get("likely_positive_pairs") else "")
             + f"; {info['rows']} training rows ({info['rows_dropped']} pairs left out).",
             f"- **Negatives**: strategy `{card.get('strategy', '?')}`"
             + (f" (members: {', '.join(card['members'])})" if card.get("members") else "")
             + f", {info['num_negatives']} hard negatives per row plus in-batch negatives."]
    if any(info["prompts"].values()):
        lines.append(f"- **Prompts**: query `{info['prompts']['query']!r}`, document "
                     f"`{info['prompts']['document']!r}` (saved with the model).")
    mining, footer = card_footer(card, info["settings"], "SentenceTransformer")
    lines += mining
    if info.get("dev"):
        d = info["dev"]
        best = f"{d['best']:.4f} at {d['best_checkpoint']}" if d["best"] is not None else "none recorded"
        lines.append(f"- **Dev evaluation**: {d['queries']} dev queries over {d['documents']} documents, "
                     f"`{d['metric']}`: base model {d['base']:.4f}, best {best}; curve {d['curve']}.")
    return "\n".join(lines + footer)


def write_model_card(folder: Path, info: dict) -> None:
    write_card_section(folder, model_card_section(info), "Sentence-transformers embedding model")
