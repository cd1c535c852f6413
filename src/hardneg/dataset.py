"""A dataset in memory: the corpus, the queries and their qrels per split, and what loading skipped.

:mod:`hardneg.data` reads these from a BEIR-layout folder; every other module works on these types.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field


class DataError(ValueError):
    """Input that cannot be used; the message names the file (and line) and what is wrong."""


@dataclass(frozen=True, eq=False)
class Corpus:
    """Documents in a fixed order; position ``i`` is the document's index everywhere in hardneg."""

    ids: list[str]
    titles: list[str]
    texts: list[str]
    index: dict[str, int] = field(repr=False)

    @classmethod
    def from_records(cls, ids: list[str], titles: list[str], texts: list[str]) -> Corpus:
        return cls(ids, titles, texts, {doc_id: i for i, doc_id in enumerate(ids)})

    def __len__(self) -> int:
        return len(self.ids)

    def full_text(self, i: int) -> str:
        """Title and body joined, as BEIR models see a document."""
        title, text = self.titles[i], self.texts[i]
        return f"{title} {text}".strip() if title else text

    def full_texts(self) -> list[str]:
        return [self.full_text(i) for i in range(len(self.ids))]


@dataclass(frozen=True, eq=False)
class Queries:
    ids: list[str]
    texts: list[str]
    index: dict[str, int] = field(repr=False)

    @classmethod
    def from_records(cls, ids: list[str], texts: list[str]) -> Queries:
        return cls(ids, texts, {qid: i for i, qid in enumerate(ids)})

    def __len__(self) -> int:
        return len(self.ids)

    def text(self, query_id: str) -> str:
        return self.texts[self.index[query_id]]


# query id -> document id -> graded relevance (> 0 means relevant)
Qrels = dict[str, dict[str, int]]


@dataclass
class LoadReport:
    """What was skipped while loading, and why. Printed by the CLI, stored with every run."""

    skipped: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    skipped_ids: set[str] = field(default_factory=set)  # queries dropped as empty: their qrels rows say so

    def skip(self, reason: str, where: str, count: int = 1) -> None:
        """Count ``count`` inputs skipped for ``reason``; ``where`` is one of them, kept as an example."""
        self.skipped[reason] += count
        if len(self.examples[reason]) < 5:
            self.examples[reason].append(where)

    def as_dict(self) -> dict:
        return {"skipped": dict(self.skipped), "examples": {k: v for k, v in self.examples.items()}}

    def summary(self) -> str:
        if not self.skipped:
            return "nothing skipped"
        return "; ".join(f"{n} {reason} (e.g. {', '.join(self.examples[reason][:2])})" for reason, n in self.skipped.items())


@dataclass(frozen=True)
class SplitOverlap:
    """Queries two qrels splits share: a query trained on and evaluated on inflates the scores."""

    first: str
    second: str
    same_ids: list[str]
    same_texts: list[tuple[str, str]]   # (query in first, query in second) with the same text

    def __bool__(self) -> bool:
        return bool(self.same_ids or self.same_texts)

    def message(self) -> str:
        parts = []
        if self.same_ids:
            parts.append(f"{len(self.same_ids)} query ids in both (e.g. {', '.join(self.same_ids[:3])})")
        if self.same_texts:
            parts.append(f"{len(self.same_texts)} queries with the same text (e.g. "
                         + ", ".join(f"{a} = {b}" for a, b in self.same_texts[:3]) + ")")
        return f"splits {self.first!r} and {self.second!r} overlap: {'; '.join(parts)}"

    def as_dict(self) -> dict:
        return {"splits": [self.first, self.second], "same_ids": self.same_ids,
                "same_texts": [list(p) for p in self.same_texts]}


@dataclass(frozen=True, eq=False)
class Dataset:
    name: str
    corpus: Corpus
    queries: Queries
    qrels: dict[str, Qrels]
    report: LoadReport
    signature: str = ""  # hash of the files read: finished stages are reused only for the same data

    def positives(self, split: str) -> dict[str, list[str]]:
        """Relevant document ids per query of a split, in qrels order."""
        if split not in self.qrels:
            raise DataError(f"Dataset {self.name!r} has no qrels for split {split!r}; it has {sorted(self.qrels)}.")
        return {q: [d for d, rel in docs.items() if rel > 0] for q, docs in self.qrels[split].items()
                if any(rel > 0 for rel in docs.values())}

    def require_positives(self, split: str, purpose: str) -> None:
        """A DataError, before any work, unless ``split`` exists and has a query with a positive."""
        positives = self.positives(split)
        if not positives:
            have = {s: len([q for q, d in qrels.items() if any(r > 0 for r in d.values())])
                    for s, qrels in sorted(self.qrels.items())}
            raise DataError(f"Dataset {self.name!r}: no query in split {split!r} has a positive (a qrels row with "
                            f"score > 0), so there is nothing {purpose}. Queries with positives per split: {have}.")

    def check_splits(self, train: str | None, evaluate: str) -> SplitOverlap:
        """Before any work: the evaluation split (and ``train``, when training) exist and hold positives; returns
        what the two share, which a run warns about."""
        if train is not None:
            self.require_positives(train, "to mine negatives for and train on")
        self.require_positives(evaluate, "to evaluate on")
        return self.overlap(train, evaluate) if train is not None else SplitOverlap(evaluate, evaluate, [], [])

    def overlap(self, a: str, b: str) -> SplitOverlap:
        """Queries that splits ``a`` and ``b`` share, by id or by text (case and spacing aside)."""
        first, second = self.qrels.get(a, {}), self.qrels.get(b, {})
        same_ids = sorted(set(first) & set(second))
        known = [q for q in first if q in self.queries.index]
        texts: dict[str, str] = {" ".join(self.queries.text(q).lower().split()): q for q in known}
        same_texts = sorted((texts[key], q) for q in second if q in self.queries.index and q not in first
                            and (key := " ".join(self.queries.text(q).lower().split())) in texts)
        return SplitOverlap(a, b, same_ids, same_texts)

    def all_positives(self) -> dict[str, set[str]]:
        """Every labelled positive of every query over all splits: never to be used as a negative."""
        out: dict[str, set[str]] = defaultdict(set)
        for qrels in self.qrels.values():
            for q, docs in qrels.items():
                out[q].update(d for d, rel in docs.items() if rel > 0)
        return out
