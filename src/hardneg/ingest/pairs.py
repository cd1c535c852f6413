"""Queries and their positives: (query, positive) pairs from CSV/JSONL click logs, BEIR qrels or TREC qrels.

A positive may be a document id, a path or a URL; :class:`Resolver` maps it to the ingested document (through
duplicate aliases). Queries are split into train/test by a seeded hash of the query id unless a split is given.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ..data import DataError, qrels_columns
from .ids import normalise_path, normalise_url, safe_id
from .tables import read_table


@dataclass(frozen=True)
class PairFields:
    """Column names in a pairs file. ``positive`` may hold one reference or (JSONL) a list of them."""

    query: str = "query"
    positive: str = "positive"
    query_id: str = "query_id"
    split: str = "split"
    grade: str = "grade"


@dataclass(frozen=True)
class QueryPair:
    query_id: str
    query: str
    positive: str        # a document id, path or URL, as the user wrote it
    grade: int
    split: str | None
    where: str           # file:line, for messages


def query_id_for(text: str) -> str:
    """A stable id for a query given only as text: equal texts (case, spacing aside) share it."""
    return "q" + hashlib.sha1(" ".join(text.lower().split()).encode()).hexdigest()[:10]


def read_pairs(path: str | Path, fields: PairFields = PairFields()) -> list[QueryPair]:
    """Pairs from a CSV/JSONL/parquet file; a query with several clicked documents becomes several pairs."""
    path = Path(path)
    rows = read_table(path)
    if rows and (fields.query not in rows[0][1] or fields.positive not in rows[0][1]):
        raise DataError(f"{path}: needs columns {fields.query!r} and {fields.positive!r}; found "
                        f"{sorted(rows[0][1])}. Name them with --query-field / --positive-field.")
    out = []
    for line, record in rows:
        where = f"{path}:{line}"
        query = str(record.get(fields.query) or "").strip()
        if not query:
            raise DataError(f"{where}: empty {fields.query!r}.")
        refs = record.get(fields.positive)
        refs = refs if isinstance(refs, list) else [refs]
        refs = [str(r).strip() for r in refs if r is not None and str(r).strip()]
        if not refs:
            raise DataError(f"{where}: empty {fields.positive!r}.")
        qid = str(record.get(fields.query_id) or "").strip() or query_id_for(query)
        split = str(record.get(fields.split) or "").strip() or None
        grade_raw = record.get(fields.grade)
        try:
            grade = int(float(grade_raw)) if grade_raw not in (None, "") else 1
        except ValueError:
            raise DataError(f"{where}: {fields.grade!r} {grade_raw!r} is not a number.") from None
        out.extend(QueryPair(qid, query, ref, grade, split, where) for ref in refs)
    return out


def read_queries(path: str | Path) -> dict[str, str]:
    """Query texts by id from BEIR queries.jsonl (``_id``, ``text``) or a TSV of ``id<TAB>text``."""
    path = Path(path)
    out: dict[str, str] = {}
    with path.open("rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                raise DataError(f"{path}:{lineno}: not valid UTF-8.") from None
            if not line:
                continue
            if path.suffix.lower() == ".jsonl":
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{lineno}: not valid JSON ({exc.msg}).") from None
                if not isinstance(record, dict) or "_id" not in record:
                    raise DataError(f"{path}:{lineno}: expected an object with '_id' and 'text'.")
                out[str(record["_id"])] = str(record.get("text") or "")
            else:
                qid, sep, text = line.partition("\t")
                if not sep:
                    raise DataError(f"{path}:{lineno}: expected 'query-id<TAB>text'.")
                out[qid.strip()] = text.strip()
    return out


def read_qrels_pairs(qrels: str | Path, queries: str | Path, split: str | None = None) -> list[QueryPair]:
    """Pairs from BEIR qrels (``query-id corpus-id score``, header optional) or TREC qrels (``qid 0 docid rel``).

    Rows with grade <= 0 are not positives and are left out; ``split`` defaults to the BEIR file's name
    (``qrels/test.tsv`` -> test) and to none (seeded split) for other names.
    """
    qrels, texts = Path(qrels), read_queries(queries)
    split = split or (qrels.stem if qrels.parent.name == "qrels" else None)
    out = []
    tabs: bool | None = None   # the file's separator and width, set by its first row: never guessed row by row
    width: int | None = None
    with qrels.open("rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            line = raw.decode("utf-8", errors="replace").strip()
            if not line:
                continue
            tabs = ("\t" in line) if tabs is None else tabs
            cols = [c.strip() for c in line.split("\t")] if tabs else line.split()
            width, cols = qrels_columns(cols, width, qrels, lineno)
            qid, ref, grade = cols
            try:
                rel = int(float(grade))
            except ValueError:
                if lineno == 1:
                    continue  # header
                raise DataError(f"{qrels}:{lineno}: relevance {grade!r} is not a number.") from None
            if rel <= 0:
                continue
            if qid not in texts:
                raise DataError(f"{qrels}:{lineno}: query {qid!r} is not in {queries}.")
            out.append(QueryPair(qid, texts[qid], ref, rel, split, f"{qrels}:{lineno}"))
    return out


class Resolver:
    """Maps a positive reference (id, path or URL) to (the document it named, the kept document standing for it)."""

    def __init__(self, aliases: dict[str, str], duplicates: dict[str, str]):
        self.aliases, self.duplicates = aliases, duplicates

    @classmethod
    def build(cls, docs, duplicates: dict[str, str], roots: list[Path]) -> Resolver:
        """``docs``: kept and removed RawDocuments; ``duplicates``: removed id -> kept id."""
        aliases: dict[str, str] = {}

        def add(key: str | None, doc_id: str) -> None:
            if key:
                aliases.setdefault(key, doc_id)

        for doc in docs:
            target = doc.doc_id
            add(doc.doc_id, target)
            add(doc.metadata.get("original_id"), target)  # an id escaped for the qrels, as the user wrote it
            if doc.url:
                add(normalise_url(doc.url), target)
            if doc.metadata.get("final_url"):
                add(doc.metadata["final_url"], target)
            source = Path(doc.source)
            if source.exists():
                add(str(source.resolve()), target)
                for root in roots:
                    base = root.resolve()
                    try:
                        add(normalise_path(source.resolve().relative_to(base).as_posix()), target)
                        add(normalise_path(source.resolve().relative_to(base.parent).as_posix()), target)
                    except ValueError:
                        pass
        return cls(aliases, duplicates)

    def resolve(self, ref: str) -> tuple[str, str] | None:
        """(named document, kept document); they differ when the named one was removed as a duplicate."""
        found = self._lookup(ref.strip())
        return None if found is None else (found, self.duplicates.get(found, found))

    def _lookup(self, ref: str) -> str | None:
        for key in (ref, normalise_path(ref), safe_id(ref)):
            if key in self.aliases:
                return self.aliases[key]
        if "://" in ref:
            return self.aliases.get(normalise_url(ref))
        path = Path(ref).expanduser()
        return self.aliases.get(str(path.resolve())) if path.exists() else None


def seeded_split(query_ids: list[str], test_fraction: float, seed: int) -> set[str]:
    """The test queries: the first ``test_fraction`` of ids ordered by a seeded hash (stable as queries are added)."""
    ordered = sorted(query_ids, key=lambda q: hashlib.sha256(f"{seed}\x00{q}".encode()).hexdigest())
    return set(ordered[:round(test_fraction * len(ordered))])
