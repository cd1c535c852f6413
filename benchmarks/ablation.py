"""Run one config over several datasets and seeds, then record mean and spread per row.

Each (dataset, seed) is an ordinary `hardneg run` in its own folder, so an interrupted ablation resumes
where it stopped (finished stages are fingerprinted and skipped). After every run the summary is rewritten,
so a partial ablation is still recorded.

Usage: python benchmarks/ablation.py CONFIG --datasets scifact cranfield --seeds 1 2 3 --output OUT.json
       [--strategies NAME ...] [--set key=value ...]

`--strategies` keeps only the named strategies of CONFIG (a derived config is written next to the runs), so
one grid can be spent where it is needed without editing the config.
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

import yaml

from hardneg.io import write_json
from hardneg.rundir import RunFolder


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


PER_QUERY_METRICS = ("mrr@10", "ndcg@10")


def per_query(run: Path) -> dict:
    """first stage -> system -> metric -> query -> value (4 decimals) from a run's analysis.json."""
    analysis_file = RunFolder(run).analysis
    if not analysis_file.is_file():
        return {}
    analysis = json.loads(analysis_file.read_text())
    return {fs: {system: {m: {q: round(v, 4) for q, v in sorted(values[m].items())}
                          for m in PER_QUERY_METRICS if m in values}
                 for system, values in stage["per_query"].items()}
            for fs, stage in analysis["first_stages"].items()}


def subset_config(path: Path, names: list[str], runs_dir: Path) -> Path:
    """Write CONFIG with only the named strategies (in CONFIG's order) and return the new file's path."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    by_name = {(s if isinstance(s, str) else s["name"]): s for s in raw["strategies"]}
    unknown = sorted(set(names) - set(by_name))
    if unknown:
        raise SystemExit(f"{path}: no strategy named {', '.join(unknown)}; it has {', '.join(by_name)}")
    raw["strategies"] = [s for n, s in by_name.items() if n in names]
    out = runs_dir / f"{path.stem}.subset.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--datasets", nargs="+", required=True)
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--output", required=True)
    parser.add_argument("--runs-dir", default="runs/ablation")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--strategies", nargs="+", help="Keep only these strategies of CONFIG.")
    parser.add_argument("--collect", action="store_true",
                        help="Run nothing: summarise the finished runs (e.g. seeds run by separate processes).")
    args = parser.parse_args()
    name = Path(args.config).stem
    config = args.config
    if args.strategies:
        config = str(subset_config(Path(args.config), args.strategies, Path(args.runs_dir)))
    runs: dict[str, dict[int, list[dict]]] = {}
    queries: dict[str, dict[str, dict]] = {}
    seconds: dict[str, float] = {}
    for dataset in args.datasets:
        for seed in args.seeds:
            out = Path(args.runs_dir) / f"{name}-{dataset}-s{seed}"
            command = [sys.executable, "-m", "hardneg", "run", config, "--no-progress",
                       "--set", f"dataset={dataset}", "--set", f"seed={seed}", "--set", f"output={out}"]
            for item in args.overrides:
                command += ["--set", item]
            if args.collect:
                if not RunFolder(out).results.is_file():
                    print(f"not finished, left out: {out}", file=sys.stderr)
                    continue
                done = subprocess.CompletedProcess(command, 0)
            else:
                start = time.perf_counter()
                done = subprocess.run(command, check=False)
                seconds[f"{dataset}-s{seed}"] = round(time.perf_counter() - start, 1)
            if done.returncode != 0:
                print(f"run failed ({done.returncode}): {' '.join(command)}", file=sys.stderr)
                continue
            runs.setdefault(dataset, {})[seed] = json.loads(RunFolder(out).results.read_text())["rows"]
            queries.setdefault(dataset, {})[str(seed)] = per_query(out)
            write_json(args.output, {
                "command": " ".join(["python", *sys.argv]),
                "machine": f"{platform.platform()}, {__import__('os').cpu_count()} cores",
                "config": args.config, "overrides": args.overrides,
                "seconds": seconds, "results": summarise(runs),
                # Kept so benchmarks/grid_significance.py can test differences from this file alone.
                "per_query": queries,
            })


if __name__ == "__main__":
    main()
