"""Nearest neighbours over normalised embeddings with FAISS, in bounded memory.

Exact inner product (``IndexFlatIP``) up to ``flat_max_docs`` documents, an inverted file (``IndexIVFFlat``)
beyond; ``index="flat"`` / ``"ivf"`` forces either. Queries go to FAISS in blocks of ``query_block``, so the
largest score array alive is a block's top-k, never a query x corpus matrix (FAISS tiles its own products).

FAISS does not order equal scores, so results are re-sorted by (-score, document id rank); for the exact index a
query whose ties reach past what was fetched is re-scored against the whole corpus, so ties at the cut-off are
resolved by id too.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

IndexKind = Literal["auto", "flat", "ivf"]
_ADD_CHUNK = 65536
_TIE_MARGIN = 8


@dataclass(frozen=True)
class SearchOptions:
    """How candidates are searched (see the module doc)."""

    index: IndexKind = "auto"
    flat_max_docs: int = 200_000
    ivf_nlist: int | None = None      # default: about 2 * sqrt(n_docs)
    ivf_nprobe: int = 16
    query_block: int = 4096
    seed: int = 0


def _faiss():
    try:
        import faiss
    except ImportError as exc:
        raise ImportError("faiss is not installed: pip install faiss-cpu") from exc
    return faiss


def _f32(block: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(block, dtype=np.float32)


def build_index(vectors: np.ndarray, options: SearchOptions = SearchOptions()):
    """A FAISS inner-product index over ``vectors`` (float16 or float32, possibly a memmap), added in chunks."""
    faiss = _faiss()
    n, dim = vectors.shape
    kind = options.index
    if kind == "auto":
        kind = "flat" if n <= options.flat_max_docs else "ivf"
    if kind not in {"flat", "ivf"}:
        raise ValueError(f"Unknown index {options.index!r}: choose auto, flat or ivf.")
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    else:
        nlist = options.ivf_nlist or max(1, int(2 * math.sqrt(n)))
        if nlist > n:
            raise ValueError(f"ivf_nlist={nlist} is more than the {n} documents; use index: flat or a smaller nlist")
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        # k-means on a seeded sample, 10 iterations: 40 points per list (FAISS warns below 39) place centroids
        # well enough, and FAISS's defaults (256 points per list, 25 iterations) cost more than the search.
        rng = np.random.default_rng(options.seed)
        sample = np.sort(rng.choice(n, size=min(n, 40 * nlist), replace=False))
        index.cp.seed, index.cp.niter = options.seed, 10
        index.train(_f32(vectors[sample]))
        index.nprobe = min(options.ivf_nprobe, nlist)
    for start in range(0, n, _ADD_CHUNK):
        index.add(_f32(vectors[start:start + _ADD_CHUNK]))
    logger.info("Built a %s index over %d x %d vectors", kind, n, dim)
    return _on_gpu(index, faiss) if kind == "flat" else index


# Below this many documents a GPU copy costs more than it saves (a served request indexes its own few documents).
GPU_MIN_DOCS = 20_000
# FAISS on a GPU returns at most this many neighbours per query.
GPU_MAX_K = 2048


def on_cpu(index):
    """``index`` as a CPU index (a GPU index or its replicas copied back; a CPU index as it is)."""
    import faiss

    if isinstance(index, (faiss.IndexFlat, faiss.IndexIVF)) or not hasattr(faiss, "index_gpu_to_cpu"):
        return index
    return faiss.index_gpu_to_cpu(index)


def _on_gpu(index, faiss):
    """The exact index on every GPU when FAISS has GPU support (faiss-gpu) and the run's device is CUDA; the same
    scores to float rounding, and ties are still settled by id. (IVF stays on the CPU: no GPU was at hand to
    check its results against.)"""
    if getattr(faiss, "get_num_gpus", lambda: 0)() == 0 or index.ntotal < GPU_MIN_DOCS:
        return index
    from .device import current_device

    if not current_device().startswith("cuda"):
        return index
    logger.info("Searching on %d GPU(s)", faiss.get_num_gpus())
    return faiss.index_cpu_to_all_gpus(index)


def _resort(ids: np.ndarray, scores: np.ndarray, tie_rank: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of FAISS results ordered by (-score, tie_rank), cut to k; -1 padding (missing hits) is dropped."""
    out_ids = np.empty((len(ids), k), dtype=np.int64)
    out_scores = np.empty((len(ids), k), dtype=np.float32)
    for r, (row_ids, row_scores) in enumerate(zip(ids, scores)):
        valid = row_ids >= 0
        rid, rsc = row_ids[valid], row_scores[valid]
        order = np.lexsort((tie_rank[rid], -rsc))[:k]
        got = len(order)
        out_ids[r, :got], out_scores[r, :got] = rid[order], rsc[order]
        out_ids[r, got:], out_scores[r, got:] = -1, -np.inf
    return out_ids, out_scores


def _exact_row(doc_vectors: np.ndarray, query: np.ndarray, k: int, width: int,
               tie_rank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One query against every document (in chunks): the k best and all ties with the k-th, ``width`` wide."""
    n = len(doc_vectors)
    full = np.concatenate([_f32(doc_vectors[s:s + _ADD_CHUNK]) @ query for s in range(0, n, _ADD_CHUNK)])
    keep = np.flatnonzero(full >= np.partition(full, n - k)[n - k])
    order = keep[np.lexsort((tie_rank[keep], -full[keep]))[:width]]
    ids, scores = np.full(width, -1, dtype=np.int64), np.full(width, -np.inf, dtype=np.float32)
    ids[:len(order)], scores[:len(order)] = order, full[order]
    return ids, scores


def search(index, doc_vectors: np.ndarray, queries: np.ndarray, k: int, tie_rank: np.ndarray,
           options: SearchOptions = SearchOptions(), progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Top-k document positions and scores per query, best first, ties by ``tie_rank``.

    ``doc_vectors`` are the vectors the index holds (used only to settle ties at the cut-off of an exact search).
    A query an IVF index finds fewer than k documents for is searched exactly, so every row has k hits.
    """
    n = index.ntotal
    k = min(k, n)
    exact = not hasattr(index, "nprobe")
    fetch = min(n, k + _TIE_MARGIN)
    if fetch > GPU_MAX_K:
        index = on_cpu(index)
    all_ids, all_scores = [], []
    with tqdm(total=len(queries), desc="search", unit="query", disable=not progress) as bar:
        for start in range(0, len(queries), options.query_block):
            block = _f32(queries[start:start + options.query_block])
            scores, ids = index.search(block, fetch)
            if exact and fetch < n:
                # Ties with the k-th score that run to the end of what was fetched may continue beyond it.
                redo = np.flatnonzero(scores[:, k - 1] == scores[:, -1])
            else:
                # The lists an IVF query probes may hold fewer than k documents: search those queries exactly.
                redo = np.flatnonzero(ids[:, k - 1] < 0)
            for r in redo:
                ids[r], scores[r] = _exact_row(doc_vectors, block[r], k, fetch, tie_rank)
            block_ids, block_scores = _resort(ids, scores, tie_rank, k)
            all_ids.append(block_ids)
            all_scores.append(block_scores)
            bar.update(len(block))
    if not all_ids:
        return np.zeros((0, k), dtype=np.int64), np.zeros((0, k), dtype=np.float32)
    return np.concatenate(all_ids), np.concatenate(all_scores)
