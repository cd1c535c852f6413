"""Embedding on Ray: Ray Data streams the texts the embedding cache lacks through an actor pool per model
(``map_batches``), and the vectors land in the same cache the local engine reads, under the same keys.

Texts go out sorted by length in blocks that are whole multiples of the batch size, so every batch holds the
same texts as the local engine's (:meth:`hardneg.embed.Embedder.embed`): a model sees the same padding and gives
the same vectors. Blocks stream: at most a few blocks of texts and vectors are in the object store at a time,
and the driver commits each block of vectors to the cache as it arrives (an interrupted run resumes after it).
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..compute_config import ComputeConfig
from ..embed import Embedder, EmbeddingCache, Kind, l2_normalise
from .ray_session import connect, gpus_per_worker, num_workers

logger = logging.getLogger(__name__)

# Texts per Ray Data block (rounded down to whole batches): small enough that a block of texts and its float16
# vectors stay a few MB, large enough that the per-block overhead is small.
BLOCK_TEXTS = 4096


class EmbedActor:
    """One model loaded once per actor; embeds a batch of texts into unit float16 vectors keyed like the cache."""

    def __init__(self, embedder: Embedder, threads: int):
        self.embedder = embedder
        try:
            import torch

            torch.set_num_threads(threads)
        except ImportError:  # a backend without torch
            pass

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch["text"]]
        kinds = set(batch["kind"].tolist())
        if len(kinds) != 1:  # each kind goes through its own pass: a mixed batch would embed queries as documents
            raise RuntimeError(f"{self.embedder.name}: a Ray batch mixed text kinds {sorted(kinds)}")
        kind: Kind = str(kinds.pop())
        vectors = l2_normalise(np.asarray(self.embedder.embed_batch(texts, kind), dtype=np.float32))
        if vectors.shape[0] != len(texts):
            raise RuntimeError(f"{self.embedder.name} returned {vectors.shape[0]} vectors for {len(texts)} texts")
        # float16 here is exactly what the cache stores: half the bytes through the object store.
        return {"key": np.array([EmbeddingCache.key(t, kind) for t in texts]),
                "vector": vectors.astype(np.float16)}


def shipped_embedder(embedder: Embedder, compute: ComputeConfig, gpus: float) -> Embedder:
    """A copy of ``embedder`` for the actors (its recipe, not a loaded model), its device pinned: the actors'
    processes do not share this one's compute settings."""
    shipped = copy.copy(embedder)  # Embedder.__getstate__ leaves any loaded model behind
    if hasattr(shipped, "device"):
        shipped.device = "cuda" if gpus > 0 else "cpu"
        shipped.precision = compute.precision
    return shipped


def embed_on_ray(embedder: Embedder, texts: dict[str, list[str]], cache_dir: str | Path, compute: ComputeConfig,
                 progress: bool = True) -> int:
    """Embed the texts that ``cache_dir`` lacks for ``embedder`` on Ray, one Ray Data pass per kind: ``texts`` maps
    a kind (document, query) to its texts. Returns how many were embedded."""
    ray = connect(compute, progress)
    import pyarrow as pa

    cache = EmbeddingCache(cache_dir, embedder.cache_key)
    try:
        batch = compute.ray_batch_size or embedder.batch_size
        rows = batch * max(1, BLOCK_TEXTS // batch)
        passes, cached = {}, 0
        for kind, kind_texts in texts.items():
            unique = list(dict.fromkeys(kind_texts))
            keys = {t: EmbeddingCache.key(t, kind) for t in unique}
            found = cache.rows(list(keys.values()))
            cached += len(found)
            todo = sorted((t for t in unique if keys[t] not in found), key=len)  # the local engine's order
            # Blocks whole batches long: each batch is a batch the local engine would embed.
            blocks = [pa.table({"text": todo[s:s + rows], "kind": [kind] * len(todo[s:s + rows])})
                      for s in range(0, len(todo), rows)]
            if blocks:
                passes[kind] = blocks
        total = sum(len(b) for blocks in passes.values() for b in blocks)
        if not total:
            return 0
        gpus = gpus_per_worker(compute, ray)
        most = max(len(blocks) for blocks in passes.values())
        workers = min(num_workers(compute, ray, gpus), most)  # an actor per block at most: more would idle
        threads = 1 if gpus else max(1, int(ray.cluster_resources().get("CPU", 1)) // workers)
        logger.info("%s: embedding %d texts on Ray (%d cached; %d actors, %s GPU and %d CPU each)",
                    embedder.name, total, cached, workers, gpus, threads)
        shipped = shipped_embedder(embedder, compute, gpus)
        with tqdm(total=total, desc=f"embed {embedder.name} on Ray", disable=not progress, unit="text") as bar:
            # One pass per kind: Ray Data joins small blocks into a batch, which must never mix queries and documents.
            for blocks in passes.values():
                vectors = ray.data.from_arrow(blocks).map_batches(
                    EmbedActor, fn_constructor_args=(shipped, threads), batch_size=batch, batch_format="numpy",
                    compute=ray.data.ActorPoolStrategy(size=min(workers, len(blocks))), num_cpus=threads,
                    num_gpus=gpus or None)
                for block in vectors.iter_batches(batch_size=None, batch_format="numpy"):
                    cache.put_many(dict(zip(block["key"].tolist(), block["vector"])))
                    bar.update(len(block["key"]))
        return total
    finally:
        cache.close()
