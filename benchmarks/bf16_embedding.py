"""MiniLM embedding in float32 against bf16 autocast on the CPU (``compute.precision`` fp32 / bf16; ``auto`` is
bf16 on a CPU with bf16 instructions): per collection, the corpus and test queries embedded both ways with no
cache, documents per second, cosine of each bf16 vector to its float32 one, MiniLM alone as a first stage on the
test queries (nDCG@10, recall@100, a paired test over queries), and how much of each query's top 100 is the same
(``--merge``: add the collections to an existing result file, each measured anew).

    HARDNEG_DATA=../shared/data python benchmarks/bf16_embedding.py scifact cranfield cisi med cacm adi \
        --output benchmarks/speed/bf16_embedding.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

DEPTH = 100


def embed(texts: list[str], kind: str, precision: str) -> tuple[np.ndarray, float]:
    from hardneg.compute_config import ComputeConfig
    from hardneg.device import use_compute
    from hardneg.embed import get_embedder

    with use_compute(ComputeConfig(device="cpu", precision=precision)):
        embedder = get_embedder("minilm")
        embedder.embed(texts[:32], kind, progress=False)  # load and warm up outside the clock
        start = time.perf_counter()
        vectors = embedder.embed(texts, kind, progress=False)
        return vectors, time.perf_counter() - start


def top(queries: np.ndarray, docs: np.ndarray, query_ids: list[str], doc_ids: list[str]) -> dict:
    """Each query's exact top 100 by hardneg's own search, ties broken by document id."""
    from hardneg.knn import build_index, search
    from hardneg.retrieve.base import id_rank

    positions, scores = search(build_index(docs), docs, queries, DEPTH, id_rank(doc_ids))
    return {qid: {doc_ids[j]: float(v) for j, v in zip(row, values)}
            for qid, row, values in zip(query_ids, positions, scores)}


def collection(name: str) -> dict:
    from hardneg.data import load_beir, resolve_dataset
    from hardneg.evaluate.metrics import per_query_metrics
    from hardneg.evaluate.stats import paired_test

    dataset = load_beir(resolve_dataset(name, download=False), splits=["test"])
    qrels = dataset.qrels["test"]
    query_ids = sorted(qrels)
    docs = dataset.corpus.full_texts()
    queries = [dataset.queries.text(q) for q in query_ids]
    out: dict = {"documents": len(docs), "test_queries": len(query_ids)}
    runs, vectors = {}, {}
    for precision in ("fp32", "bf16"):
        doc_vectors, seconds = embed(docs, "document", precision)
        query_vectors, _ = embed(queries, "query", precision)
        vectors[precision] = doc_vectors
        runs[precision] = top(query_vectors, doc_vectors, query_ids, dataset.corpus.ids)
        out[precision] = {"embed_seconds": round(seconds, 2), "documents_per_second": round(len(docs) / seconds, 1)}
    cosine = np.sum(vectors["fp32"] * vectors["bf16"], axis=1)
    out["cosine_to_fp32"] = {"min": float(cosine.min()), "mean": float(cosine.mean())}
    metrics = ["ndcg@10", "recall@100"]
    per_query = {p: per_query_metrics(qrels, runs[p], metrics) for p in runs}
    for metric in metrics:
        a = [per_query["fp32"][metric][q] for q in query_ids]
        b = [per_query["bf16"][metric][q] for q in query_ids]
        out[metric] = {"fp32": float(np.mean(a)), "bf16": float(np.mean(b)), "delta": float(np.mean(b) - np.mean(a)),
                       "p_value": paired_test(a, b), "queries_changed": int(sum(x != y for x, y in zip(a, b)))}
    depth = min(DEPTH, len(docs))
    overlap = [len(set(runs["fp32"][q]) & set(runs["bf16"][q])) / depth for q in query_ids]
    out["top100_overlap"] = {"mean": float(np.mean(overlap)), "min": float(np.min(overlap))}
    out["speedup"] = round(out["fp32"]["embed_seconds"] / out["bf16"]["embed_seconds"], 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("collections", nargs="+")
    parser.add_argument("--output", required=True)
    parser.add_argument("--merge", action="store_true", help="keep the output file's other collections")
    args = parser.parse_args()

    from hardneg.device import cpu_has_native_bf16
    from hardneg.io import write_json

    command = "python benchmarks/bf16_embedding.py " + " ".join(args.collections)
    machine = f"{platform.platform()}, {os.cpu_count()} cores, native bf16: {cpu_has_native_bf16()}"
    result = {"commands": [command], "machine": machine, "collections": {}}
    if args.merge and os.path.isfile(args.output):
        with open(args.output) as handle:
            result = json.load(handle)
        result["commands"] = result.get("commands", [result.pop("command", "")]) + [command + " --merge"]
    for name in args.collections:
        result["collections"][name] = collection(name)
        print(name, result["collections"][name], flush=True)
        write_json(args.output, result)


if __name__ == "__main__":
    main()
