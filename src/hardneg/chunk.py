"""Long documents as chunks: split each document into pieces that fit the re-ranker, and map chunk scores back.

``chunk_text`` splits one text by a strategy (``tokens``: windows of N model tokens with overlap; ``sentences``:
whole sentences packed up to N tokens; ``semantic``: sentences packed, with a cut wherever adjacent sentences'
embeddings diverge). ``chunk_dataset`` turns a Dataset into a chunk Dataset plus the chunk -> document map, so
mining and training run unchanged on chunks; ``aggregate_scores`` maps chunk scores back to documents (MaxP,
FirstP, SumP) for evaluation against the document qrels.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from tqdm.auto import tqdm

from .config import RunConfig
from .data import Corpus, Dataset, Qrels
from .embed import get_embedder, resolve_st_model
from .evaluate import ranked
from .retrieve import Retrievers

logger = logging.getLogger(__name__)

Strategy = Literal["none", "tokens", "sentences", "semantic"]
Aggregation = Literal["maxp", "firstp", "sump"]
# Positives that are not the chosen chunk of their document live in this split: never mined as negatives
# (Dataset.all_positives reads every split), never trained on as positives.
SIBLINGS_SPLIT = "_positive_siblings"
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])|\n\s*\n|\n(?=\s*[-*•]\s)")
MIN_BUDGET = 8


def split_sentences(text: str) -> list[str]:
    """Sentences by punctuation followed by a capital or digit, and paragraph breaks; empty pieces dropped."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def _n_tokens(tokenizer, texts: list[str]) -> list[int]:
    if not texts:
        return []
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def token_windows(text: str, tokenizer, max_tokens: int, overlap: int = 0) -> list[str]:
    """Windows of ``max_tokens`` model tokens, each starting ``max_tokens - overlap`` after the last, cut from the
    original text at token offsets (so chunks keep the text's own spelling and spacing)."""
    if overlap >= max_tokens:
        raise ValueError(f"overlap ({overlap}) must be smaller than max_tokens ({max_tokens})")
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    if len(offsets) <= max_tokens:
        return [text.strip()] if text.strip() else []
    out, stride = [], max_tokens - overlap
    for start in range(0, len(offsets), stride):
        window = offsets[start:start + max_tokens]
        out.append(text[window[0][0]:window[-1][1]].strip())
        if start + max_tokens >= len(offsets):
            break
    return [c for c in out if c]


def pack_sentences(sentences: list[str], lengths: list[int], max_tokens: int, overlap: int = 0,
                   breaks: set[int] | None = None, tokenizer=None) -> list[str]:
    """Greedy packing of whole sentences up to ``max_tokens``; a new chunk also starts before each index in
    ``breaks``. With ``overlap``, a chunk starts with the previous chunk's last sentences (up to ``overlap``
    tokens). A sentence longer than ``max_tokens`` is cut into token windows."""
    breaks = breaks or set()
    chunks: list[str] = []
    current: list[int] = []

    def close() -> list[int]:
        if not current:
            return []
        chunks.append(" ".join(sentences[i] for i in current))
        carry, total = [], 0
        for i in reversed(current):
            if total + lengths[i] > overlap:
                break
            carry.insert(0, i)
            total += lengths[i]
        return carry if len(carry) < len(current) else []

    for i, (sentence, n) in enumerate(zip(sentences, lengths, strict=True)):
        if n > max_tokens:
            close()
            current = []
            chunks.extend(token_windows(sentence, tokenizer, max_tokens, min(overlap, max_tokens - 1)))
            continue
        size = sum(lengths[j] for j in current)
        if current and (i in breaks or size + n > max_tokens):
            current = close()
            if i in breaks:
                current = []  # a topic change: no overlap across it
            while current and sum(lengths[j] for j in current) + n > max_tokens:
                current.pop(0)
        current.append(i)
    close()
    return chunks


