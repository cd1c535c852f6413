"""Two dev splits side by side over seeds: runs of one collection that differ in how many training queries are held
out for dev (e.g. ``embedder.dev_fraction`` 0.1 and 0.2), one pair of run folders per seed. The dev split is where
the system is chosen, so a wider one gives the gate more queries to see a gain on and the models fewer to train on.

Per seed and split: the queries on each side, the gate's first step (the fine-tuned first stage against the
untrained one on dev: gain, interval, p; cross-validated) and what the run handed over, with test nDCG@10 of the
untrained first stage, the fine-tuned one and the system handed over. Pooled over seeds, (seed, query) units: test
nDCG@10 and MRR@10 of B against A for the fine-tuned first stage (what the queries moved to dev cost the embedder)
and for the system handed over (the net), by a seeded paired randomisation test. The choice is made on dev
queries only; test is read here, after the fact.

Usage:
    python -P benchmarks/dev_split.py --label-a "dev 0.1" --label-b "dev 0.2" \\
        --seed 3 runs/scifact-auto-s3-mnrl runs/scifact-ens-dev20-s3 --seed 42 RUN_A RUN_B ... \\
        --output benchmarks/gate/dev_split_scifact.json
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
from pathlib import Path

import numpy as np

from hardneg.evaluate import paired_test, per_query_metrics, read_trec
from hardneg.io import write_json
from hardneg.rundir import RunFolder

METRICS = ["ndcg@10", "mrr@10"]
UNTRAINED, FINE_TUNED = "ensemble", "ensemble (fine-tuned)"


def summary(folder: Path) -> dict:
    """What one run held out, how its gate's first step saw the fine-tuned first stage, and what it handed over."""
    results = json.loads(RunFolder(folder).results.read_text(encoding="utf-8"))
    settings, system = results["settings"], results["system"]
    choice = system["choice"]
    first = (choice.get("steps") or [choice])[0]
    rows = {(r["first_stage"], r["reranker"], r["mode"]): r["metrics"]["ndcg@10"] for r in results["rows"]}
    return {"folder": str(folder), "train_queries": settings["train_queries"], "train_pairs": settings["train_pairs"],
            "dev_queries": settings["dev_queries"],
            "first_step": {k: first.get(k) for k in ("dev_queries", "dev_first_stage", "dev_best", "cv_gain",
                                                     "cv_interval", "cv_p_value")},
            "first_step_kept": first.get("first_stage"),
            "handed_over": {k: choice.get(k) for k in ("first_stage", "reranker", "mode", "weight", "depth")},
            "test_ndcg@10": {"untrained": rows.get((UNTRAINED, "none", "first stage")),
                             "fine_tuned": rows.get((FINE_TUNED, "none", "first stage")),
                             "handed_over": system["test"]["ndcg@10"]["system"]}}


def per_query(folder: Path, path: Path) -> dict[str, dict[str, float]]:
    qrels = json.loads(RunFolder(folder).analysis.read_text(encoding="utf-8"))["qrels"]
    return per_query_metrics(qrels, read_trec(path), METRICS)


def pooled(pairs: list[tuple[int, Path, Path]], which, seed: int = 42) -> dict:
    """B against A over (seed, query) units for the TREC file ``which(folder)`` of each run."""
    out = {}
    found = [(per_query(a, which(a)), per_query(b, which(b))) for _, a, b in pairs]
    for m in METRICS:
        a = np.concatenate([[fa[m][q] for q in sorted(fa[m])] for fa, _ in found])
        b = np.concatenate([[fb[m][q] for q in sorted(fa[m])] for fa, fb in found])
        out[m] = {"a": float(a.mean()), "b": float(b.mean()), "b_minus_a": float((b - a).mean()),
                  "p": paired_test(a, b, permutations=10000, seed=seed), "units": len(a)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", nargs=3, action="append", required=True, metavar=("SEED", "RUN_A", "RUN_B"))
    parser.add_argument("--label-a", default="A")
    parser.add_argument("--label-b", default="B")
    parser.add_argument("--note", default="")
    parser.add_argument("--output", type=Path, required=True)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    pairs = [(int(s), Path(a), Path(b)) for s, a, b in args.seed]
    seeds = [{"seed": s, "a": summary(a), "b": summary(b)} for s, a, b in pairs]
    fine_tuned = pooled(pairs, lambda f: RunFolder(f).trec(FINE_TUNED, "test"))
    handed_over = pooled(pairs, lambda f: RunFolder(f).system_trec("test"))
    write_json(args.output, {"command": "python -P benchmarks/dev_split.py " + shlex.join(argv),
                             "machine": {"cpus": 2, "python": platform.python_version()}, "note": args.note,
                             "a": args.label_a, "b": args.label_b, "seeds": seeds,
                             "pooled": {"fine_tuned_first_stage": fine_tuned, "handed_over": handed_over}})
    print(f"{'seed':>4} {'split':<10} {'dev':>4} {'step-1 cv gain':>14} {'p':>6} {'kept':<22} "
          f"{'untrained':>9} {'fine-tuned':>10} {'handed over':>11}")
    for entry in seeds:
        for label, side in ((args.label_a, entry["a"]), (args.label_b, entry["b"])):
            step, test = side["first_step"], side["test_ndcg@10"]
            print(f"{entry['seed']:>4} {label:<10} {side['dev_queries']:>4} {step['cv_gain']:>+14.3f} "
                  f"{step['cv_p_value']:>6.3f} {side['first_step_kept']:<22} {test['untrained']:>9.3f} "
                  f"{test['fine_tuned']:>10.3f} {test['handed_over']:>11.3f}")
    for name, found in (("fine-tuned first stage", fine_tuned), ("handed over", handed_over)):
        for m in METRICS:
            c = found[m]
            print(f"pooled {name:<24} {m:<8} {c['a']:.3f} -> {c['b']:.3f} ({c['b_minus_a']:+.3f}, p {c['p']:.3f}, "
                  f"{c['units']} units)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
