"""The gate's two selection rules side by side (evaluate.selection: best, one_se) on finished runs: each run folder is
evaluated twice with nothing retrained (`hardneg run CONFIG -o FOLDER --set evaluate.selection=RULE`), and this
script gathers the two results.json files per run into one record: the pick, the cross-validated dev gain, its p,
the folds' agreement and the chosen system's test nDCG@10. The choice is made on dev queries only; test is read
here, after the fact, to see what each rule would have handed over.

Usage:
  python benchmarks/gate_selection.py --run NAME BEST_RESULTS.json ONE_SE_RESULTS.json [--run ...] \
      --output benchmarks/gate/selection.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from hardneg.io import write_json


def summary(path: Path) -> dict:
    system = json.loads(path.read_text(encoding="utf-8"))["system"]
    choice, test = system["choice"], system.get("test", {}).get("ndcg@10", {})
    picked = choice.get("best_candidate") or {}
    return {"results": str(path), "selection": choice.get("selection", "best"),
            "handed_over": {k: choice[k] for k in ("first_stage", "reranker", "mode", "weight")},
            "picked": picked, "dev_queries": choice["dev_queries"], "cv_gain": choice.get("cv_gain"),
            "cv_interval": choice.get("cv_interval"), "cv_p_value": choice.get("cv_p_value"),
            "fold_agreement": choice.get("fold_agreement"), "test_ndcg@10": test.get("system"),
            "test_first_stage_ndcg@10": test.get("first_stage"), "test_gain": test.get("gain"),
            "reason": choice["reason"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", nargs=3, action="append", required=True, metavar=("NAME", "BEST", "ONE_SE"))
    parser.add_argument("--output", required=True)
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    runs = {name: {"best": summary(Path(best)), "one_se": summary(Path(one_se))} for name, best, one_se in args.run}
    write_json(Path(args.output), {"command": "python " + " ".join(sys.argv), "date": time.strftime("%Y-%m-%d"),
                                   "runs": runs, "note": args.note})
    for name, rules in runs.items():
        for rule, row in rules.items():
            cv = f"{row['cv_gain']:+.3f}" if row["cv_gain"] is not None else "n/a"
            test = f"{row['test_ndcg@10']:.3f}" if row["test_ndcg@10"] is not None else "n/a"
            picked, handed = row["picked"], row["handed_over"]
            print(f"{name:10s} {rule:7s} picked {picked.get('first_stage')} + {picked.get('reranker')} "
                  f"({picked.get('weight')}), cv {cv}, p {row['cv_p_value']:.3f}, agreement {row['fold_agreement']}; "
                  f"handed over {handed['first_stage']} + {handed['reranker']}: test {test}")


if __name__ == "__main__":
    main()
