"""Runs (query -> document -> score): first-stage runs, re-ranking them with stored cross-encoder scores, the
interpolation of the two and its weight, TREC run files. Ties are always broken by document id."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data import Dataset, Qrels
from ..io import atomic_write
from ..retrieve import Ensemble, normalise
from .metrics import RunDict, evaluate_run, ranked

ALPHAS = tuple(round(a, 2) for a in np.linspace(0.0, 1.0, 11))


def first_stage_run(dataset: Dataset, query_ids: list[str], ensemble: Ensemble, depth: int) -> RunDict:
    """Top ``depth`` documents per query by the (possibly one-member) ensemble's fused score."""
    pools = ensemble.candidates([dataset.queries.text(q) for q in query_ids], depth)
    run: RunDict = {}
    for qid, pool in zip(query_ids, pools):
        run[qid] = {dataset.corpus.ids[i]: float(s) for i, s in zip(pool.doc_idx[:depth], pool.fused[:depth])}
    return run


def rerank_run(first_stage: RunDict, scores: dict[str, dict[str, float]], rerank_depth: int,
               alpha: float = 1.0) -> RunDict:
    """Re-order each query's top ``rerank_depth`` by ``alpha * z(reranker) + (1 - alpha) * z(first stage)``.

    Documents below the re-ranked head keep their first-stage order beneath it, so Recall@depth is unchanged.
    """
    out: RunDict = {}
    for qid, fs_scores in first_stage.items():
        order = ranked(fs_scores)
        head, tail = order[:rerank_depth], order[rerank_depth:]
        ce = np.array([scores[qid][d] for d in head], dtype=np.float64)
        fs = np.array([fs_scores[d] for d in head], dtype=np.float64)
        mixed = alpha * normalise(ce, "zscore") + (1 - alpha) * normalise(fs, "zscore") if alpha < 1 else ce
        head_sorted = sorted(range(len(head)), key=lambda i: (-mixed[i], head[i]))
        final = [head[i] for i in head_sorted] + tail
        out[qid] = {d: float(len(final) - r) for r, d in enumerate(final)}
    return out


def tune_alpha(dev_qrels: Qrels, dev_first_stage: RunDict, dev_scores: dict[str, dict[str, float]],
               rerank_depth: int, metric: str = "ndcg@10") -> tuple[float, dict[float, float]]:
    """The interpolation weight that maximises ``metric`` on dev; ties go to the larger weight."""
    curve = {a: evaluate_run(dev_qrels, rerank_run(dev_first_stage, dev_scores, rerank_depth, a), [metric])[metric]
             for a in ALPHAS}
    best = max(ALPHAS, key=lambda a: (round(curve[a], 10), a))
    return best, curve


def write_trec(path: str | Path, run: RunDict, tag: str) -> None:
    with atomic_write(path) as handle:
        for qid in sorted(run):
            for rank, doc in enumerate(ranked(run[qid]), start=1):
                handle.write(f"{qid} Q0 {doc} {rank} {run[qid][doc]:.6f} {tag}\n")


def read_trec(path: str | Path) -> RunDict:
    """A TREC run file (``qid Q0 doc rank score tag``) as query -> document -> score."""
    run: RunDict = {}
    with open(path, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, 1):
            parts = line.split()
            if len(parts) != 6:
                raise ValueError(f"{path}:{lineno}: expected 6 columns (qid Q0 doc rank score tag), got {len(parts)}")
            run.setdefault(parts[0], {})[parts[2]] = float(parts[4])
    return run
