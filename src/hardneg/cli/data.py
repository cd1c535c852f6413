"""Getting data in: `ingest` your documents, `download` a BEIR dataset, list the `models`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..data import DataError, resolve_dataset
from ..embed import KNOWN_MODELS
from ..ingest import DEFAULT_MAX_CHARS, Columns, FetchConfig, PairFields, ingest
from .common import DataDir, Quiet, Verbose, fail, setup_logging, app


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
        max_chars: Annotated[int, typer.Option(help="Skip documents with more extracted text.")] = DEFAULT_MAX_CHARS,
        timeout: Annotated[float, typer.Option("--fetch.timeout", help="Seconds one HTTP read may wait.")] = 15.0,
        deadline: Annotated[float, typer.Option("--fetch.deadline", help="Seconds per URL, retries included.")] = 120.0,
        retries: Annotated[int, typer.Option("--fetch.retries", help="Retries after a timeout or 5xx.")] = 2,
        concurrency: Annotated[int, typer.Option("--fetch.concurrency", help="Parallel requests.")] = 4,
        strict: Annotated[bool, typer.Option("--strict", help="Fail on the first skipped input.")] = False,
        overwrite: Annotated[bool, typer.Option(help="Write into a folder of other files (they are kept).")] = False,
        follow_symlinks: Annotated[bool, typer.Option(help="Read links that lead out of a source folder.")] = False,
        seed: int = 42, no_progress: Quiet = False, verbose: Verbose = 0) -> None:
    """Turn folders of HTML/PDF/Markdown/text/DOCX, tables or URLs, plus query pairs, into a dataset folder.

    Example: hardneg ingest examples/docs --pairs examples/queries.csv --output runs/docs-data
    """
    setup_logging(verbose)
    if not sources and urls is None:
        fail(ValueError("give at least one SOURCE folder/file or --urls"))
    try:
        result = ingest(sources, output, urls=urls, pairs=pairs, qrels=qrels, queries=queries,
                        columns=Columns(id=id_field, title=title_field, text=text_field, url=url_field),
                        pair_fields=PairFields(query=query_field, positive=positive_field), id_mode=id_mode,
                        dedup=dedup, near_threshold=near_threshold, boilerplate=not keep_boilerplate,
                        test_fraction=test_fraction, seed=seed, max_bytes=max_bytes, max_chars=max_chars,
                        fetch=FetchConfig(timeout=timeout, deadline=deadline, retries=retries, concurrency=concurrency),
                        strict=strict, overwrite=overwrite, follow_symlinks=follow_symlinks, progress=not no_progress)
    except (DataError, ValueError, FileNotFoundError, ImportError) as exc:
        fail(exc)
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
        fail(exc)
