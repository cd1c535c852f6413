"""Tabular sources (.jsonl, .csv, .parquet): one document per row, its columns named by :class:`Columns`."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from ..data import DataError
from .documents import RawDocument, Skip
from .ids import normalise_url

TABULAR = {".jsonl", ".csv", ".parquet"}


@dataclass(frozen=True)
class Columns:
    """Which columns of a tabular file hold a document's id, title, text and URL."""

    id: str | None = "id"
    title: str | None = "title"
    text: str = "text"
    url: str | None = "url"


def read_table(path: Path) -> list[tuple[int, dict]]:
    """(line or row number, record) for a .jsonl/.csv/.parquet file; malformed lines name file and line."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows = []
        with path.open("rb") as handle:
            for lineno, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                try:
                    record = json.loads(raw.decode("utf-8"))
                except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                    raise DataError(f"{path}:{lineno}: not a valid UTF-8 JSON line ({exc}).") from None
                if not isinstance(record, dict):
                    raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}.")
                rows.append((lineno, record))
        return rows
    try:
        import pandas as pd
    except ImportError:
        raise ImportError("Reading CSV/parquet needs pandas (and pyarrow for parquet): pip install 'hardneg[ingest]'"
                          ) from None
    frame = pd.read_csv(path, dtype=str, keep_default_na=False) if suffix == ".csv" else pd.read_parquet(path)
    first = 2 if suffix == ".csv" else 1  # CSV line numbers count the header
    return [(first + i, {k: (None if _isna(v) else v) for k, v in row.items()})
            for i, row in enumerate(frame.to_dict(orient="records"))]


def _isna(value) -> bool:
    return isinstance(value, float) and math.isnan(value)


def read_tabular(path: Path, columns: Columns) -> tuple[list[RawDocument], list[Skip], int]:
    """Documents from rows of a table; ids from the id column, else the URL, else the file name and row."""
    rows = read_table(path)
    if rows and columns.text not in rows[0][1]:
        raise DataError(f"{path}: no column {columns.text!r} for the document text; columns are "
                        f"{sorted(rows[0][1])}. Name it with --text-field.")
    docs, skips = [], []
    for line, record in rows:
        text = str(record.get(columns.text) or "")
        title = str(record.get(columns.title) or "") if columns.title else ""
        url = str(record.get(columns.url) or "") if columns.url else ""
        where = f"{path}:{line}"
        if not (text.strip() or title.strip()):
            skips.append(Skip(where, "empty after extraction", "no text or title"))
            continue
        raw_id = record.get(columns.id) if columns.id else None
        doc_id = str(raw_id) if raw_id not in (None, "") else normalise_url(url) if url else f"{path.stem}:{line}"
        meta = {k: v for k, v in record.items() if k not in {columns.text, columns.title, columns.id, columns.url}
                and isinstance(v, (str, int, float, bool))}
        docs.append(RawDocument(doc_id, title, text, where, "tabular", normalise_url(url) if url else None, meta))
    return docs, skips, len(rows)
