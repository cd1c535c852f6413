"""The HTTP app: :func:`create_app` turns a loaded system and :class:`ServeSettings` into an ASGI app.

Endpoints: ``POST /v1/rerank`` and ``POST /v2/rerank`` (Cohere's shapes), ``POST /rerank`` (text-embeddings-
inference's), ``POST /search``, ``GET /health``, ``GET /info`` and ``GET /metrics``. Re-rank endpoints rank with
the whole system by default (``--bare``: the re-ranker alone); ``?bare=true`` or ``?bare=false`` chooses per
request. Request and response shapes: docs/SERVING.md.
"""

from __future__ import annotations

import logging
import platform
from contextlib import asynccontextmanager
from importlib import metadata

try:
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from starlette.exceptions import HTTPException
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("`hardneg serve` needs FastAPI and uvicorn: pip install 'hardneg[serve]'") from exc

from ..version import __version__
from .engine import Engine, RequestTimeout
from .guard import Guard, internal_error, log_refusal
from .metrics import CONTENT_TYPE, Metrics
from .schemas import (CohereV1Rerank, CohereV2Rerank, LimitError, SearchRequest, TEIRerank, check_query, check_texts,
                      cohere_response, document_texts, ignored_fields, search_response, tei_response,
                      truncate_words)
from .settings import ServeSettings, option

logger = logging.getLogger("hardneg.serve")

ROUTES = {"/v1/rerank", "/v2/rerank", "/rerank", "/search", "/health", "/info", "/metrics", "/openapi.json"}
VERSIONED = ("fastapi", "uvicorn", "torch", "transformers", "sentence-transformers")


def create_app(system, settings: ServeSettings | None = None) -> Guard:
    """An ASGI app serving ``system`` (a :class:`hardneg.system.System`, or any object with its interface: see
    :mod:`hardneg.serve.engine`). The system's re-ranker is loaded here; ``--bare`` without one raises
    ValueError."""
    settings = settings or ServeSettings()
    metrics = Metrics()
    engine = Engine(system, settings, metrics)
    spec = engine.spec
    served = f"hardneg:{spec.reranker or spec.first_stage}"

    @asynccontextmanager
    async def lifespan(_app):
        yield
        engine.close()

    app = FastAPI(title="hardneg", version=__version__, docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.engine = engine

    def bare_or_default(bare: bool | None) -> bool:
        return settings.bare if bare is None else bare

    def warnings_for(body, unsupported: tuple[str, ...]) -> list[str]:
        out = [f"model {body.model!r} is not served here; every request is answered by {served} (see /info)"] \
            if body.model and body.model != served else []
        out += [f"{name!r} is not supported by this server and was ignored"
                for name in ignored_fields(body, unsupported)]
        return out

    @app.post("/v1/rerank")
    async def cohere_v1(body: CohereV1Rerank, request: Request, bare: bool | None = None):
        texts = document_texts(body.documents, body.rank_fields)
        check_texts(body.query, texts, settings)
        ranked = await engine.rerank(body.query, texts, body.top_n, bare_or_default(bare))
        return cohere_response(request.state.request_id, ranked, body.documents, body.return_documents, "1",
                               warnings_for(body, ("max_chunks_per_doc",)))

    @app.post("/v2/rerank")
    async def cohere_v2(body: CohereV2Rerank, request: Request, bare: bool | None = None):
        texts = document_texts(body.documents)
        check_texts(body.query, texts, settings)
        ranked = await engine.rerank(body.query, truncate_words(texts, body.max_tokens_per_doc), body.top_n,
                                     bare_or_default(bare))
        return cohere_response(request.state.request_id, ranked, body.documents, body.return_documents, "2",
                               warnings_for(body, ()))

    @app.post("/rerank")
    async def tei(body: TEIRerank, request: Request, bare: bool | None = None):
        check_texts(body.query, body.texts, settings)
        if body.model_extra:
            logger.info("[%s] ignored fields: %s", request.state.request_id, ", ".join(sorted(body.model_extra)))
        ranked = await engine.rerank(body.query, body.texts, None, bare_or_default(bare))
        return tei_response(ranked, body.texts, body.return_text)

    @app.post("/search")
    async def search(body: SearchRequest, request: Request):
        check_query(body.query, settings)
        if body.top_k > settings.max_top_k:
            raise LimitError(f"top_k is {body.top_k}; the limit is {settings.max_top_k} "
                             f"(the server's --{option('max_top_k')})")
        hits = await engine.search(body.query, body.top_k)
        return search_response(request.state.request_id, hits)

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/info")
    async def info():
        return {"model": served, "reranker": spec.reranker, "reranker_model": spec.model, "mode": spec.mode,
                "weight": spec.weight, "first_stage": spec.first_stage, "members": list(spec.members),
                "choice": (spec.choice or {}).get("reason"), "serving": engine.serving(settings.bare),
                "batching": {"pairs": settings.batch_pairs, "wait_ms": settings.batch_wait_ms,
                             "enabled": engine.batcher is not None},
                "limits": settings.limits(), "authentication": settings.token is not None,
                "versions": {"hardneg": __version__, "system": getattr(spec, "version", None),
                             "python": platform.python_version(), **{name: _version(name) for name in VERSIONED}}}

    @app.get("/metrics")
    async def metrics_text():
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    def refuse(request: Request, status: int, message: str) -> JSONResponse:
        request_id = request.state.request_id
        log_refusal(request.method, request.url.path, status, message, request_id)
        return JSONResponse({"message": message, "request_id": request_id}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return refuse(request, 400, "the request body is not valid JSON")
        return refuse(request, 422, "; ".join(_describe(e) for e in errors[:5]))

    @app.exception_handler(LimitError)
    async def limited(request: Request, exc: LimitError):
        return refuse(request, exc.status, str(exc))

    @app.exception_handler(RequestTimeout)
    async def timed_out(request: Request, exc: RequestTimeout):
        return refuse(request, 504, str(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return refuse(request, exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception):  # the Guard logs the traceback: it sees the exception next
        request_id = request.state.request_id
        return JSONResponse({"message": internal_error(request_id), "request_id": request_id}, status_code=500)

    return Guard(app, settings, metrics, ROUTES)


def _describe(error: dict) -> str:
    """One pydantic error as "where: what", e.g. "body.documents: Input should be a valid list"."""
    where = ".".join(str(p) for p in error.get("loc", ()))
    return f"{where}: {error.get('msg', 'invalid')}" if where else str(error.get("msg", "invalid"))


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
