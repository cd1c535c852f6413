"""The paper's question asked of the embedder (issue 16): all-MiniLM-L6-v2 fine-tuned on the negatives each strategy
mines (ensemble, random, BM25, a single dense model), on one collection's training split, evaluated on its test
queries alone and fused into the ensemble, against the untrained first stage; paired tests with Holm correction.

No re-ranker is trained: the pipeline's own stages (prepare, mine_strategy, train_embedder) are called directly, so
the figures are those a `hardneg run` with `embedder.enabled` would give for the first stage.

Usage (about 15 min per strategy and seed on 2 cores for SciFact's full training split):
  HARDNEG_DATA=../shared/data python benchmarks/embedder_negatives.py --dataset scifact \
      --strategies ensemble,random,bm25,dense:minilm --seeds 42 --output benchmarks/first_stage_tuning/x.json
Records of separate runs (other seeds, or other strategies of one seed) pooled into one, summary recomputed:
  python benchmarks/embedder_negatives.py --merge a.json b.json --output benchmarks/first_stage_tuning/pooled.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from hardneg.config import config_from_dict, fingerprint
from hardneg.embedder import dev_retrieval_data, train_embedder
from hardneg.evaluate import adjust_pvalues, first_stage_run, paired_test, per_query_metrics, test_comparison
from hardneg.io import write_json
from hardneg.lock import release
from hardneg.pipeline.context import prepare
from hardneg.pipeline.mining import mine_strategy
from hardneg.rundir import slug

METRICS = ["ndcg@10", "mrr@10", "recall@100"]


def per_query(qrels, run) -> dict[str, dict[str, float]]:
    return per_query_metrics(qrels, run, METRICS)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="scifact")
    parser.add_argument("--strategies", default="ensemble,random,bm25,dense:minilm")
    parser.add_argument("--seeds", default="42")
    parser.add_argument("--member", default="minilm", help="the dense member fine-tuned")
    parser.add_argument("--max-train-queries", type=int, default=None)
    parser.add_argument("--set", action="append", default=[], help="config overrides, e.g. embedder.epochs=3")
    parser.add_argument("--output-dir", default="runs/embedder-negatives")
    parser.add_argument("--output", required=True)
    parser.add_argument("--merge", nargs="+", default=None, help="pool these records instead of running")
    parser.add_argument("--only", default=None, help="with --merge: pool only these strategies (comma-separated)")
    args = parser.parse_args()
    if args.merge:
        record = merge([json.loads(Path(f).read_text()) for f in args.merge], args.merge,
                       args.only.split(",") if args.only else None)
        write_json(Path(args.output), record)
        print_summary(record["summary"])
        return

    started_all = time.perf_counter()
    strategies = args.strategies.split(",")
    record: dict = {"command": "python " + " ".join(sys.argv), "machine": f"{platform.platform()}, 2 cores",
                    "date": time.strftime("%Y-%m-%d"), "dataset": args.dataset, "member": args.member,
                    "seeds": {}, "metrics": METRICS}
    for seed in [int(s) for s in args.seeds.split(",")]:
        raw = {"dataset": args.dataset, "output": f"{args.output_dir}/{args.dataset}-{seed}", "seed": seed,
               "strategies": strategies, "max_train_queries": args.max_train_queries,
               "embedder": {"enabled": True}, "evaluate": {"split": "test", "first_stages": ["ensemble"]}}
        overrides = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
        config = config_from_dict(raw, overrides, source="embedder_negatives")
        ctx = prepare(config)
        try:
            record["seeds"][str(seed)] = run_seed(ctx, args.member, seed)
        finally:
            release(ctx.folder.lock)
        record["config"] = config.model_dump()
        write_json(Path(args.output), record)  # after every seed: a long run keeps what it finished
    record["summary"] = summarise(record)
    record["wall_seconds"] = round(time.perf_counter() - started_all, 1)
    record["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)
    write_json(Path(args.output), record)
    print_summary(record["summary"])


def print_summary(summary: dict) -> None:
    for name, row in summary.items():
        print(f"{name:40s} " + "  ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                          for k, v in row.items()))


def merge(records: list[dict], files: list[str], only: list[str] | None = None) -> dict:
    """One record from several: per seed, the strategies (and their per-query values) of every record that ran it,
    or only those named in ``only``. The untrained first stage of a seed is the same in each (same split and
    models), so the first one's is kept."""
    seeds: dict = {}
    for record in records:
        if record["member"] != records[0]["member"] or record["dataset"] != records[0]["dataset"]:
            raise ValueError("Only records of one dataset and one fine-tuned member can be pooled.")
        for seed, found in record["seeds"].items():
            into = seeds.setdefault(seed, {**found, "strategies": {}, "per_query": {}})
            kept = [name for name in found["strategies"] if only is None or name in only]
            into["strategies"].update({name: found["strategies"][name] for name in kept})
            into["per_query"].update({key: values for key, values in found["per_query"].items()
                                      if key.startswith("untrained ") or key.rsplit(" ", 1)[0] in kept})
    missing = {seed: sorted(set().union(*(s["strategies"] for s in seeds.values())) - set(s["strategies"]))
               for seed, s in seeds.items()}
    if any(missing.values()):
        raise ValueError(f"Seeds without every strategy cannot be pooled: {missing}")
    pooled = {"command": "python " + " ".join(sys.argv), "merged_from": {f: r["command"] for f, r in zip(files, records)},
              "date": time.strftime("%Y-%m-%d"), "dataset": records[0]["dataset"], "member": records[0]["member"],
              "metrics": records[0]["metrics"], "machine": records[0]["machine"], "config": records[0].get("config"),
              "strategies": only, "seeds": dict(sorted(seeds.items())),
              "wall_seconds_by_record": {f: r.get("wall_seconds") for f, r in zip(files, records)}}
    pooled["summary"] = summarise(pooled)
    return pooled


