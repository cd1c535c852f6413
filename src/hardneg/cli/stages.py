"""The pipeline's stages as commands: `run` chains them; `mine`, `train` and `evaluate` run one each."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml

from ..compute_config import ComputeConfig
from ..config import MiningConfig, RunConfig, StrategyConfig, TrainConfig, config_from_dict, load_config
from ..data import DataError, load_beir, resolve_dataset
from ..device import use_compute
from ..engine import mine_with_engine
from ..io import write_json, write_jsonl
from ..losses import as_hf_dataset
from ..mine import training_pairs
from ..pipeline import evaluate_models, run_pipeline, train_from_negatives
from ..retrieve import Retrievers
from .common import (
    MINING_DEFAULTS,
    Address,
    DataDir,
    Device,
    Engine,
    Quiet,
    Verbose,
    app,
    compute_settings,
    fail,
    parse_sets,
    setup_logging,
)


@app.command()
def run(config: Annotated[Path, typer.Argument(help="Run config (YAML).")],
        output: Annotated[str | None, typer.Option("--output", "-o", help="Run folder (overrides config).")] = None,
        data_dir: DataDir = None,
        set_: Annotated[list[str], typer.Option("--set", help="Override a setting: --set train.epochs=2")] = [],
        engine: Engine = None, address: Address = None, device: Device = None,
        no_progress: Quiet = False, verbose: Verbose = 0) -> None:
    """Mine, train and evaluate every negative strategy of CONFIG; print the comparison table.

    Example: hardneg run configs/scifact.yaml --data-dir ../shared/data --set evaluate.max_queries=100
    (on a Ray cluster: --engine ray --address auto)
    """
    setup_logging(verbose)
    overrides = parse_sets(set_)
    overrides.update({f"compute.{key}": value for key, value in compute_settings(engine, address, device).items()})
    if output:
        overrides["output"] = output
    if data_dir:
        overrides["data_dir"] = data_dir
    if no_progress:
        overrides["progress"] = False
    try:
        cfg = load_config(config, overrides)
        result = run_pipeline(cfg)
    except (DataError, ValueError, FileNotFoundError, ImportError) as exc:
        fail(exc)
    typer.echo(result.markdown.split("## Mining")[0].rstrip())
    typer.echo(f"\nResults written to {result.output}/results.md and results.json")


@app.command("mine")
def mine_command(
        dataset: Annotated[str, typer.Option("--dataset", "-d", help="BEIR name or dataset folder.")],
        output: Annotated[Path, typer.Option("--output", "-o", help="JSONL file of mined pairs.")],
        strategy: Annotated[str, typer.Option(help="random, bm25, dense:<model> or ensemble.")] = "ensemble",
        models: Annotated[str, typer.Option(help="Ensemble members, comma-separated.")] = "minilm,wordllama,bm25",
        split: Annotated[str, typer.Option(help="qrels split whose pairs get negatives.")] = "train",
        num_negatives: Annotated[int, typer.Option("--num-negatives", "-n")] = MINING_DEFAULTS["num_negatives"],
        positive_ratio: Annotated[float, typer.Option(help="Positive-aware filter fraction; 0 disables.")] = (
            MINING_DEFAULTS["positive_ratio"]),
        range_min: Annotated[int, typer.Option(help="Skip this many top candidates; 0 for the paper's top-n.")] = (
            MINING_DEFAULTS["range_min"]),
        range_max: Annotated[int | None, typer.Option(
            help="Ignore candidates from this rank on (--mining range_max=null: no bound).")] = MINING_DEFAULTS["range_max"],
        sampling: Annotated[str, typer.Option(help="top or random (within the window)")] = MINING_DEFAULTS["sampling"],
        random_share: Annotated[float, typer.Option(help="Share of negatives drawn at random.")] = (
            MINING_DEFAULTS["random_share"]),
        fusion: Annotated[str, typer.Option(help="zscore, minmax, rrf, mean, concat-pca or union")] = "zscore",
        mining_set: Annotated[list[str] | None, typer.Option(
            "--mining", help="Any other mining setting as KEY=VALUE (repeatable), e.g. --mining cluster=kmeans "
            "--mining absolute_margin=0.5; see MiningConfig.")] = None,
        cache_dir: Annotated[Path, typer.Option(help="Embedding cache folder.")] = Path(".cache/embeddings"),
        hf_dataset: Annotated[Path | None, typer.Option(help="Also save a Hugging Face dataset folder here.")] = None,
        hf_format: Annotated[str, typer.Option(help="n-tuple, triplet or labeled-pair (for --hf-dataset).")] = "n-tuple",
        seed: int = 42, data_dir: DataDir = None, engine: Engine = None, address: Address = None,
        device: Device = None, no_progress: Quiet = False, verbose: Verbose = 0) -> None:
    """Mine negatives for a dataset's (query, positive) pairs and write them as JSONL (+ a summary JSON).

    Example: hardneg mine -d scifact -o scifact-negatives.jsonl --strategy ensemble --num-negatives 4
    --mining likely_positive_ratio=1.0 (on a Ray cluster: --engine ray --address auto)
    """
    setup_logging(verbose)
    try:
        strat = StrategyConfig.model_validate(strategy)
        member_list = [m.strip() for m in models.split(",") if m.strip()]
        extra = {}
        for item in mining_set or []:
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"--mining {item!r}: expected KEY=VALUE")
            extra[key.strip()] = yaml.safe_load(value)
        named = {"num_negatives": num_negatives, "positive_ratio": positive_ratio or None, "range_min": range_min,
                 "range_max": range_max, "sampling": sampling, "random_share": random_share}
        cfg = RunConfig(dataset=dataset, data_dir=data_dir, ensemble=member_list, fusion=fusion, seed=seed,
                        progress=not no_progress, strategies=[strat],
                        mining=MiningConfig(**{**named, **extra}),  # --mining KEY=VALUE wins (range_max=null)
                        compute=ComputeConfig(**compute_settings(engine, address, device)))
        data = load_beir(resolve_dataset(dataset, data_dir))
        data.require_positives(split, "to mine negatives for")
        retrievers = Retrievers(data, cfg, cache_dir)
        members = cfg.members_for(strat)
        ensemble = (retrievers.ensemble(members, cfg.mining.fusion, cfg.mining.kept_variance)
                    if strat.kind != "random" else None)
        with use_compute(cfg.compute):
            result = mine_with_engine(cfg.compute, data, training_pairs(data, split), ensemble, cfg.mining,
                                      strat.name, seed, not no_progress)
    except (DataError, ValueError, ImportError) as exc:
        fail(exc)
    write_jsonl(output, (p.as_dict() for p in result.pairs))
    if hf_dataset is not None:
        try:
            hf, left_out = as_hf_dataset(result.pairs, hf_format, num_negatives)
        except ValueError as exc:
            fail(exc)
        hf.save_to_disk(str(hf_dataset))
        typer.echo(f"Hugging Face dataset ({hf_format}, {len(hf)} rows, {left_out} short pairs left out) -> {hf_dataset}")
    if result.likely_positives:
        write_jsonl(output.with_suffix(".likely_positives.jsonl"), result.likely_positives)
    summary_path = output.with_suffix(".summary.json")
    write_json(summary_path, {"members": members, "mining": cfg.mining.model_dump(), "data": data.report.as_dict(),
                              "summary": result.summary.as_dict()})
    s = result.summary
    typer.echo(f"{s.pairs} pairs -> {output}; removed {dict(s.removed)}; {s.random_fill} random fill; "
               f"{len(s.short_pairs)} short pairs; data: {data.report.summary()}. Summary: {summary_path}")


@app.command("train")
def train_command(
        negatives: Annotated[Path, typer.Argument(help="Mined pairs: a JSONL written by `hardneg mine`, or a "
                                                  "Hugging Face dataset folder (query, positive, negative_1..n).")],
        output: Annotated[Path, typer.Option("--output", "-o", help="Folder to write; the re-ranker is "
                                             "OUTPUT/model.")],
        num_negatives: Annotated[int | None, typer.Option(
            "--num-negatives", "-n", help="Negatives per pair to train on (default: the most common count in "
            "NEGATIVES).")] = None,
        set_: Annotated[list[str], typer.Option("--set", help="A training setting: --set loss=triplet "
                                                "--set epochs=2 (see docs/CONFIG.md, section train).")] = [],
        seed: int = 42, no_progress: Quiet = False, verbose: Verbose = 0) -> None:
    """Train a cross-encoder re-ranker on mined negatives (the training stage of `hardneg run`).

    Example: hardneg mine -d scifact -o negatives.jsonl && hardneg train negatives.jsonl -o my-reranker
    --set loss=mnrl --set epochs=1
    """
    setup_logging(verbose)
    try:
        overrides = {key.removeprefix("train."): value for key, value in parse_sets(set_).items()}
        trained = train_from_negatives(negatives, output, TrainConfig(**overrides), num_negatives, seed=seed,
                                       progress=not no_progress)
    except (DataError, ValueError, FileNotFoundError, ImportError) as exc:
        fail(exc)
    typer.echo(f"Re-ranker ({trained.pairs} pairs, {trained.num_negatives} negatives each) -> {trained.model}")


@app.command("evaluate")
def evaluate_command(
        models: Annotated[list[str], typer.Argument(help="Re-rankers to evaluate: CrossEncoder folders or hub ids.")],
        dataset: Annotated[str, typer.Option("--dataset", "-d", help="BEIR name or dataset folder.")],
        output: Annotated[str, typer.Option("--output", "-o", help="Folder for results, TREC runs and scores.")] = (
            "runs/evaluate"),
        split: Annotated[str, typer.Option(help="qrels split to evaluate on.")] = "test",
        config: Annotated[Path | None, typer.Option(help="A run config whose first stages and evaluation "
                                                    "settings to use.")] = None,
        set_: Annotated[list[str], typer.Option("--set", help="Override a setting: --set evaluate.max_queries=100")
                        ] = [],
        data_dir: DataDir = None, no_progress: Quiet = False, verbose: Verbose = 0) -> None:
    """Evaluate re-rankers over the first stage on a dataset split: the metrics table and TREC runs (the evaluation
    stage of `hardneg run`).

    Example: hardneg evaluate my-reranker/model -d scifact --set evaluate.max_queries=100
    """
    setup_logging(verbose)
    overrides = {"dataset": dataset, "output": output, "strategies": [], "evaluate.split": split,
                 **parse_sets(set_)}
    if data_dir:
        overrides["data_dir"] = data_dir
    if no_progress:
        overrides["progress"] = False
    try:
        cfg = load_config(config, overrides) if config else config_from_dict({}, overrides, source="hardneg evaluate")
        result = evaluate_models(cfg, {m: m for m in models})
    except (DataError, ValueError, FileNotFoundError, ImportError) as exc:
        fail(exc)
    typer.echo(result.markdown.split("## Mining")[0].rstrip())
    typer.echo(f"\nResults written to {result.output}/results.md and results.json")
