"""Cross-encoders, loaded and scored one way for every stage: mining's denoiser, training, re-ranking, evaluation.

:func:`load_cross_encoder` loads a one-label model from a registered name, a folder or a hub id;
:func:`training_info` reads what hardneg recorded when it trained a folder; :class:`ScoreStore` and
:func:`score_pairs` score (query, document) pairs and keep the scores on disk, fingerprinted by the model;
:func:`read_scores` reads such a file back.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .data import Dataset
from .embed import resolve_st_model
from .hub import locate_model
from .io import atomic_write, read_json

logger = logging.getLogger(__name__)

# The file a trained model folder holds with hardneg's record of its training; its presence marks the folder done.
DONE_MARKER = "hardneg_training.json"


def load_cross_encoder(name_or_path: str, max_length: int | None = None, seed: int | None = None,
                       device: str | None = None):
    """A ``CrossEncoder`` with one output, from a registered name, a folder or a hub id, on ``device`` (default:
    this process's compute settings, :mod:`hardneg.device`).

    ``seed``: a base model's scoring head is new and randomly initialised; seeded here, it does not depend on
    whatever drew from torch's generator earlier in the process (a cold embedding cache loads models, a warm one
    does not). A trained folder's head is loaded, so the seed changes nothing there.
    """
    from sentence_transformers import CrossEncoder

    from .device import current, resolve_device

    if seed is not None:
        from transformers import set_seed

        set_seed(seed)
    path = resolve_st_model(name_or_path)
    path, offline = locate_model(path, "Cross-encoder")
    try:
        return CrossEncoder(path, num_labels=1, max_length=max_length, local_files_only=offline,
                            device=resolve_device(device or current().device))
    except OSError as exc:
        raise ValueError(f"Cannot load cross-encoder {name_or_path!r} (resolved to {path!r}): {exc}") from None


class OpenVINOCrossEncoder:
    """A loaded one-label ``CrossEncoder`` converted in memory to OpenVINO and run at the CPU's own inference
    precision (bf16 where the CPU has bf16 instructions, else f32): ``predict`` tokenises pairs as
    ``CrossEncoder.predict`` does and applies the model's activation. On the demo's re-rankers bf16 scores differ
    from torch's by about 1e-4 (1e-3 at most; per-query rank correlation .999), at two to three times the speed on
    2 cores (docs/RESULTS.md, "The demo")."""

    device = "cpu"

    def __init__(self, model, threads: int | None = None):
        import torch

        from .embed.onnx import _openvino, openvino_precision

        if str(getattr(model, "device", "cpu")).split(":")[0] != "cpu":
            raise ValueError(f"the openvino re-ranking engine runs on the CPU, but the model is on {model.device}")
        network = getattr(model, "model", None)
        if not hasattr(network, "config") or getattr(network.config, "num_labels", None) != 1:
            raise ValueError("the openvino re-ranking engine runs one-label sequence-classification cross-encoders "
                             "(BERT-style); use engine torch for this model")
        ov = _openvino()
        self.tokenizer, self.max_length = model.tokenizer, model.max_seq_length
        self.activation = model.activation_fn
        self.precision = openvino_precision()
        example = dict(self.tokenizer(["query"], ["document"], padding=True, truncation=True, return_tensors="pt"))
        # tracing warns that shapes become constants; OpenVINO keeps the inputs dynamic, so the warnings mislead
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            converted = ov.convert_model(network.eval(), example_input=example)
        # pinned, so the score store's fingerprint says what ran
        self._compiled = ov.Core().compile_model(converted, "CPU", {
            "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads or torch.get_num_threads(),
            "INFERENCE_PRECISION_HINT": self.precision})
        self._inputs = {name for port in self._compiled.inputs for name in port.get_names()}

    def predict(self, pairs: list[tuple[str, str]], batch_size: int = 64, show_progress_bar: bool = False,
                convert_to_numpy: bool = True) -> np.ndarray:
        import torch

        logits = []
        for start in range(0, len(pairs), batch_size):
            batch = pairs[start:start + batch_size]
            enc = self.tokenizer([q for q, _ in batch], [d for _, d in batch], padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="np")
            logits.append(np.asarray(self._compiled({k: v for k, v in enc.items() if k in self._inputs})[0],
                                     dtype=np.float32).reshape(-1))
        values = torch.from_numpy(np.concatenate(logits) if logits else np.zeros(0, dtype=np.float32))
        return self.activation(values).numpy()


def engine_for(engine: str, device: str) -> str:
    """The engine that scores on ``device``: OpenVINO runs on the CPU only, so a GPU keeps torch; ``auto`` is
    OpenVINO on a CPU where it is installed, else torch."""
    on_cpu = device.split(":")[0] == "cpu"
    if engine == "auto":
        return "openvino" if on_cpu and openvino_installed() else "torch"
    if engine == "openvino" and not on_cpu:
        logger.info("evaluate.engine openvino runs on the CPU; re-ranking on %s with torch", device)
        return "torch"
    return engine


def openvino_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


def reranking_engine(model, engine: str = "torch"):
    """``model`` as the evaluation scores with it: itself (torch), or converted to OpenVINO (CPU only)."""
    return model if engine == "torch" else OpenVINOCrossEncoder(model)


def engine_key(engine: str) -> str:
    """What a score store's fingerprint adds for ``engine`` (nothing for torch: scores stored before stay valid)."""
    if engine == "torch":
        return ""
    from .embed.onnx import openvino_precision

    return f"openvino:{openvino_precision()}"


