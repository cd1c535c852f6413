"""First-stage models by name, and a run's shared pool of them: each built and indexed once, on first use."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ..config import RunConfig
from ..data import Dataset
from ..embed import get_embedder
from ..knn import SearchOptions
from .base import Retriever
from .bm25 import BM25Retriever
from .dense import DenseRetriever
from .ensemble import Ensemble

logger = logging.getLogger(__name__)


def make_retriever(name: str, cache_dir: str | Path | None = None, progress: bool = True,
                   max_seq_length: int | None = None, search: SearchOptions | None = None, dtype: str = "float16",
                   workers: int = 1) -> Retriever:
    """``bm25`` or any embedder name (see :func:`hardneg.embed.get_embedder`)."""
    if name.lower() == "bm25":
        return BM25Retriever(progress=progress)
    return DenseRetriever(get_embedder(name, max_seq_length=max_seq_length), cache_dir=cache_dir, progress=progress,
                          search=search, dtype=dtype, workers=workers)


def search_options(config: RunConfig) -> SearchOptions:
    """The run's nearest-neighbour search settings, seeded by the run."""
    return SearchOptions(**config.search.model_dump(), seed=config.seed)


def search_stamp(config: RunConfig) -> list:
    """The search settings' part of a mining fingerprint."""
    # Only non-default search settings enter the fingerprint, so runs mined before they existed stay reusable.
    changed = config.search.model_dump(exclude_defaults=True)
    return [changed] if changed else []


class Retrievers:
    """Each first-stage model built and indexed once per run, shared by mining and evaluation."""

    def __init__(self, dataset: Dataset, config: RunConfig, cache_dir: Path):
        self.dataset, self.config, self.cache_dir = dataset, config, cache_dir
        self._built: dict[str, Retriever] = {}
        self._texts = None

    def get(self, name: str) -> Retriever:
        if name not in self._built:
            retriever = make_retriever(name, cache_dir=self.cache_dir, progress=self.config.progress,
                                       max_seq_length=self.config.embed_max_seq_length,
                                       search=search_options(self.config), dtype=self.config.embed_dtype,
                                       workers=self.config.embed_workers)
            if self._texts is None:
                self._texts = self.dataset.corpus.full_texts()
            started = time.perf_counter()
            retriever.index(self._texts, self.dataset.corpus.ids)
            logger.info("Indexed corpus with %s in %.1fs", name, time.perf_counter() - started)
            self._built[name] = retriever
        return self._built[name]

    def ensemble(self, names: list[str], fusion: str | None = None, kept_variance: float | None = None,
                 weights: list[float] | None = None) -> Ensemble:
        """Members are indexed lazily: building the object is cheap, the first search pays for the index.
        ``weights`` default to the run's when ``names`` are the run's ensemble, else equal."""
        if weights is None:
            weights = self.config.weights if names == self.config.ensemble else None
        return Ensemble([_Lazy(self, n) for n in names], fusion=fusion or self.config.fusion, weights=weights,
                        kept_variance=kept_variance or self.config.mining.kept_variance, seed=self.config.seed)

    def first_stage(self, name: str) -> Ensemble:
        return self.ensemble(self.config.ensemble if name == "ensemble" else [name])


class _Lazy(Retriever):
    """A member that is built and indexed (once per run, shared) when first used."""

    def __init__(self, pool: Retrievers, name: str):
        self.pool, self.name = pool, name

    def index(self, documents, doc_ids):  # the shared pool indexes the run's corpus
        self.pool.get(self.name)

    @property
    def tie_rank(self):
        return self.pool.get(self.name).tie_rank

    def query_scores(self, queries, doc_idx):
        return self.pool.get(self.name).query_scores(queries, doc_idx)

    def search(self, queries, k):
        return self.pool.get(self.name).search(queries, k)

    def document_vectors(self):
        return self.pool.get(self.name).document_vectors()

    def query_vectors(self, queries):
        return self.pool.get(self.name).query_vectors(queries)
