"""Cheap mining diagnostics, no training: for every strategy of a config, mine a dataset's training pairs and
record the mining time, what each rule removed, fused scores of positives vs negatives, member overlap, and a
false-negative proxy: the share of mined negatives (none of them labelled positive) that a trained re-ranker
scores at or above the pair's positive, on a seeded sample of pairs (the same pairs for every strategy).

Usage: python benchmarks/mining_diagnostics.py CONFIG --dataset scifact --reranker MODEL_DIR --output OUT.json
       [--sample-pairs 100] [--cache-dir DIR] [--plots-strategy NAME --plots-dir docs/img]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from hardneg.config import load_config
from hardneg.crossencoder import load_cross_encoder
from hardneg.data import load_beir, resolve_dataset
from hardneg.diagnostics import mining_diagnostics, plot_distributions
from hardneg.io import write_json
from hardneg.mine import mine, training_pairs
from hardneg.pipeline.dev_split import split_for_run
from hardneg.retrieve import Retrievers
from hardneg.splits import sample_queries


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--dataset", default="scifact")
    parser.add_argument("--reranker", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--sample-pairs", type=int, default=100)
    parser.add_argument("--cache-dir", default="runs/.cache/embeddings")
    parser.add_argument("--strategies", nargs="*", help="only these strategies (default all)")
    parser.add_argument("--plots-strategy")
    parser.add_argument("--plots-dir", default="docs/img")
    args = parser.parse_args()

    cfg = load_config(args.config, {"dataset": args.dataset, "progress": False})
    dataset = load_beir(resolve_dataset(cfg.dataset, cfg.data_dir))
    train_ids = sample_queries(sorted(dataset.positives(cfg.train_split)), cfg.max_train_queries, cfg.seed)
    train_ids = split_for_run(cfg, train_ids).train_ids  # what prepare() trains on
    pairs = training_pairs(dataset, cfg.train_split, train_ids)
    rng = np.random.default_rng(cfg.seed)
    sampled = {pairs[i] for i in rng.choice(len(pairs), size=min(args.sample_pairs, len(pairs)), replace=False)}

    retrievers = Retrievers(dataset, cfg, Path(args.cache_dir))
    started = time.perf_counter()
    for name in cfg.ensemble:
        retrievers.get(name)
    index_seconds = time.perf_counter() - started
    reranker = load_cross_encoder(args.reranker, 128)
    ce_cache: dict[tuple[str, str], float] = {}

    def ce(query_id: str, doc_ids: list[str]) -> list[float]:
        missing = [d for d in dict.fromkeys(doc_ids) if (query_id, d) not in ce_cache]
        if missing:
            text = dataset.queries.text(query_id)
            scores = reranker.predict([(text, dataset.corpus.full_text(dataset.corpus.index[d])) for d in missing],
                                      batch_size=32, show_progress_bar=False)
            ce_cache.update({(query_id, d): float(s) for d, s in zip(missing, np.asarray(scores).reshape(-1))})
        return [ce_cache[(query_id, d)] for d in doc_ids]

    out: dict = {"command": " ".join(["python", *sys.argv]),
                 "machine": f"{platform.platform()}, {os.cpu_count()} cores (shared, niced)",
                 "dataset": dataset.name, "pairs": len(pairs), "sampled_pairs": len(sampled),
                 "reranker": args.reranker, "index_seconds": round(index_seconds, 1), "strategies": {}}
    for strategy in cfg.strategies:
        if args.strategies and strategy.name not in args.strategies:
            continue
        mining = cfg.mining_for(strategy)
        members = cfg.members_for(strategy)
        ensemble = (retrievers.ensemble(members, mining.fusion, mining.kept_variance)
                    if strategy.kind != "random" else None)
        started = time.perf_counter()
        result = mine(dataset, pairs, ensemble, mining, strategy.name, seed=cfg.seed, progress=False)
        seconds = time.perf_counter() - started
        hard_above = hard_total = all_above = all_total = 0
        margins = []
        for pair in result.pairs:
            if (pair.query_id, pair.positive_id) not in sampled:
                continue
            positive, *negatives = ce(pair.query_id, [pair.positive_id, *pair.negative_ids])
            for score, source in zip(negatives, pair.negative_sources):
                all_total += 1
                all_above += score >= positive
                if source == "hard":
                    hard_total += 1
                    hard_above += score >= positive
                    margins.append(positive - score)
        likely_checked = [r for r in result.likely_positives if (r["query_id"], r["positive_id"]) in sampled]
        likely_above = sum(ce(r["query_id"], [r["doc_id"]])[0] >= ce(r["query_id"], [r["positive_id"]])[0]
                           for r in likely_checked)
        diag = mining_diagnostics(result)
        out["strategies"][strategy.name] = {
            "mining": mining.stamp(), "members": members, "mining_seconds": round(seconds, 2),
            "false_negative_proxy": {
                "hard_negatives_checked": hard_total,
                "hard_at_or_above_positive": round(hard_above / hard_total, 4) if hard_total else None,
                "all_negatives_checked": all_total,
                "all_at_or_above_positive": round(all_above / all_total, 4) if all_total else None,
                "mean_ce_margin_positive_minus_hard": round(float(np.mean(margins)), 3) if margins else None,
                "likely_positives_checked": len(likely_checked),
                "likely_positives_ce_at_or_above_positive": likely_above},
            **{k: diag[k] for k in ("hard_share", "positive_scores", "negative_scores", "margin_to_hardest",
                                    "negative_above_positive", "removed", "pairs_short", "pairs_short_of_hard",
                                    "random_fill", "likely_positives", "member_overlap", "clusters")},
            "pairs": diag["pairs"],
        }
        print(f"{strategy.name}: {seconds:.1f}s, removed {diag['removed']}, FN proxy "
              f"{out['strategies'][strategy.name]['false_negative_proxy']}", flush=True)
        if strategy.name == args.plots_strategy:
            plot_distributions(result, Path(args.plots_dir) / f"mining_{args.dataset}_{strategy.name}.png",
                               f"{args.dataset} train pairs, strategy {strategy.name}")
        write_json(args.output, out)  # after every strategy, so a cut-short run is still recorded


if __name__ == "__main__":
    main()
