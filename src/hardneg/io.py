"""Atomic file output: a reader never sees half a file, and an interrupted run leaves no partial result.

Temporary files and folders carry the writing process's id in their name (``.NAME.<pid>-XXXX.tmp``): a later
run removes those whose process is gone (a kill leaves them behind) and never touches a live writer's. A folder
hardneg wrote holds a marker file (:data:`MARKER_NAME`), so hardneg replaces only what it wrote itself.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

from .version import __version__

logger = logging.getLogger(__name__)

MARKER_NAME = ".hardneg.json"
# Errors of a full disk or quota: the message says the previous file is intact, not just "no space".
_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-[^./]*\.(?P<kind>tmp|old)$")
_UNTAGGED_TEMP = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")  # atomic_write's temporary files before they named a pid


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` is running on this machine (a zombie, killed but not yet reaped, is not)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    except OSError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in {"Z", "X"}


def temp_prefix(name: str) -> str:
    """The prefix of a temporary file or folder standing for ``name``: hidden, and naming this process."""
    return f".{name}.{os.getpid()}-"


def temp_dir(parent: str | Path, name: str) -> Path:
    """A new temporary folder in ``parent`` for building ``name``; :func:`remove_stale_temps` knows its owner."""
    Path(parent).mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=parent, prefix=temp_prefix(name), suffix=".tmp"))


def stale_temps(folder: str | Path, name: str | None = None, kind: str = "tmp") -> list[Path]:
    """hardneg's temporary files/folders in ``folder`` (for ``name`` only, if given) whose process is gone."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.iterdir()):
        match = _TEMP.match(path.name)
        if (match and match["kind"] == kind and (name is None or match["name"] == name)
                and not pid_alive(int(match["pid"]))):
            out.append(path)
    return out


def remove_stale_temps(folder: str | Path, name: str | None = None, recursive: bool = False,
                       owned: bool = False) -> int:
    """Delete what killed writers left in ``folder`` (recursively: in its subfolders too); returns how many.
    ``owned``: the caller owns the folder (holds its lock), so temporary files naming no process are stale too."""
    folder = Path(folder)
    found = stale_temps(folder, name)
    if owned and folder.is_dir():
        found += [p for p in sorted(folder.iterdir()) if _UNTAGGED_TEMP.match(p.name) and p.is_file()]
    for path in found:
        logger.info("Removing %s, left by a run that was killed", path)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    removed = len(found)
    if recursive and folder.is_dir():
        for sub in sorted(folder.iterdir()):
            if sub.is_dir() and not sub.is_symlink():
                removed += remove_stale_temps(sub, name, recursive=True, owned=owned)
    return removed


@contextmanager
def atomic_write(path: str | Path, mode: str = "w"):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path.parent, path.name)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path.name), suffix=".tmp")
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; results should read like any other file
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.errno in _FULL:
            raise OSError(exc.errno, f"could not write {path}: {exc.strerror or 'disk full'}; "
                          + ("the previous file is unchanged" if path.exists() else "nothing was written")) from None
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | Path, obj) -> None:
    with atomic_write(path) as handle:
        json.dump(obj, handle, indent=2, default=str)
        handle.write("\n")


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    with atomic_write(path) as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_jsonl(path: str | Path) -> list[dict]:
    rows = []
    with Path(path).open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{lineno}: not valid JSON ({exc.msg}).") from None
    return rows


def read_json(path: str | Path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}); delete it to redo that stage."
                         ) from None


def write_marker(folder: str | Path, kind: str, files: Iterable[str] = ()) -> None:
    """Mark ``folder`` as written by hardneg (``kind``: "dataset", "run"...), listing the files it wrote there."""
    write_json(Path(folder) / MARKER_NAME, {"written_by": "hardneg", "kind": kind, "version": __version__,
                                            "files": sorted(files)})


def read_marker(folder: str | Path) -> dict | None:
    """The marker hardneg left in ``folder``, or None where there is none (or it is not hardneg's)."""
    path = Path(folder) / MARKER_NAME
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and marker.get("written_by") == "hardneg" else None


def folder_files(folder: str | Path, limit: int | None = None) -> list[str]:
    """Files under ``folder`` (relative POSIX paths, sorted), at most ``limit`` of them."""
    folder = Path(folder)
    out = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            out.append((Path(root) / name).relative_to(folder).as_posix())
            if limit is not None and len(out) >= limit:
                return out
    return out
