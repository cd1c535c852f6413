"""The embedding cache: float16 vectors in one memory-mapped file per model, indexed by text key in SQLite.

Layout of a model's folder::

    vectors.f16     rows of ``dim`` float16 values, append-only (np.memmap reads them without loading the file)
    index.sqlite    key -> row (plus the dimension in ``meta``)

Writes are batch-sized and resumable: a batch's rows are appended and fsynced, then its keys are committed in one
SQLite transaction. The commit is the point a batch becomes visible, so a process killed between the two leaves
only unreferenced rows past the committed count, which the next writer truncates away. A file lock serialises
writers (two runs sharing one cache).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import sqlite3
from contextlib import contextmanager
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

DTYPE = np.float16


def store_folder(folder: str | Path, model_key: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model_key)[-80:]
    digest = hashlib.sha1(model_key.encode()).hexdigest()[:10]
    return Path(folder) / f"{slug}-{digest}"


class EmbeddingCache:
    """Vectors on disk, keyed by model identity and text: a second run embeds nothing (see the module doc)."""

    def __init__(self, folder: str | Path, model_key: str):
        self.path = store_folder(folder, model_key)
        self.path.mkdir(parents=True, exist_ok=True)
        self.vectors_path = self.path / "vectors.f16"
        self.vectors_path.touch(exist_ok=True)
        self._conn = sqlite3.connect(self.path / "index.sqlite")
        self._conn.execute("CREATE TABLE IF NOT EXISTS rows (key TEXT PRIMARY KEY, row INTEGER NOT NULL)")
        self._conn.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
        self._conn.commit()
        self._map: np.memmap | None = None
        self._import_legacy(Path(folder) / f"{self.path.name}.sqlite")

    # -- reading -------------------------------------------------------------------------------------------------
    @property
    def dim(self) -> int | None:
        row = self._conn.execute("SELECT value FROM meta WHERE name = 'dim'").fetchone()
        return None if row is None else int(row[0])

    def __len__(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM rows").fetchone()[0])

    def _vectors(self, rows_needed: int) -> np.ndarray:
        """The committed rows as a read-only memmap (re-opened when the file has grown)."""
        dim = self.dim
        if self._map is None or self._map.shape[0] < rows_needed:
            count = len(self)  # committed rows only: anything past them may be truncated by a writer
            self._map = np.memmap(self.vectors_path, dtype=DTYPE, mode="r", shape=(count, dim))
        return self._map

    def rows(self, keys: list[str]) -> dict[str, int]:
        """Row numbers of the cached ``keys`` (missing keys are absent)."""
        found: dict[str, int] = {}
        for start in range(0, len(keys), 900):  # stay under SQLite's bound-parameter limit
            chunk = keys[start:start + 900]
            found.update(self._conn.execute(
                f"SELECT key, row FROM rows WHERE key IN ({','.join('?' * len(chunk))})", chunk))
        return found

    def take(self, rows: np.ndarray) -> np.ndarray:
        """float16 vectors of the given rows, in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0:
            return np.zeros((0, self.dim or 0), dtype=DTYPE)
        return np.asarray(self._vectors(int(rows.max()) + 1)[rows])

    def get_many(self, keys: list[str]) -> dict[str, np.ndarray]:
        found = self.rows(keys)
        if not found:
            return {}
        names = list(found)
        vectors = self.take(np.fromiter(found.values(), dtype=np.int64, count=len(found)))
        return dict(zip(names, vectors))

    # -- writing -------------------------------------------------------------------------------------------------
    @contextmanager
    def _locked(self):
        with open(self.path / "lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def put_many(self, items: dict[str, np.ndarray]) -> None:
        """Append one batch; it is visible to readers (and survives a crash) only once fully written."""
        if not items:
            return
        with self._locked():
            known = self.rows(list(items))
            keys = [k for k in items if k not in known]
            if not keys:
                return
            matrix = np.stack([np.asarray(items[k], dtype=np.float32) for k in keys]).astype(DTYPE)
            dim = self.dim
            if dim is None:
                dim = matrix.shape[1]
                with self._conn:
                    self._conn.execute("INSERT INTO meta VALUES ('dim', ?)", (dim,))
            elif matrix.shape[1] != dim:
                raise ValueError(f"{self.path}: cached vectors have {dim} dimensions, new ones {matrix.shape[1]}; "
                                 "the model changed without a change of cache key.")
            committed = len(self)
            row_bytes = dim * np.dtype(DTYPE).itemsize
            with open(self.vectors_path, "r+b") as handle:
                # Rows past the committed count belong to a batch whose commit never happened: overwrite them.
                handle.truncate(committed * row_bytes)
                handle.seek(committed * row_bytes)
                handle.write(matrix.tobytes())
                handle.flush()
                os.fsync(handle.fileno())
            with self._conn:
                self._conn.executemany("INSERT INTO rows VALUES (?, ?)",
                                       [(k, committed + i) for i, k in enumerate(keys)])
        self._map = None

    def _import_legacy(self, legacy: Path) -> None:
        """One-time import of the float32 SQLite cache earlier versions wrote (same key scheme)."""
        if not legacy.is_file() or len(self):
            return
        conn = sqlite3.connect(legacy)
        try:
            total = 0
            cursor = conn.execute("SELECT key, vec FROM vectors")
            while batch := cursor.fetchmany(4096):
                self.put_many({key: np.frombuffer(blob, dtype=np.float32) for key, blob in batch})
                total += len(batch)
        except sqlite3.DatabaseError as exc:
            logger.warning("%s: could not import the old cache (%s); re-embedding instead", legacy, exc)
            return
        finally:
            conn.close()
        logger.info("Imported %d vectors from %s into %s", total, legacy, self.path)

    @staticmethod
    def key(text: str, kind: str) -> str:
        return hashlib.sha1(f"{kind}\x00{text}".encode()).hexdigest()

    def close(self) -> None:
        self._map = None
        self._conn.close()
