"""First-stage quality of each candidate ensemble member and of their fusions (nDCG@10 etc. via ranx).

Usage: python benchmarks/first_stage.py --dataset scifact --output benchmarks/first_stage/first_stage_scifact.json
Chooses the default ensemble by measurement: it records every member alone and every fusion of them.
"""

from __future__ import annotations

import argparse
import itertools
import platform
import sys
import time

from hardneg.data import load_beir, resolve_dataset
from hardneg.evaluate import evaluate_run, first_stage_run
from hardneg.io import write_json
from hardneg.retrieve import Ensemble, make_retriever

METRICS = ["ndcg@10", "mrr@10", "recall@100"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="scifact")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--split", default="test")
    parser.add_argument("--models", default="bm25,minilm,wordllama")
    parser.add_argument("--fusions", default="zscore,minmax,rrf")
    parser.add_argument("--weights", default="", help="weightings of the full ensemble to try, e.g. '1,.5,1;1,0,1'")
    parser.add_argument("--cache-dir", default="runs/.cache/embeddings")
    parser.add_argument("--output", required=True)
    args = parser.parse_args()

    dataset = load_beir(resolve_dataset(args.dataset, args.data_dir))
    queries = sorted(dataset.positives(args.split))
    qrels = {q: dataset.qrels[args.split][q] for q in queries}
    texts = dataset.corpus.full_texts()
    members, rows = {}, []
    for name in args.models.split(","):
        retriever = make_retriever(name, cache_dir=args.cache_dir)
        started = time.perf_counter()
        retriever.index(texts, dataset.corpus.ids)
        members[name] = retriever
        index_s = time.perf_counter() - started
        run = first_stage_run(dataset, queries, Ensemble([retriever]), 100)
        rows.append({"system": name, "fusion": None, "index_seconds": round(index_s, 1),
                     **evaluate_run(qrels, run, METRICS)})
        print(rows[-1], file=sys.stderr)
    names = list(members)
    for size in range(2, len(names) + 1):
        for combo in itertools.combinations(names, size):
            for fusion in args.fusions.split(","):
                run = first_stage_run(dataset, queries, Ensemble([members[n] for n in combo], fusion), 100)
                rows.append({"system": "+".join(combo), "fusion": fusion, **evaluate_run(qrels, run, METRICS)})
                print(rows[-1], file=sys.stderr)
    for weighting in filter(None, args.weights.split(";")):
        weights = [float(w) for w in weighting.split(",")]
        run = first_stage_run(dataset, queries, Ensemble([members[n] for n in names], "zscore", weights), 100)
        rows.append({"system": "+".join(names), "fusion": "zscore", "weights": weights,
                     **evaluate_run(qrels, run, METRICS)})
        print(rows[-1], file=sys.stderr)
    write_json(args.output, {"command": " ".join(["python"] + sys.argv), "dataset": args.dataset,
                             "split": args.split, "queries": len(queries), "machine": platform.platform(),
                             "note": "index_seconds includes embedding the corpus (cold cache on first run)",
                             "rows": rows})


if __name__ == "__main__":
    main()
