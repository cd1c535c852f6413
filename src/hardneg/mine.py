"""Hard-negative mining: candidates -> exclude positives -> window -> positive-aware filter -> sample.

Each step is a small function over one (query, positive) pair's ranked candidate pool, so each can be tested
alone. :func:`mine` runs them for every training pair and counts what each step removed.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np

from .config import MiningConfig
from .data import Dataset
from .retrieve import CandidatePool, Ensemble

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

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class MiningSummary:
    strategy: str
    pairs: int = 0
    negatives_requested: int = 0
    removed: Counter = field(default_factory=Counter)   # candidates each rule removed
    random_fill: int = 0                                # random negatives used to top up short pairs
    short_pairs: list[dict] = field(default_factory=list)  # pairs left with fewer than requested
    skipped_pairs: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        return {"strategy": self.strategy, "pairs": self.pairs, "negatives_requested": self.negatives_requested,
                "removed": dict(self.removed), "random_fill": self.random_fill,
                "short_pairs": len(self.short_pairs), "short_pair_examples": self.short_pairs[:20],
                "skipped_pairs": dict(self.skipped_pairs)}


@dataclass(frozen=True)
class MiningResult:
    pairs: list[MinedPair]
    summary: MiningSummary


def pair_rng(seed: int, query_id: str, positive_id: str) -> np.random.Generator:
    """A generator per pair, so a pair's negatives do not depend on which other pairs were mined."""
    digest = hashlib.sha256(f"{seed}\x00{query_id}\x00{positive_id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def similarity_ratio(candidate: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """Per-member score of each candidate as a fraction of the positive's, averaged over members.

    ``candidate`` is (members, n) raw scores, ``positive`` is (members,). Raw cosine and BM25 are both 0 for
    "nothing in common", which is what makes a fraction of the positive's score meaningful (NV-Retriever's
    TopK-PercPos). A member that scores the positive at or below 0 gives no scale and is left out of the average
    for that pair; if no member has a scale, every ratio is 0 (nothing can be judged too close). Each ratio is
    clipped to [0, 2] so one member cannot outvote the rest.
    """
    has_scale = positive > 0
    if not has_scale.any():
        return np.zeros(candidate.shape[1])
    ratio = candidate[has_scale] / positive[has_scale][:, None]
    return np.clip(ratio, 0.0, 2.0).mean(axis=0)


def select_hard(pool: CandidatePool, positive_pos: int | None, excluded: set[int], config: MiningConfig,
                n: int, rng: np.random.Generator, removed: Counter) -> list[int]:
    """Positions in ``pool`` of up to ``n`` hard negatives for one pair, counting what each rule removed."""
    keep = np.array([int(d) not in excluded for d in pool.doc_idx], dtype=bool)
    removed["labelled positive"] += int((~keep).sum())
    ranks = np.cumsum(keep) - 1  # rank among non-positive candidates
    in_window = ranks >= config.range_min
    if config.range_max is not None:
        in_window &= ranks < config.range_max
    removed["outside rank window"] += int((keep & ~in_window).sum())
    keep &= in_window
    if config.positive_ratio is not None and positive_pos is not None:
        ratio = similarity_ratio(pool.member_scores.astype(np.float64),
                                 pool.member_scores[:, positive_pos].astype(np.float64))
        too_close = keep & (ratio >= config.positive_ratio)
        removed["positive-aware filter"] += int(too_close.sum())
        keep &= ~too_close
    positions = np.flatnonzero(keep)
    if config.sampling == "random" and len(positions) > n:
        positions = np.sort(rng.choice(positions, size=n, replace=False))
    return [int(p) for p in positions[:n]]


def sample_random(n_docs: int, n: int, excluded: set[int], rng: np.random.Generator) -> list[int]:
    """``n`` distinct random corpus positions outside ``excluded`` (fewer if the corpus runs out)."""
    available = n_docs - len(excluded)
    n = min(n, max(available, 0))
    chosen: list[int] = []
    seen = set(excluded)
    if available and n > available // 2:  # dense case: enumerate instead of rejection sampling
        rest = np.array([i for i in range(n_docs) if i not in seen])
        return [int(i) for i in rng.choice(rest, size=n, replace=False)]
    while len(chosen) < n:
        i = int(rng.integers(n_docs))
        if i not in seen:
            seen.add(i)
            chosen.append(i)
    return chosen


def positives_and_copies(dataset: Dataset, query_ids: list[str]) -> tuple[dict[str, set[int]], dict[str, set[int]]]:
    """Per query, the corpus positions of its labelled positives (every split), and of other documents whose
    text is identical to one of them: a copy of a positive must never be used as a negative."""
    corpus = dataset.corpus
    labelled = dataset.all_positives()
    positives = {q: {corpus.index[d] for d in labelled.get(q, ()) if d in corpus.index} for q in query_ids}
    wanted = {corpus.full_text(i) for idx in positives.values() for i in idx}
    by_text: dict[str, list[int]] = {}
    for i in range(len(corpus)):
        text = corpus.full_text(i)
        if text in wanted:
            by_text.setdefault(text, []).append(i)
    copies = {q: {j for i in idx for j in by_text[corpus.full_text(i)]} - idx for q, idx in positives.items()}
    return positives, copies


def training_pairs(dataset: Dataset, split: str, query_ids: list[str] | None = None) -> list[tuple[str, str]]:
    """(query id, positive id) for every labelled positive of the split, in a stable order."""
    positives = dataset.positives(split)
    wanted = query_ids if query_ids is not None else sorted(positives)
    return [(q, d) for q in wanted for d in positives.get(q, [])]


def mine(dataset: Dataset, pairs: list[tuple[str, str]], ensemble: Ensemble | None, config: MiningConfig,
         strategy: str, seed: int = 42, progress: bool = True) -> MiningResult:
    """Mine negatives for each (query id, positive id). ``ensemble=None`` means random negatives only."""
    from tqdm.auto import tqdm

    corpus, queries = dataset.corpus, dataset.queries
    summary = MiningSummary(strategy=strategy, negatives_requested=config.num_negatives)
    n_random = (int(config.random_share * config.num_negatives + 0.5) if ensemble is not None
                else config.num_negatives)
    n_hard = config.num_negatives - n_random
    query_ids = list(dict.fromkeys(q for q, _ in pairs))
    positives, copies = positives_and_copies(dataset, query_ids)
    summary.removed["copy of a positive"] = sum(len(c) for c in copies.values())

    pools: dict[str, CandidatePool] = {}
    if ensemble is not None and n_hard:
        found = ensemble.candidates([queries.text(q) for q in query_ids], config.depth,
                                    [sorted(positives[q]) for q in query_ids])
        pools = dict(zip(query_ids, found, strict=True))

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
            chosen = select_hard(pool, positive_pos, excluded, config, n_hard, rng, summary.removed)
            hard_idx = [int(pool.doc_idx[p]) for p in chosen]
            scores = [float(pool.fused[p]) for p in chosen]
        wanted_random = n_random + (n_hard - len(hard_idx) if config.fill_shortfall == "random" else 0)
        random_idx = sample_random(len(corpus), wanted_random, excluded | set(hard_idx), rng)
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
    summary.pairs = len(out)
    logger.info("Mined %s: %d pairs; removed %s; %d random fill; %d short", strategy, len(out),
                dict(summary.removed), summary.random_fill, len(summary.short_pairs))
    return MiningResult(out, summary)


OutputFormat = Literal["n-tuple", "triplet", "labeled-pair"]


def as_hf_dataset(pairs: list[MinedPair], fmt: OutputFormat = "n-tuple", num_negatives: int | None = None):
    """Mined pairs in a column layout sentence-transformers' losses take; returns (dataset, rows left out).

    ``n-tuple``: (query, positive, negative_1..n), for triplet-margin / multiple-negatives losses; pairs with fewer
    than ``num_negatives`` negatives are left out and counted. ``triplet``: one (query, positive, negative) row
    per negative. ``labeled-pair``: (query, passage, label) with label 1 for the positive, 0 for each negative.
    """
    from datasets import Dataset

    if fmt == "labeled-pair":
        rows: dict[str, list] = {"query": [], "passage": [], "label": []}
        for pair in pairs:
            for doc, label in [(pair.positive, 1.0)] + [(n, 0.0) for n in pair.negatives]:
                rows["query"].append(pair.query)
                rows["passage"].append(doc)
                rows["label"].append(label)
        return Dataset.from_dict(rows), 0
    if fmt == "triplet":
        triples = [(p.query, p.positive, n) for p in pairs for n in p.negatives]
        return Dataset.from_dict({"query": [t[0] for t in triples], "positive": [t[1] for t in triples],
                                  "negative": [t[2] for t in triples]}), sum(1 for p in pairs if not p.negatives)
    if fmt != "n-tuple":
        raise ValueError(f"Unknown output format {fmt!r}: choose n-tuple, triplet or labeled-pair.")
    n = num_negatives if num_negatives is not None else max((len(p.negatives) for p in pairs), default=0)
    full = [p for p in pairs if len(p.negatives) >= n]
    columns = {"query": [p.query for p in full], "positive": [p.positive for p in full]}
    for i in range(n):
        columns[f"negative_{i + 1}"] = [p.negatives[i] for p in full]
    return Dataset.from_dict(columns), len(pairs) - len(full)
