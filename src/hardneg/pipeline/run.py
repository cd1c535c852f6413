"""``hardneg run``: prepare -> (mine -> train) per strategy -> evaluate -> results, each stage reusing what a
previous run with the same settings finished (every stage writes atomically, with a fingerprint)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import RunConfig
from ..device import current, current_device, training_arguments, use_compute
from ..evaluate import Row
from ..io import atomic_write, write_json
from ..lengths import LengthSplit, length_table
from ..lock import release
from ..retrieve import Ensemble
from ..report import results_markdown
from ..system import save_system
from .context import RunContext, prepare
from .crossfit import CrossFit, cross_fit, cross_fit_queries
from .evaluation import Evaluation, length_split_of, rerankers_to_evaluate
from .first_stage import Refit, check_tuning, tune_first_stages
from .training import TrainedStrategy, dev_candidates, train_strategy


@dataclass(frozen=True)
class RunResult:
    output: Path
    rows: list[Row]
    mining: dict[str, dict]
    markdown: str
    system: dict | None = None   # the chosen system ("choice") and its test comparison ("test"); see system.json


def run_pipeline(config: RunConfig) -> RunResult:
    """Run every stage for every strategy and return the comparison table (also written to the run folder)."""
    ctx = prepare(config)
    try:
        with use_compute(config.compute):  # the run's device and precision for every stage
            check_tuning(ctx)
            if ctx.config.strategies:  # a precision training cannot use fails now, not after hours of mining
                training_arguments(current_device(), current().precision)
            dev = dev_candidates(ctx)
            trained: dict[str, TrainedStrategy] = {s.name: train_strategy(ctx, s, dev) for s in ctx.config.strategies}
            tuned = tune_first_stages(ctx, trained)
            queries = cross_fit_queries(ctx, tuned_first_stage=bool(tuned.ensembles))
            folds = cross_fit(ctx, trained, queries) if queries else None
            models = {name: t.model for name, t in trained.items()}
            return evaluate_and_write(ctx, rerankers_to_evaluate(ctx, models),
                                      {n: t.mining for n, t in trained.items()}, tuned.ensembles, tuned.record,
                                      folds, tuned.refit)
    finally:
        release(ctx.folder.lock)  # the folder's next run (or another process) may own it now


def evaluate_models(config: RunConfig, models: dict[str, str]) -> RunResult:
    """Evaluate ready re-rankers (system name -> CrossEncoder folder or hub id) on the run's first stages:
    the same evaluation ``run_pipeline`` ends with, without mining or training. ``evaluate.include_base`` and
    ``evaluate.extra_rerankers`` add the base model and further re-rankers."""
    ctx = prepare(config)
    try:
        with use_compute(config.compute):
            return evaluate_and_write(ctx, {**rerankers_to_evaluate(ctx, {}), **models}, {})
    finally:
        release(ctx.folder.lock)


def evaluate_and_write(ctx: RunContext, rerankers: dict[str, str], mining: dict[str, dict],
                       tuned: dict[str, Ensemble] | None = None, first_stage: dict | None = None,
                       folds: CrossFit | None = None, refit: dict[str, Refit] | None = None) -> RunResult:
    """Evaluate (the configured first stages, then ``tuned`` ones), then write results.json and results.md."""
    length_split = length_split_of(ctx)
    evaluation = Evaluation(ctx, length_split, tuned, folds, refit)
    rows = evaluation.run(rerankers)
    system = None
    if evaluation.choice is not None:
        system = {"choice": evaluation.choice.as_dict(), "test": evaluation.system_test,
                  **({"first_stage_tuning": first_stage} if first_stage else {}),
                  **({"nested_dev_runs": evaluation.nested} if evaluation.nested else {}),
                  **({"cross_fit": evaluation.cross_fit.as_dict()} if evaluation.cross_fit else {})}
        save_system(ctx.folder, ctx.config, ctx.dataset_path, evaluation.choice, rerankers, evaluation.system_test,
                    evaluation.ensembles[evaluation.choice.first_stage])
    return write_results(ctx, rows, mining, length_split, system, (first_stage or {}).get("embedder"))


def write_results(ctx: RunContext, rows: list[Row], mining: dict[str, dict], length_split: LengthSplit,
                  system: dict | None = None, fine_tuning: dict | None = None) -> RunResult:
    config, documents, folder = ctx.config, ctx.documents, ctx.folder
    settings = {"dataset": documents.name, "data": documents.report.summary(), "train_queries": len(ctx.train_ids),
                "train_pairs": len(ctx.pairs), "dev_queries": len(ctx.dev_ids), "lengths": length_split.as_dict(),
                "config": config.model_dump()}
    if system and "cross_fit" in system:
        settings["cross_fit"] = system["cross_fit"]
    if fine_tuning:
        settings["fine_tuning"] = fine_tuning
    if ctx.chunks is not None:
        settings["chunks"] = {"documents": len(documents.corpus), "chunks": len(ctx.chunks.dataset.corpus)}
    markdown = results_markdown(rows, config.evaluate.metrics, settings, mining, system)
    markdown += "\n" + length_table(rows, config.evaluate.metrics, length_split)
    write_json(folder.results, {"settings": settings, "rows": [r.as_dict() for r in rows], "mining": mining,
                                "system": system})
    with atomic_write(folder.results_markdown) as handle:
        handle.write(markdown)
    return RunResult(folder.path, rows, mining, markdown, system)
