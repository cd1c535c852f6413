"""One line of the results table, as results.json stores it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    """One line of the results table."""

    first_stage: str
    reranker: str          # "none" for the first stage alone
    mode: str              # "first stage", "rerank", or "interpolated"
    metrics: dict[str, float]
    alpha: float | None = None
    by_length: dict[str, dict[str, float]] | None = None  # the same metrics on short and long documents' queries
    alpha_curve: list[tuple[float, float]] | None = None  # (weight, dev metric) behind ``alpha``, to judge its noise

    def as_dict(self) -> dict:
        return {"first_stage": self.first_stage, "reranker": self.reranker, "mode": self.mode,
                "alpha": self.alpha, "metrics": self.metrics, "by_length": self.by_length,
                "alpha_curve": [list(point) for point in self.alpha_curve] if self.alpha_curve else None}

    @classmethod
    def from_dict(cls, row: dict) -> Row:
        """The inverse of ``as_dict`` (rows of results.json; older files lack the later fields)."""
        curve = row.get("alpha_curve")
        return cls(row["first_stage"], row["reranker"], row["mode"], row["metrics"], row.get("alpha"),
                   row.get("by_length"), [tuple(point) for point in curve] if curve else None)
