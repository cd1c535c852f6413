"""The embedder interface: one abstract method; batching, caching, normalisation, worker processes and progress
live here once."""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Literal

import numpy as np
from tqdm.auto import tqdm

from .store import EmbeddingCache

logger = logging.getLogger(__name__)

Kind = Literal["query", "document"]


def l2_normalise(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.maximum(norms, 1e-12)).astype(np.float32)


class Embedder(ABC):
    """Turns texts into float32 vectors. Subclasses implement :meth:`embed_batch` only."""

    #: identity used in cache keys: change it whenever the vectors a model gives would change
    name: str = "embedder"
    batch_size: int = 32

    @abstractmethod
    def embed_batch(self, texts: list[str], kind: Kind) -> np.ndarray:
        """Embed one batch; returns an array of shape (len(texts), dim)."""

    @property
    def cache_key(self) -> str:
        return self.name

    def __getstate__(self) -> dict:
        # Worker processes get the recipe, not the loaded model: each loads its own copy once.
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_model")} | {"_model": None}

    def embed(self, texts: list[str], kind: Kind = "document", cache_dir: str | Path | None = None,
              progress: bool = True, dtype: np.dtype | type = np.float32, workers: int = 1) -> np.ndarray:
        """Embed ``texts`` as L2-normalised rows of ``dtype``, reading and filling the on-disk cache.

        With a cache the vectors come back from its float16 store, so a cold and a warm run return the same
        array. ``workers`` > 1 embeds batches in that many processes (each with its share of the CPU threads).
        """
        unique = list(dict.fromkeys(texts))
        cache = EmbeddingCache(cache_dir, self.cache_key) if cache_dir is not None else None
        vectors: dict[str, np.ndarray] = {}
        try:
            keys = {t: EmbeddingCache.key(t, kind) for t in unique}
            cached = cache.rows(list(keys.values())) if cache is not None else {}
            todo = [t for t in unique if keys[t] not in cached]
            # Similar lengths in a batch waste less padding.
            todo.sort(key=len)
            if todo:
                logger.info("%s: embedding %d %s texts (%d cached)", self.name, len(todo), kind, len(cached))
            batches = [todo[start:start + self.batch_size] for start in range(0, len(todo), self.batch_size)]
            with tqdm(total=len(todo), desc=f"embed {self.name} ({kind}s)", disable=not progress or not todo,
                      unit="text") as bar:
                for batch, raw in zip(batches, self._run_batches(batches, kind, workers)):
                    out = l2_normalise(np.asarray(raw, dtype=np.float32))
                    if out.shape[0] != len(batch):
                        raise RuntimeError(f"{self.name} returned {out.shape[0]} vectors for {len(batch)} texts")
                    if cache is not None:
                        # One committed batch at a time: an interrupted run resumes after the last one.
                        cache.put_many({keys[t]: v for t, v in zip(batch, out)})
                    else:
                        vectors.update(zip(batch, out))
                    bar.update(len(batch))
            if not texts:
                return np.zeros((0, 0), dtype=dtype)
            if cache is not None:
                rows = cache.rows(list(keys.values()))
                return cache.take(np.array([rows[keys[t]] for t in texts])).astype(dtype)
            return np.stack([vectors[t] for t in texts]).astype(dtype)
        finally:
            if cache is not None:
                cache.close()

    def _run_batches(self, batches: list[list[str]], kind: Kind, workers: int):
        """Each batch's raw vectors, in order; from a process pool when ``workers`` > 1."""
        if workers <= 1 or len(batches) < 2:
            for batch in batches:
                yield self.embed_batch(batch, kind)
            return
        import multiprocessing

        threads = max(1, (os.cpu_count() or 1) // workers)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_worker_init, initargs=(self, threads)) as pool:
            yield from pool.map(_worker_embed, batches, [kind] * len(batches))


_WORKER: Embedder | None = None


def _worker_init(embedder: Embedder, threads: int) -> None:
    global _WORKER
    _WORKER = embedder
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if hasattr(embedder, "threads"):
        embedder.threads = threads
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass


def _worker_embed(texts: list[str], kind: Kind) -> np.ndarray:
    return _WORKER.embed_batch(texts, kind)
