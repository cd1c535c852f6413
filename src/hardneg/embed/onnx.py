"""ONNX backends for sentence-transformers models: exported once with torch.onnx, then run without torch by
ONNX Runtime (fp32, or int8 weights by its dynamic quantisation) or by OpenVINO: the graph compiled for this CPU at
the CPU's own inference precision (bf16 where it has bf16 instructions, else f32), or with int8 weights (NNCF's
data-free compression) whose activations OpenVINO quantises per group of channels as it runs, so no calibration data
is needed and the model does not depend on a corpus. The precision is part of the cache key: a bf16 CPU and an f32
one give (slightly) different vectors.

sentence-transformers' own ``backend="onnx"`` needs optimum, whose releases pin an older transformers than this
project's, so the export is done here: the transformer's last hidden state goes out of the graph and the pooling
(mean or CLS, read from the model's ``1_Pooling/config.json``) is done in numpy.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Literal

import numpy as np

from .base import Embedder, Kind
from .content import folder_fingerprint

logger = logging.getLogger(__name__)


def onnx_home() -> Path:
    return Path(os.environ.get("HARDNEG_ONNX_DIR", Path.home() / ".cache" / "hardneg" / "onnx"))


def _pooling(model_dir: Path) -> str:
    modules = json.loads((model_dir / "modules.json").read_text()) if (model_dir / "modules.json").is_file() else []
    for module in modules:
        if module["type"].endswith("Pooling"):
            cfg = json.loads((model_dir / module["path"] / "config.json").read_text())
            if cfg.get("pooling_mode_mean_tokens"):
                return "mean"
            if cfg.get("pooling_mode_cls_token"):
                return "cls"
            raise ValueError(f"{model_dir}: only mean or CLS pooling is supported by the ONNX backend, got {cfg}")
    return "mean"


def export_onnx(model_dir: str | Path, out_dir: str | Path | None = None, quantize: bool = True,
                content: str = "") -> Path:
    """Export a local sentence-transformers folder's transformer to ONNX (and int8); returns the .onnx file.

    Reuses a finished export. Files are written to a temporary folder and renamed, so an interrupted export
    never leaves a half-written model behind. ``content``: the folder's content fingerprint, if the export is to
    be redone when the folder's model changes (see :func:`hardneg.embed.content.folder_fingerprint`).
    """
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise ValueError(f"{model_dir}: not a local transformers/sentence-transformers folder (no config.json); "
                         "the ONNX backend exports local folders only.")
    where = str(model_dir.resolve()) + (f"\x00{content}" if content else "")
    digest = hashlib.sha1(where.encode()).hexdigest()[:10]
    out_dir = Path(out_dir) if out_dir else onnx_home() / f"{model_dir.name}-{digest}"
    # per-channel scales: cosine to the fp32 vectors ~0.99 on MiniLM, against ~0.96 with one scale per tensor
    target = out_dir / ("model_qint8_pc.onnx" if quantize else "model.onnx")
    if target.is_file():
        return target
    try:  # only an export needs torch and onnx; running the model needs onnxruntime (or openvino) alone
        import onnx  # noqa: F401
        import torch
        from transformers import AutoModel

        if quantize:
            from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:
        raise ImportError("exporting to ONNX needs onnx (and onnxruntime for int8): pip install 'hardneg[onnx]'") from exc
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        plain = out_dir / "model.onnx"
        if not plain.is_file():
            model = AutoModel.from_pretrained(model_dir).eval()
            dummy = {"input_ids": torch.ones(1, 8, dtype=torch.long),
                     "attention_mask": torch.ones(1, 8, dtype=torch.long)}
            if "token_type_ids" in model.forward.__code__.co_varnames:
                dummy["token_type_ids"] = torch.zeros(1, 8, dtype=torch.long)
            axes = {name: {0: "batch", 1: "sequence"} for name in dummy}
            axes["last_hidden_state"] = {0: "batch", 1: "sequence"}
            staged = Path(tmp) / "model.onnx"
            names = list(dummy)

            class Hidden(torch.nn.Module):  # positional inputs in a fixed order, one output
                def __init__(self):
                    super().__init__()
                    self.model = model

                def forward(self, *tensors):
                    return self.model(**dict(zip(names, tensors))).last_hidden_state

            with torch.no_grad():
                torch.onnx.export(Hidden(), tuple(dummy.values()), str(staged), input_names=names,
                                  output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=17,
                                  dynamo=False)
            os.replace(staged, plain)
        if quantize:
            staged = Path(tmp) / target.name
            quantize_dynamic(str(plain), str(staged), weight_type=QuantType.QInt8, per_channel=True)
            os.replace(staged, target)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (model_dir / name).is_file() and not (out_dir / name).is_file():
            shutil.copy(model_dir / name, out_dir / name)
    logger.info("Exported %s to %s", model_dir, target)
    return target


# Activations quantised per group of this many channels at run time (OpenVINO's dynamic quantisation of layers
# with int8 weights). On MiniLM, groups of 64-384 take about the same time and larger ones drift further from
# the fp32 vectors (benchmarks/speed/ov_group_size.json); 128 is the size the end-to-end benchmarks measured.
OV_GROUP_SIZE = 128


def export_openvino_int8(onnx_path: Path) -> Path:
    """The exported fp32 graph with int8 weights (symmetric, per output channel), saved once as OpenVINO IR beside
    it; returns the .xml. Written under temporary names and renamed (the weights first), so an interrupted
    compression never leaves a model that looks finished."""
    target = onnx_path.with_name("model_ov_int8.xml")
    if target.is_file() and target.with_suffix(".bin").is_file():
        return target
    try:
        import nncf
        import openvino as ov
    except ImportError as exc:
        raise ImportError("int8 OpenVINO needs openvino and nncf: pip install 'hardneg[openvino]'") from exc
    model = nncf.compress_weights(ov.Core().read_model(str(onnx_path)), mode=nncf.CompressWeightsMode.INT8_SYM)
    with tempfile.TemporaryDirectory(dir=onnx_path.parent) as tmp:
        staged = Path(tmp) / target.name
        ov.save_model(model, str(staged), compress_to_fp16=False)
        os.replace(staged.with_suffix(".bin"), target.with_suffix(".bin"))
        os.replace(staged, target)
    return target


Engine = Literal["onnxruntime", "openvino"]
# A model name's suffix -> (engine, int8 weights); the longer suffix first, since "-ov-int8" also ends in "-int8".
SUFFIXES: dict[str, tuple[Engine, bool]] = {"-ov-int8": ("openvino", True), "-int8": ("onnxruntime", True),
                                            "-onnx": ("onnxruntime", False), "-ov": ("openvino", False)}


def _openvino():
    try:
        import openvino
    except ImportError as exc:
        raise ImportError("the OpenVINO engine needs openvino: pip install 'hardneg[openvino]'") from exc
    return openvino


@functools.cache
def openvino_precision() -> str:
    """The precision OpenVINO's CPU plugin infers in by default on this machine: 'bf16' or 'f32' (asked once)."""
    return _openvino().Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()


