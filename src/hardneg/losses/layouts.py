"""Training-data layouts: mined pairs as the dataset columns a loss reads, and margin-MSE teacher scores.

Every layout is built from the same mined pairs (one query, one positive, its negatives), so each loss sees the
same queries and documents; only the row shape differs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ..mine import MinedPair

OutputFormat = Literal["n-tuple", "triplet", "labeled-pair"]
# Teacher scores per pair: [positive, negative_1..n], or None for a pair without fused scores.
Teacher = list[list[float] | None]


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


def listwise_dataset(pairs: list[MinedPair]):
    """(query, docs, labels) with the positive first; a pair with fewer negatives still counts, one with none
    is left out. Returns (dataset, rows left out)."""
    from datasets import Dataset

    rows = [p for p in pairs if p.negatives]
    return Dataset.from_dict({"query": [p.query for p in rows],
                              "docs": [[p.positive] + list(p.negatives) for p in rows],
                              "labels": [[1.0] + [0.0] * len(p.negatives) for p in rows]}), len(pairs) - len(rows)


def margin_dataset(pairs: list[MinedPair], num_negatives: int, teacher: Teacher | None):
    """(query, positive, negative_1..n) plus ``label`` = the teacher's positive score minus each negative's.

    Pairs without a teacher or with fewer than ``num_negatives`` negatives are left out. Returns (dataset, rows
    left out).
    """
    from datasets import Dataset

    if teacher is None or len(teacher) != len(pairs):
        raise ValueError("margin_mse needs one teacher score list per pair (see hardneg.losses.distill_targets).")
    keep = [(p, t) for p, t in zip(pairs, teacher) if t is not None and len(p.negatives) >= num_negatives]
    columns = {"query": [p.query for p, _ in keep], "positive": [p.positive for p, _ in keep]}
    for i in range(num_negatives):
        columns[f"negative_{i + 1}"] = [p.negatives[i] for p, _ in keep]
    columns["label"] = [[t[0] - t[i + 1] for i in range(num_negatives)] for _, t in keep]
    return Dataset.from_dict(columns), len(pairs) - len(keep)


def distill_targets(pairs: list[MinedPair], scale: float = 1.0) -> Teacher:
    """Teacher scores [positive, negative_1..n] per pair from the ensemble's fused scores, times ``scale``.

    A random negative has no fused score: it gets the pair's lowest mined negative score (a random document is
    taken to be no more relevant than the weakest hard one). A pair with no fused score for its positive, or no
    mined negative at all (random strategy), has no teacher and is ``None``.
    """
    out: Teacher = []
    for p in pairs:
        known = [s for s in p.negative_scores if s is not None]
        if p.positive_score is None or not known:
            out.append(None)
            continue
        floor = min(known)
        out.append([scale * p.positive_score] + [scale * (s if s is not None else floor) for s in p.negative_scores])
    return out


@dataclass(frozen=True)
class Layout:
    """The rows one loss trains on: their columns, how mined pairs become them, and what one row holds."""

    columns: str
    # (pairs, negatives per pair, teacher scores or None) -> (dataset, pairs left out)
    build: Callable[[list[MinedPair], int, Teacher | None], tuple[Any, int]]
    # One row per (query, passage) pair, so a query's positive and its n negatives take 1 + n rows.
    passage_rows: bool = False
    # Rows carry margins of teacher scores (:func:`distill_targets`), which only a mined strategy has.
    needs_teacher: bool = False

    def rows_per_query(self, num_negatives: int) -> int:
        """Rows holding one query's positive and negatives: batches sized by this see the same queries per step
        whatever the layout."""
        return 1 + num_negatives if self.passage_rows else 1

    def sequences_per_row(self, num_negatives: int) -> int:
        """(query, passage) sequences the model scores for one row."""
        return 1 if self.passage_rows else 1 + num_negatives


N_TUPLE = Layout("(query, positive, negative_1..n)", lambda pairs, n, teacher: as_hf_dataset(pairs, "n-tuple", n))
LABELED_PAIR = Layout("(query, passage, label)", lambda pairs, n, teacher: as_hf_dataset(pairs, "labeled-pair"),
                      passage_rows=True)
LISTWISE = Layout("(query, docs, labels)", lambda pairs, n, teacher: listwise_dataset(pairs))
TEACHER_MARGINS = Layout("(query, positive, negative_1..n, label)", margin_dataset, needs_teacher=True)
