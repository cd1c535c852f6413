"""Content fingerprints of local model folders: the embedding cache keys such a folder by what it holds, so a
model retrained in place, or a fine-tuned copy of a base model, never reads another model's vectors."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

# What does not change a model's vectors: its card, hardneg's training record, exports to other runtimes and
# training leftovers.
IGNORED_FILES = frozenset({"README.md", "hardneg_training.json"})
IGNORED_FOLDERS = frozenset({"onnx", "openvino", "checkpoints"})


def folder_fingerprint(folder: str | Path) -> str:
    """A short hash of every file that makes up the model in ``folder`` (names, sizes and bytes).

    The bytes are read once per process for a given set of (file, size, modification time); a later call with
    the files unchanged costs one directory walk.
    """
    root = Path(folder).resolve()
    files = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if (rel.parts[0] in IGNORED_FOLDERS or rel.name in IGNORED_FILES
                or any(part.startswith(".") for part in rel.parts) or not path.is_file()):
            continue
        stat = path.stat()
        files.append((rel.as_posix(), stat.st_size, stat.st_mtime_ns))
    return _digest(str(root), tuple(files))


@lru_cache(maxsize=64)
def _digest(root: str, files: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha1()
    for rel, size, _ in files:
        digest.update(f"{rel}\x00{size}\x00".encode())
        with open(Path(root) / rel, "rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()[:12]
