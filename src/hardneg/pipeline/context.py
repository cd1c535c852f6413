"""What every stage of a run reads: the settings, the run folder, the data and the shared first-stage retrievers.

:func:`prepare` loads and (optionally) chunks the dataset, splits the training queries into train and dev, and
records the settings and the data report in the run folder.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ..chunk import ChunkedDataset, chunk_for_run
from ..config import RunConfig
from ..data import Dataset, load_beir, resolve_dataset
from ..io import write_json
from ..lengths import resolve_max_length
from ..lock import release
from ..mine import training_pairs
from ..retrieve import Retrievers
from ..rundir import RunFolder
from ..splits import sample_queries
from .dev_split import FineTuning, split_for_run

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunContext:
    """One run's inputs. ``dataset`` is what mining and training see: the documents, or their chunks."""

    config: RunConfig
    folder: RunFolder
    dataset_path: Path
    documents: Dataset
    dataset: Dataset
    chunks: ChunkedDataset | None
    retrievers: Retrievers
    train_ids: list[str]
    dev_ids: list[str]
    pairs: list[tuple[str, str]]
    # training queries that are also test queries (same id or text): never dev queries
    test_overlap: frozenset[str] = frozenset()
    # whether the run fine-tunes its dense members (decided with the dev split: dev_split.split_for_run)
    tuning: FineTuning = FineTuning(False, "no training split")


def prepare(config: RunConfig) -> RunContext:
    """Load the run's data, chunk it if asked, split its training queries (wider where the run fine-tunes its
    dense members: :func:`~hardneg.pipeline.dev_split.split_for_run`), and write config.json and
    data_report.json (``train.max_length: auto`` is resolved here, so chunking and training agree on it)."""
    folder = RunFolder(config.output).claim()  # one owner at a time; never over files hardneg did not write
    try:
        return _prepare(config, folder)
    except BaseException:
        release(folder.lock)  # a run that fails before it starts leaves the folder to the next one
        raise


def _prepare(config: RunConfig, folder: RunFolder) -> RunContext:
    cache_dir = Path(config.cache_dir) if config.cache_dir else folder.default_cache()
    write_json(folder.config, config.model_dump())

    dataset_path = resolve_dataset(config.dataset, config.data_dir)
    documents = load_beir(dataset_path)
    # Fail before any training: a missing or empty split would otherwise end the run after every model is trained.
    overlap = documents.check_splits(config.train_split if config.strategies else None, config.evaluate.split)
    if overlap:
        logger.warning("%s: scores on queries that were also trained on are inflated", overlap.message())
    config = resolve_max_length(config, documents)
    write_json(folder.data_report, {"dataset": documents.name, "documents": len(documents.corpus),
                                    "queries": len(documents.queries), **documents.report.as_dict(),
                                    **({"split_overlap": overlap.as_dict()} if overlap else {})})
    # Long documents: everything up to evaluation runs on chunks; evaluation maps scores back to documents.
    chunked = chunk_for_run(documents, config, cache_dir) if config.chunking.strategy != "none" else None
    dataset = chunked.chunks.dataset if chunked is not None else documents
    # Evaluating ready re-rankers needs no training split; without one there is no dev split to tune on.
    has_train = bool(config.strategies) or config.train_split in dataset.qrels
    train_query_ids = sample_queries(sorted(dataset.positives(config.train_split)) if has_train else [],
                                     config.max_train_queries, config.seed)
    # Dev queries choose the system a run hands over: one that is also a test query (same id or text) would let
    # the test split into that choice, so it leaves dev.
    both = (overlap if config.strategies else documents.overlap(config.train_split, config.evaluate.split)
            if has_train else None)
    shared = set(both.same_ids) | {a for a, _ in both.same_texts} if both else set()
    split = split_for_run(config, train_query_ids, shared)
    train_ids, dev_ids = split.train_ids, split.dev_ids
    pairs = training_pairs(dataset, config.train_split, train_ids) if has_train else []
    if config.strategies and not pairs:
        raise ValueError(f"No training pairs: all {len(train_query_ids)} training queries went to the dev split "
                         f"(dev_fraction {config.dev_fraction}); lower dev_fraction or add training queries.")
    logger.info("%d training queries (%d pairs), %d dev queries%s", len(train_ids), len(pairs), len(dev_ids),
                f" (embedder.dev_fraction {config.embedder.dev_fraction:g}: the run fine-tunes its dense members)"
                if split.widened else "")
    # The retrievers chunking indexed to pick best chunks are reused when they index the same corpus.
    built = chunked.retrievers if chunked is not None else None
    retrievers = (built if built is not None and built.dataset.corpus is dataset.corpus
                  else Retrievers(dataset, config, cache_dir))
    chunks = chunked.chunks if chunked is not None else None
    return RunContext(config, folder, Path(dataset_path), documents, dataset, chunks, retrievers, train_ids, dev_ids,
                      pairs, frozenset(shared), split.tuning)
