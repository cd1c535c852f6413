"""Hard-negative mining: candidates -> exclude positives -> cluster scope -> window -> rules -> sample.

:func:`mine` builds each (query, positive) pair's ranked candidate pool, its cluster scope and likely positives,
runs the rules of :mod:`hardneg.rules` on it, tops up with random negatives and counts what each step removed.
The rules are listed in :class:`hardneg.config.MiningConfig`; ``union`` fusion and stratified clusters pick
round-robin from several orderings of the pool (one per member, or per cluster) instead of from the fused ranking.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from .cluster import choose_k, cluster_documents
from .config import MiningConfig
from .crossencoder import load_cross_encoder
from .data import Dataset
from .retrieve import CandidatePool, Ensemble
from .rules import PairContext, likely_positive_mask, sample_random, select_hard

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MinedPair:
    """One training example: a query, one positive and its negatives (hard first, then random)."""

    query_id: str
    query: str
    positive_id: str
    positive: str
    negative_ids: list[str]
    negatives: list[str]
    negative_sources: list[str]        # "hard" or "random" per negative
    negative_scores: list[float | None]  # fused first-stage score; None for random ones
    positive_score: float | None
    # "labelled", or "likely" for a likely positive added by add_likely_positives (a training cap samples
    # labelled pairs and keeps the likely ones of the queries it kept, so they never crowd the labels out)
    positive_source: str = "labelled"

    def as_dict(self) -> dict:
        return asdict(self)


def read_mined_pairs(path: str | Path) -> list[MinedPair]:
    """Mined pairs from a negatives JSONL file, one :meth:`MinedPair.as_dict` per line (blank lines skipped);
    a line that is not a pair is an error naming the file and line."""
    names = {f.name for f in fields(MinedPair)}
    required = [f.name for f in fields(MinedPair) if f.default is MISSING]
    per_negative = ("negative_ids", "negatives", "negative_sources", "negative_scores")
    pairs = []
    with Path(path).open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({exc.msg}).") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{lineno}: expected a mined pair (a JSON object), got {type(row).__name__}.")
            problems = [f"{what} field(s) {', '.join(found)}" for what, found in (
                ("missing", [n for n in required if n not in row]), ("unknown", [k for k in row if k not in names]))
                if found]
            if problems:
                raise ValueError(f"{path}:{lineno}: not a mined pair: {'; '.join(problems)}.")
            if len({len(row[n]) if isinstance(row[n], list) else -1 for n in per_negative}) != 1:
                raise ValueError(f"{path}:{lineno}: {', '.join(per_negative)} must be lists of the same length.")
            pairs.append(MinedPair(**row))
    return pairs


def pairs_from_hf_dataset(dataset) -> list[MinedPair]:
    """Mined pairs from a Hugging Face dataset with columns query, positive and negative_1..n (or negative).

    Rows carry no ids, so ids are made from the row number (``"<row>"``, ``"<row>:positive"``,
    ``"<row>:negative_<k>"``); negatives count as hard ones without a fused score, empty ones are skipped."""
    columns = list(dataset.column_names)
    negative_columns = sorted((c for c in columns if re.fullmatch(r"negative_\d+", c)), key=lambda c: int(c[9:]))
    negative_columns = negative_columns or [c for c in columns if c == "negative"]
    if "query" not in columns or "positive" not in columns or not negative_columns:
        raise ValueError(f"Expected columns query, positive and negative_1..n (or negative); got {', '.join(columns)}.")
    data = {c: list(dataset[c]) for c in ["query", "positive", *negative_columns]}
    pairs = []
    for i, (query, positive) in enumerate(zip(data["query"], data["positive"])):
        negatives = [(c, data[c][i]) for c in negative_columns if data[c][i]]
        n = len(negatives)
        pairs.append(MinedPair(str(i), query, f"{i}:positive", positive, [f"{i}:{c}" for c, _ in negatives],
                               [text for _, text in negatives], ["hard"] * n, [None] * n, None))
    return pairs


@dataclass
class MiningSummary:
    strategy: str
    pairs: int = 0
    negatives_requested: int = 0
    removed: Counter = field(default_factory=Counter)   # candidates each rule removed
    random_fill: int = 0                                # random negatives used to top up short pairs
    short_pairs: list[dict] = field(default_factory=list)  # pairs left with fewer than requested
    skipped_pairs: Counter = field(default_factory=Counter)
    hard_short: int = 0                                 # pairs with fewer hard negatives than asked for
    likely_positives: int = 0                           # (query, document) set aside as likely positives
    added_positives: int = 0                            # extra pairs made from likely positives
    member_overlap: dict = field(default_factory=dict)  # mean Jaccard of the negatives each member would pick
    clusters: dict | None = None
    overlap_values: dict = field(default_factory=dict, repr=False)  # per pair, in order: shards merge exactly

    def as_dict(self) -> dict:
        return {"strategy": self.strategy, "pairs": self.pairs, "negatives_requested": self.negatives_requested,
                "removed": dict(self.removed), "random_fill": self.random_fill,
                "short_pairs": len(self.short_pairs), "short_pair_examples": self.short_pairs[:20],
                "skipped_pairs": dict(self.skipped_pairs), "hard_short": self.hard_short,
                "likely_positives": self.likely_positives, "added_positives": self.added_positives,
                "member_overlap": self.member_overlap, "clusters": self.clusters}


@dataclass(frozen=True)
class MiningResult:
    pairs: list[MinedPair]
    summary: MiningSummary
    likely_positives: list[dict] = field(default_factory=list)  # set aside for review (likely_positives.jsonl)


def pair_rng(seed: int, query_id: str, positive_id: str) -> np.random.Generator:
    """A generator per pair, so a pair's negatives do not depend on which other pairs were mined."""
    digest = hashlib.sha256(f"{seed}\x00{query_id}\x00{positive_id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def member_overlap(pool: CandidatePool, excluded: set[int], n: int, names: list[str]) -> dict[str, float]:
    """Jaccard overlap of the top ``n`` non-positive candidates each member would pick alone, per member pair."""
    positions = np.flatnonzero(np.array([int(d) not in excluded for d in pool.doc_idx], dtype=bool))
    picks = [set(positions[np.lexsort((positions, -row[positions]))[:n]].tolist()) for row in pool.member_scores]
    out = {}
    for a, b in itertools.combinations(range(len(picks)), 2):
        union = picks[a] | picks[b]
        out[f"{names[a]} & {names[b]}"] = len(picks[a] & picks[b]) / len(union) if union else 1.0
    return out


def positives_and_copies(dataset: Dataset, query_ids: list[str]) -> tuple[dict[str, set[int]], dict[str, set[int]]]:
    """Per query, the corpus positions of its labelled positives (every split), and of other documents whose
    text is identical to one of them: a copy of a positive must never be used as a negative."""
    corpus = dataset.corpus
    labelled = dataset.all_positives()
    positives = {q: {corpus.index[d] for d in labelled.get(q, ()) if d in corpus.index} for q in query_ids}
    wanted = {corpus.full_text(i) for idx in positives.values() for i in idx}
    by_text: dict[str, list[int]] = {}
    for i in range(len(corpus)):
        if (text := corpus.full_text(i)) in wanted:
            by_text.setdefault(text, []).append(i)
    copies = {q: {j for i in idx for j in by_text[corpus.full_text(i)]} - idx for q, idx in positives.items()}
    return positives, copies


def training_pairs(dataset: Dataset, split: str, query_ids: list[str] | None = None) -> list[tuple[str, str]]:
    """(query id, positive id) for every labelled positive of the split, in a stable order."""
    positives = dataset.positives(split)
    wanted = query_ids if query_ids is not None else sorted(positives)
    return [(q, d) for q in wanted for d in positives.get(q, [])]


@dataclass(frozen=True)
class _ClusterScope:
    """Clusters of the corpus and, per query, its own cluster and the clusters nearest to it."""

    labels: np.ndarray
    query_cluster: dict[str, int]
    near: dict[str, list[int]]
    summary: dict


def _cluster_scope(ensemble: Ensemble, config: MiningConfig, queries: dict[str, str], seed: int,
                   must_include: dict[str, set[int]], positives: dict[str, set[int]]) -> _ClusterScope:
    """Cluster the fused dense space; add each query's target clusters' documents (the ``depth`` most similar
    to the query per cluster) to its candidate pool, so every member scores them."""
    space = ensemble.space()
    docs = space.document_vectors()
    k = config.clusters or choose_k(docs, config.cluster_rule, seed)
    clustering = cluster_documents(docs, config.cluster, k, seed)
    ids = list(queries)
    qv = space.query_vectors([queries[q] for q in ids])
    query_cluster = {q: int(c) for q, c in zip(ids, clustering.assign(qv))}
    near = {q: [int(c) for c in clustering.nearest(v, config.cluster_near)] for q, v in zip(ids, qv)}
    members = {c: np.flatnonzero(clustering.labels == c) for c in range(clustering.k)}
    for q, v in zip(ids, qv):
        if config.cluster_scope == "query":
            targets = [query_cluster[q]]
        elif config.cluster_scope == "positive":
            targets = sorted({int(clustering.labels[i]) for i in positives[q]})
        else:
            targets = near[q]
        for c in targets:
            idx = members[c]
            sims = docs[idx].astype(np.float32) @ v
            must_include[q].update(int(i) for i in idx[np.lexsort((idx, -sims))[:config.depth]])
    summary = clustering.summary()
    logger.info("Clusters: %s", summary)
    return _ClusterScope(clustering.labels, query_cluster, near, summary)


def _pair_context(pool: CandidatePool, positive_pos: int | None, positive_idx: int, config: MiningConfig,
                  ensemble: Ensemble, scope: _ClusterScope | None, query_id: str,
                  flagged: np.ndarray | None) -> PairContext:
    allowed, orderings = None, None
    if ensemble.picks_per_member and len(pool.member_scores) > 1:
        ties = np.arange(len(pool.doc_idx))  # each member's own order; ties by fused rank
        orderings = [np.lexsort((ties, -row)) for row in pool.member_scores]
    if scope is not None:
        labels = scope.labels[pool.doc_idx]
        if config.cluster_scope == "query":
            allowed = labels == scope.query_cluster[query_id]
        elif config.cluster_scope == "positive":
            allowed = labels == scope.labels[positive_idx]
        else:
            allowed = np.isin(labels, scope.near[query_id])
            orderings = [np.flatnonzero(labels == c) for c in scope.near[query_id]]
    rows, weights, positive_sim = None, None, None
    if config.geometric:
        rows, weights = ensemble.dense_rows()
        if not rows:
            raise ValueError(f"mining.geometric needs a dense member; ensemble {ensemble.name!r} has none")
        positive_sim = ensemble.doc_similarity(positive_idx, pool.doc_idx)
    return PairContext(allowed=allowed, orderings=orderings, flagged=flagged, dense_rows=rows,
                       dense_weights=weights, positive_similarity=positive_sim)


def mine(dataset: Dataset, pairs: list[tuple[str, str]], ensemble: Ensemble | None, config: MiningConfig,
         strategy: str, seed: int = 42, progress: bool = True) -> MiningResult:
    """Mine negatives for each (query id, positive id). ``ensemble=None`` means random negatives only.

    The ensemble's own fusion is used (callers build it with ``config.fusion`` when that overrides the run's).
    """
    from tqdm.auto import tqdm

    if ensemble is not None and config.fusion is not None and config.fusion != ensemble.fusion:
        raise ValueError(f"mining.fusion is {config.fusion!r} but the ensemble fuses by {ensemble.fusion!r}: "
                         f"build it with Ensemble(..., fusion={config.fusion!r})")
    corpus, queries = dataset.corpus, dataset.queries
    summary = MiningSummary(strategy=strategy, negatives_requested=config.num_negatives)
    n_random = (int(config.random_share * config.num_negatives + 0.5) if ensemble is not None
                else config.num_negatives)
    n_hard = config.num_negatives - n_random
    query_ids = list(dict.fromkeys(q for q, _ in pairs))
    positives, copies = positives_and_copies(dataset, query_ids)
    summary.removed["copy of a positive"] = sum(len(c) for c in copies.values())

    pools: dict[str, CandidatePool] = {}
    scope: _ClusterScope | None = None
    if ensemble is not None and n_hard:
        must_include = {q: set(positives[q]) for q in query_ids}
        if config.cluster is not None:
            scope = _cluster_scope(ensemble, config, {q: queries.text(q) for q in query_ids}, seed, must_include,
                                   positives)
            summary.clusters = scope.summary
        found = ensemble.candidates([queries.text(q) for q in query_ids], config.depth,
                                    [sorted(must_include[q]) for q in query_ids])
        pools = dict(zip(query_ids, found, strict=True))

    # Likely positives by the members' scores, per query over all its pairs: a document that looks like one of
    # a query's positives must not be a negative for any of them.
    likely: dict[tuple[str, int], dict] = {}
    if config.likely_positive_ratio is not None:
        for query_id, positive_id in pairs:
            pool = pools.get(query_id)
            where = np.flatnonzero(pool.doc_idx == corpus.index[positive_id]) if pool is not None else []
            if not len(where):
                continue
            pos = int(where[0])
            mask = likely_positive_mask(pool.member_scores.astype(np.float64),
                                        pool.member_scores[:, pos].astype(np.float64), config.likely_positive_ratio)
            excluded = positives[query_id] | copies[query_id]
            for p in np.flatnonzero(mask):
                doc = int(pool.doc_idx[p])
                if doc not in excluded and (query_id, doc) not in likely:
                    likely[(query_id, doc)] = {"query_id": query_id, "doc_id": corpus.ids[doc],
                                               "positive_id": positive_id, "source": "ensemble",
                                               "score": float(pool.fused[p]), "positive_score": float(pool.fused[pos])}
    flagged_docs: dict[str, set[int]] = {}
    for query_id, doc in likely:
        flagged_docs.setdefault(query_id, set()).add(doc)

    reranker = (load_cross_encoder(config.denoise_model, config.denoise_max_length)
                if config.denoise_model is not None and pools else None)
    overlaps: dict[str, list[float]] = summary.overlap_values
    names = ensemble.member_names if ensemble is not None and pools else []
    out: list[MinedPair] = []
    for query_id, positive_id in tqdm(pairs, desc=f"mine {strategy}", disable=not progress, unit="pair"):
        rng = pair_rng(seed, query_id, positive_id)
        excluded = positives[query_id] | copies[query_id]
        positive_idx = corpus.index[positive_id]
        hard_idx: list[int] = []
        scores: list[float | None] = []
        positive_score = None
        if query_id in pools:
            pool = pools[query_id]
            where = np.flatnonzero(pool.doc_idx == positive_idx)
            positive_pos = int(where[0]) if len(where) else None
            positive_score = float(pool.fused[positive_pos]) if positive_pos is not None else None
            flagged = (np.isin(pool.doc_idx, list(flagged_docs[query_id])) if query_id in flagged_docs else None)
            ctx = _pair_context(pool, positive_pos, positive_idx, config, ensemble, scope, query_id, flagged)
            if reranker is not None:
                ctx = replace(ctx, veto=_denoiser(reranker, config.denoise_margin, queries.text(query_id),
                                                  corpus.full_text(positive_idx), pool, corpus, query_id,
                                                  positive_id, likely))
            chosen = select_hard(pool, positive_pos, excluded, config, n_hard, rng, summary.removed, ctx)
            hard_idx = [int(pool.doc_idx[p]) for p in chosen]
            scores = [float(pool.fused[p]) for p in chosen]
            if len(names) > 1:
                for key, value in member_overlap(pool, excluded, n_hard, names).items():
                    overlaps.setdefault(key, []).append(value)
        summary.hard_short += int(len(hard_idx) < n_hard)
        wanted_random = n_random + (n_hard - len(hard_idx) if config.fill_shortfall == "random" else 0)
        avoid = excluded | set(hard_idx) | flagged_docs.get(query_id, set())
        random_idx = sample_random(len(corpus), wanted_random, avoid, rng)
        summary.random_fill += max(0, len(random_idx) - n_random)
        neg_idx = hard_idx + random_idx
        if len(neg_idx) < config.num_negatives:
            summary.short_pairs.append({"query_id": query_id, "positive_id": positive_id, "negatives": len(neg_idx)})
        if not neg_idx:
            summary.skipped_pairs["no negative available"] += 1
            continue
        out.append(MinedPair(
            query_id=query_id, query=queries.text(query_id), positive_id=positive_id,
            positive=corpus.full_text(positive_idx),
            negative_ids=[corpus.ids[i] for i in neg_idx], negatives=[corpus.full_text(i) for i in neg_idx],
            negative_sources=["hard"] * len(hard_idx) + ["random"] * len(random_idx),
            negative_scores=scores + [None] * len(random_idx), positive_score=positive_score))
    summary.member_overlap = {k: round(float(np.mean(v)), 4) for k, v in overlaps.items()}
    records = sorted(likely.values(), key=lambda r: (r["query_id"], r["doc_id"]))
    summary.likely_positives = len(records)
    if config.add_likely_positives:
        extra = _likely_pairs(out, records, dataset)
        summary.added_positives = len(extra)
        out += extra
    summary.pairs = len(out)
    logger.info("Mined %s: %d pairs; removed %s; %d random fill; %d short", strategy, len(out),
                dict(summary.removed), summary.random_fill, len(summary.short_pairs))
    return MiningResult(out, summary, records)


def _denoiser(model, margin: float, query: str, positive: str, pool: CandidatePool, corpus, query_id: str,
              positive_id: str, likely: dict) -> Callable[[list[int]], np.ndarray]:
    """A veto for :func:`select_hard`: the cross-encoder scores the picks (and once, the positive); a pick at or
    above the positive's score minus ``margin`` is dropped and recorded as a likely positive."""
    cached: list[float] = []

    def veto(positions: list[int]) -> np.ndarray:
        texts = [corpus.full_text(int(pool.doc_idx[p])) for p in positions]
        head = [] if cached else [positive]
        scores = np.asarray(model.predict([(query, t) for t in head + texts], show_progress_bar=False),
                            dtype=np.float64).reshape(-1)
        if not cached:
            cached.append(float(scores[0]))
            scores = scores[1:]
        drop = scores >= cached[0] - margin
        for p, score in zip(np.asarray(positions)[drop], scores[drop]):
            doc = int(pool.doc_idx[p])
            likely.setdefault((query_id, doc), {
                "query_id": query_id, "doc_id": corpus.ids[doc], "positive_id": positive_id,
                "source": "cross-encoder", "score": float(score), "positive_score": cached[0]})
        return drop

    return veto


def _likely_pairs(pairs: list[MinedPair], records: list[dict], dataset: Dataset) -> list[MinedPair]:
    """Extra training pairs: each likely positive with the negatives of the pair that found it."""
    corpus = dataset.corpus
    by_pair = {(p.query_id, p.positive_id): p for p in pairs}
    likely_docs: dict[str, set[str]] = {}
    for r in records:
        likely_docs.setdefault(r["query_id"], set()).add(r["doc_id"])
    extra = []
    for r in records:
        source = by_pair.get((r["query_id"], r["positive_id"]))
        if source is None:
            continue
        keep = [i for i, d in enumerate(source.negative_ids) if d not in likely_docs[r["query_id"]]]
        if not keep:
            continue
        extra.append(MinedPair(
            query_id=r["query_id"], query=source.query, positive_id=r["doc_id"],
            positive=corpus.full_text(corpus.index[r["doc_id"]]),
            negative_ids=[source.negative_ids[i] for i in keep], negatives=[source.negatives[i] for i in keep],
            negative_sources=[source.negative_sources[i] for i in keep],
            negative_scores=[source.negative_scores[i] for i in keep],
            positive_score=r["score"] if r["source"] == "ensemble" else None,  # a CE logit is another scale
            positive_source="likely"))
    return extra
