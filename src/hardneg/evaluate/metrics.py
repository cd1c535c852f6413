"""Retrieval metrics through ranx, mean and per query, with hardneg's tie order (by document id)."""

from __future__ import annotations

from ..data import Qrels

# query id -> document id -> score
RunDict = dict[str, dict[str, float]]


def ranked(scores: dict[str, float]) -> list[str]:
    """Document ids best first; ties broken by id."""
    return sorted(scores, key=lambda d: (-scores[d], d))


def _ranx_inputs(qrels: Qrels, run: RunDict):
    """ranx Qrels of the positives, and the run with rank-based scores (ties ordered by document id)."""
    from ranx import Qrels as RanxQrels
    from ranx import Run as RanxRun

    positive = {q: {d: r for d, r in docs.items() if r > 0} for q, docs in qrels.items()}
    positive = {q: docs for q, docs in positive.items() if docs}
    by_rank = {}
    for q in positive:
        order = ranked(run.get(q, {}))
        by_rank[q] = {d: float(len(order) - r) for r, d in enumerate(order)}
    return RanxQrels(positive), RanxRun({q: docs for q, docs in by_rank.items() if docs})


def evaluate_run(qrels: Qrels, run: RunDict, metrics: list[str]) -> dict[str, float]:
    """Mean metrics over the queries of ``qrels`` with a positive (ranx); a query missing from the run scores 0.

    Scores are replaced by rank-based ones first, so ties are ordered by document id as everywhere in hardneg,
    not by ranx's unstable sort.
    """
    from ranx import evaluate

    ranx_qrels, ranx_run = _ranx_inputs(qrels, run)
    result = evaluate(ranx_qrels, ranx_run, metrics, make_comparable=True)
    if isinstance(result, float):  # ranx returns a bare float for one metric
        result = {metrics[0]: result}
    return {m: float(v) for m, v in result.items()}


def per_query_metrics(qrels: Qrels, run: RunDict, metrics: list[str]) -> dict[str, dict[str, float]]:
    """metric -> query id -> value, over the queries of ``qrels`` with a positive (missing from the run: 0)."""
    from ranx import evaluate

    ranx_qrels, ranx_run = _ranx_inputs(qrels, run)
    values = evaluate(ranx_qrels, ranx_run, metrics, return_mean=False, make_comparable=True)
    if not isinstance(values, dict):
        values = {metrics[0]: values}
    ids = list(ranx_qrels.keys())  # ranx's per-query arrays follow its qrels' key order
    return {m: {q: float(v) for q, v in zip(ids, values[m], strict=True)} for m in metrics}
