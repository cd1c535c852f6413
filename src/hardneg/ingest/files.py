"""Folders and single files: every file under a root is read by its suffix's extractor or skipped with a reason."""

from __future__ import annotations

from pathlib import Path

from .documents import DEFAULT_MAX_BYTES, ExtractionError, RawDocument, Skip
from .ids import normalise_path
from .readers import DOC_TYPES, extract


def iter_files(root: Path) -> list[Path]:
    """Every file under ``root`` (or ``root`` itself), hidden ones excluded, in a stable order."""
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def read_file(path: Path, doc_id: str, max_bytes: int = DEFAULT_MAX_BYTES) -> RawDocument:
    kind = DOC_TYPES.get(path.suffix.lower())
    if kind is None:
        raise ExtractionError("unsupported type", path.suffix or "no extension")
    size = path.stat().st_size
    if size > max_bytes:
        raise ExtractionError("too large", f"{size} bytes > {max_bytes}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ExtractionError("unreadable", str(exc)) from None
    title, text, meta = extract(data, kind)
    return RawDocument(doc_id, title, text, str(path), kind, None, {"bytes": size, **meta})


def read_folder(root: Path, max_bytes: int = DEFAULT_MAX_BYTES, prefix: str = "",
                progress: bool = True) -> tuple[list[RawDocument], list[Skip], int]:
    """Documents from a folder tree (ids: paths relative to ``root``), skips, and the number of files seen."""
    from tqdm.auto import tqdm

    files = iter_files(root)
    docs, skips = [], []
    base = root.parent if root.is_file() else root
    for path in tqdm(files, desc=f"read {root.name}", disable=not progress, unit="file"):
        doc_id = prefix + normalise_path(path.relative_to(base).as_posix())
        try:
            docs.append(read_file(path, doc_id, max_bytes))
        except ExtractionError as exc:
            skips.append(Skip(str(path), exc.reason, exc.detail))
    return docs, skips, len(files)
