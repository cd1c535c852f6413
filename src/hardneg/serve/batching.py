"""Micro-batching of cross-encoder pairs across concurrent requests.

Requests queue their (query, document) pairs; one worker thread takes what is queued, up to ``max_pairs`` pairs
or whatever arrived within ``max_wait_s`` of the first, scores it in one ``predict`` call and hands each request
its slice. A request's pairs stay in one batch (one larger than ``max_pairs`` is scored alone). One thread owns
the model, so its tokenizer (not safe to share between threads) is never used by two at once, and the event loop
never waits on the model.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

import numpy as np

logger = logging.getLogger(__name__)

Pairs = Sequence[tuple[str, str]]
_STOP = object()


class BatcherClosed(RuntimeError):
    """The batcher was closed (the server is shutting down)."""


class MicroBatcher:
    """Scores pairs with ``predict(pairs) -> scores`` in batches gathered across callers.

    ``on_batch(pairs, seconds)`` is called after each batch (for metrics).
    """

    def __init__(self, predict: Callable[[list[tuple[str, str]]], np.ndarray], max_pairs: int = 64,
                 max_wait_s: float = 0.005, on_batch: Callable[[int, float], None] | None = None):
        if max_pairs < 1:
            raise ValueError(f"max_pairs must be at least 1, got {max_pairs}")
        self._predict, self.max_pairs, self.max_wait_s = predict, max_pairs, max_wait_s
        self._on_batch = on_batch
        self._queue: queue.Queue = queue.Queue()
        self._closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, name="hardneg-batcher", daemon=True)
        self._thread.start()

    def submit(self, pairs: Pairs) -> Future:
        """A future of ``pairs``' scores (a float array, in order). Cancelling it before its batch starts
        drops its pairs."""
        future: Future = Future()
        with self._lock:
            if self._closed:
                raise BatcherClosed("the server is shutting down")
            if not pairs:
                future.set_result(np.zeros(0, dtype=np.float64))
                return future
            self._queue.put((list(pairs), future))
        return future

    def close(self, timeout: float | None = 5.0) -> None:
        """Stop taking pairs, finish what is queued, stop the worker."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        self._thread.join(timeout)

    def _work(self) -> None:
        carried = None  # a job that would have overfilled the last batch opens the next one
        while True:
            job = carried if carried is not None else self._queue.get()
            carried = None
            if job is _STOP:
                return
            batch, size = [job], len(job[0])
            deadline = time.monotonic() + self.max_wait_s
            while size < self.max_pairs:
                remaining = deadline - time.monotonic()
                try:  # what is already queued joins even after the deadline
                    job = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is _STOP or size + len(job[0]) > self.max_pairs:
                    carried = job
                    break
                batch.append(job)
                size += len(job[0])
            self._score(batch)

    def _score(self, batch: list[tuple[list[tuple[str, str]], Future]]) -> None:
        live = [(pairs, future) for pairs, future in batch if future.set_running_or_notify_cancel()]
        if not live:
            return
        pairs = [pair for job_pairs, _ in live for pair in job_pairs]
        started = time.perf_counter()
        try:
            scores = np.asarray(self._predict(pairs), dtype=np.float64).reshape(-1)
            if len(scores) != len(pairs):
                raise RuntimeError(f"the model returned {len(scores)} scores for {len(pairs)} pairs")
        except Exception as exc:  # every waiting request gets the error; the worker keeps serving
            logger.error("Scoring a batch of %d pairs failed: %r", len(pairs), exc)
            for _, future in live:
                future.set_exception(exc)
            return
        offset = 0
        for job_pairs, future in live:
            future.set_result(scores[offset:offset + len(job_pairs)])
            offset += len(job_pairs)
        if self._on_batch is not None:
            self._on_batch(len(pairs), time.perf_counter() - started)


def route_through(model, batcher: MicroBatcher, timeout_s: float) -> None:
    """Make ``model.predict`` (as a system calls it, from any thread) go through ``batcher``.

    This sets the instance's own ``predict`` (the original stays as ``unbatched_predict``, which the batcher
    calls), so the system keeps its one loaded model and computes everything else from the scores itself.
    :func:`restore` undoes it.
    """
    if not hasattr(model, "unbatched_predict"):
        model.unbatched_predict = model.predict

    def predict(pairs, *args, **kwargs):  # the batcher's call fixes the options: numpy out, no progress bar
        future = batcher.submit(list(pairs))
        try:
            return future.result(timeout=timeout_s)
        except FutureTimeout:
            future.cancel()  # its request has timed out: nobody will read these scores
            raise

    model.predict = predict


def restore(model) -> None:
    if hasattr(model, "unbatched_predict"):
        model.predict = model.unbatched_predict
        del model.unbatched_predict


def model_predict(model, batch_size: int) -> Callable[[list[tuple[str, str]]], np.ndarray]:
    """``model``'s own ``predict``, called the way a system scores pairs, ``batch_size`` pairs per forward pass."""
    original = getattr(model, "unbatched_predict", model.predict)

    def predict(pairs: list[tuple[str, str]]) -> np.ndarray:
        return original(pairs, batch_size=batch_size, show_progress_bar=False, convert_to_numpy=True)

    return predict