def semantic_breaks(embeddings: np.ndarray, quantile: float = 0.25) -> set[int]:
    """Indices ``i`` where sentence ``i`` starts a new topic: the cosine similarity to sentence ``i - 1`` is in
    the lowest ``quantile`` of the document's adjacent similarities (and below the document's mean)."""
    if len(embeddings) < 3:
        return set()
    unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    sims = (unit[1:] * unit[:-1]).sum(axis=1)
    cut = min(np.quantile(sims, quantile), sims.mean())
    return {i + 1 for i, s in enumerate(sims) if s <= cut and s < sims.max()}


EmbedFn = Callable[[list[str]], np.ndarray]


def chunk_text(text: str, strategy: Strategy, tokenizer, max_tokens: int, overlap: int = 0,
               embed: EmbedFn | None = None, semantic_quantile: float = 0.25) -> list[str]:
    """One document's chunks (a text that already fits is one chunk, unchanged)."""
    if strategy == "none":
        return [text]
    if not text.strip():
        return [text]
    if strategy == "tokens":
        return token_windows(text, tokenizer, max_tokens, overlap) or [text]
    sentences = split_sentences(text)
    lengths = _n_tokens(tokenizer, sentences)
    if sum(lengths) <= max_tokens:
        return [text]
    breaks: set[int] = set()
    if strategy == "semantic":
        if embed is None:
            raise ValueError("the semantic strategy needs an embedding function (chunking.semantic_model)")
        breaks = semantic_breaks(embed(sentences), semantic_quantile)
    elif strategy != "sentences":
        raise ValueError(f"Unknown chunking strategy {strategy!r}: choose none, tokens, sentences or semantic.")
    return pack_sentences(sentences, lengths, max_tokens, overlap, breaks, tokenizer) or [text]


@dataclass(frozen=True, eq=False)
class ChunkedDataset:
    """A dataset whose corpus is chunks; ``chunk_doc`` maps a chunk id to its document, ``doc_chunks`` lists a
    document's chunks in reading order."""

    dataset: Dataset
    documents: Dataset
    chunk_doc: dict[str, str]
    doc_chunks: dict[str, list[str]]

    @property
    def expansion(self) -> float:
        return len(self.chunk_doc) / max(len(self.doc_chunks), 1)

    def chunk_position(self, chunk_id: str) -> int:
        return self.doc_chunks[self.chunk_doc[chunk_id]].index(chunk_id)


def chunk_corpus(corpus: Corpus, strategy: Strategy, tokenizer, max_tokens: int, overlap: int = 0,
                 embed: EmbedFn | None = None, semantic_quantile: float = 0.25, doc_ids: list[str] | None = None,
                 progress: bool = False) -> tuple[Corpus, dict[str, str], dict[str, list[str]]]:
    """Chunk every document (or only ``doc_ids``). Each chunk keeps its document's title; the token budget for the
    text is ``max_tokens`` minus the title's tokens (at least 8), so title + chunk fit ``max_tokens``."""
    wanted = range(len(corpus)) if doc_ids is None else [corpus.index[d] for d in doc_ids]
    ids, titles, texts = [], [], []
    chunk_doc: dict[str, str] = {}
    doc_chunks: dict[str, list[str]] = {}
    for i in tqdm(wanted, desc=f"chunk ({strategy})", disable=not progress, unit="doc"):
        doc_id, title = corpus.ids[i], corpus.titles[i]
        budget = max(MIN_BUDGET, max_tokens - (_n_tokens(tokenizer, [title])[0] if title else 0))
        pieces = chunk_text(corpus.texts[i], strategy, tokenizer, budget, min(overlap, budget - 1), embed,
                            semantic_quantile)
        doc_chunks[doc_id] = []
        for j, piece in enumerate(pieces):
            chunk_id = doc_id if len(pieces) == 1 else f"{doc_id}#{j}"
            ids.append(chunk_id)
            titles.append(title)
            texts.append(piece)
            chunk_doc[chunk_id] = doc_id
            doc_chunks[doc_id].append(chunk_id)
    if len(set(ids)) != len(ids):
        raise ValueError("chunk ids clash with document ids (a document id ends in '#<n>'); rename those documents")
    return Corpus.from_records(ids, titles, texts), chunk_doc, doc_chunks


