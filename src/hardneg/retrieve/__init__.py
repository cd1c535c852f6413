"""First-stage retrieval: single retrievers (dense or BM25), their fused ensemble, and a run's shared pool.

Every member answers two questions about a corpus it has indexed: the top-k documents for each query, and its
score for given (query, document) pairs. :class:`Ensemble` pools the members' top-k and fuses their scores as its
fusion's spec says (:mod:`hardneg.retrieve.fusion`: normalisation, combining method, representation, picking).
"""

from __future__ import annotations

from ..config import Fusion
from .base import CandidatePool, Retriever, id_rank, top_k
from .bm25 import BM25Retriever
from .dense import DenseRetriever
from .ensemble import Ensemble
from .fusion import (
    FUSIONS,
    METHODS,
    NORMALISATIONS,
    FusionSpec,
    fuse_scores,
    fusion_spec,
    normalise,
    weighted_mean,
)
from .pool import Retrievers, make_retriever, search_options, search_stamp
from .space import ConcatPCA

__all__ = [
    "FUSIONS",
    "METHODS",
    "NORMALISATIONS",
    "BM25Retriever",
    "CandidatePool",
    "ConcatPCA",
    "DenseRetriever",
    "Ensemble",
    "Fusion",
    "FusionSpec",
    "Retriever",
    "Retrievers",
    "fuse_scores",
    "fusion_spec",
    "id_rank",
    "make_retriever",
    "normalise",
    "search_options",
    "search_stamp",
    "top_k",
    "weighted_mean",
]
