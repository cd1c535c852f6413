"""Which training checkpoint a resumed run may use: the last complete one.

A kill or a full disk while the trainer saves a checkpoint leaves its folder without some files or with one cut
off, and resuming from it fails on every rerun ("Unrecognized model", "No such file ... trainer_state.json").
The trainer writes the weights, then the optimizer, scheduler and random states, and ``trainer_state.json`` last;
a checkpoint counts only when all of them are there and whole. An incomplete one is set aside (renamed
``incomplete-checkpoint-N``, which the trainer never reads) with a logged line, and training resumes from the
last complete one, or from the start.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import zipfile
from pathlib import Path

logger = logging.getLogger(__name__)

_CHECKPOINT = re.compile(r"checkpoint-(\d+)")
ASIDE_PREFIX = "incomplete-"
_OURS = re.compile(rf"({ASIDE_PREFIX})?checkpoint-\d+|fingerprint|eval|runs")
# Written with torch.save, a zip archive: a cut-off one has no central directory at its end.
TORCH_FILES = ("optimizer.pt", "scheduler.pt")
OPTIONAL_TORCH_FILES = ("rng_state.pth", "scaler.pt", "training_args.bin")


def _json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _safetensors_whole(path: Path) -> bool:
    """The header parses and the file is as long as the tensors it lists."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                return False
            length = int.from_bytes(head, "little")
            if length > size - 8:
                return False
            header = json.loads(handle.read(length))
    except (OSError, ValueError):
        return False
    if not isinstance(header, dict):
        return False
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)
               and "data_offsets" in v), default=0)
    return 8 + length + end <= size


def _weights_problem(folder: Path) -> str | None:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = _json(index)
        if shards is None or not isinstance(shards.get("weight_map"), dict):
            return "model.safetensors.index.json is cut off"
        for shard in sorted(set(shards["weight_map"].values())):
            if not _safetensors_whole(folder / shard):
                return f"{shard} is missing or cut off"
        return None
    if (folder / "model.safetensors").is_file():
        return None if _safetensors_whole(folder / "model.safetensors") else "model.safetensors is cut off"
    if (folder / "pytorch_model.bin").is_file():
        return None if zipfile.is_zipfile(folder / "pytorch_model.bin") else "pytorch_model.bin is cut off"
    return "no model weights"


def checkpoint_problem(folder: str | Path) -> str | None:
    """Why training cannot resume from checkpoint ``folder``, or None when it is complete."""
    folder = Path(folder)
    state = _json(folder / "trainer_state.json")
    if state is None or "global_step" not in state:
        return "trainer_state.json is missing or cut off (it is written last)"
    config = _json(folder / "config.json")
    if config is None or "model_type" not in config:
        return "config.json is missing, cut off or names no model_type"
    problem = _weights_problem(folder)
    if problem:
        return problem
    for name in TORCH_FILES:
        if not zipfile.is_zipfile(folder / name):
            return f"{name} is missing or cut off"
    for name in OPTIONAL_TORCH_FILES:
        if (folder / name).exists() and not zipfile.is_zipfile(folder / name):
            return f"{name} is cut off"
    return None


def step_of(folder: Path) -> int | None:
    match = _CHECKPOINT.fullmatch(folder.name)
    return int(match.group(1)) if match and folder.is_dir() else None


def last_complete_checkpoint(checkpoints: str | Path) -> Path | None:
    """The complete checkpoint with the most steps in ``checkpoints``; newer incomplete ones are set aside."""
    checkpoints = Path(checkpoints)
    if not checkpoints.is_dir():
        return None
    found = sorted((p for p in checkpoints.iterdir() if step_of(p) is not None), key=step_of, reverse=True)
    for folder in found:
        problem = checkpoint_problem(folder)
        if problem is None:
            return folder
        aside = folder.with_name(ASIDE_PREFIX + folder.name)
        shutil.rmtree(aside, ignore_errors=True)
        folder.rename(aside)
        logger.warning("Setting aside %s, which a killed or out-of-disk run left incomplete (%s); resuming from the "
                       "last complete checkpoint", folder, problem)
    return None


def is_checkpoint_folder(checkpoints: str | Path) -> bool:
    """Whether training wrote ``checkpoints``: it holds the fingerprint stamp, or only what training writes there
    (checkpoints, set aside or not, the evaluator's and logger's folders, hidden temporary files)."""
    checkpoints = Path(checkpoints)
    return (checkpoints / "fingerprint").is_file() or all(
        _OURS.fullmatch(p.name) or p.name.startswith(".") for p in checkpoints.iterdir())
