"""Copy a finished run's table into benchmarks/ as data, with the command and timings that produced it.

Usage: python benchmarks/record.py RUN_DIR OUTPUT.json [--command "hardneg run configs/scifact.yaml"]
"""

from __future__ import annotations

import argparse
import json
import platform

from hardneg.crossencoder import training_info
from hardneg.io import write_json
from hardneg.rundir import RunFolder


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir")
    parser.add_argument("output")
    parser.add_argument("--command", default=None)
    args = parser.parse_args()
    run = RunFolder(args.run_dir)
    results = json.loads(run.results.read_text())
    training = {}
    for folder in run.strategies():
        info = training_info(folder.model)
        if info:
            training[folder.name] = {k: info[k] for k in ("rows", "steps", "train_seconds")}
    for model in run.pretrained_models():  # train.pretrain_queries
        info = training_info(model)
        if info:
            training[f"pretrain {model.parent.name}"] = {k: info[k] for k in ("loss", "rows", "steps", "train_seconds")}
    # The run's paired tests (Holm within each first stage), for the headline metrics.
    analysis = json.loads(run.analysis.read_text()) if run.analysis.is_file() else {"first_stages": {}}
    comparisons = {stage: [c for c in found.get("comparisons", []) if c["metric"] in ("mrr@10", "ndcg@10")]
                   for stage, found in analysis["first_stages"].items()}
    write_json(args.output, {
        "command": args.command or f"hardneg run {run.config}",
        "machine": f"{platform.platform()}, {__import__('os').cpu_count()} cores",
        "settings": results["settings"], "rows": results["rows"], "training": training, "comparisons": comparisons,
        "mining": {k: {"seconds": v["seconds"], "summary": v["summary"]} for k, v in results["mining"].items()},
        **({"system": results["system"]} if results.get("system") else {}),
    })


if __name__ == "__main__":
    main()