def chunk_dataset(dataset: Dataset, strategy: Strategy, tokenizer, max_tokens: int, overlap: int = 0,
                  embed: EmbedFn | None = None, semantic_quantile: float = 0.25,
                  progress: bool = False) -> ChunkedDataset:
    """The dataset with chunks for documents; every chunk of a positive document is a positive (rule ``all``);
    :func:`best_positive_chunks` narrows that to one chunk per (query, document)."""
    corpus, chunk_doc, doc_chunks = chunk_corpus(dataset.corpus, strategy, tokenizer, max_tokens, overlap, embed,
                                                 semantic_quantile, progress=progress)
    qrels = {split: {q: {c: rel for d, rel in docs.items() for c in doc_chunks.get(d, [])}
                     for q, docs in split_qrels.items()} for split, split_qrels in dataset.qrels.items()}
    chunked = Dataset(f"{dataset.name}-chunks", corpus, dataset.queries, qrels, dataset.report,
                      f"{dataset.signature}-{strategy}-{max_tokens}-{overlap}")
    logger.info("Chunked %d documents into %d chunks (%s, %d tokens, overlap %d)", len(dataset.corpus),
                len(corpus), strategy, max_tokens, overlap)
    return ChunkedDataset(chunked, dataset, chunk_doc, doc_chunks)


def best_positive_chunks(chunks: ChunkedDataset, scores: Callable[[str, list[str]], np.ndarray]) -> ChunkedDataset:
    """Rule ``best``: of each positive document's chunks, only the one ``scores(query text, chunk ids)`` ranks
    highest stays a positive (ties: the earlier chunk); the others move to :data:`SIBLINGS_SPLIT`."""
    data = chunks.dataset
    qrels: dict[str, Qrels] = {}
    siblings: Qrels = {}
    for split, split_qrels in chunks.documents.qrels.items():
        qrels[split] = {}
        for q, docs in split_qrels.items():
            kept: dict[str, int] = {}
            for d, rel in docs.items():
                cands = chunks.doc_chunks.get(d, [])
                if rel <= 0 or len(cands) == 1:
                    kept.update(dict.fromkeys(cands, rel))
                    continue
                values = np.asarray(scores(data.queries.text(q), cands), dtype=np.float64)
                best = int(np.argmax(values))
                kept[cands[best]] = rel
                siblings.setdefault(q, {}).update({c: rel for j, c in enumerate(cands) if j != best})
            qrels[split][q] = kept
    if siblings:
        qrels[SIBLINGS_SPLIT] = siblings
    dataset = Dataset(data.name, data.corpus, data.queries, qrels, data.report, data.signature + "-best")
    return ChunkedDataset(dataset, chunks.documents, chunks.chunk_doc, chunks.doc_chunks)


def aggregate_scores(chunk_scores: dict[str, float], doc_chunks: dict[str, list[str]], docs: list[str],
                     method: Aggregation) -> dict[str, float]:
    """One query's document scores from its chunk scores. ``maxp``: the best chunk; ``firstp``: the first chunk;
    ``sump``: the sum over the document's scored chunks. Chunks without a score are left out (a document with no
    scored chunk is left out)."""
    out: dict[str, float] = {}
    for d in docs:
        values = [chunk_scores[c] for c in doc_chunks.get(d, [d]) if c in chunk_scores]
        if not values:
            continue
        if method == "maxp":
            out[d] = max(values)
        elif method == "firstp":
            out[d] = values[0]
        elif method == "sump":
            out[d] = float(sum(values))
        else:
            raise ValueError(f"Unknown aggregation {method!r}: choose maxp, firstp or sump.")
    return out


