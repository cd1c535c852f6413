"""The device and precision every stage runs on: resolved once from ``compute.device`` / ``compute.precision``.

``auto`` is CUDA when torch sees a GPU, else Apple MPS, else the CPU; on the CPU everything stays float32, exactly
as before these settings existed (``bf16`` there embeds about 2.6x faster on a CPU with bf16 instructions, AMX or
AVX-512 BF16; a cross-encoder's scores stay float32 on the CPU at any precision). The settings of a run are this
process's defaults while it runs (:func:`use_compute`); models and trainers read them when they are built
(:func:`current`), so the stages need no extra arguments. Worker processes and Ray actors get their device pinned on
the object they receive instead.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ComputeSettings:
    """A device setting (auto, cpu, cuda, cuda:N, mps) and a precision (auto, fp32, fp16, bf16), unresolved."""

    device: str = "auto"
    precision: str = "auto"


_CURRENT = [ComputeSettings()]


def _mps_available(torch) -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(setting: str | None = "auto") -> str:
    """A torch device string for ``setting``; a device this machine lacks is an error saying what to set."""
    import torch

    setting = setting or "auto"
    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if _mps_available(torch) else "cpu"
    if setting == "cpu":
        return "cpu"
    if setting == "mps":
        if not _mps_available(torch):
            raise ValueError("compute.device is 'mps' but torch sees no Apple GPU; set compute.device: auto or cpu")
        return "mps"
    match = re.fullmatch(r"cuda(?::(\d+))?", setting)
    if match is None:
        raise ValueError(f"compute.device must be auto, cpu, cuda, cuda:N or mps, got {setting!r}")
    if not torch.cuda.is_available():
        raise ValueError(f"compute.device is {setting!r} but torch sees no CUDA GPU (a CPU build of torch, or no "
                         "driver); set compute.device: auto or cpu")
    if match.group(1) is not None and int(match.group(1)) >= torch.cuda.device_count():
        raise ValueError(f"compute.device is {setting!r} but this machine has {torch.cuda.device_count()} CUDA "
                         "GPU(s), numbered from 0")
    return setting


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AMX or AVX-512 BF16); elsewhere bf16 is emulated and slower than
    float32. Read from /proc/cpuinfo: False where there is none."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags = next((line.split(":", 1)[1].split() for line in cpuinfo if line.startswith("flags")), [])
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def inference_dtype(device: str, precision: str = "auto", scoring: bool = False):
    """The autocast dtype for forward passes on ``device`` (a resolved device), or None for plain float32.
    ``scoring``: the forward pass gives a cross-encoder's scores, kept in float32 on the CPU."""
    import torch

    kind = device.split(":")[0]
    if scoring and kind == "cpu":
        # bf16 vectors are within cosine 1e-4 of float32's (docs/RESULTS.md, "Speed and memory"); a bf16 logit
        # keeps 8 bits, and close candidates would tie
        return None
    if precision == "fp32" or (precision == "auto" and kind != "cuda"):
        return None
    if precision == "fp16" and kind == "cpu":
        raise ValueError("compute.precision fp16 needs a GPU; on the CPU use bf16 or fp32")
    return torch.bfloat16 if precision == "bf16" else torch.float16


def autocast(device: str, precision: str = "auto", scoring: bool = False):
    """A context in which forward passes run in the inference precision (nothing changes in float32)."""
    import torch

    dtype = inference_dtype(device, precision, scoring)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.split(":")[0], dtype=dtype)


def training_arguments(device: str, precision: str = "auto") -> dict:
    """The Hugging Face ``TrainingArguments`` flags for training on ``device``: ``use_cpu`` on the CPU (exactly
    as before), mixed precision on a GPU (auto: bf16 where the GPU supports it, else fp16)."""
    import torch

    kind = device.split(":")[0]
    if kind == "cpu":
        if precision not in ("auto", "fp32"):
            raise ValueError(f"compute.precision {precision} training needs a GPU; on the CPU use auto or fp32")
        return {"use_cpu": True}
    flags: dict = {"use_cpu": False}
    if kind == "cuda":
        if precision == "auto":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        if precision in ("fp16", "bf16"):
            flags[precision] = True
    elif precision in ("fp16", "bf16"):  # MPS: the Trainer's mixed precision is CUDA-only
        raise ValueError(f"compute.precision {precision} training is supported on CUDA only; use auto or fp32")
    return flags


def current() -> ComputeSettings:
    """This process's settings (a run's, inside :func:`use_compute`; auto otherwise)."""
    return _CURRENT[-1]


def current_device() -> str:
    return resolve_device(current().device)


@contextlib.contextmanager
def use_compute(compute) -> Iterator[ComputeSettings]:
    """Make ``compute`` (a ComputeConfig, or anything with ``device`` and ``precision``) this process's settings
    while the block runs; the device is checked at once."""
    settings = ComputeSettings(compute.device, compute.precision)
    device = resolve_device(settings.device)
    if device != "cpu":
        logger.info("Computing on %s (precision %s)", device, settings.precision)
    elif settings.precision == "bf16" and not cpu_has_native_bf16():
        logger.warning("compute.precision bf16: this CPU has no bf16 instructions (AMX, AVX-512 BF16), so bf16 is "
                       "emulated and slower than float32; precision auto (float32) is faster here")
    _CURRENT.append(settings)
    # The Trainer trains on the current CUDA device: make it the one asked for (cuda:N), and put it back after.
    previous = _set_cuda_device(device)
    try:
        yield settings
    finally:
        _CURRENT.pop()
        if previous is not None:
            _set_cuda_device(f"cuda:{previous}")


def _set_cuda_device(device: str) -> int | None:
    """Make ``cuda:N`` torch's current device; returns the one it replaced (None when nothing changed)."""
    if not device.startswith("cuda:"):
        return None
    import torch

    previous = torch.cuda.current_device()
    torch.cuda.set_device(int(device.split(":")[1]))
    return previous
