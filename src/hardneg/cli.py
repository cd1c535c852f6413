"""The ``hardneg`` command: each subcommand turns its options into one library call."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
import yaml

from .config import MiningConfig, RunConfig, StrategyConfig, TrainConfig, config_from_dict, load_config
from .data import DataError, load_beir, resolve_dataset
from .embed import KNOWN_MODELS
from .ingest import Columns, FetchConfig, PairFields, ingest
from .io import write_json, write_jsonl
from .losses import as_hf_dataset
from .mine import mine, training_pairs
from .pipeline import evaluate_models, run_pipeline, train_from_negatives
from .rerank import read_docs, rerank
from .report import build_report, migrate
from .retrieve import Retrievers

# `hardneg mine` options default to MiningConfig's own, so a measured default changes in one place.
_MINING = {name: field.default for name, field in MiningConfig.model_fields.items()}

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Mine hard negatives with an embedding ensemble and train cross-encoder re-rankers.")

DataDir = Annotated[str | None, typer.Option("--data-dir", envvar="HARDNEG_DATA",
                                                help="Folder holding BEIR datasets (env HARDNEG_DATA).")]
Quiet = Annotated[bool, typer.Option("--no-progress", help="Hide progress bars.")]
Verbose = Annotated[int, typer.Option("--verbose", "-v", count=True, help="More logging (-v info, -vv debug).")]


def _logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if verbose == 0:
        logging.getLogger("hardneg").setLevel(logging.INFO)


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


def _parse_sets(values: list[str]) -> dict:
    overrides = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"--set expects key=value, got {item!r}")
        overrides[key] = yaml.safe_load(raw)
    return overrides


@app.command()
def run(config: Annotated[Path, typer.Argument(help="Run config (YAML).")],
        output: Annotated[str | None, typer.Option("--output", "-o", help="Run folder (overrides config).")] = None,
        data_dir: DataDir = None,
        set_: Annotated[list[str], typer.Option("--set", help="Override a setting: --set train.epochs=2")] = [],
        no_progress: Quiet = False, verbose: Verbose = 0) -> None:
    """Mine, train and evaluate every negative strategy of CONFIG; print the comparison table.

    Example: hardneg run configs/scifact.yaml --data-dir ../shared/data --set evaluate.max_queries=100
    """
    _logging(verbose)
    overrides = _parse_sets(set_)
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
        _fail(exc)
    typer.echo(result.markdown.split("## Mining")[0].rstrip())
    typer.echo(f"\nResults written to {result.output}/results.md and results.json")


@app.command("mine")
def mine_command(
        dataset: Annotated[str, typer.Option("--dataset", "-d", help="BEIR name or dataset folder.")],
        output: Annotated[Path, typer.Option("--output", "-o", help="JSONL file of mined pairs.")],
        strategy: Annotated[str, typer.Option(help="random, bm25, dense:<model> or ensemble.")] = "ensemble",
        models: Annotated[str, typer.Option(help="Ensemble members, comma-separated.")] = "minilm,wordllama,bm25",
        split: Annotated[str, typer.Option(help="qrels split whose pairs get negatives.")] = "train",
        num_negatives: Annotated[int, typer.Option("--num-negatives", "-n")] = _MINING["num_negatives"],
        positive_ratio: Annotated[float, typer.Option(help="Positive-aware filter fraction; 0 disables.")] = (
            _MINING["positive_ratio"]),
        range_min: Annotated[int, typer.Option(help="Skip this many top candidates; 0 for the paper's top-n.")] = (
            _MINING["range_min"]),
        range_max: Annotated[int | None, typer.Option(
            help="Ignore candidates from this rank on (--mining range_max=null: no bound).")] = _MINING["range_max"],
        sampling: Annotated[str, typer.Option(help="top or random (within the window)")] = _MINING["sampling"],
        random_share: Annotated[float, typer.Option(help="Share of negatives drawn at random.")] = (
            _MINING["random_share"]),
        fusion: Annotated[str, typer.Option(help="zscore, minmax, rrf, mean, concat-pca or union")] = "zscore",
        mining_set: Annotated[list[str] | None, typer.Option(
            "--mining", help="Any other mining setting as KEY=VALUE (repeatable), e.g. --mining cluster=kmeans "
            "--mining absolute_margin=0.5; see MiningConfig.")] = None,
        cache_dir: Annotated[Path, typer.Option(help="Embedding cache folder.")] = Path(".cache/embeddings"),
        hf_dataset: Annotated[Path | None, typer.Option(help="Also save a Hugging Face dataset folder here.")] = None,
        hf_format: Annotated[str, typer.Option(help="n-tuple, triplet or labeled-pair (for --hf-dataset).")] = "n-tuple",
        seed: int = 42, data_dir: DataDir = None, no_progress: Quiet = False, verbose: Verbose = 0) -> None:
    """Mine negatives for a dataset's (query, positive) pairs and write them as JSONL (+ a summary JSON).

    Example: hardneg mine -d scifact -o scifact-negatives.jsonl --strategy ensemble --num-negatives 4
    --mining likely_positive_ratio=1.0
    """
    _logging(verbose)
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
                        mining=MiningConfig(**{**named, **extra}))  # --mining KEY=VALUE wins (range_max=null)
        data = load_beir(resolve_dataset(dataset, data_dir))
        retrievers = Retrievers(data, cfg, cache_dir)
        members = cfg.members_for(strat)
        ensemble = (retrievers.ensemble(members, cfg.mining.fusion, cfg.mining.kept_variance)
                    if strat.kind != "random" else None)
        result = mine(data, training_pairs(data, split), ensemble, cfg.mining, strat.name, seed, not no_progress)
    except (DataError, ValueError, ImportError) as exc:
        _fail(exc)
    write_jsonl(output, (p.as_dict() for p in result.pairs))
    if hf_dataset is not None:
        try:
            hf, left_out = as_hf_dataset(result.pairs, hf_format, num_negatives)
        except ValueError as exc:
            _fail(exc)
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
    _logging(verbose)
    try:
        overrides = {key.removeprefix("train."): value for key, value in _parse_sets(set_).items()}
        trained = train_from_negatives(negatives, output, TrainConfig(**overrides), num_negatives, seed=seed,
                                       progress=not no_progress)
    except (DataError, ValueError, FileNotFoundError, ImportError) as exc:
        _fail(exc)
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
    _logging(verbose)
    overrides = {"dataset": dataset, "output": output, "strategies": [], "evaluate.split": split,
                 **_parse_sets(set_)}
    if data_dir:
        overrides["data_dir"] = data_dir
    if no_progress:
        overrides["progress"] = False
    try:
        cfg = load_config(config, overrides) if config else config_from_dict({}, overrides, source="hardneg evaluate")
        result = evaluate_models(cfg, {m: m for m in models})
    except (DataError, ValueError, FileNotFoundError, ImportError) as exc:
        _fail(exc)
    typer.echo(result.markdown.split("## Mining")[0].rstrip())
    typer.echo(f"\nResults written to {result.output}/results.md and results.json")


@app.command("ingest")
def ingest_command(
        sources: Annotated[list[Path], typer.Argument(help="Folders (recursive), documents, or tables "
                                                      "(.jsonl/.csv/.parquet) of documents.")] = [],
        output: Annotated[Path, typer.Option("--output", "-o", help="Dataset folder to write (BEIR layout).")] = ...,
        urls: Annotated[Path | None, typer.Option(help="File of URLs to fetch, one per line.")] = None,
        pairs: Annotated[list[Path], typer.Option("--pairs", help="CSV/JSONL of (query, positive) rows; the "
                                                  "positive is a document id, path or URL. Repeatable.")] = [],
        qrels: Annotated[Path | None, typer.Option(help="BEIR or TREC qrels naming document ids.")] = None,
        queries: Annotated[Path | None, typer.Option(help="Query texts for --qrels (queries.jsonl or TSV).")] = None,
        text_field: Annotated[str, typer.Option(help="Tabular: column with the document text.")] = "text",
        title_field: Annotated[str, typer.Option(help="Tabular: column with the title.")] = "title",
        id_field: Annotated[str, typer.Option(help="Tabular: column with the document id.")] = "id",
        url_field: Annotated[str, typer.Option(help="Tabular: column with the document URL.")] = "url",
        query_field: Annotated[str, typer.Option(help="Pairs: column with the query text.")] = "query",
        positive_field: Annotated[str, typer.Option(help="Pairs: column with the positive.")] = "positive",
        id_mode: Annotated[str, typer.Option(help="Document ids: 'path' (path or URL) or 'hash' (content).")] = "path",
        dedup: Annotated[str, typer.Option(help="near (MinHash), exact, or none.")] = "near",
        near_threshold: Annotated[float, typer.Option(help="MinHash Jaccard threshold for near duplicates.")] = 0.8,
        keep_boilerplate: Annotated[bool, typer.Option(help="Keep cookie banners and repeated menu lines.")] = False,
        test_fraction: Annotated[float, typer.Option(help="Share of queries in test when no split is given.")] = 0.2,
        max_bytes: Annotated[int, typer.Option(help="Skip files and responses larger than this.")] = 20 * 1024 * 1024,
        timeout: Annotated[float, typer.Option("--fetch.timeout", help="Seconds per HTTP request.")] = 15.0,
        retries: Annotated[int, typer.Option("--fetch.retries", help="Retries after a timeout or 5xx.")] = 2,
        concurrency: Annotated[int, typer.Option("--fetch.concurrency", help="Parallel requests.")] = 4,
        strict: Annotated[bool, typer.Option("--strict", help="Fail on the first skipped input.")] = False,
        seed: int = 42, no_progress: Quiet = False, verbose: Verbose = 0) -> None:
    """Turn folders of HTML/PDF/Markdown/text/DOCX, tables or URLs, plus query pairs, into a dataset folder.

    Example: hardneg ingest examples/docs --pairs examples/queries.csv --output runs/docs-data
    """
    _logging(verbose)
    if not sources and urls is None:
        _fail(ValueError("give at least one SOURCE folder/file or --urls"))
    try:
        result = ingest(sources, output, urls=urls, pairs=pairs, qrels=qrels, queries=queries,
                        columns=Columns(id=id_field, title=title_field, text=text_field, url=url_field),
                        pair_fields=PairFields(query=query_field, positive=positive_field), id_mode=id_mode,
                        dedup=dedup, near_threshold=near_threshold, boilerplate=not keep_boilerplate,
                        test_fraction=test_fraction, seed=seed, max_bytes=max_bytes,
                        fetch=FetchConfig(timeout=timeout, retries=retries, concurrency=concurrency),
                        strict=strict, progress=not no_progress)
    except (DataError, ValueError, FileNotFoundError, ImportError) as exc:
        _fail(exc)
    typer.echo(result.report.summary())
    typer.echo(f"Dataset written to {result.output} (report: {result.output}/ingest_report.json)")


@app.command()
def models() -> None:
    """List the registered model names (any sentence-transformers id or folder works too)."""
    for name, desc in KNOWN_MODELS.items():
        typer.echo(f"{name:10s} {desc}")


@app.command()
def download(name: Annotated[str, typer.Argument(help="BEIR dataset name, e.g. scifact")],
             data_dir: DataDir = None) -> None:
    """Download a BEIR dataset into the data directory (md5-checked).

    Example: hardneg download scifact --data-dir data
    """
    try:
        typer.echo(resolve_dataset(name, data_dir))
    except DataError as exc:
        _fail(exc)


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="A run folder written by `hardneg run`.")],
           verbose: Verbose = 0) -> None:
    """Write RUN_DIR/report.html (self-contained) and RUN_DIR/report.md (+ PNGs in RUN_DIR/report/).

    Example: hardneg report runs/scifact
    """
    _logging(verbose)
    try:
        files = build_report(run_dir)
    except (ValueError, FileNotFoundError, ImportError) as exc:
        _fail(exc)
    typer.echo(f"Report: {files.html} and {files.markdown} ({len(files.images)} figures)")


@app.command("migrate")
def migrate_command(
        run_dir: Annotated[Path, typer.Argument(help="A run folder written by `hardneg run`.")],
        data_dir: Annotated[str | None, typer.Option(
            "--data-dir", help="Folder holding the run's dataset, if the run's own data_dir is gone "
                               "(default: the run's data_dir, then $HARDNEG_DATA).")] = None,
        force: Annotated[bool, typer.Option("--force", help="Rebuild analysis.json even if the run has one.")] = False,
        verbose: Verbose = 0) -> None:
    """Give a run folder made before hardneg wrote RUN_DIR/analysis.json one, rebuilt from its TREC files, score
    stores and the dataset's qrels, so `hardneg report` can read it.

    Example: hardneg migrate runs/scifact --data-dir ../shared/data
    """
    _logging(verbose)
    try:
        done = migrate(run_dir, data_dir, force=force)
    except (DataError, ValueError, FileNotFoundError) as exc:
        _fail(exc)
    if not done.written:
        typer.echo(f"{done.analysis} exists; nothing to do (--force rebuilds it).")
        return
    left_out = f"; left out, for want of a run file: {', '.join(done.left_out)}" if done.left_out else ""
    typer.echo(f"Wrote {done.analysis}{left_out}")


@app.command("rerank")
def rerank_command(
        model: Annotated[str, typer.Option("--model", "-m", help="Re-ranker: a CrossEncoder folder or hub id.")],
        query: Annotated[str, typer.Option("--query", "-q", help="The query text.")],
        docs: Annotated[Path, typer.Option("--docs", help="One document per line, or JSONL with text/title.")],
        top_k: Annotated[int | None, typer.Option("--top-k", "-k", help="Print only the best K.")] = None,
        batch_size: Annotated[int, typer.Option("--batch-size")] = 32,
        max_length: Annotated[int | None, typer.Option(help="Token limit per (query, doc) pair.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines instead of a table.")] = False,
        verbose: Verbose = 0) -> None:
    """Re-rank the documents of a file for one query with a trained re-ranker; prints best first.

    Example: hardneg rerank --model runs/scifact/strategies/ensemble/model --query "statins and dementia" --docs docs.txt
    """
    _logging(verbose)
    try:
        texts = read_docs(docs)
        ranked = rerank(model, query, texts, batch_size=batch_size, top_k=top_k, max_length=max_length)
    except (ValueError, FileNotFoundError) as exc:
        _fail(exc)
    for rank, (i, score) in enumerate(ranked, 1):
        if as_json:
            typer.echo(json.dumps({"rank": rank, "index": i, "score": round(score, 6), "text": texts[i]}))
        else:
            text = texts[i] if len(texts[i]) <= 100 else texts[i][:97] + "..."
            typer.echo(f"{rank:3d}  {score:.4f}  [{i}]  {text}")


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
