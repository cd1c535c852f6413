"""`hardneg serve`: the saved system over HTTP (Cohere- and TEI-shaped re-rank endpoints, search)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from ..data import DataError
from ..serve.settings import TOKEN_ENV, ServeSettings
from .common import Verbose, app, fail, setup_logging

_LIMITS = ServeSettings()


@app.command("serve")
def serve_command(
        run_dir: Annotated[Path, typer.Argument(help="A run folder (or its system.json) written by `hardneg run`.")],
        host: Annotated[str, typer.Option(help="Address to listen on; 0.0.0.0 exposes the server to the "
                                               "network.")] = _LIMITS.host,
        port: Annotated[int, typer.Option(help="Port to listen on.")] = _LIMITS.port,
        token: Annotated[str | None, typer.Option(envvar=TOKEN_ENV, show_envvar=True, show_default=False,
                                                  help="Bearer token every request but /health must send.")] = None,
        bare: Annotated[bool, typer.Option("--bare", help="Re-rank endpoints use the system's re-ranker alone "
                                           "(without its first stage) unless a request says ?bare=false.")] = False,
        max_documents: Annotated[int, typer.Option(help="Documents per re-rank request.")] = _LIMITS.max_documents,
        max_document_chars: Annotated[int, typer.Option(
            help="Characters per document and per query.")] = _LIMITS.max_document_chars,
        max_body_bytes: Annotated[int, typer.Option(help="Request body size.")] = _LIMITS.max_body_bytes,
        max_top_k: Annotated[int, typer.Option(help="Results per /search request.")] = _LIMITS.max_top_k,
        timeout: Annotated[float, typer.Option(help="Seconds a request may take, waiting included (then 504).")]
        = _LIMITS.timeout_s,
        max_concurrency: Annotated[int, typer.Option(help="Requests worked on at once; the rest wait.")]
        = _LIMITS.max_concurrency,
        max_connections: Annotated[int, typer.Option(help="Open connections before the server answers 503.")]
        = _LIMITS.max_connections,
        batch_pairs: Annotated[int, typer.Option(help="Cross-encoder pairs scored together across concurrent "
                                                      "requests.")] = _LIMITS.batch_pairs,
        batch_wait_ms: Annotated[float, typer.Option(help="How long a batch waits for more pairs.")]
        = _LIMITS.batch_wait_ms,
        verbose: Verbose = 0) -> None:
    r"""Serve a trained system over HTTP, in the shapes RAG stacks call re-rankers with.

    POST /v1/rerank and /v2/rerank (Cohere's shapes), /rerank (text-embeddings-inference's), /search; GET /health,
    /info, /metrics. Listens on localhost unless --host says otherwise. Needs `pip install 'hardneg\[serve]'`;
    docs/SERVING.md has the details.

    Example: hardneg serve runs/demo --port 8080 --token "$(openssl rand -hex 16)"
    """
    setup_logging(verbose)
    if verbose == 0:  # the first stage logs each request's indexing: keep the server's own lines
        logging.getLogger("hardneg").setLevel(logging.WARNING)
        logging.getLogger("hardneg.serve").setLevel(logging.INFO)
    if verbose < 2:  # bm25s sets its own logger to DEBUG when imported, and logs every index it builds
        for handler in logging.getLogger().handlers:
            handler.setLevel(logging.INFO)
    try:
        settings = ServeSettings(
            host=host, port=port, token=token, bare=bare, max_documents=max_documents,
            max_document_chars=max_document_chars, max_body_bytes=max_body_bytes, max_top_k=max_top_k,
            timeout_s=timeout, max_concurrency=max_concurrency, max_connections=max_connections,
            batch_pairs=batch_pairs, batch_wait_ms=batch_wait_ms)
        from ..serve.server import serve  # FastAPI and uvicorn load only when serving

        serve(run_dir, settings, log_level="info" if verbose else "warning")
    except (DataError, ValueError, FileNotFoundError, ImportError) as exc:
        fail(exc)