def run_seed(ctx, member: str, seed: int) -> dict:
    config, ec = ctx.config, ctx.config.embedder
    test_ids = sorted(ctx.documents.positives("test"))
    qrels = {q: ctx.documents.qrels["test"][q] for q in test_ids}
    dev = dev_retrieval_data(ctx.dataset, ctx.dev_ids, config.train_split, ec.dev_max_queries,
                             ec.dev_max_documents, seed) if ec.dev_eval and ctx.dev_ids else None
    members = list(config.ensemble)
    untrained = {"ensemble": ctx.retrievers.ensemble(members),
                 f"{member} alone": ctx.retrievers.ensemble([member])}
    base_runs = {name: first_stage_run(ctx.dataset, test_ids, ens, config.evaluate.depth)
                 for name, ens in untrained.items()}
    values = {name: per_query(qrels, run) for name, run in base_runs.items()}
    out: dict = {"train_queries": len(ctx.train_ids), "dev_queries": len(ctx.dev_ids), "test_queries": len(test_ids),
                 "untrained": {name: {m: float(np.mean(list(v[m].values()))) for m in METRICS}
                               for name, v in values.items()}, "strategies": {}, "per_query": {}}
    out["per_query"].update({f"untrained {name}": v["ndcg@10"] for name, v in values.items()})
    for strategy in config.strategies:
        started = time.perf_counter()
        pairs, mining = mine_strategy(ctx, strategy, ctx.folder.strategy(strategy.name))
        folder = ctx.folder.strategy(strategy.name).path / "embedders" / slug(member)
        model = train_embedder(pairs, member, folder, ec, seed=seed, progress=config.progress, dev=dev,
                               card={"dataset": ctx.dataset.name, "strategy": strategy.name},
                               fingerprint=fingerprint(mining["fingerprint"], member, ec, seed))
        trained_s = time.perf_counter() - started
        tuned = {"alone": ctx.retrievers.ensemble([str(model)]),
                 "fused": ctx.retrievers.ensemble([str(model) if m == member else m for m in members],
                                                  weights=config.weights)}  # the untrained ensemble's weights
        runs = {how: first_stage_run(ctx.dataset, test_ids, ens, config.evaluate.depth) for how, ens in tuned.items()}
        found = {how: per_query(qrels, run) for how, run in runs.items()}
        out["strategies"][strategy.name] = {
            "pairs": len(pairs), "train_and_mine_seconds": round(trained_s, 1),
            "seconds_total": round(time.perf_counter() - started, 1),
            **{how: {m: float(np.mean(list(v[m].values()))) for m in METRICS} for how, v in found.items()},
            "alone_vs_untrained_member": test_comparison(qrels, base_runs[f"{member} alone"], runs["alone"],
                                                         ["ndcg@10"], seed=seed)["ndcg@10"],
            "fused_vs_untrained_ensemble": test_comparison(qrels, base_runs["ensemble"], runs["fused"], ["ndcg@10"],
                                                           seed=seed)["ndcg@10"]}
        out["per_query"].update({f"{strategy.name} {how}": v["ndcg@10"] for how, v in found.items()})
        print(strategy.name, {k: v for k, v in out["strategies"][strategy.name].items()
                              if k in ("alone", "fused", "seconds_total")}, file=sys.stderr, flush=True)
    return out


def summarise(record: dict) -> dict:
    """Per strategy, over seeds: mean nDCG@10 alone and fused; ensemble negatives against each other strategy
    (queries pooled over seeds, paired), Holm-corrected over the comparisons."""
    seeds = list(record["seeds"].values())
    names = list(next(iter(seeds))["strategies"]) if seeds else []
    summary: dict = {}
    for name in names:
        summary[name] = {f"{how} ndcg@10": float(np.mean([s["strategies"][name][how]["ndcg@10"] for s in seeds]))
                         for how in ("alone", "fused")}
    summary["untrained"] = {f"{how} ndcg@10": float(np.mean([s["untrained"][key]["ndcg@10"] for s in seeds]))
                            for how, key in (("alone", f"{record['member']} alone"), ("fused", "ensemble"))}
    if "ensemble" in names:
        tests = []
        for other in [n for n in names if n != "ensemble"]:
            for how in ("alone", "fused"):
                a = np.concatenate([[s["per_query"][f"{other} {how}"][q] for q in sorted(s["per_query"][f"{other} {how}"])]
                                    for s in seeds])
                b = np.concatenate([[s["per_query"][f"ensemble {how}"][q] for q in sorted(s["per_query"][f"ensemble {how}"])]
                                    for s in seeds])
                tests.append((f"ensemble vs {other} ({how})", float((b - a).mean()), paired_test(a, b)))
        corrected = adjust_pvalues([p for _, _, p in tests], "holm")
        for (label, gain, p), holm in zip(tests, corrected):
            summary[label] = {"gain ndcg@10": gain, "p": p, "p holm": float(holm)}
    return summary


if __name__ == "__main__":
    main()
