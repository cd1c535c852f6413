"""``hardneg ingest``: a user's documents (folders, tables, URLs) and queries become a BEIR-layout dataset.

read (sources) -> clean -> deduplicate -> resolve query positives -> split -> write atomically, with a report of
every file read, every document kept and every skip with its reason. The output folder is checked first, and
only hardneg's own files in it are ever replaced (:mod:`hardneg.ingest.output`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..data import DataError
from ..io import write_json, write_jsonl
from .clean import clean_text, repeated_lines
from .dedup import DuplicateGroup, find_duplicates
from .documents import DEFAULT_MAX_BYTES, DEFAULT_MAX_CHARS, RawDocument, Skip
from .fetch import FetchConfig, check_urls, fetch_urls, url_entries
from .files import read_folder
from .ids import content_id, safe_id, unsafe_in
from .output import check_output, recover, write_dataset
from .pairs import (
    PairFields,
    QueryPair,
    Resolver,
    read_pairs,
    read_qrels_pairs,
    seeded_split,
)
from .readers import DOC_TYPES
from .tables import TABULAR, Columns, read_tabular

__all__ = ["DEFAULT_MAX_CHARS", "Columns", "FetchConfig", "IngestReport", "IngestResult", "PairFields", "ingest"]
logger = logging.getLogger(__name__)


@dataclass
class IngestReport:
    """What ingest did: written to ``ingest_report.json`` in the output folder and summarised by the CLI."""

    files_read: int = 0
    urls_fetched: int = 0
    documents_extracted: int = 0
    documents_kept: int = 0
    skipped: list[Skip] = field(default_factory=list)
    duplicates: list[DuplicateGroup] = field(default_factory=list)
    boilerplate_lines: list[str] = field(default_factory=list)
    pairs_read: int = 0
    pairs_kept: int = 0
    pairs_to_duplicate: int = 0      # positives that pointed at a removed duplicate and now point at its kept copy
    pair_skips: list[Skip] = field(default_factory=list)
    queries: dict[str, int] = field(default_factory=dict)
    ids_escaped: int = 0             # document and query ids whose tabs, newlines... were escaped for the qrels

    def skip_counts(self) -> dict[str, int]:
        return dict(Counter(s.reason for s in self.skipped))

    def as_dict(self) -> dict:
        return {"files_read": self.files_read, "urls_fetched": self.urls_fetched,
                "documents_extracted": self.documents_extracted, "documents_kept": self.documents_kept,
                "skipped_counts": self.skip_counts(), "skipped": [s.as_dict() for s in self.skipped],
                "duplicates": [g.as_dict() for g in self.duplicates],
                "boilerplate_lines_removed": self.boilerplate_lines,
                "pairs": {"read": self.pairs_read, "kept": self.pairs_kept,
                          "followed_duplicate": self.pairs_to_duplicate,
                          "skipped": [s.as_dict() for s in self.pair_skips]},
                "queries": self.queries, "ids_escaped": self.ids_escaped}

    def summary(self) -> str:
        skips = ", ".join(f"{n} {r}" for r, n in sorted(self.skip_counts().items())) or "none"
        lines = [(f"{self.files_read} files and {self.urls_fetched} URLs read; {self.documents_extracted} "
                  f"documents extracted, {self.documents_kept} kept"),
                 f"skipped: {skips}",
                 (f"duplicate groups: {len(self.duplicates)} ({sum(len(g.removed) for g in self.duplicates)} "
                  f"removed); {len(self.boilerplate_lines)} repeated boilerplate lines removed")]
        if self.ids_escaped:
            lines.append(f"{self.ids_escaped} ids held tabs, newlines or control characters: escaped (%09, %0A...)")
        if self.pairs_read:
            lines.append(f"pairs: {self.pairs_read} read, {self.pairs_kept} kept ({self.pairs_to_duplicate} moved to "
                         f"a kept duplicate), {len(self.pair_skips)} skipped; queries per split {self.queries}")
        return "\n".join(lines)


@dataclass(frozen=True)
class IngestResult:
    output: Path
    report: IngestReport


def _read_sources(sources: list[Path], columns: Columns, max_bytes: int, progress: bool, report: IngestReport,
                  follow_symlinks: bool = False, output: Path | None = None) -> list[RawDocument]:
    docs: list[RawDocument] = []
    folders = [s for s in sources if s.is_dir()]
    for src in sources:
        if not src.exists():
            raise DataError(f"{src}: no such file or folder.")
        if src.is_file() and src.suffix.lower() in TABULAR:
            found, skips, _ = read_tabular(src, columns)
            n = 1
        elif src.is_file() and src.suffix.lower() not in DOC_TYPES:
            raise DataError(f"{src}: unsupported input {src.suffix!r}: give a folder, a document "
                            f"({', '.join(sorted(DOC_TYPES))}) or a table ({', '.join(sorted(TABULAR))}).")
        else:
            # Several folders: prefix ids with the folder name so equal relative paths stay distinct.
            prefix = f"{src.name}/" if src.is_dir() and len(folders) > 1 else ""
            found, skips, n = read_folder(src, max_bytes, prefix, progress, follow_symlinks,
                                          (output,) if output is not None else ())
        docs.extend(found)
        report.skipped.extend(skips)
        report.files_read += n
    return docs


def _within_limits(docs: list[RawDocument], max_chars: int, report: IngestReport) -> list[RawDocument]:
    """Documents whose extracted text fits ``max_chars``; the others are counted skips (before cleaning, which
    would spend its time on them)."""
    kept = []
    for doc in docs:
        size = len(doc.text) + len(doc.title)
        if size > max_chars:
            report.skipped.append(Skip(doc.source, "too much text", f"{size} characters > {max_chars}"))
        else:
            kept.append(doc)
    return kept


def _escape_ids(docs: list[RawDocument], report: IngestReport) -> list[RawDocument]:
    """Ids fit for a qrels field; an escaped one keeps the id as given in ``original_id`` (positives may name it)."""
    out = []
    for doc in docs:
        safe = safe_id(doc.doc_id)
        if safe != doc.doc_id:
            report.ids_escaped += 1
            doc = dataclasses.replace(doc, doc_id=safe, metadata={**doc.metadata, "original_id": doc.doc_id})
        out.append(doc)
    return out


def _escape_query_ids(pairs: list[QueryPair], report: IngestReport) -> list[QueryPair]:
    escaped = {p.query_id: safe_id(p.query_id) for p in pairs}
    report.ids_escaped += sum(raw != safe for raw, safe in escaped.items())
    return [dataclasses.replace(p, query_id=escaped[p.query_id]) for p in pairs]


def _check_ids(docs: list[RawDocument]) -> None:
    seen: dict[str, str] = {}
    for doc in docs:
        if doc.doc_id in seen:
            raise DataError(f"Two documents share the id {doc.doc_id!r}: {seen[doc.doc_id]} and {doc.source}. Give "
                            "distinct ids (tabular id column), or use --id-mode hash.")
        seen[doc.doc_id] = doc.source


def _clean(docs: list[RawDocument], boilerplate: bool, report: IngestReport) -> list[RawDocument]:
    first = [clean_text(d.text) for d in docs]
    drop = repeated_lines(first) if boilerplate else frozenset()
    report.boilerplate_lines = sorted(drop)
    out = []
    for doc, text in zip(docs, first):
        text = clean_text(text, drop) if drop else text
        title = clean_text(doc.title).replace("\n", " ")
        if not (text or title):
            report.skipped.append(Skip(doc.source, "empty after extraction", "nothing left after cleaning"))
            continue
        meta = {**doc.metadata, "length_chars": len(text), "length_words": len(text.split())}
        out.append(dataclasses.replace(doc, title=title, text=text, metadata=meta))
    return out


def _resolve_pairs(pairs: list[QueryPair], resolver: Resolver, report: IngestReport) -> list[tuple[QueryPair, str]]:
    report.pairs_read = len(pairs)
    out = []
    for pair in pairs:
        found = resolver.resolve(pair.positive)
        if found is None:
            report.pair_skips.append(Skip(pair.where, "positive not found", pair.positive))
            continue
        original, doc_id = found
        report.pairs_to_duplicate += original != doc_id
        out.append((pair, doc_id))
    report.pairs_kept = len(out)
    return out


def _splits(resolved: list[tuple[QueryPair, str]], test_fraction: float, seed: int) -> dict[str, str]:
    given: dict[str, tuple[str, str]] = {}
    for pair, _ in resolved:
        if pair.split is None:
            continue
        if pair.query_id in given and given[pair.query_id][0] != pair.split:
            raise DataError(f"{pair.where}: query {pair.query_id!r} is in split {pair.split!r} here and in "
                            f"{given[pair.query_id][0]!r} at {given[pair.query_id][1]}; a query belongs to one split.")
        given[pair.query_id] = (pair.split, pair.where)
    rest = sorted({p.query_id for p, _ in resolved} - set(given))
    test = seeded_split(rest, test_fraction, seed)
    return {**{q: s for q, (s, _) in given.items()}, **{q: ("test" if q in test else "train") for q in rest}}


def _dataset_files(folder: Path, docs: list[RawDocument], resolved: list[tuple[QueryPair, str]],
                   split_of: dict[str, str], report: IngestReport) -> list[str]:
    """Write the dataset into ``folder``; returns the files written (relative paths)."""
    write_jsonl(folder / "corpus.jsonl", ({"_id": d.doc_id, "title": d.title, "text": d.text,
                                           "metadata": {"source": d.source, "url": d.url, "type": d.type,
                                                        **d.metadata}} for d in docs))
    files = ["corpus.jsonl"]
    if resolved:
        queries = dict.fromkeys(p.query_id for p, _ in resolved)
        texts = {p.query_id: p.query for p, _ in resolved}
        write_jsonl(folder / "queries.jsonl", ({"_id": q, "text": texts[q]} for q in queries))
        files.append("queries.jsonl")
        qrels: dict[str, dict[tuple[str, str], int]] = {}
        for pair, doc_id in resolved:
            key = (pair.query_id, doc_id)
            rows = qrels.setdefault(split_of[pair.query_id], {})
            rows[key] = max(rows.get(key, 0), pair.grade)
        for split, rows in qrels.items():
            (folder / "qrels").mkdir(exist_ok=True)
            with (folder / "qrels" / f"{split}.tsv").open("w", encoding="utf-8") as handle:
                handle.write("query-id\tcorpus-id\tscore\n")
                for (q, d), g in rows.items():
                    for value in (q, d):  # ids are escaped on the way in: this guards the format, not the data
                        if unsafe_in(value):
                            raise DataError(f"id {value!r} holds {unsafe_in(value)!r}, which a qrels field cannot.")
                    handle.write(f"{q}\t{d}\t{g}\n")
            files.append(f"qrels/{split}.tsv")
        report.queries = {s: len({q for q, _ in rows}) for s, rows in sorted(qrels.items())}
    write_json(folder / "ingest_report.json", report.as_dict())
    return files + ["ingest_report.json"]


def ingest(sources: list[str | Path], output: str | Path, *, urls: str | Path | list[str] | None = None,
           pairs: list[str | Path] = (), qrels: str | Path | None = None, queries: str | Path | None = None,
           columns: Columns | None = None, pair_fields: PairFields | None = None,
           id_mode: Literal["path", "hash"] = "path", dedup: Literal["near", "exact", "none"] = "near",
           near_threshold: float = 0.8, boilerplate: bool = True, test_fraction: float = 0.2, seed: int = 42,
           max_bytes: int = DEFAULT_MAX_BYTES, max_chars: int = DEFAULT_MAX_CHARS, fetch: FetchConfig | None = None,
           strict: bool = False, overwrite: bool = False, follow_symlinks: bool = False,
           progress: bool = True) -> IngestResult:
    """Turn folders/files/tables (``sources``) and ``urls`` plus query pairs into a dataset folder at ``output``.

    ``pairs``: CSV/JSONL/parquet files of (query, positive) rows, the positive an id, path or URL; ``qrels`` +
    ``queries``: BEIR or TREC qrels and their query texts. Queries without a given split are split train/test by a
    seeded hash (``test_fraction``). ``strict`` turns any skip into a :class:`DataError`.

    ``output`` must be new, empty or a dataset hardneg wrote; ``overwrite`` lets hardneg write its files into a
    folder of other files (never removing them). ``max_bytes`` caps each file or response, ``max_chars`` each
    document's extracted text; ``follow_symlinks`` reads links that lead out of a source folder.
    """
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    if max_bytes < 1 or max_chars < 1:
        raise ValueError(f"max_bytes and max_chars must be positive, got {max_bytes} and {max_chars}")
    if not 0 < near_threshold <= 1:
        raise ValueError(f"near_threshold must be in (0, 1], got {near_threshold}")
    for name, value, allowed in (("id_mode", id_mode, ("path", "hash")), ("dedup", dedup, ("near", "exact", "none"))):
        if value not in allowed:
            raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    if (qrels is None) != (queries is None):
        raise ValueError("qrels and queries go together: the qrels name query ids, the queries file gives their text.")
    columns, pair_fields, fetch = columns or Columns(), pair_fields or PairFields(), fetch or FetchConfig()
    output = Path(output)
    roots = [Path(s) for s in sources]
    recover(output)
    target = check_output(output, roots, overwrite)  # before any work: a refused folder costs no fetch
    report = IngestReport()
    docs = _read_sources(roots, columns, max_bytes, progress, report, follow_symlinks, output)
    if urls is not None:
        entries = (url_entries(Path(urls)) if isinstance(urls, (str, Path))
                   else [(u, f"urls[{i}]") for i, u in enumerate(urls)])
        url_list, url_skips = check_urls(entries)
        report.skipped.extend(url_skips)
        fetched, skips = fetch_urls(url_list, dataclasses.replace(fetch, max_bytes=min(fetch.max_bytes, max_bytes)),
                                    progress)
        docs.extend(fetched)
        report.skipped.extend(skips)
        report.urls_fetched = len(url_list)
    report.documents_extracted = len(docs)
    docs = _escape_ids(_within_limits(docs, max_chars, report), report)
    docs = _clean(docs, boilerplate, report)
    if id_mode == "hash":
        docs = [dataclasses.replace(d, doc_id=content_id(d.text), metadata={**d.metadata, "path_id": d.doc_id})
                for d in docs]
    docs.sort(key=lambda d: (d.doc_id, d.source))
    duplicates: dict[str, str] = {}
    collapsed: list[RawDocument] = []
    if id_mode == "hash":  # equal content, equal id: keep the first copy, report the others as exact duplicates
        first: dict[str, RawDocument] = {}
        copies: dict[str, list[str]] = {}
        for d in docs:
            if d.doc_id in first:
                copies.setdefault(d.doc_id, []).append(d.source)
                collapsed.append(d)  # its path still resolves, to the kept copy (same id)
                report.skipped.append(Skip(d.source, "duplicate", f"exact duplicate of {first[d.doc_id].source}"))
            else:
                first[d.doc_id] = d
        report.duplicates = [DuplicateGroup(k, tuple(v), "exact") for k, v in copies.items()]
        docs = list(first.values())
    if dedup != "none":
        groups = find_duplicates([d.doc_id for d in docs], [f"{d.title}\n{d.text}" for d in docs],
                                 near=dedup == "near", threshold=near_threshold, seed=seed)
        report.duplicates += groups
        duplicates = {r: g.kept for g in groups for r in g.removed}
        by_id = {d.doc_id: d for d in docs}
        for g in groups:
            for r in g.removed:
                report.skipped.append(Skip(by_id[r].source, "duplicate", f"{g.kind} duplicate of {g.kept}"))
    _check_ids(docs)
    kept = [d for d in docs if d.doc_id not in duplicates]
    report.documents_kept = len(kept)
    if not kept:
        raise DataError(f"No document could be read from {', '.join(map(str, sources)) or urls}: "
                        f"{report.skip_counts() or 'no files found'}.")

    all_pairs = [p for f in pairs for p in read_pairs(f, pair_fields)]
    if qrels is not None:
        all_pairs += read_qrels_pairs(qrels, queries)
    all_pairs = _escape_query_ids(all_pairs, report)
    if id_mode == "hash":
        hash_of = {d.metadata["path_id"]: d.doc_id for d in docs}
        all_pairs = [dataclasses.replace(p, positive=hash_of.get(p.positive, p.positive)) for p in all_pairs]
    resolver = Resolver.build(docs + collapsed, duplicates, roots)
    resolved = _resolve_pairs(all_pairs, resolver, report)
    if all_pairs and not resolved:
        raise DataError(f"None of the {len(all_pairs)} query positives matched an ingested document (e.g. "
                        f"{all_pairs[0].positive!r} at {all_pairs[0].where}); positives must be document ids, paths "
                        "or URLs of the ingested documents.")
    if strict and (report.skipped or report.pair_skips):
        first = (report.skipped + report.pair_skips)[0]
        raise DataError(f"--strict: {len(report.skipped) + len(report.pair_skips)} inputs skipped, the first "
                        f"{first.source}: {first.reason} ({first.detail}). Counts: {report.skip_counts()}.")
    split_of = _splits(resolved, test_fraction, seed)
    write_dataset(target, lambda folder: _dataset_files(folder, kept, resolved, split_of, report))
    logger.info("Ingested %d documents into %s; %s", len(kept), output, report.skip_counts())
    return IngestResult(output, report)
