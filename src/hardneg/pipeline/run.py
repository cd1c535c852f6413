"""``hardneg run``: prepare -> (mine -> train) per strategy -> evaluate -> results, each stage reusing what a
previous run with the same settings finished (every stage writes atomically, with a fingerprint)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import RunConfig
from ..evaluate import Row
from ..io import atomic_write, write_json
from ..lengths import LengthSplit, length_table
from ..report import results_markdown
from .context import RunContext, prepare
from .evaluation import Evaluation, length_split_of, rerankers_to_evaluate
from .training import dev_candidates, train_strategy


@dataclass(frozen=True)
class RunResult:
    output: Path
    rows: list[Row]
    mining: dict[str, dict]
    markdown: str


def run_pipeline(config: RunConfig) -> RunResult:
    """Run every stage for every strategy and return the comparison table (also written to the run folder)."""
    ctx = prepare(config)
    dev = dev_candidates(ctx)
    models: dict[str, Path] = {}
    mining: dict[str, dict] = {}
    for strategy in ctx.config.strategies:
        trained = train_strategy(ctx, strategy, dev)
        models[strategy.name], mining[strategy.name] = trained.model, trained.mining
    return evaluate_and_write(ctx, rerankers_to_evaluate(ctx, models), mining)


def evaluate_models(config: RunConfig, models: dict[str, str]) -> RunResult:
    """Evaluate ready re-rankers (system name -> CrossEncoder folder or hub id) on the run's first stages:
    the same evaluation ``run_pipeline`` ends with, without mining or training. ``evaluate.include_base`` and
    ``evaluate.extra_rerankers`` add the base model and further re-rankers."""
    ctx = prepare(config)
    return evaluate_and_write(ctx, {**rerankers_to_evaluate(ctx, {}), **models}, {})


def evaluate_and_write(ctx: RunContext, rerankers: dict[str, str], mining: dict[str, dict]) -> RunResult:
    """Evaluate, then write results.json and results.md."""
    length_split = length_split_of(ctx)
    rows = Evaluation(ctx, length_split).run(rerankers)
    return write_results(ctx, rows, mining, length_split)


def write_results(ctx: RunContext, rows: list[Row], mining: dict[str, dict], length_split: LengthSplit) -> RunResult:
    config, documents, folder = ctx.config, ctx.documents, ctx.folder
    settings = {"dataset": documents.name, "data": documents.report.summary(), "train_queries": len(ctx.train_ids),
                "train_pairs": len(ctx.pairs), "dev_queries": len(ctx.dev_ids), "lengths": length_split.as_dict(),
                "config": config.model_dump()}
    if ctx.chunks is not None:
        settings["chunks"] = {"documents": len(documents.corpus), "chunks": len(ctx.chunks.dataset.corpus)}
    markdown = results_markdown(rows, config.evaluate.metrics, settings, mining)
    markdown += "\n" + length_table(rows, config.evaluate.metrics, length_split)
    write_json(folder.results, {"settings": settings, "rows": [r.as_dict() for r in rows], "mining": mining})
    with atomic_write(folder.results_markdown) as handle:
        handle.write(markdown)
    return RunResult(folder.path, rows, mining, markdown)
