"""Evaluation: first-stage runs, re-ranking them with a cross-encoder, score interpolation, metrics (ranx)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import Dataset, Qrels
from .io import atomic_write, read_json
from .retrieve import Ensemble, normalise

logger = logging.getLogger(__name__)

# query id -> document id -> score
RunDict = dict[str, dict[str, float]]
ALPHAS = tuple(round(a, 2) for a in np.linspace(0.0, 1.0, 11))


def ranked(scores: dict[str, float]) -> list[str]:
    """Document ids best first; ties broken by id."""
    return sorted(scores, key=lambda d: (-scores[d], d))


def first_stage_run(dataset: Dataset, query_ids: list[str], ensemble: Ensemble, depth: int) -> RunDict:
    """Top ``depth`` documents per query by the (possibly one-member) ensemble's fused score."""
    pools = ensemble.candidates([dataset.queries.text(q) for q in query_ids], depth)
    run: RunDict = {}
    for qid, pool in zip(query_ids, pools):
        run[qid] = {dataset.corpus.ids[i]: float(s) for i, s in zip(pool.doc_idx[:depth], pool.fused[:depth])}
    return run


class ScoreStore:
    """A re-ranker's (query, document) scores, kept on disk so a resumed run re-scores nothing.

    The file records a fingerprint of the model that produced the scores; scores from any other model (a
    retrained strategy, a changed base model or max length) are discarded, never mixed in. Scores are what
    ``CrossEncoder.predict`` returns (sigmoid of the logit for a one-label model): monotonic in the logit, so
    rankings are the same, and bounded, which keeps the interpolation's z-scores robust to outliers.
    """

    def __init__(self, path: str | Path | None, fingerprint: str = ""):
        self.path = Path(path) if path else None
        self.fingerprint = fingerprint
        self.scores: dict[str, dict[str, float]] = {}
        if self.path and self.path.is_file():
            saved = read_json(self.path)
            if isinstance(saved, dict) and saved.get("fingerprint") == fingerprint:
                self.scores = saved["scores"]
            else:
                logger.info("Discarding scores in %s: they came from another model", self.path)

    def missing(self, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return [(q, d) for q, d in pairs if d not in self.scores.get(q, {})]

    def add(self, pairs: list[tuple[str, str]], values: np.ndarray) -> None:
        for (q, d), v in zip(pairs, values, strict=True):
            self.scores.setdefault(q, {})[d] = float(v)
        if self.path:
            with atomic_write(self.path) as handle:
                json.dump({"fingerprint": self.fingerprint, "scores": self.scores}, handle)


def score_pairs(model, dataset: Dataset, pairs: list[tuple[str, str]], store: ScoreStore, batch_size: int = 64,
                progress: bool = True, save_every: int = 4096) -> None:
    """Score (query id, doc id) pairs with a CrossEncoder, longest-first batches, saving as it goes."""
    todo = store.missing(list(dict.fromkeys(pairs)))
    if not todo:
        return
    corpus, queries = dataset.corpus, dataset.queries
    texts = [(queries.text(q), corpus.full_text(corpus.index[d])) for q, d in todo]
    order = sorted(range(len(todo)), key=lambda i: -len(texts[i][1]))  # similar lengths share a batch
    from tqdm.auto import tqdm

    with tqdm(total=len(todo), desc="re-rank", disable=not progress, unit="pair") as bar:
        for start in range(0, len(order), save_every):
            chunk = order[start:start + save_every]
            values = model.predict([texts[i] for i in chunk], batch_size=batch_size, show_progress_bar=False,
                                   convert_to_numpy=True)
            store.add([todo[i] for i in chunk], np.asarray(values, dtype=np.float64).reshape(-1))
            bar.update(len(chunk))


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


def bootstrap_ci(values, resamples: int = 1000, seed: int = 42, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean, resampling queries with replacement (seeded)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def adjust_pvalues(pvalues: list[float], method: str = "holm") -> list[float]:
    """Family-wise corrected p-values: Holm's step-down (default), Bonferroni, or none."""
    p = np.asarray(pvalues, dtype=np.float64)
    m = len(p)
    if method == "none" or m == 0:
        return p.tolist()
    if method == "bonferroni":
        return np.minimum(p * m, 1.0).tolist()
    if method != "holm":
        raise ValueError(f"Unknown correction {method!r}: choose holm, bonferroni or none.")
    order = np.argsort(p, kind="stable")
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out.tolist()


@dataclass(frozen=True)
class Comparison:
    """One paired test between two systems on one metric, over the same queries."""

    a: str
    b: str
    metric: str
    delta: float          # mean(b) - mean(a)
    p_value: float
    p_adjusted: float
    significant: bool     # p_adjusted < alpha
    wins: int             # queries where b beats a
    ties: int
    losses: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def paired_test(control, treatment, test: str = "fisher", permutations: int = 1000, seed: int = 42) -> float:
    """Two-sided p-value that ``treatment`` and ``control`` (paired per query) have the same mean.

    ``fisher`` is the randomisation test of Smucker et al. (CIKM '07): each query's pair of values is swapped
    (the sign of its difference flipped) at random. It is done here with one seeded numpy generator rather than
    ranx's numba version, whose parallel threads draw from unseeded generators, so the same inputs gave p-values
    that differ from run to run. The estimate counts the observed assignment, (1 + hits) / (1 + permutations),
    so it is never 0. ``student`` is the paired t-test (scipy).
    """
    diff = np.asarray(treatment, dtype=np.float64) - np.asarray(control, dtype=np.float64)
    if diff.size == 0 or not np.any(diff):
        return 1.0
    if test == "student":
        from scipy.stats import ttest_rel

        p = float(ttest_rel(treatment, control).pvalue)
        return 1.0 if np.isnan(p) else p
    if test != "fisher":
        raise ValueError(f"Unknown test {test!r}: choose fisher or student.")
    observed = abs(diff.mean())
    rng = np.random.default_rng(seed)
    hits, done, chunk = 0, 0, max(1, 2_000_000 // diff.size)  # bounded memory: about 16 MB of signs at once
    while done < permutations:
        n = min(chunk, permutations - done)
        signs = rng.choice(np.array([-1.0, 1.0]), size=(n, diff.size))
        # a tiny tolerance so that a permutation equal to the observed difference counts despite rounding
        hits += int((np.abs(signs @ diff) / diff.size >= observed - 1e-12).sum())
        done += n
    return (1 + hits) / (1 + permutations)


def compare_systems(qrels: Qrels, runs: dict[str, RunDict], metrics: list[str], test: str = "fisher",
                    correction: str = "holm", alpha: float = 0.05, seed: int = 42,
                    permutations: int = 1000, per_query: dict[str, dict[str, dict[str, float]]] | None = None
                    ) -> list[Comparison]:
    """Every pair of ``runs`` tested per query (seeded Fisher randomisation or paired t-test), p-values
    corrected per metric over all pairs (Holm by default). ``per_query`` reuses already computed values."""
    names = list(runs)
    if len(names) < 2:
        return []
    if per_query is None:
        per_query = {name: per_query_metrics(qrels, runs[name], metrics) for name in names}
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    out: list[Comparison] = []
    for metric in metrics:
        queries = sorted(per_query[names[0]][metric])
        values = {name: np.array([per_query[name][metric][q] for q in queries]) for name in names}
        raw = [paired_test(values[a], values[b], test, permutations, seed) for a, b in pairs]
        for (a, b), p, adj in zip(pairs, raw, adjust_pvalues(raw, correction)):
            diff = values[b] - values[a]
            out.append(Comparison(a, b, metric, float(diff.mean()), p, adj, adj < alpha, int((diff > 0).sum()),
                                  int((diff == 0).sum()), int((diff < 0).sum())))
    return out


def analyse(qrels: Qrels, systems: dict[str, RunDict], metrics: list[str], test: str = "fisher",
            correction: str = "holm", resamples: int = 1000, seed: int = 42) -> dict:
    """Per-query metrics, bootstrap 95% CIs and corrected paired tests for systems ranking the same queries."""
    per_query = {name: per_query_metrics(qrels, run, metrics) for name, run in systems.items()}
    ci = {name: {m: list(bootstrap_ci([values[m][q] for q in sorted(values[m])], resamples, seed))
                 for m in metrics} for name, values in per_query.items()}
    comparisons = compare_systems(qrels, systems, metrics, test, correction, seed=seed, per_query=per_query)
    return {"test": test, "correction": correction, "alpha": 0.05, "bootstrap_resamples": resamples,
            "per_query": per_query, "ci": ci, "comparisons": [c.as_dict() for c in comparisons]}


def tune_alpha(dev_qrels: Qrels, dev_first_stage: RunDict, dev_scores: dict[str, dict[str, float]],
               rerank_depth: int, metric: str = "ndcg@10") -> tuple[float, dict[float, float]]:
    """The interpolation weight that maximises ``metric`` on dev; ties go to the larger weight."""
    curve = {a: evaluate_run(dev_qrels, rerank_run(dev_first_stage, dev_scores, rerank_depth, a), [metric])[metric]
             for a in ALPHAS}
    best = max(ALPHAS, key=lambda a: (round(curve[a], 10), a))
    return best, curve


@dataclass(frozen=True)
class Row:
    """One line of the results table."""

    first_stage: str
    reranker: str          # "none" for the first stage alone
    mode: str              # "first stage", "rerank", or "interpolated"
    metrics: dict[str, float]
    alpha: float | None = None
    by_length: dict[str, dict[str, float]] | None = None  # the same metrics on short and long documents' queries
    alpha_curve: list[tuple[float, float]] | None = None  # (weight, dev metric) behind ``alpha``, to judge its noise

    def as_dict(self) -> dict:
        return {"first_stage": self.first_stage, "reranker": self.reranker, "mode": self.mode,
                "alpha": self.alpha, "metrics": self.metrics, "by_length": self.by_length,
                "alpha_curve": [list(point) for point in self.alpha_curve] if self.alpha_curve else None}

    @classmethod
    def from_dict(cls, row: dict) -> Row:
        """The inverse of ``as_dict`` (rows of results.json; older files lack the later fields)."""
        curve = row.get("alpha_curve")
        return cls(row["first_stage"], row["reranker"], row["mode"], row["metrics"], row.get("alpha"),
                   row.get("by_length"), [tuple(point) for point in curve] if curve else None)


def write_trec(path: str | Path, run: RunDict, tag: str) -> None:
    with atomic_write(path) as handle:
        for qid in sorted(run):
            for rank, doc in enumerate(ranked(run[qid]), start=1):
                handle.write(f"{qid} Q0 {doc} {rank} {run[qid][doc]:.6f} {tag}\n")
