"""Shared test helpers (plain functions; fixtures live in conftest.py)."""

from __future__ import annotations

from hardneg.config import MiningConfig


def top_n(**settings) -> MiningConfig:
    """Mining settings over the paper's top-n (no rank window, best first) unless a test sets its own: the
    hand-computed cases count from rank 0, while the defaults skip the first 5 ranks and sample."""
    return MiningConfig(**{"range_min": 0, "range_max": None, "sampling": "top", **settings})
