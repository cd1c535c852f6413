"""The dataset folder ingest writes, which never costs a user a file hardneg did not write.

The folder is checked before any work: it is new, empty, or one hardneg wrote (its marker lists its files); a
folder of other files is refused unless ``overwrite``, and even then only hardneg's own file names are written
there. A source is never inside it. The dataset is built beside it and swapped in (a reader sees the old dataset
or the new one); beside a user's other files it is moved in file by file. What a killed ingest left beside the
folder is restored (the old dataset, when the kill came mid-swap) or removed by the next one.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..data import DataError
from ..io import MARKER_NAME, folder_files, read_marker, remove_stale_temps, stale_temps, temp_dir, write_marker

logger = logging.getLogger(__name__)

KIND = "dataset"
DATASET_FILES = ("corpus.jsonl", "queries.jsonl", "ingest_report.json")  # and qrels/<split>.tsv
_QRELS = re.compile(r"qrels/[^/]+\.tsv")


def _dataset_file(name: str) -> bool:
    return name in DATASET_FILES or bool(_QRELS.fullmatch(name))


@dataclass(frozen=True)
class OutputFolder:
    """Where a dataset goes, and what is there: ``state`` is "new", "empty", "hardneg" (a dataset hardneg wrote)
    or "foreign" (someone else's files, written into only with ``overwrite``)."""

    path: Path
    state: str
    own: frozenset[str] = frozenset()       # files hardneg wrote there, which the new dataset replaces
    foreign: tuple[str, ...] = ()           # every other file, which stays


def recover(output: Path) -> None:
    """Undo what a killed ingest left beside ``output``: the old dataset comes back where the kill came between
    moving it aside and moving the new one in; half-built datasets go."""
    for old in stale_temps(output.parent, output.name, kind="old"):
        if not output.exists():
            old.rename(output)
            logger.warning("Restored %s from %s, moved aside by an ingest that was killed", output, old.name)
        else:
            shutil.rmtree(old, ignore_errors=True)
    remove_stale_temps(output.parent, output.name)


def check_output(output: Path, sources: list[Path], overwrite: bool = False) -> OutputFolder:
    """What ``output`` holds, or a DataError when writing the dataset there could cost a file."""
    if output.exists() and not output.is_dir():
        raise DataError(f"{output} is a file, not a folder: give -o a folder for the dataset (new or empty).")
    target = output.resolve()
    for src in sources:
        real = src.resolve()
        if real == target or target in real.parents:
            raise DataError(f"The source {src} is inside the output folder {output}: writing the dataset there would "
                            "replace the files it is made from. Write it to a folder outside the sources.")
    if not output.is_dir():
        return OutputFolder(output, "new")
    files = folder_files(output)
    if not files:
        return OutputFolder(output, "empty")
    marker = read_marker(output)
    if marker is not None and marker.get("kind") == KIND:
        own = {str(f) for f in marker.get("files", []) if _dataset_file(str(f))} | {MARKER_NAME}  # names, not paths
    elif marker is None and (output / "ingest_report.json").is_file():  # datasets written before the marker
        own = {f for f in files if _dataset_file(f)}
    elif overwrite:
        return OutputFolder(output, "foreign", frozenset(), tuple(f for f in files if not _dataset_file(f)))
    else:
        shown = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
        raise DataError(f"{output} holds files hardneg did not write ({shown}); ingest will not replace them. Give "
                        "-o a new or empty folder, or pass --overwrite to write only the dataset's files "
                        f"({', '.join(DATASET_FILES)}, qrels/*.tsv) into it, leaving the rest.")
    return OutputFolder(output, "hardneg", frozenset(own), tuple(f for f in files if f not in own))


def write_dataset(out: OutputFolder, fill: Callable[[Path], list[str]]) -> None:
    """Build the dataset with ``fill`` (which writes into the folder it is given and returns the files it wrote)
    beside ``out.path``, then put it in place."""
    output = out.path
    tmp = temp_dir(output.parent, output.name)
    try:
        files = fill(tmp)
        write_marker(tmp, KIND, files)
        if out.state == "new" or out.state == "empty" or (out.state == "hardneg" and not out.foreign):
            _swap(tmp, output)
        else:
            _merge(tmp, out, files)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _swap(tmp: Path, output: Path) -> None:
    """Replace the whole folder: the old one is moved aside (``recover`` restores it after a kill), then removed."""
    if not output.exists():
        tmp.rename(output)
        return
    old = tmp.with_name(tmp.name.removesuffix(".tmp") + ".old")
    output.rename(old)
    tmp.rename(output)
    shutil.rmtree(old)


def _merge(tmp: Path, out: OutputFolder, files: list[str]) -> None:
    """Move the new dataset's files in one by one, each atomically; remove only hardneg's old files it does not
    rewrite. The marker first lists old and new files, so a kill midway leaves every file of ours known as ours."""
    output = out.path
    write_marker(output, KIND, set(files) | (out.own - {MARKER_NAME}))
    for name in files:
        dest = output / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp / name, dest)
    for name in sorted(out.own - set(files) - {MARKER_NAME}):
        (output / name).unlink(missing_ok=True)
    os.replace(tmp / MARKER_NAME, output / MARKER_NAME)
    left = [f for f in out.foreign if _QRELS.fullmatch(f)]
    if left:
        logger.warning("%s keeps %s, which hardneg did not write: load_beir reads them as splits of this dataset",
                       output, ", ".join(left))
