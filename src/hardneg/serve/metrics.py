"""Counters for ``GET /metrics`` in Prometheus' text format (version 0.0.4), written by hand: a few counters and
one latency histogram do not need a client library."""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """Requests by route and status, their latency, documents ranked and cross-encoder pairs scored. Updated
    from the event loop and the batcher's thread, hence the lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.latency: dict[str, list[int]] = {}  # route -> count per bucket (last: +Inf)
        self.latency_sum: dict[str, float] = defaultdict(float)
        self.in_flight = 0
        self.documents = 0
        self.pairs = 0
        self.batches = 0
        self.batch_seconds = 0.0

    def started(self) -> None:
        with self._lock:
            self.in_flight += 1

    def finished(self, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.in_flight -= 1
            self.requests[(route, status)] += 1
            counts = self.latency.setdefault(route, [0] * (len(BUCKETS) + 1))
            counts[bisect.bisect_left(BUCKETS, seconds)] += 1
            self.latency_sum[route] += seconds

    def ranked(self, documents: int) -> None:
        with self._lock:
            self.documents += documents

    def batch(self, pairs: int, seconds: float) -> None:
        with self._lock:
            self.pairs += pairs
            self.batches += 1
            self.batch_seconds += seconds

    def render(self) -> str:
        with self._lock:
            lines = _family("hardneg_requests_total", "counter", "HTTP requests by route and status.")
            lines += [f'hardneg_requests_total{{route="{_label(r)}",status="{s}"}} {n}'
                      for (r, s), n in sorted(self.requests.items())]
            lines += _family("hardneg_request_duration_seconds", "histogram",
                             "Time from a request's arrival to its response, by route.")
            for route, counts in sorted(self.latency.items()):
                label, cumulative = _label(route), 0
                for bound, count in zip([*map(str, BUCKETS), "+Inf"], counts):
                    cumulative += count
                    lines.append(f'hardneg_request_duration_seconds_bucket{{route="{label}",le="{bound}"}} '
                                 f"{cumulative}")
                lines.append(f'hardneg_request_duration_seconds_sum{{route="{label}"}} {self.latency_sum[route]:.6f}')
                lines.append(f'hardneg_request_duration_seconds_count{{route="{label}"}} {cumulative}')
            for name, kind, text, value in (
                    ("hardneg_requests_in_flight", "gauge", "Requests being answered now.", self.in_flight),
                    ("hardneg_documents_ranked_total", "counter", "Documents ranked by re-rank requests.",
                     self.documents),
                    ("hardneg_pairs_scored_total", "counter", "(query, document) pairs scored by the cross-encoder.",
                     self.pairs),
                    ("hardneg_batches_total", "counter", "Cross-encoder batches (pairs gathered across requests).",
                     self.batches),
                    ("hardneg_batch_seconds_total", "counter", "Time spent scoring cross-encoder batches.",
                     round(self.batch_seconds, 6))):
                lines += _family(name, kind, text) + [f"{name} {value}"]
        return "\n".join(lines) + "\n"


def _family(name: str, kind: str, text: str) -> list[str]:
    return [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
