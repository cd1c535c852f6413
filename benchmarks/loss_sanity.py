"""Collect the per-loss sanity runs (one SciFact run folder, retrained per loss) into one JSON with CIs and
Holm-corrected Fisher tests between the losses' re-rankings of the same candidates.

Usage: python benchmarks/loss_sanity.py runs/loss-sanity --output benchmarks/losses/loss_sanity_scifact.json \
           --command "the command that made the runs"
"""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

from hardneg.evaluate import analyse, read_trec
from hardneg.io import read_json, write_json
from hardneg.rundir import RunFolder


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder")
    parser.add_argument("--output", required=True)
    parser.add_argument("--command", default="")
    args = parser.parse_args()
    folder = Path(args.folder)
    losses = [p.stem.removeprefix("results-") for p in sorted(folder.glob("results-*.json"))]
    first = read_json(folder / f"analysis-{losses[0]}.json")
    qrels = first["qrels"]
    metrics = list(read_json(folder / f"results-{losses[0]}.json")["rows"][0]["metrics"])
    systems = {"first stage": read_trec(RunFolder(folder / "run").trec("ensemble", "test"))}
    per_loss = {}
    for loss in losses:
        systems[loss] = read_trec(folder / f"ensemble.{loss}.test.trec")
        training = read_json(folder / f"training-{loss}.json")
        row = next(r for r in read_json(folder / f"results-{loss}.json")["rows"] if r["mode"] == "rerank")
        per_loss[loss] = {"metrics": row["metrics"], "train_seconds": training["train_seconds"],
                          "steps": training["steps"], "rows": training["rows"],
                          "final_loss": next((e["train_loss"] for e in training["log_history"]
                                              if "train_loss" in e), None)}
    stats = analyse(qrels, systems, metrics, "fisher", "holm", 1000, 42)
    write_json(args.output, {
        "command": args.command, "machine": f"{platform.platform()}, {os.cpu_count()} cores (shared, loaded)",
        "queries": len(qrels), "losses": per_loss, "ci": stats["ci"],
        "comparisons": [c for c in stats["comparisons"] if c["metric"] in ("ndcg@10", "mrr@10")]})


if __name__ == "__main__":
    main()
