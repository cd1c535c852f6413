"""More training signal when labelled queries are few: pairs made from the corpus.

* ``title``: a document's title is the query for its body (the body alone, so the title's words are not given
  away); every document with both a title and a body qualifies.
* ``sentence``: one sentence of a document is the query for the rest of it (the inverse cloze task: the sentence
  is removed from the passage, so the model must match meaning, not copy words).

Negatives for these pairs come from the strategy's own ensemble when it has one (the top fused candidates other
than the source document), else at random, so augmented pairs follow the strategy being compared.
"""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Literal

import numpy as np

from .data import Corpus
from .mine import MinedPair, pair_rng
from .rules import sample_random

logger = logging.getLogger(__name__)

Kind = Literal["title", "sentence"]
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9])")
MIN_WORDS = 4


def _order(ids: list[str], seed: int, kind: str) -> list[int]:
    """Corpus positions in a seeded, id-stable order (adding documents does not reshuffle the others)."""
    key = [hashlib.sha256(f"{seed}\x00{kind}\x00{d}".encode()).hexdigest() for d in ids]
    return sorted(range(len(ids)), key=lambda i: key[i])


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if s.strip()]


def corpus_queries(corpus: Corpus, kind: Kind, n: int, seed: int = 42) -> list[tuple[str, int, str]]:
    """Up to ``n`` (query, corpus position, positive text) made from the corpus itself."""
    out: list[tuple[str, int, str]] = []
    for i in _order(corpus.ids, seed, kind):
        if len(out) >= n:
            break
        title, body = corpus.titles[i].strip(), corpus.texts[i].strip()
        if kind == "title":
            if len(title.split()) >= 2 and len(body.split()) >= MIN_WORDS:
                out.append((title, i, body))
        elif kind == "sentence":
            sentences = split_sentences(body)
            usable = [j for j, s in enumerate(sentences) if len(s.split()) >= MIN_WORDS]
            if len(sentences) >= 2 and usable:
                j = usable[int(pair_rng(seed, "sentence", corpus.ids[i]).integers(len(usable)))]
                rest = " ".join(s for k, s in enumerate(sentences) if k != j)
                out.append((sentences[j], i, f"{title} {rest}".strip()))
        else:
            raise ValueError(f"Unknown augmentation {kind!r}: choose title or sentence.")
    return out


def augment_pairs(corpus: Corpus, kind: Kind, n: int, num_negatives: int, seed: int = 42, ensemble=None,
                  depth: int = 30, spread: bool = False) -> list[MinedPair]:
    """Corpus-made training pairs with negatives (hard from ``ensemble`` when given, else random).

    ``spread``: the ensemble's negatives are drawn at random from its top ``depth`` (kept in rank order) rather
    than its top ``num_negatives``, so a model distilling the fused scores sees wide margins as well as close ones.
    """
    made = corpus_queries(corpus, kind, n, seed)
    if not made:
        return []
    pools = ensemble.candidates([q for q, _, _ in made], depth, [[i] for _, i, _ in made]) if ensemble else None
    out = []
    for k, (query, i, positive) in enumerate(made):
        rng = pair_rng(seed, f"{kind}:{query}", corpus.ids[i])
        hard, scores, positive_score = [], [], None
        if pools is not None:
            pool = pools[k]
            at = np.flatnonzero(pool.doc_idx == i)
            positive_score = float(pool.fused[at[0]]) if len(at) else None
            others = [p for p in range(len(pool.doc_idx)) if int(pool.doc_idx[p]) != i]
            chosen = (sorted(rng.choice(others, min(num_negatives, len(others)), replace=False).tolist())
                      if spread and others else others[:num_negatives])
            hard = [int(pool.doc_idx[p]) for p in chosen]
            scores = [float(pool.fused[p]) for p in chosen]
        rand = sample_random(len(corpus), num_negatives - len(hard), {i, *hard}, rng)
        neg = hard + rand
        # Title pairs show the body only, so negatives are bodies too: a title must not mark the positive apart.
        text = (lambda j: corpus.texts[j]) if kind == "title" else corpus.full_text
        out.append(MinedPair(query_id=f"{kind}:{corpus.ids[i]}", query=query, positive_id=corpus.ids[i],
                             positive=positive, negative_ids=[corpus.ids[j] for j in neg],
                             negatives=[text(j) for j in neg],
                             negative_sources=["hard"] * len(hard) + ["random"] * len(rand),
                             negative_scores=scores + [None] * len(rand), positive_score=positive_score))
    logger.info("Made %d %s pairs from the corpus", len(out), kind)
    return out
