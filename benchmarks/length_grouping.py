"""Training throughput with and without length-grouped batches, on real mined pairs.

Usage: python benchmarks/length_grouping.py NEGATIVES.jsonl --pairs 96 --max-length 192 --output OUT.json
Trains the same pairs twice per setting (alternating, so machine load hits both alike), no dev evaluation.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile

from hardneg.config import TrainConfig
from hardneg.io import read_jsonl, write_json
from hardneg.mine import MinedPair
from hardneg.train import train_reranker, training_info


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("negatives")
    parser.add_argument("--pairs", type=int, default=96)
    parser.add_argument("--max-length", type=int, default=192)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    pairs = [MinedPair(**row) for row in read_jsonl(args.negatives)][:args.pairs]
    runs: dict[str, list[dict]] = {"grouped": [], "random": []}
    for repeat in range(args.repeats):
        for name in ("grouped", "random"):
            config = TrainConfig(max_length=args.max_length, group_by_length=name == "grouped", dev_eval=False,
                                 learning_rate=2e-4)
            with tempfile.TemporaryDirectory() as tmp:
                info = training_info(train_reranker(pairs, tmp, config, 4, seed=repeat, progress=False,
                                                    fingerprint=f"{name}-{repeat}"))
            runs[name].append({"seconds": info["train_seconds"], "sequences_per_second": info["sequences_per_second"],
                               "steps": info["steps"]})
            print(name, runs[name][-1], flush=True)
    write_json(args.output, {
        "command": " ".join(["python", *sys.argv]), "machine": f"{platform.platform()}, {os.cpu_count()} cores",
        "pairs": len(pairs), "max_length": args.max_length, "runs": runs,
        "mean_sequences_per_second": {k: round(sum(r["sequences_per_second"] for r in v) / len(v), 2)
                                      for k, v in runs.items()}})


if __name__ == "__main__":
    main()
