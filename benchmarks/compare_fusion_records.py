"""Two embedder recipes compared per test query: the first stages of two `embedder_fusion.py` records (the same
dataset and seeds, each seed's records from its own `embedder_negatives.py` run), row by row.

Each seed's test queries are paired (A's score against B's on the same query); the seeds pool as (seed, query)
units. Fisher's randomisation test and a paired bootstrap interval per row, Holm over the rows of the pooled
comparison. Only the rows with a fine-tuned member are compared: the untrained rows are the same on both sides.

Usage (reads two records, trains nothing):
  python benchmarks/compare_fusion_records.py A.json B.json --label-a 5-epochs --label-b 3-epochs \
      --output benchmarks/first_stage_tuning/x.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from hardneg.evaluate import adjust_pvalues, bootstrap_ci, paired_test
from hardneg.io import write_json

ROWS = ["fine-tuned, fixed weights", "fine-tuned, weights learned on dev"]
METRIC = "ndcg@10"


def scores(record: dict, seed: str, row: str) -> dict[str, float]:
    values = record["seeds"][seed]["per_query"][row]
    # per_query holds either {query: score} or {query: {metric: score}}
    return {q: (v[METRIC] if isinstance(v, dict) else v) for q, v in values.items()}


def compare(a: dict, b: dict) -> dict:
    seeds = sorted(set(a["seeds"]) & set(b["seeds"]), key=int)
    if not seeds:
        raise SystemExit("The two records share no seed.")
    out: dict = {"seeds": seeds, "rows": {}}
    for row in ROWS:
        pooled_a, pooled_b, per_seed = [], [], {}
        for seed in seeds:
            sa, sb = scores(a, seed, row), scores(b, seed, row)
            queries = sorted(set(sa) & set(sb))
            if len(queries) != len(sa) or len(queries) != len(sb):
                raise SystemExit(f"seed {seed}, {row}: the records score different test queries")
            va = np.array([sa[q] for q in queries])
            vb = np.array([sb[q] for q in queries])
            per_seed[seed] = {"a": float(va.mean()), "b": float(vb.mean()), "difference": float((vb - va).mean()),
                              "p_value": paired_test(va, vb), "queries": len(queries)}
            pooled_a.append(va)
            pooled_b.append(vb)
        va, vb = np.concatenate(pooled_a), np.concatenate(pooled_b)
        low, high = bootstrap_ci(vb - va)
        out["rows"][row] = {"per_seed": per_seed, "pooled": {
            "a": float(va.mean()), "b": float(vb.mean()), "difference": float((vb - va).mean()), "low": low,
            "high": high, "p_value": paired_test(va, vb), "units": int(len(va))}}
    holm = adjust_pvalues([r["pooled"]["p_value"] for r in out["rows"].values()])
    for r, p in zip(out["rows"].values(), holm):
        r["pooled"]["holm_p"] = p
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--label-a", default="a")
    parser.add_argument("--label-b", default="b")
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    a, b = (json.loads(Path(f).read_text()) for f in (args.a, args.b))
    result = compare(a, b)
    record = {"command": "python " + " ".join(sys.argv), "metric": METRIC, "a": {"label": args.label_a, "file": args.a},
              "b": {"label": args.label_b, "file": args.b}, **result}
    write_json(Path(args.output), record)
    for row, r in result["rows"].items():
        seeds = ", ".join(f"{s}: {v['a']:.3f} / {v['b']:.3f}" for s, v in r["per_seed"].items())
        p = r["pooled"]
        print(f"{row}: {seeds}; pooled {args.label_b} - {args.label_a} {p['difference']:+.3f} "
              f"[{p['low']:+.3f}, {p['high']:+.3f}], p {p['p_value']:.3f}, Holm {p['holm_p']:.3f} ({p['units']} units)")


if __name__ == "__main__":
    main()
