"""Short and long documents: every metric reported separately for queries whose positives fit the re-ranker's
max length and for those with a positive longer than it (the paper's split)."""

from __future__ import annotations

from dataclasses import dataclass

from .data import Corpus, Qrels


def document_tokens(corpus: Corpus, tokenizer, doc_ids: list[str] | None = None,
                    batch_size: int = 256) -> dict[str, int]:
    """Model tokens (no special tokens) of each document's title + text."""
    ids = list(doc_ids) if doc_ids is not None else corpus.ids
    out: dict[str, int] = {}
    for start in range(0, len(ids), batch_size):
        batch = ids[start:start + batch_size]
        encoded = tokenizer([corpus.full_text(corpus.index[d]) for d in batch], add_special_tokens=False)
        out.update({d: len(tokens) for d, tokens in zip(batch, encoded["input_ids"], strict=True)})
    return out


@dataclass(frozen=True)
class LengthSplit:
    """Queries whose positives all fit in ``threshold`` tokens (short) and those with a longer one (long)."""

    threshold: int
    short: tuple[str, ...]
    long: tuple[str, ...]

    def subsets(self) -> dict[str, tuple[str, ...]]:
        return {"short": self.short, "long": self.long}

    def as_dict(self) -> dict:
        return {"threshold_tokens": self.threshold, "short_queries": len(self.short), "long_queries": len(self.long)}


def split_by_length(qrels: Qrels, doc_tokens: dict[str, int], threshold: int) -> LengthSplit:
    """A query is long when any of its positive documents has more than ``threshold`` tokens."""
    short, long = [], []
    for q in sorted(qrels):
        positives = [d for d, rel in qrels[q].items() if rel > 0]
        if not positives:
            continue
        (long if any(doc_tokens.get(d, 0) > threshold for d in positives) else short).append(q)
    return LengthSplit(threshold, tuple(short), tuple(long))


def metrics_by_length(qrels: Qrels, run: dict[str, dict[str, float]], metrics: list[str],
                      split: LengthSplit) -> dict[str, dict[str, float]]:
    """``{"short": {...}, "long": {...}}``; a subset with no query is left out."""
    from .evaluate import evaluate_run

    out = {}
    for name, qids in split.subsets().items():
        if qids:
            out[name] = evaluate_run({q: qrels[q] for q in qids}, run, metrics)
    return out


def length_table(rows, metrics: list[str], split: LengthSplit) -> str:
    """Markdown: one line per row and subset, for rows carrying ``by_length`` metrics."""
    head = ["first stage", "re-ranker", "mode", "documents"] + metrics
    lines = [(f"## Short and long documents (threshold {split.threshold} tokens: {len(split.short)} short, "
             f"{len(split.long)} long queries)"), "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        for subset, values in (row.by_length or {}).items():
            lines.append("| " + " | ".join([row.first_stage, row.reranker, row.mode, subset]
                                           + [f"{values[m]:.3f}" for m in metrics]) + " |")
    return "\n".join(lines) + "\n"