class OnnxEmbedder(Embedder):
    """A sentence-transformers model exported to ONNX, run by ONNX Runtime or by OpenVINO, each in fp32 or with
    int8 weights."""

    def __init__(self, model_dir: str | Path, name: str, quantize: bool = True, max_seq_length: int | None = None,
                 batch_size: int = 32, threads: int | None = None, keyed_by_content: bool = False,
                 engine: Engine = "onnxruntime"):
        self.model_dir = Path(model_dir)
        self.keyed_by_content = keyed_by_content  # as SentenceTransformerEmbedder's: for local folders
        self.quantize = quantize
        self.engine = engine
        self.precision = openvino_precision() if engine == "openvino" else "f32"
        self.name = name + next(suffix for suffix, kind in SUFFIXES.items() if kind == (engine, quantize))
        self.batch_size = batch_size
        self.threads = threads
        if max_seq_length is None and (self.model_dir / "sentence_bert_config.json").is_file():
            max_seq_length = json.loads((self.model_dir / "sentence_bert_config.json").read_text()).get(
                "max_seq_length")
        self.max_seq_length = max_seq_length or 512
        self._model = None

    @property
    def content(self) -> str:
        return folder_fingerprint(self.model_dir) if self.keyed_by_content else ""

    @property
    def cache_key(self) -> str:
        key = f"onnx:{self.name}:{self.max_seq_length}"
        if self.engine == "openvino":  # another precision or group size gives other vectors
            key += f":{self.precision}" + (f":g{OV_GROUP_SIZE}" if self.quantize else "")
        return f"{key}:{self.content}" if self.keyed_by_content else key

    def _load(self):
        from transformers import AutoTokenizer

        threads = self.threads or (os.cpu_count() or 1)
        if self.engine == "openvino":
            ov = _openvino()
            path = export_onnx(self.model_dir, quantize=False, content=self.content)
            # bf16 where the CPU has it: about 1.8x the speed of f32 on an AVX-512 BF16 CPU at cosine .99998 to the
            # f32 vectors (benchmarks/speed/ov_group_size.json); pinned, so the cache key says what ran
            settings = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads,
                        "INFERENCE_PRECISION_HINT": self.precision}
            if self.quantize:
                path = export_openvino_int8(path)
                settings["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = str(OV_GROUP_SIZE)
            compiled = ov.Core().compile_model(str(path), "CPU", settings)
            inputs = {name for port in compiled.inputs for name in port.get_names()}

            def run(feed: dict[str, np.ndarray]) -> np.ndarray:
                return compiled(feed)[0]
        else:
            try:
                import onnxruntime as ort
            except ImportError as exc:
                raise ImportError("the ONNX backend needs onnxruntime: pip install 'hardneg[onnx]'") from exc
            path = export_onnx(self.model_dir, quantize=self.quantize, content=self.content)
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            inputs = {i.name for i in session.get_inputs()}

            def run(feed: dict[str, np.ndarray]) -> np.ndarray:
                return session.run(["last_hidden_state"], feed)[0]
        tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        self._model = (run, tokenizer, inputs, _pooling(self.model_dir))
        return self._model

    def embed_batch(self, texts: list[str], kind: Kind) -> np.ndarray:
        run, tokenizer, inputs, pooling = self._model or self._load()
        # Padded to the batch's longest text only (batches arrive sorted by length).
        enc = tokenizer(texts, padding=True, truncation=True, max_length=self.max_seq_length, return_tensors="np")
        feed = {k: v.astype(np.int64) for k, v in enc.items() if k in inputs}
        if "token_type_ids" in inputs and "token_type_ids" not in feed:
            feed["token_type_ids"] = np.zeros_like(feed["input_ids"])
        hidden = run(feed)
        if pooling == "cls":
            return hidden[:, 0]
        mask = enc["attention_mask"][..., None].astype(np.float32)
        return (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
