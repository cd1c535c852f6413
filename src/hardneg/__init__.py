"""hardneg: train better cross-encoder re-rankers with hard negatives mined by an embedding ensemble."""

from __future__ import annotations

from .config import MiningConfig, RunConfig, StrategyConfig, TrainConfig, load_config
from .data import Corpus, DataError, Dataset, Queries, load_beir, resolve_dataset
from .embed import Embedder, get_embedder
from .mine import MinedPair, MiningResult, mine, training_pairs
from .pipeline import RunResult, evaluate_models, run_pipeline
from .retrieve import BM25Retriever, DenseRetriever, Ensemble, make_retriever
from .system import System
from .version import __version__


def run(config: RunConfig | str, **overrides) -> RunResult:
    """Run the whole pipeline from a config object or YAML path; see :func:`hardneg.pipeline.run_pipeline`."""
    cfg = load_config(config, overrides) if not isinstance(config, RunConfig) else config
    return run_pipeline(cfg)


__all__ = [
    "BM25Retriever",
    "Corpus",
    "DataError",
    "Dataset",
    "DenseRetriever",
    "Embedder",
    "Ensemble",
    "MinedPair",
    "MiningConfig",
    "MiningResult",
    "Queries",
    "RunResult",
    "RunConfig",
    "StrategyConfig",
    "System",
    "TrainConfig",
    "get_embedder",
    "load_beir",
    "load_config",
    "make_retriever",
    "mine",
    "__version__",
    "evaluate_models",
    "resolve_dataset",
    "run",
    "run_pipeline",
    "training_pairs",
]
