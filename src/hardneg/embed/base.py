"""The embedder interface: one abstract method; batching, caching, normalisation and progress live here once."""

from __future__ import annotations

import hashlib
import logging
import re
import sqlite3
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Literal

import numpy as np
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

Kind = Literal["query", "document"]


class EmbeddingCache:
    """Vectors on disk, keyed by model identity and text: a second run embeds nothing.

    One SQLite file per model. Each batch is committed as it is computed, so an interrupted run resumes where it
    stopped; SQLite's journal keeps the file consistent if the process dies mid-write.
    """

    def __init__(self, folder: str | Path, model_key: str):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model_key)[-80:]
        digest = hashlib.sha1(model_key.encode()).hexdigest()[:10]
        self.path = self.folder / f"{slug}-{digest}.sqlite"
        self._conn = sqlite3.connect(self.path)
        self._conn.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vec BLOB NOT NULL)")

    @staticmethod
    def key(text: str, kind: Kind) -> str:
        return hashlib.sha1(f"{kind}\x00{text}".encode()).hexdigest()

    def get_many(self, keys: list[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(keys), 900):  # stay under SQLite's bound-parameter limit
            chunk = keys[start:start + 900]
            rows = self._conn.execute(
                f"SELECT key, vec FROM vectors WHERE key IN ({','.join('?' * len(chunk))})", chunk)
            for key, blob in rows:
                found[key] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put_many(self, items: dict[str, np.ndarray]) -> None:
        with self._conn:
            self._conn.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?)",
                                   [(k, np.asarray(v, dtype=np.float32).tobytes()) for k, v in items.items()])

    def close(self) -> None:
        self._conn.close()


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

    def embed(self, texts: list[str], kind: Kind = "document", cache_dir: str | Path | None = None,
              progress: bool = True) -> np.ndarray:
        """Embed ``texts`` as L2-normalised float32 rows, reading and filling the on-disk cache."""
        unique = list(dict.fromkeys(texts))
        vectors: dict[str, np.ndarray] = {}
        cache = EmbeddingCache(cache_dir, self.cache_key) if cache_dir is not None else None
        try:
            keys = {t: EmbeddingCache.key(t, kind) for t in unique}
            if cache is not None:
                hits = cache.get_many(list(keys.values()))
                vectors = {t: hits[k] for t, k in keys.items() if k in hits}
            todo = [t for t in unique if t not in vectors]
            # Similar lengths in a batch waste less padding.
            todo.sort(key=len)
            if todo:
                logger.info("%s: embedding %d %s texts (%d cached)", self.name, len(todo), kind, len(vectors))
            with tqdm(total=len(todo), desc=f"embed {self.name} ({kind}s)", disable=not progress or not todo,
                      unit="text") as bar:
                for start in range(0, len(todo), self.batch_size):
                    batch = todo[start:start + self.batch_size]
                    out = l2_normalise(np.asarray(self.embed_batch(batch, kind), dtype=np.float32))
                    if out.shape[0] != len(batch):
                        raise RuntimeError(f"{self.name} returned {out.shape[0]} vectors for {len(batch)} texts")
                    fresh = dict(zip(batch, out))
                    vectors.update(fresh)
                    if cache is not None:
                        cache.put_many({keys[t]: v for t, v in fresh.items()})
                    bar.update(len(batch))
        finally:
            if cache is not None:
                cache.close()
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([vectors[t] for t in texts]).astype(np.float32)
