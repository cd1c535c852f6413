"""Run one config over several datasets and seeds, then record mean and spread per row.

Each (dataset, seed) is an ordinary `hardneg run` in its own folder, so an interrupted ablation resumes
where it stopped (finished stages are fingerprinted and skipped). After every run the summary is rewritten,
so a partial ablation is still recorded.

Usage: python benchmarks/ablation.py CONFIG --datasets scifact cranfield --seeds 1 2 3 --output OUT.json
       [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from hardneg.io import write_json


def summarise(runs: dict[str, dict[int, list[dict]]]) -> dict:
    """Per dataset and row (first stage, re-ranker, mode): mean, sample std and per-seed values."""
    table: dict = {}
    for dataset, by_seed in runs.items():
        grouped: dict[tuple, dict[str, list[float]]] = {}
        for seed, rows in sorted(by_seed.items()):
            for row in rows:
                key = (row["first_stage"], row["reranker"], row["mode"])
                for metric, value in row["metrics"].items():
                    grouped.setdefault(key, {}).setdefault(metric, []).append(value)
        table[dataset] = [
            {"first_stage": fs, "reranker": rr, "mode": mode, "seeds": len(next(iter(m.values()))),
             "metrics": {k: {"mean": statistics.fmean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0,
                             "values": v} for k, v in m.items()}}
            for (fs, rr, mode), m in grouped.items()
        ]
    return table


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--datasets", nargs="+", required=True)
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--output", required=True)
    parser.add_argument("--runs-dir", default="runs/ablation")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    name = Path(args.config).stem
    runs: dict[str, dict[int, list[dict]]] = {}
    seconds: dict[str, float] = {}
    for dataset in args.datasets:
        for seed in args.seeds:
            out = Path(args.runs_dir) / f"{name}-{dataset}-s{seed}"
            command = [sys.executable, "-m", "hardneg", "run", args.config, "--no-progress",
                       "--set", f"dataset={dataset}", "--set", f"seed={seed}", "--set", f"output={out}"]
            for item in args.overrides:
                command += ["--set", item]
            start = time.perf_counter()
            done = subprocess.run(command)
            seconds[f"{dataset}-s{seed}"] = round(time.perf_counter() - start, 1)
            if done.returncode != 0:
                print(f"run failed ({done.returncode}): {' '.join(command)}", file=sys.stderr)
                continue
            runs.setdefault(dataset, {})[seed] = json.loads((out / "results.json").read_text())["rows"]
            write_json(args.output, {
                "command": " ".join(["python", *sys.argv]),
                "machine": f"{platform.platform()}, {__import__('os').cpu_count()} cores",
                "config": args.config, "overrides": args.overrides,
                "seconds": seconds, "results": summarise(runs),
            })


if __name__ == "__main__":
    main()
