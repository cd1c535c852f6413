"""Print a Markdown table (mean ± sample std over seeds, and the per-seed values) from benchmarks/ablation.py output.

Usage: python benchmarks/ablation_table.py benchmarks/ablation_small/ablation_scifact.json [--metrics mrr@10 ndcg@10]
"""

from __future__ import annotations

import argparse
import json


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("summary")
    parser.add_argument("--metrics", nargs="+", default=["mrr@10", "ndcg@10"])
    args = parser.parse_args()
    with open(args.summary) as f:
        data = json.load(f)
    for dataset, rows in data["results"].items():
        print(f"\n**{dataset}**\n")
        print("| re-ranker (negatives) | mode | seeds | " + " | ".join(args.metrics) + " |")
        print("|---|---|---|" + "---|" * len(args.metrics))
        for row in sorted(rows, key=lambda r: (r["mode"], r["reranker"])):
            cells = []
            for metric in args.metrics:
                m = row["metrics"][metric]
                values = ", ".join(f"{v:.3f}" for v in m["values"])
                cells.append(f"{m['mean']:.3f} ± {m['std']:.3f} ({values})")
            print(f"| {row['reranker']} | {row['mode']} | {row['seeds']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