def training_info(model_dir: str | Path) -> dict:
    """What hardneg recorded when it trained ``model_dir`` (empty for a model it did not train)."""
    path = Path(model_dir) / DONE_MARKER
    return json.loads(path.read_text()) if path.is_file() else {}


def finished_model(output_dir: str | Path, fingerprint: str) -> Path | None:
    """``output_dir/model`` if hardneg finished training it with ``fingerprint`` (so it can be reused), else None."""
    final = Path(output_dir) / "model"
    return final if training_info(final).get("fingerprint") == fingerprint else None


class ScoreStore:
    """A re-ranker's (query, document) scores, kept on disk so a resumed run re-scores nothing.

    The file records a fingerprint of the model that produced the scores; scores from any other model (a
    retrained strategy, a changed base model or max length) are discarded, never mixed in. Scores are what
    ``CrossEncoder.predict`` returns (sigmoid of the logit for a one-label model): monotonic in the logit, so
    rankings are the same, and bounded, which keeps the interpolation's z-scores robust to outliers.
    """

    def __init__(self, path: str | Path | None, fingerprint: str = ""):
        self.path = Path(path) if path else None
        self.fingerprint = fingerprint
        self.scores: dict[str, dict[str, float]] = {}
        if self.path and self.path.is_file():
            saved = read_json(self.path)
            if isinstance(saved, dict) and saved.get("fingerprint") == fingerprint:
                self.scores = saved["scores"]
            else:
                logger.info("Discarding scores in %s: they came from another model", self.path)

    def missing(self, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return [(q, d) for q, d in pairs if d not in self.scores.get(q, {})]

    def add(self, pairs: list[tuple[str, str]], values: np.ndarray) -> None:
        for (q, d), v in zip(pairs, values, strict=True):
            self.scores.setdefault(q, {})[d] = float(v)
        if self.path:
            with atomic_write(self.path) as handle:
                json.dump({"fingerprint": self.fingerprint, "scores": self.scores}, handle)


def read_scores(path: str | Path) -> dict[str, dict[str, float]]:
    """A :class:`ScoreStore` file's (query -> document -> score), whatever model made it.

    Older runs saved the mapping bare, without a fingerprint; both forms read the same.
    """
    saved = read_json(path)
    return saved["scores"] if isinstance(saved.get("scores"), dict) and "fingerprint" in saved else saved


def score_pairs(model, dataset: Dataset, pairs: list[tuple[str, str]], store: ScoreStore, batch_size: int = 64,
                progress: bool = True, save_every: int = 4096) -> None:
    """Score (query id, doc id) pairs with a CrossEncoder, longest-first batches, saving as it goes (on a GPU in
    the inference precision of this process's compute settings)."""
    from .device import autocast, current

    todo = store.missing(list(dict.fromkeys(pairs)))
    if not todo:
        return
    corpus, queries = dataset.corpus, dataset.queries
    texts = [(queries.text(q), corpus.full_text(corpus.index[d])) for q, d in todo]
    order = sorted(range(len(todo)), key=lambda i: -len(texts[i][1]))  # similar lengths share a batch
    with tqdm(total=len(todo), desc="re-rank", disable=not progress, unit="pair") as bar:
        for start in range(0, len(order), save_every):
            chunk = order[start:start + save_every]
            device = str(getattr(model, "device", "cpu"))  # a stand-in has none
            with autocast(device, current().precision, scoring=True):
                values = model.predict([texts[i] for i in chunk], batch_size=batch_size, show_progress_bar=False,
                                       convert_to_numpy=True)
            store.add([todo[i] for i in chunk], np.asarray(values, dtype=np.float64).reshape(-1))
            bar.update(len(chunk))
