"""Run the app on uvicorn: load the saved system once, warm it up, serve until stopped."""

from __future__ import annotations

import logging
import time
from pathlib import Path

try:
    import uvicorn
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("`hardneg serve` needs FastAPI and uvicorn: pip install 'hardneg[serve]'") from exc

from ..system import System
from .app import create_app
from .engine import no_reranker
from .settings import ServeSettings

logger = logging.getLogger("hardneg.serve")


def load_and_warm(path: str | Path, settings: ServeSettings | None = None) -> System:
    """The saved system at ``path`` with everything a request needs already loaded: the collection and its
    first-stage index, the re-ranker, and the first stage's models for re-ranking given documents."""
    started = time.perf_counter()
    system = System.load(path)
    if settings is not None and settings.bare and system.spec.model is None:  # before minutes of loading
        raise ValueError(no_reranker(system.spec, "--bare", "serve it without --bare"))
    system.search("warm-up", 1)
    system.rerank("warm-up", ["warm-up"])
    logger.info("Loaded the system from %s in %.1f s (%s)", path, time.perf_counter() - started, system.spec.mode)
    return system


def serve(path: str | Path, settings: ServeSettings, log_level: str = "warning") -> None:
    """Serve the system saved at ``path`` (a run folder or its system.json) until interrupted."""
    app = create_app(load_and_warm(path, settings), settings)
    if settings.exposed and settings.token is None:
        logger.warning("Listening on %s without a token: anyone who can reach port %d can use this server "
                       "(give --token)", settings.host, settings.port)
    logger.info("Serving on http://%s:%d", settings.host, settings.port)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=log_level, access_log=False,
                limit_concurrency=settings.max_connections, timeout_graceful_shutdown=5)
