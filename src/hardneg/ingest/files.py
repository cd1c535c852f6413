"""Folders and single files: every file under a root is read by its suffix's extractor or skipped with a reason.

Symbolic links are not followed out of the folder given (a link to ``/etc/passwd`` is a counted skip, not a
document) unless asked; links to folders are not descended into unless asked, and then never twice.
"""

from __future__ import annotations

import os
from pathlib import Path

from .documents import DEFAULT_MAX_BYTES, ExtractionError, RawDocument, Skip
from .ids import normalise_path
from .readers import DOC_TYPES, extract


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def list_files(root: Path, follow_symlinks: bool = False,
               exclude: tuple[Path, ...] = ()) -> tuple[list[Path], list[Skip]]:
    """Every file under ``root`` (or ``root`` itself), hidden ones excluded, in a stable order; and the links
    left out (outside ``root`` unless ``follow_symlinks``, or broken). ``exclude``: folders not to read (the
    output, when it lies inside a source)."""
    if root.is_file():
        return [root], []
    base = root.resolve()
    excluded = [e.resolve() for e in exclude]
    files: list[Path] = []
    skips: list[Skip] = []
    seen_dirs = {base}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=follow_symlinks):
        here = Path(dirpath)
        keep = []
        for name in sorted(dirnames):
            sub = here / name
            real = sub.resolve()
            if name.startswith(".") or any(_inside(real, e) for e in excluded):
                continue
            if sub.is_symlink():
                if not follow_symlinks:
                    if not _inside(real, base):
                        skips.append(Skip(str(sub), "symlink outside the folder", f"links to {real}"))
                    continue  # a link inside the folder: its files are read where they are
                if real in seen_dirs:
                    continue  # a loop, or a second way to the same folder
            seen_dirs.add(real)
            keep.append(name)
        dirnames[:] = keep
        for name in filenames:
            path = here / name
            if name.startswith("."):
                continue
            if path.is_symlink():
                real = path.resolve()
                if not path.exists():
                    skips.append(Skip(str(path), "broken symlink", f"links to {os.readlink(path)}"))
                    continue
                if not follow_symlinks and not _inside(real, base):
                    skips.append(Skip(str(path), "symlink outside the folder", f"links to {real}"))
                    continue
            if path.is_file():
                files.append(path)
    return sorted(files), skips


def iter_files(root: Path) -> list[Path]:
    """Every file under ``root`` (or ``root`` itself), hidden ones and links out of it excluded, in a stable order."""
    return list_files(root)[0]


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


def read_folder(root: Path, max_bytes: int = DEFAULT_MAX_BYTES, prefix: str = "", progress: bool = True,
                follow_symlinks: bool = False,
                exclude: tuple[Path, ...] = ()) -> tuple[list[RawDocument], list[Skip], int]:
    """Documents from a folder tree (ids: paths relative to ``root``), skips, and the number of files seen (links
    left out included)."""
    from tqdm.auto import tqdm

    files, skips = list_files(root, follow_symlinks, exclude)
    seen = len(files) + len(skips)
    docs = []
    base = root.parent if root.is_file() else root
    for path in tqdm(files, desc=f"read {root.name}", disable=not progress, unit="file"):
        doc_id = prefix + normalise_path(path.relative_to(base).as_posix())
        try:
            docs.append(read_file(path, doc_id, max_bytes))
        except ExtractionError as exc:
            skips.append(Skip(str(path), exc.reason, exc.detail))
        except ImportError:
            raise  # a missing optional extractor: the message says what to install
        except Exception as exc:  # a library choking on a malformed file: that file is skipped, not the ingest
            skips.append(Skip(str(path), "unreadable", f"{type(exc).__name__}: {exc}"))
    return docs, skips, seen
