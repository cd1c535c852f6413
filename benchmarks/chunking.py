"""Long documents: chunking strategies x aggregations for a trained re-ranker, on short and long test queries.

Usage (about what docs/RESULTS.md records):
  nice -n 10 python benchmarks/chunking.py --dataset scifact \
      --model ../main/runs/scifact/strategies/ensemble/model \
      --first-stage ../main/runs/scifact/runs/ensemble.test.trec --output benchmarks/chunking/chunking_scifact.json

The first stage's top ``--depth`` documents per test query are re-ranked by the cross-encoder (max length 128):
``none`` scores each document truncated to the max length; ``tokens``, ``sentences`` and ``semantic`` score every
chunk and take each document's MaxP / FirstP / SumP. Queries are "long" when a positive document has more than
``--threshold`` model tokens. Scores are cached (``--cache``) so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

from hardneg.chunk import aggregate_scores, chunk_corpus, load_tokenizer
from hardneg.crossencoder import load_cross_encoder
from hardneg.data import load_beir, resolve_dataset
from hardneg.evaluate import evaluate_run, ranked, rerank_run
from hardneg.io import atomic_write, write_json
from hardneg.lengths import document_tokens, metrics_by_length, split_by_length
from hardneg.splits import sample_queries

METRICS = ["mrr@10", "ndcg@10"]
AGGREGATIONS = ["maxp", "firstp", "sump"]


def read_trec(path: Path, depth: int) -> dict[str, dict[str, float]]:
    run: dict[str, dict[str, float]] = {}
    for line in path.read_text().splitlines():
        qid, _, doc, rank, score, _ = line.split()
        if int(rank) <= depth:
            run.setdefault(qid, {})[doc] = float(score)
    return run


class PairCache:
    """CE scores by (query text, passage text), saved every few thousand pairs."""

    def __init__(self, path: Path, model_key: str):
        self.path, self.key = path, model_key
        saved = json.loads(path.read_text()) if path.is_file() else {}
        self.scores: dict[str, float] = saved.get("scores", {}) if saved.get("model") == model_key else {}

    def save(self) -> None:
        with atomic_write(self.path) as handle:
            json.dump({"model": self.key, "scores": self.scores}, handle)

    def score(self, model, pairs: list[tuple[str, str]], batch_size: int) -> list[float]:
        keys = [f"{q}\x00{p}" for q, p in pairs]
        todo = list(dict.fromkeys(k for k in keys if k not in self.scores))
        todo.sort(key=len, reverse=True)
        for start in range(0, len(todo), 2048):
            block = todo[start:start + 2048]
            values = model.predict([tuple(k.split("\x00", 1)) for k in block], batch_size=batch_size,
                                   show_progress_bar=False)
            self.scores.update({k: float(v) for k, v in zip(block, values, strict=True)})
            self.save()
            print(f"  scored {min(start + 2048, len(todo))}/{len(todo)} new pairs", file=sys.stderr, flush=True)
        return [self.scores[k] for k in keys]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="scifact")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--split", default="test")
    parser.add_argument("--model", required=True, help="trained CrossEncoder folder")
    parser.add_argument("--first-stage", required=True, help="TREC run of the first stage on the split")
    parser.add_argument("--depth", type=int, default=10)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threshold", type=int, default=128)
    parser.add_argument("--chunk-tokens", type=int, default=96, help="chunk size (title included)")
    parser.add_argument("--overlap", type=int, default=16)
    parser.add_argument("--strategies", default="none,tokens,sentences,semantic")
    parser.add_argument("--max-queries", type=int, default=None, help="seeded subset of the split's queries")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--add-short", action="store_true", help="add every short query of the split to the subset "
                        "(SciFact has only 3, which a seeded subset easily misses)")
    parser.add_argument("--alpha", type=float, default=0.5, help="also report the re-ranker interpolated with the "
                        "first stage at this weight (0.5: the weight the full SciFact run tuned on dev)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--cache", default="runs/.cache/chunking_scores.json")
    parser.add_argument("--embed-cache", default="runs/.cache/embeddings")
    parser.add_argument("--output", required=True)
    args = parser.parse_args()

    started = time.time()
    data = load_beir(resolve_dataset(args.dataset, args.data_dir))
    corpus, queries = data.corpus, data.queries
    tokenizer = load_tokenizer(args.model)
    lengths = document_tokens(corpus, tokenizer)
    every = sorted(data.positives(args.split))
    query_ids = sample_queries(every, args.max_queries, args.seed)
    if args.add_short:
        short = split_by_length({q: data.qrels[args.split][q] for q in every}, lengths, args.threshold).short
        query_ids = sorted(set(query_ids) | set(short))
    qrels = {q: data.qrels[args.split][q] for q in query_ids}
    first = {q: docs for q, docs in read_trec(Path(args.first_stage), args.depth).items() if q in qrels}
    split = split_by_length(qrels, lengths, args.threshold)
    candidates = sorted({d for docs in first.values() for d in docs})
    model = load_cross_encoder(args.model, args.max_length)
    cache = PairCache(Path(args.cache), f"{Path(args.model).resolve()}|{args.max_length}")

    def measure(run) -> dict:
        return {"all": evaluate_run(qrels, run, METRICS), **metrics_by_length(qrels, run, METRICS, split)}

    rows = [{"strategy": "first stage", "aggregation": None, "mode": "first stage", "alpha": None,
             "metrics": measure(first)}]
    chunk_stats = {}
    for strategy in args.strategies.split(","):
        t0 = time.time()
        if strategy == "none":
            doc_chunks = {d: [d] for d in candidates}
            texts = {d: corpus.full_text(corpus.index[d]) for d in candidates}
        else:
            embed = None
            if strategy == "semantic":
                from hardneg.embed import get_embedder

                embedder = get_embedder("minilm")

                def embed(sentences, embedder=embedder):
                    return embedder.embed(sentences, "document", cache_dir=args.embed_cache, progress=False)

            chunked, _, doc_chunks = chunk_corpus(corpus, strategy, tokenizer, args.chunk_tokens, args.overlap,
                                                  embed, doc_ids=candidates)
            texts = {c: chunked.full_text(i) for i, c in enumerate(chunked.ids)}
        pairs = [(q, c) for q, docs in first.items() for d in docs for c in doc_chunks[d]]
        values = cache.score(model, [(queries.text(q), texts[c]) for q, c in pairs], args.batch_size)
        chunk_scores: dict[str, dict[str, float]] = {}
        for (q, c), v in zip(pairs, values, strict=True):
            chunk_scores.setdefault(q, {})[c] = v
        n_chunks = [len(doc_chunks[d]) for d in candidates]
        chunk_stats[strategy] = {"documents": len(candidates), "chunks": sum(n_chunks),
                                 "max_chunks_per_document": max(n_chunks), "pairs_scored": len(pairs),
                                 "seconds": round(time.time() - t0, 1)}
        for aggregation in (["maxp"] if strategy == "none" else AGGREGATIONS):
            doc_scores = {q: aggregate_scores(chunk_scores[q], doc_chunks, ranked(docs), aggregation)
                          for q, docs in first.items()}
            for mode, alpha in (("rerank", 1.0), ("interpolated", args.alpha)):
                run = rerank_run(first, doc_scores, args.depth, alpha)
                rows.append({"strategy": strategy, "aggregation": None if strategy == "none" else aggregation,
                             "mode": mode, "alpha": alpha, "metrics": measure(run)})
        print(f"{strategy}: {chunk_stats[strategy]}", file=sys.stderr, flush=True)

    write_json(args.output, {
        "command": "python " + " ".join(sys.argv), "dataset": data.name, "split": args.split,
        "queries": len(qrels), "lengths": split.as_dict(),
        "documents_over_threshold": sum(v > args.threshold for v in lengths.values()), "corpus": len(corpus),
        "model": args.model, "max_length": args.max_length, "chunk_tokens": args.chunk_tokens,
        "overlap": args.overlap, "depth": args.depth, "alpha": args.alpha, "chunks": chunk_stats, "rows": rows,
        "seconds": round(time.time() - started, 1), "machine": platform.platform(),
    })
    for row in rows:
        m = row["metrics"]
        print(f"{row['strategy']:12s} {row['aggregation'] or '-':7s} {row['mode']:12s} " + "  ".join(
            f"{k}: " + " ".join(f"{x}={m[k][x]:.3f}" for x in METRICS) for k in ("all", "long", "short") if k in m))


if __name__ == "__main__":
    main()
