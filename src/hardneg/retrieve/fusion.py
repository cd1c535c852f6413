"""Fusion: how an ensemble turns its members' scores over one query's pool into one ranking.

A fusion name (the config's :data:`hardneg.config.Fusion`) stands for independent choices, kept apart the way
ranx's ``fuse(runs, norm=, method=)`` keeps them:

- ``normalisation``: how each member's scores over a pool are made comparable (zscore, minmax, rrf, or none);
- ``method``: how the normalised scores are combined (their weighted mean, for every fusion);
- ``representation``: which retrievers are fused: the members themselves, or (``concat-pca``) the dense members
  replaced by one PCA-reduced space (see :class:`hardneg.retrieve.space.ConcatPCA`);
- ``picking``: how mining picks from the ranked pool: in fused order, or (``union``) from each member's own
  ordering in turn.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

import numpy as np

from ..config import Fusion

Normalisation = Literal["zscore", "minmax", "rrf", "none"]
Method = Literal["weighted-mean"]
Representation = Literal["members", "concat-pca"]
Picking = Literal["fused", "union"]


def _zscore(scores: np.ndarray, rrf_k: int) -> np.ndarray:
    std = scores.std()
    return (scores - scores.mean()) / std if std > 0 else np.zeros_like(scores)


def _minmax(scores: np.ndarray, rrf_k: int) -> np.ndarray:
    span = scores.max() - scores.min()
    return (scores - scores.min()) / span if span > 0 else np.zeros_like(scores)


def _reciprocal_rank(scores: np.ndarray, rrf_k: int) -> np.ndarray:
    ranks = np.empty(len(scores))
    ranks[np.argsort(-scores, kind="stable")] = np.arange(1, len(scores) + 1)
    return 1.0 / (rrf_k + ranks)


def _raw(scores: np.ndarray, rrf_k: int) -> np.ndarray:
    return scores


NORMALISATIONS: Mapping[Normalisation, Callable[[np.ndarray, int], np.ndarray]] = MappingProxyType({
    "zscore": _zscore,
    "minmax": _minmax,
    "rrf": _reciprocal_rank,
    "none": _raw,
})


def weighted_mean(normalised: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Rows of normalised member scores -> one score per column, each row counted by its weight."""
    return (weights[:, None] * normalised).sum(axis=0) / weights.sum()


METHODS: Mapping[Method, Callable[[np.ndarray, np.ndarray], np.ndarray]] = MappingProxyType({
    "weighted-mean": weighted_mean,
})


@dataclass(frozen=True)
class FusionSpec:
    """What one fusion name means (see the module docstring)."""

    normalisation: Normalisation
    method: Method = "weighted-mean"
    representation: Representation = "members"
    picking: Picking = "fused"


# Keys are exactly the config's Fusion names (a test holds them equal): configs and fingerprints use these strings.
FUSIONS: Mapping[Fusion, FusionSpec] = MappingProxyType({
    "zscore": FusionSpec("zscore"),
    "minmax": FusionSpec("minmax"),
    "rrf": FusionSpec("rrf"),
    "mean": FusionSpec("none"),
    "concat-pca": FusionSpec("zscore", representation="concat-pca"),
    "union": FusionSpec("zscore", picking="union"),
})


def fusion_spec(fusion: str) -> FusionSpec:
    """The spec of a fusion name; a clear error for an unknown one."""
    try:
        return FUSIONS[fusion]
    except KeyError:
        raise ValueError(f"Unknown fusion {fusion!r}: choose one of {', '.join(FUSIONS)}.") from None


def normalise(scores: np.ndarray, method: Fusion, rrf_k: int = 60) -> np.ndarray:
    """Per-query normalisation of one member's scores over a candidate pool, as fusion ``method`` applies it."""
    return NORMALISATIONS[fusion_spec(method).normalisation](scores, rrf_k)


def fuse_scores(member_scores: np.ndarray, weights: np.ndarray, spec: FusionSpec, rrf_k: int = 60) -> np.ndarray:
    """One fused score per pool document from the raw ``member_scores`` (one row per weighted member)."""
    normalise_row = NORMALISATIONS[spec.normalisation]
    normalised = np.stack([normalise_row(row.astype(np.float64), rrf_k) for row in member_scores])
    return METHODS[spec.method](normalised, weights)
