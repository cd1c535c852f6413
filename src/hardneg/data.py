"""Datasets in BEIR layout: loading, validation and download.

A dataset folder holds ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl`` (``_id``, ``text``)
and ``qrels/<split>.tsv`` (``query-id``, ``corpus-id``, ``score``). Everything a user gave is either loaded, or
counted in :class:`LoadReport` with the reason it was skipped; malformed input raises :class:`DataError`
naming the file and line.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import zipfile
from collections import defaultdict
from pathlib import Path

from .dataset import Corpus, DataError, Dataset, LoadReport, Qrels, Queries, SplitOverlap

__all__ = ["Corpus", "DataError", "Dataset", "LoadReport", "Qrels", "Queries", "SplitOverlap", "content_signature",
           "data_dir", "download_beir", "load_beir", "resolve_dataset"]
logger = logging.getLogger(__name__)

DATA_ENV = "HARDNEG_DATA"
BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{name}.zip"
# md5 of the official zips, as published in the BEIR README.
BEIR_MD5 = {
    "scifact": "5f7d1de60b170fc8027bb7898e2efca1",
    "nfcorpus": "a89dba18a62ef92f7d323ec890a0d38d",
    "fiqa": "17918ed23cd04fb15047f73e6c3bd9d9",
    "arguana": "8ad3e3c2a5867cdced806d6503f29b99",
    "scidocs": "38121350fc3a4d2f48850f6aff52e4a9",
    "quora": "18fb154900ba42a600f84b839c173167",
}


def _read_jsonl(path: Path):
    """Yield (line number, object) for each non-empty line; a malformed line raises naming file and line."""
    with path.open("rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            line = _decode(raw, path, lineno)
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: not valid JSON ({exc.msg} at column {exc.colno}).") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}.")
            yield lineno, record


def _decode(raw: bytes, path: Path, lineno: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}:{lineno}: not valid UTF-8 (byte {exc.start} of the line).") from None


def _relevance(score: str, path: Path, lineno: int) -> int | None:
    """An integer grade; None for a header row; a DataError for anything else."""
    try:
        return int(score)
    except ValueError:
        pass
    try:
        value = float(score)
    except ValueError:
        if lineno == 1 and score.lower() in {"score", "relevance", "rel", "label", "grade"}:
            return None
        raise DataError(f"{path}:{lineno}: relevance {score!r} is not a number.") from None
    if not value.is_integer():
        raise DataError(f"{path}:{lineno}: relevance {score!r} is not a whole number (graded qrels use 0, 1, 2...).")
    return int(value)


def _record_id(record: dict, path: Path, lineno: int, seen: dict[str, int]) -> str:
    if "_id" not in record:
        raise DataError(f"{path}:{lineno}: missing required field '_id'.")
    rec_id = str(record["_id"])
    if rec_id in seen:
        raise DataError(f"{path}:{lineno}: duplicate _id {rec_id!r} (first at line {seen[rec_id]}).")
    seen[rec_id] = lineno
    return rec_id


def _text_field(record: dict, key: str, path: Path, lineno: int) -> str:
    value = record.get(key) or ""
    if not isinstance(value, str):
        raise DataError(f"{path}:{lineno}: field {key!r} must be a string, got {type(value).__name__}.")
    return value


def load_corpus(path: Path, report: LoadReport) -> Corpus:
    ids, titles, texts = [], [], []
    seen: dict[str, int] = {}
    for lineno, record in _read_jsonl(path):
        doc_id = _record_id(record, path, lineno, seen)
        title = _text_field(record, "title", path, lineno)
        text = _text_field(record, "text", path, lineno)
        if not (title.strip() or text.strip()):
            report.skip("empty document", f"{path.name}:{lineno}")
            continue
        ids.append(doc_id)
        titles.append(title)
        texts.append(text)
    if not ids:
        raise DataError(f"{path}: the corpus is empty (no document with a title or text).")
    return Corpus.from_records(ids, titles, texts)


def load_queries(path: Path, report: LoadReport) -> Queries:
    ids, texts = [], []
    seen: dict[str, int] = {}
    for lineno, record in _read_jsonl(path):
        qid = _record_id(record, path, lineno, seen)
        text = _text_field(record, "text", path, lineno)
        if not text.strip():
            report.skip("empty query", f"{path.name}:{lineno}")
            report.skipped_ids.add(qid)
            continue
        ids.append(qid)
        texts.append(text)
    if not ids:
        raise DataError(f"{path}: no queries.")
    return Queries.from_records(ids, texts)


def load_qrels(path: Path, corpus: Corpus, queries: Queries, report: LoadReport,
               skipped_queries: frozenset[str] = frozenset()) -> Qrels:
    """Read a qrels TSV (with or without the BEIR header). Rows naming unknown ids are counted and skipped.

    The format is the file's, set by its first row: BEIR (3 columns) or TREC (4: qid, iteration, docid, rel). A
    row with another number of columns (an id holding a tab) is an error naming it, never read as the other format.
    """
    qrels: Qrels = defaultdict(dict)
    width: int | None = None
    with path.open("rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            line = _decode(raw, path, lineno)
            if not line.strip():
                continue
            cols = line.rstrip("\n\r").split("\t")
            width, cols = qrels_columns(cols, width, path, lineno)
            qid, doc_id, score = (c.strip() for c in cols)
            rel = _relevance(score, path, lineno)
            if rel is None:
                continue  # header row
            if qid in skipped_queries:
                report.skip(f"qrels row for a skipped (empty) query ({path.name})", f"{path.name}:{lineno}")
                continue
            if qid not in queries.index:
                report.skip(f"qrels row with unknown query ({path.name})", f"{path.name}:{lineno} query {qid!r}")
                continue
            if doc_id not in corpus.index:
                report.skip(f"qrels row with unknown document ({path.name})", f"{path.name}:{lineno} doc {doc_id!r}")
                continue
            if doc_id in qrels[qid]:
                report.skip(f"repeated qrels row, highest grade kept ({path.name})", f"{path.name}:{lineno}")
                rel = max(rel, qrels[qid][doc_id])
            qrels[qid][doc_id] = rel
    return dict(qrels)


def qrels_columns(cols: list[str], width: int | None, path: Path, lineno: int) -> tuple[int, list[str]]:
    """(the file's column count, [query id, document id, grade]) of one qrels row; ``width`` is None on the
    first row, which sets it."""
    expected = width or len(cols)
    if expected not in (3, 4):
        raise DataError(f"{path}:{lineno}: expected BEIR qrels (3 tab-separated columns: query-id, corpus-id, "
                        f"score) or TREC qrels (4: query-id, iteration, doc-id, relevance), got {len(cols)} columns.")
    if len(cols) != expected:
        kind = "BEIR" if expected == 3 else "TREC"
        raise DataError(f"{path}:{lineno}: expected {expected} tab-separated columns like the rest of this {kind} "
                        f"qrels file, got {len(cols)}: an id may hold a tab, which a qrels file cannot.")
    if expected == 4:
        iteration = cols[1].strip()
        if not (iteration.isdigit() or iteration.upper() == "Q0"):
            raise DataError(f"{path}:{lineno}: column 2 of TREC qrels is the iteration (0 or Q0), got "
                            f"{iteration!r}: an id may hold a tab, which a qrels file cannot.")
        cols = [cols[0], cols[2], cols[3]]
    return expected, cols


def load_beir(path: str | Path, splits: list[str] | None = None, name: str | None = None) -> Dataset:
    """Load a BEIR-layout folder. ``splits`` defaults to every ``qrels/*.tsv`` present."""
    root = Path(path)
    for required in ("corpus.jsonl", "queries.jsonl"):
        if not (root / required).is_file():
            raise DataError(f"{root / required}: file not found. A dataset folder needs corpus.jsonl, "
                            "queries.jsonl and qrels/<split>.tsv (BEIR layout).")
    report = LoadReport()
    corpus = load_corpus(root / "corpus.jsonl", report)
    queries = load_queries(root / "queries.jsonl", report)
    qrels_dir = root / "qrels"
    available = sorted(p.stem for p in qrels_dir.glob("*.tsv")) if qrels_dir.is_dir() else []
    wanted = splits if splits is not None else available
    qrels = {}
    for split in wanted:
        split_path = qrels_dir / f"{split}.tsv"
        if not split_path.is_file():
            raise DataError(f"{split_path}: file not found (available splits: {available or 'none'}).")
        qrels[split] = load_qrels(split_path, corpus, queries, report, frozenset(report.skipped_ids))
    labelled = set().union(*(q.keys() for q in qrels.values())) if qrels else set()
    for split, split_qrels in qrels.items():
        for qid, docs in split_qrels.items():
            if not any(rel > 0 for rel in docs.values()):
                report.skip(f"query with no positive ({split})", qid)
    unused = [q for q in queries.ids if q not in labelled]
    if unused:
        report.skip("query in no qrels split (unused)", ", ".join(unused[:3]), len(unused))
    files = [root / "corpus.jsonl", root / "queries.jsonl"] + [qrels_dir / f"{s}.tsv" for s in wanted]
    dataset = Dataset(name or root.name, corpus, queries, qrels, report, content_signature(root, files))
    logger.info("Loaded %s: %d documents, %d queries, splits %s; %s", dataset.name, len(corpus), len(queries),
                {s: len(q) for s, q in qrels.items()}, report.summary())
    return dataset


def content_signature(root: Path, files: list[Path]) -> str:
    """A hash of the files' names (relative to ``root``) and bytes.

    Content, not size and mtime: a dataset copied to another machine or folder, re-downloaded or touched keeps
    its finished stages (sizes and mtimes made every run start over when the same files were provisioned
    again). Hashing costs about a second per GB, small beside parsing the JSON.
    """
    digest = hashlib.sha1()
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        with open(path, "rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()[:12]


def data_dir(explicit: str | Path | None = None) -> Path:
    """The data directory: the explicit option, else $HARDNEG_DATA, else ./data."""
    return Path(explicit or os.environ.get(DATA_ENV) or "data")


def resolve_dataset(name_or_path: str, data_root: str | Path | None = None, download: bool = True) -> Path:
    """Find a dataset folder: a path, or a name under the data directory (downloading known BEIR sets)."""
    direct = Path(name_or_path)
    if (direct / "corpus.jsonl").is_file():
        return direct
    root = data_dir(data_root)
    folder = root / name_or_path
    if (folder / "corpus.jsonl").is_file():
        return folder
    if name_or_path in BEIR_MD5 and download:
        return download_beir(name_or_path, root)
    known = ", ".join(sorted(BEIR_MD5))
    raise DataError(f"Dataset {name_or_path!r} not found: neither {direct} nor {folder} holds corpus.jsonl. "
                    f"Put a BEIR-layout folder there, set --data-dir or ${DATA_ENV}, or name a BEIR dataset to "
                    f"download ({known}).")


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_beir(name: str, root: Path, url: str | None = None, timeout: float = 60.0) -> Path:
    """Download the official BEIR zip, check its md5, unpack atomically into ``root/name``."""
    import httpx

    url = url or BEIR_URL.format(name=name)
    root.mkdir(parents=True, exist_ok=True)
    target = root / name
    if target.exists():
        raise DataError(f"{target} exists but holds no corpus.jsonl; move it away (hardneg will not overwrite it) "
                        "and download again.")
    with tempfile.TemporaryDirectory(dir=root, prefix=f".{name}-") as tmp:
        zip_path = Path(tmp) / f"{name}.zip"
        logger.info("Downloading %s from %s", name, url)
        try:
            with httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as response:
                response.raise_for_status()
                with zip_path.open("wb") as out:
                    for chunk in response.iter_bytes(1 << 20):
                        out.write(chunk)
        except httpx.HTTPError as exc:
            raise DataError(f"Could not download {name} from {url} ({exc}). If this machine is offline, put the "
                            f"BEIR folder at {target} (corpus.jsonl, queries.jsonl, qrels/*.tsv) or point "
                            f"--data-dir / ${DATA_ENV} at a folder that holds it.") from None
        expected = BEIR_MD5.get(name)
        actual = _md5(zip_path)
        if expected and actual != expected:
            raise DataError(f"{url}: md5 {actual} does not match the published {expected}; not unpacking.")
        with zipfile.ZipFile(zip_path) as archive:
            for member in archive.namelist():
                if member.startswith("/") or ".." in Path(member).parts:
                    raise DataError(f"{url}: unsafe path {member!r} in archive.")
            archive.extractall(tmp)
        unpacked = Path(tmp) / name
        if not (unpacked / "corpus.jsonl").is_file():
            raise DataError(f"{url}: archive has no {name}/corpus.jsonl.")
        unpacked.rename(target)
    return target
