"""The saved system behind the endpoints: what runs where, how many at once, and for how long.

- The system's cross-encoder is scored by one :class:`MicroBatcher` thread, whoever asks: a request for the
  re-ranker alone queues its pairs there straight from the event loop, and the whole system's own scoring (in
  ``System.rerank`` and ``System.search``) is routed there too, so pairs from concurrent requests share batches.
- The whole system's calls run on a pool of ``max_concurrency`` threads: ``System`` lets one thread at a time use
  its first stage (which indexes each request's documents into retrievers it keeps between calls) and scores with
  the re-ranker outside that lock, so concurrent requests' pairs meet in the batcher.
- At most ``max_concurrency`` requests are worked on at once; the rest wait, and each has ``timeout_s`` in all.
  A request that times out before its turn is dropped from both queues; one already running finishes unseen.

The system is any object with ``System``'s interface: ``search(query, k)``, ``rerank(query, docs, top_k, bare)``,
``model`` (a cross-encoder with ``predict``, or None) and ``spec`` (``mode``, ``reranker``, ...).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor

from .batching import MicroBatcher, model_predict, restore, route_through
from .metrics import Metrics
from .schemas import LimitError
from .settings import ServeSettings

logger = logging.getLogger(__name__)


class RequestTimeout(Exception):
    """A request ran past the server's timeout."""


def no_reranker(spec, asked: str, fix: str) -> str:
    reason = (spec.choice or {}).get("reason", "none was chosen")
    return f"{asked}: this system has no re-ranker ({reason}); {fix}"


class Engine:
    def __init__(self, system, settings: ServeSettings, metrics: Metrics):
        self.system, self.settings, self.metrics = system, settings, metrics
        self.spec = system.spec
        self.model = system.model  # loaded here, once
        if settings.bare and self.model is None:
            raise ValueError(no_reranker(self.spec, "--bare", "serve it without --bare"))
        self.batcher: MicroBatcher | None = None
        if self.model is not None:
            self.batcher = MicroBatcher(model_predict(self.model, settings.batch_pairs), settings.batch_pairs,
                                        settings.batch_wait_ms / 1000, on_batch=metrics.batch)
            route_through(self.model, self.batcher, settings.timeout_s)
            if hasattr(system, "scoring_lock"):  # the batcher's one thread scores: concurrent callers may enter
                system.scoring_lock = contextlib.nullcontext()
        self._first_stage = ThreadPoolExecutor(settings.max_concurrency, thread_name_prefix="hardneg-system")
        self._slots: asyncio.Semaphore | None = None

    @property
    def reranker_only(self) -> bool:
        """Whether the whole system is its re-ranker alone (chosen mode "rerank")."""
        return self.spec.mode == "rerank"

    def serving(self, bare: bool) -> str:
        return "re-ranker alone" if bare or self.reranker_only else "whole system"

    async def rerank(self, query: str, docs: list[str], top_n: int | None, bare: bool) -> list[tuple[int, float]]:
        """(index, score) best first: the whole system as ``System.rerank`` ranks, or the re-ranker alone."""
        if bare and self.model is None:
            raise LimitError(no_reranker(self.spec, "bare=true", "leave bare out"))
        ranked = await self._limited(lambda: self._rerank(query, docs, top_n, bare))
        self.metrics.ranked(len(docs))
        return ranked

    async def search(self, query: str, k: int):
        return await self._limited(lambda: self._on_first_stage(self.system.search, query, k))

    async def _rerank(self, query, docs, top_n, bare):
        if not (bare or self.reranker_only):
            return await self._on_first_stage(self.system.rerank, query, docs, top_n, False)
        # The re-ranker alone, as System.rerank's own bare branch: scores, best first, ties by index.
        scores = await asyncio.wrap_future(self.batcher.submit([(query, d) for d in docs]))
        order = sorted(range(len(docs)), key=lambda i: (-float(scores[i]), i))
        return [(i, float(scores[i])) for i in order[:top_n]]

    async def _on_first_stage(self, fn, *args):
        return await asyncio.wrap_future(self._first_stage.submit(fn, *args))

    async def _limited(self, work):
        """``await work()`` in a free slot, within the timeout (the wait for a slot included)."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.settings.max_concurrency)

        async def run():
            async with self._slots:
                return await work()

        try:
            return await asyncio.wait_for(run(), self.settings.timeout_s)
        except asyncio.TimeoutError:  # not the built-in TimeoutError before Python 3.11
            raise RequestTimeout(f"the request took longer than the server's timeout of {self.settings.timeout_s:g} s "
                                 "(--timeout)") from None

    def close(self) -> None:
        # Stop the work first, then the batcher, and only then give the model its own predict back: a thread
        # still running would otherwise call the unbatched predict beside the batcher's thread.
        self._first_stage.shutdown(wait=True, cancel_futures=True)
        if self.batcher is not None:
            self.batcher.close()
            restore(self.model)
