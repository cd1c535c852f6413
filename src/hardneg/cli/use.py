"""Using a run: its `report`, `migrate` an old one, `search` and `rerank` with the trained system."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..data import DataError
from ..rerank import read_docs, rerank
from ..report import build_report, migrate
from ..system import System
from .common import Quiet, Verbose, fail, setup_logging, app


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="A run folder written by `hardneg run`.")],
           verbose: Verbose = 0) -> None:
    """Write RUN_DIR/report.html (self-contained) and RUN_DIR/report.md (+ PNGs in RUN_DIR/report/).

    Example: hardneg report runs/scifact
    """
    setup_logging(verbose)
    try:
        files = build_report(run_dir)
    except (ValueError, FileNotFoundError, ImportError) as exc:
        fail(exc)
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
    setup_logging(verbose)
    try:
        done = migrate(run_dir, data_dir, force=force)
    except (DataError, ValueError, FileNotFoundError) as exc:
        fail(exc)
    if not done.written:
        typer.echo(f"{done.analysis} exists; nothing to do (--force rebuilds it).")
        return
    left_out = f"; left out, for want of a run file: {', '.join(done.left_out)}" if done.left_out else ""
    typer.echo(f"Wrote {done.analysis}{left_out}")


@app.command("rerank")
def rerank_command(
        query: Annotated[str, typer.Option("--query", "-q", help="The query text.")],
        docs: Annotated[Path, typer.Option("--docs", help="One document per line, or JSONL with text/title.")],
        run_dir: Annotated[Path | None, typer.Option("--run", help="A run folder (or its system.json): re-rank "
                                                     "with the whole trained system.")] = None,
        model: Annotated[str | None, typer.Option("--model", "-m", help="A bare re-ranker instead: a CrossEncoder "
                                                  "folder or hub id.")] = None,
        bare: Annotated[bool, typer.Option("--bare", help="With --run: the system's re-ranker alone, without its "
                                           "first stage.")] = False,
        top_k: Annotated[int | None, typer.Option("--top-k", "-k", help="Print only the best K.")] = None,
        batch_size: Annotated[int, typer.Option("--batch-size")] = 32,
        max_length: Annotated[int | None, typer.Option(help="Token limit per (query, doc) pair (--model).")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines instead of a table.")] = False,
        verbose: Verbose = 0) -> None:
    """Re-rank the documents of a file for one query; prints best first. With --run, the whole trained system
    (its first stage scores the documents, then its re-ranker as the run chose); with --model, a bare re-ranker.

    Example: hardneg rerank --run runs/demo --query "statins and dementia" --docs docs.txt
    """
    setup_logging(verbose)
    if (run_dir is None) == (model is None):
        fail(ValueError("give either --run RUN_DIR (the trained system) or --model MODEL (a bare re-ranker)"))
    try:
        texts = read_docs(docs)
        if run_dir is not None:
            ranked = System.load(run_dir).rerank(query, texts, top_k=top_k, bare=bare)
        else:
            ranked = rerank(model, query, texts, batch_size=batch_size, top_k=top_k, max_length=max_length)
    except (DataError, ValueError, FileNotFoundError) as exc:
        fail(exc)
    for rank, (i, score) in enumerate(ranked, 1):
        if as_json:
            typer.echo(json.dumps({"rank": rank, "index": i, "score": round(score, 6), "text": texts[i]}))
        else:
            text = texts[i] if len(texts[i]) <= 100 else texts[i][:97] + "..."
            typer.echo(f"{rank:3d}  {score:.4f}  [{i}]  {text}")


@app.command("search")
def search_command(
        query: Annotated[str, typer.Argument(help="The query text.")],
        run_dir: Annotated[Path, typer.Option("--run", help="A run folder (or its system.json).")],
        top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="How many documents to print.")] = 10,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines instead of a table.")] = False,
        no_progress: Quiet = False, verbose: Verbose = 0) -> None:
    """Search the collection of a run with its trained system (first stage, then the chosen re-ranker).

    Example: hardneg search "statins and dementia" --run runs/demo -k 5
    """
    setup_logging(verbose)
    try:
        hits = System.load(run_dir, progress=not no_progress).search(query, top_k)
    except (DataError, ValueError, FileNotFoundError) as exc:
        fail(exc)
    for hit in hits:
        if as_json:
            typer.echo(json.dumps({"rank": hit.rank, "doc_id": hit.doc_id, "title": hit.title,
                                   "first_stage_score": round(hit.first_stage_score, 6),
                                   "reranker_score": None if hit.reranker_score is None
                                   else round(hit.reranker_score, 6), "text": hit.text}))
        else:
            text = f"{hit.title}: {hit.text}" if hit.title else hit.text
            text = text if len(text) <= 90 else text[:87] + "..."
            typer.echo(f"{hit.rank:3d}  [{hit.doc_id}]  {text}")