def documents_run(chunk_run: dict[str, dict[str, float]], chunk_doc: dict[str, str]) -> dict[str, dict[str, float]]:
    """A first-stage chunk run as a document run: each document at its best chunk's score (MaxP)."""
    out: dict[str, dict[str, float]] = {}
    for q, scores in chunk_run.items():
        docs = out.setdefault(q, {})
        for c, s in scores.items():
            d = chunk_doc.get(c, c)
            if d not in docs or s > docs[d]:
                docs[d] = s
    return out


def load_tokenizer(model: str):
    """The re-ranker's tokenizer (chunk sizes and document lengths are counted in the tokens it sees)."""
    from transformers import AutoTokenizer

    # Only counting and splitting here, never truncating: no "longer than the maximum" warnings for long documents.
    return AutoTokenizer.from_pretrained(resolve_st_model(model), model_max_length=1_000_000)


@dataclass(frozen=True)
class ChunkedRun:
    """What chunking a run built: the chunks, and the retrievers it indexed over them to pick each positive's best
    chunk (``None`` under the ``all`` rule), which mining and evaluation reuse."""

    chunks: ChunkedDataset
    retrievers: Retrievers | None


def chunk_for_run(dataset: Dataset, config: RunConfig, cache_dir: Path) -> ChunkedRun:
    """Chunk a run's dataset per ``config.chunking``; under the ``best`` rule the run's ensemble, indexed over the
    chunks, picks the best chunk of each positive."""
    cc = config.chunking
    tokenizer = load_tokenizer(config.train.base_model)
    embed = None
    if cc.strategy == "semantic":
        embedder = get_embedder(cc.semantic_model)

        def embed(texts: list[str]) -> np.ndarray:
            return embedder.embed(texts, "document", cache_dir=cache_dir, progress=False)

    chunks = chunk_dataset(dataset, cc.strategy, tokenizer, cc.max_tokens, cc.overlap, embed, cc.semantic_quantile,
                           progress=config.progress)
    retrievers = None
    if cc.positive == "best":
        retrievers = Retrievers(chunks.dataset, config, cache_dir)
        ensemble = retrievers.ensemble(config.ensemble)
        index = chunks.dataset.corpus.index

        def scores(query: str, chunk_ids: list[str]) -> np.ndarray:
            pool = ensemble.candidates([query], 1, [[index[c] for c in chunk_ids]])[0]
            fused = dict(zip(pool.doc_idx.tolist(), pool.fused.tolist()))
            return np.array([fused[index[c]] for c in chunk_ids])

        chunks = best_positive_chunks(chunks, scores)
    return ChunkedRun(chunks, retrievers)


def document_scores(chunk_scores: dict[str, dict[str, float]], doc_run: dict[str, dict[str, float]],
                    rerank_depth: int, doc_chunks: dict[str, list[str]], method: Aggregation) -> dict[str, dict[str, float]]:
    """Re-ranker scores of each query's top ``rerank_depth`` documents, aggregated from their chunks' scores."""
    return {q: aggregate_scores(chunk_scores.get(q, {}), doc_chunks, ranked(docs)[:rerank_depth], method)
            for q, docs in doc_run.items()}


def chunk_pairs(doc_run: dict[str, dict[str, float]], rerank_depth: int,
                doc_chunks: dict[str, list[str]]) -> list[tuple[str, str]]:
    """(query, chunk) pairs to score: every chunk of each query's top ``rerank_depth`` documents."""
    return [(q, c) for q, docs in doc_run.items() for d in ranked(docs)[:rerank_depth] for c in doc_chunks.get(d, [d])]


def top_documents(run: dict[str, dict[str, float]], depth: int) -> dict[str, dict[str, float]]:
    return {q: {d: scores[d] for d in ranked(scores)[:depth]} for q, scores in run.items()}
