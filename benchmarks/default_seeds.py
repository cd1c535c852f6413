"""The default run over seeds: what each seed's run handed over, and that system against the untrained first stage
on test, per seed and pooled over (seed, query) units (issue 17's "3 seeds: the chosen system nDCG@10 >= .76").

Each seed is a finished run folder (``--run SEED FOLDER``) or, where the folder is gone, its record from
``benchmarks/record.py`` (``--record SEED FILE``): a record has the run's own test against the untrained first stage
but no per-query rankings. The pooled test takes the seeds whose per-query scores are known: run folders, and
records of runs that handed over the untrained first stage, whose ranking does not depend on the seed (no member of
it is trained), so their gains are zero. The untrained first stage's per-query scores come from ``--reference`` (a
run folder of the same collection; default: the first ``--run``); the script checks that every seed's untrained
test nDCG@10 is the reference's. The choice is made on dev queries only; test is read here, after the fact.

Usage:
    python -P benchmarks/default_seeds.py --run 42 runs/scifact-today25-s42 --run 2 runs/scifact-today25-s2 \\
        --record 3 benchmarks/default_run/scifact_default_seed3_plain_mnrl.json \\
        --output benchmarks/default_run/default_3seeds.json
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


def summary(results: dict) -> dict:
    """What one run held out, how its gate's first step saw the fine-tuned first stage, and what it handed over."""
    settings, choice = results["settings"], results["system"]["choice"]
    first = (choice.get("steps") or [choice])[0]
    rows = {(r["first_stage"], r["reranker"], r["mode"]): r["metrics"]["ndcg@10"] for r in results["rows"]}
    test = results["system"]["test"]["ndcg@10"]
    return {"train_queries": settings["train_queries"], "dev_queries": settings["dev_queries"],
            "first_step": {k: first.get(k) for k in ("cv_gain", "cv_interval", "cv_p_value")},
            "first_step_kept": first.get("first_stage"),
            "handed_over": {k: choice.get(k) for k in ("first_stage", "reranker", "mode", "weight", "depth")},
            "test_ndcg@10": {"untrained": rows.get((UNTRAINED, "none", "first stage")),
                             "fine_tuned": rows.get((FINE_TUNED, "none", "first stage")),
                             "handed_over": test["system"], "gain": test["gain"],
                             "interval": [test["low"], test["high"]], "p": test["p_value"]}}


def keeps_untrained(entry: dict) -> bool:
    handed = entry["handed_over"]
    return handed["first_stage"] == UNTRAINED and handed["reranker"] is None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", nargs=2, action="append", default=[], metavar=("SEED", "FOLDER"))
    parser.add_argument("--record", nargs=2, action="append", default=[], metavar=("SEED", "FILE"))
    parser.add_argument("--reference", type=Path, help="a run folder of the collection (default: the first --run)")
    parser.add_argument("--note", default="")
    parser.add_argument("--output", type=Path, required=True)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if not (args.run or args.reference):
        parser.error("--reference or a --run folder is needed for the untrained first stage's per-query scores")
    folders = {int(s): RunFolder(f) for s, f in args.run}
    seeds = {s: {"source": str(f.path), **summary(json.loads(f.results.read_text(encoding="utf-8")))}
             for s, f in folders.items()}
    for s, path in args.record:
        seeds[int(s)] = {"source": path, **summary(json.loads(Path(path).read_text(encoding="utf-8")))}

    reference = RunFolder(args.reference) if args.reference else next(iter(folders.values()))
    qrels = json.loads(reference.analysis.read_text(encoding="utf-8"))["qrels"]
    untrained = per_query_metrics(qrels, read_trec(reference.trec(UNTRAINED, "test")), METRICS)
    for s, entry in seeds.items():
        if not np.isclose(entry["test_ndcg@10"]["untrained"], np.mean(list(untrained["ndcg@10"].values()))):
            parser.error(f"seed {s}: its untrained first stage scores {entry['test_ndcg@10']['untrained']:.4f}, "
                         f"not the reference run's: a different collection or first stage")
    known = {s: (per_query_metrics(qrels, read_trec(folders[s].system_trec("test")), METRICS) if s in folders
                 else untrained) for s, e in seeds.items() if s in folders or keeps_untrained(e)}
    mean = float(np.mean([e["test_ndcg@10"]["handed_over"] for e in seeds.values()]))
    pooled = {"seeds": sorted(known)}
    for m in METRICS if known else []:
        queries = sorted(untrained[m])
        a = np.concatenate([[untrained[m][q] for q in queries] for _ in known])
        b = np.concatenate([[known[s][m][q] for q in queries] for s in sorted(known)])
        pooled[m] = {"untrained": float(a.mean()), "handed_over": float(b.mean()), "gain": float((b - a).mean()),
                     "p": paired_test(a, b, permutations=10000, seed=42), "units": len(a)}
    write_json(args.output, {"command": "python -P benchmarks/default_seeds.py " + shlex.join(argv),
                             "machine": {"cpus": 2, "python": platform.python_version()}, "note": args.note,
                             "seeds": {str(s): e for s, e in sorted(seeds.items())},
                             "mean_handed_over_ndcg@10": mean, "pooled": pooled})

    print(f"{'seed':>4} {'dev':>4} {'step-1 cv gain':>14} {'p':>6} {'kept':<22} {'untrained':>9} {'fine-tuned':>10} "
          f"{'handed over':>11} {'p':>6}")
    for s, e in sorted(seeds.items()):
        step, test = e["first_step"], e["test_ndcg@10"]
        fine = f"{test['fine_tuned']:.3f}" if test["fine_tuned"] is not None else "-"
        print(f"{s:>4} {e['dev_queries']:>4} {step['cv_gain']:>+14.3f} {step['cv_p_value']:>6.3f} "
              f"{e['first_step_kept']:<22} {test['untrained']:>9.3f} {fine:>10} {test['handed_over']:>11.3f} "
              f"{test['p']:>6.3f}")
    print(f"handed over, mean test nDCG@10 over {len(seeds)} seeds: {mean:.3f}")
    for m in METRICS if known else []:
        c = pooled[m]
        print(f"pooled {m:<8} {c['untrained']:.3f} -> {c['handed_over']:.3f} ({c['gain']:+.3f}, p {c['p']:.3f}, "
              f"{c['units']} units, seeds {pooled['seeds']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
