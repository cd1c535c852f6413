"""Reading documents: folders of HTML/PDF/Markdown/text/DOCX, tabular files, and URLs fetched over HTTP(S).

Every input either becomes a :class:`RawDocument` or a :class:`Skip` with a reason; nothing is dropped silently.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import re
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

logger = logging.getLogger(__name__)

DOC_TYPES = {".html": "html", ".htm": "html", ".pdf": "pdf", ".md": "markdown", ".markdown": "markdown",
             ".txt": "text", ".docx": "docx"}
TABULAR = {".jsonl", ".csv", ".parquet"}
CONTENT_TYPES = {"text/html": "html", "application/xhtml+xml": "html", "text/plain": "text",
                 "text/markdown": "markdown", "text/x-markdown": "markdown", "application/pdf": "pdf",
                 "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx"}
DEFAULT_MAX_BYTES = 20 * 1024 * 1024


@dataclass(frozen=True)
class RawDocument:
    """One extracted document before cleaning and deduplication."""

    doc_id: str
    title: str
    text: str
    source: str                  # the file path or URL it came from
    type: str                    # html, pdf, markdown, text, docx, or tabular
    url: str | None = None
    metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Skip:
    """An input that produced no document, and why."""

    source: str
    reason: str
    detail: str = ""

    def as_dict(self) -> dict:
        return {"source": self.source, "reason": self.reason, "detail": self.detail}


class ExtractionError(Exception):
    """An input that cannot become a document; ``reason`` is the report's category."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


# ---- ids --------------------------------------------------------------------------------------------------------

def normalise_url(url: str) -> str:
    """Scheme and host lower-cased, default port, fragment and trailing slash dropped: one id per page."""
    parts = urlsplit(url.strip())
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    port = parts.port
    netloc = host if port is None or (scheme, port) in {("http", 80), ("https", 443)} else f"{host}:{port}"
    path = re.sub(r"/{2,}", "/", parts.path or "/")
    if len(path) > 1:
        path = path.rstrip("/")
    return urlunsplit((scheme, netloc, path, parts.query, ""))


def normalise_path(path: str) -> str:
    """A relative path as an id: forward slashes, no leading ./ or /."""
    text = path.strip().replace("\\", "/")
    while text.startswith("./"):
        text = text[2:]
    return re.sub(r"/{2,}", "/", text).lstrip("/")


def content_id(text: str) -> str:
    return "h" + hashlib.sha1(text.encode()).hexdigest()[:16]


# ---- extraction -------------------------------------------------------------------------------------------------

_CONTROL_BYTES = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")


def decode_text(data: bytes) -> tuple[str, str]:
    """(text, encoding): UTF-8 (with or without BOM), else Windows-1252 (Western office files) when that gives no
    control characters, else the best charset_normalizer guess, else an error."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16"), "utf-16"
    if b"\x00" in data[:8192]:
        raise ExtractionError("binary file", "NUL bytes in the first 8 KiB")
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        text = data.decode("cp1252")
        if not _CONTROL_BYTES.search(text):
            return text, "cp1252"
    except UnicodeDecodeError:
        pass
    try:
        from charset_normalizer import from_bytes
    except ImportError:
        raise ImportError("Decoding non-UTF-8 text needs charset-normalizer: pip install 'hardneg[ingest]'") from None

    best = from_bytes(data).best()
    if best is None:
        raise ExtractionError("not UTF-8 and not decodable", "no character encoding fits")
    return str(best), best.encoding


def extract_html(data: bytes) -> tuple[str, str, dict]:
    try:
        import trafilatura
    except ImportError:
        raise ImportError("HTML extraction needs trafilatura: pip install 'hardneg[ingest]'") from None
    html, encoding = decode_text(data)
    doc = trafilatura.bare_extraction(html, with_metadata=True, include_comments=False, include_tables=True,
                                      favor_recall=True)
    if doc is None or not (doc.text or "").strip():
        raise ExtractionError("empty after extraction", "no main text found in the HTML")
    title = (doc.title or "").strip()
    text = doc.text
    first, _, rest = text.partition("\n")
    if title and first.strip() == title:  # trafilatura repeats the heading it took the title from
        text = rest
    return title, text, {"encoding": encoding}


def extract_pdf(data: bytes) -> tuple[str, str, dict]:
    try:
        from pypdf import PdfReader
        from pypdf.errors import PdfReadError
    except ImportError:
        raise ImportError("PDF extraction needs pypdf: pip install 'hardneg[ingest]'") from None
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise ExtractionError("encrypted PDF", "needs a password")
        pages = [page.extract_text() or "" for page in reader.pages]
        meta = reader.metadata
    except ExtractionError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        if "decrypt" in str(exc).lower() or "encrypt" in str(exc).lower():
            raise ExtractionError("encrypted PDF", str(exc)) from None
        raise ExtractionError("unreadable", f"PDF: {exc}") from None
    # Page-aware: pages are cleaned alone, joined by blank lines, and their start offsets kept, so a chunk can name
    # its page (offsets are into the text before boilerplate lines are removed, which is rare inside PDFs).
    from .clean import normalise_unicode, normalise_whitespace

    starts, parts, offset = [], [], 0
    for page in pages:
        starts.append(offset)
        parts.append(normalise_whitespace(normalise_unicode(page)))
        offset += len(parts[-1]) + 2
    title = str(meta.title).strip() if meta is not None and meta.title else ""
    return title, "\n\n".join(parts), {"pages": len(pages), "page_starts": starts}


def extract_markdown(data: bytes) -> tuple[str, str, dict]:
    text, encoding = decode_text(data)
    title = ""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("# "):
            title = line[2:].strip()
            del lines[i]
            break
    return title, "\n".join(lines), {"encoding": encoding}


def extract_text(data: bytes) -> tuple[str, str, dict]:
    text, encoding = decode_text(data)
    return "", text, {"encoding": encoding}


def extract_docx(data: bytes) -> tuple[str, str, dict]:
    try:
        import docx
        from docx.opc.exceptions import PackageNotFoundError
    except ImportError:
        raise ImportError("DOCX extraction needs python-docx: pip install 'hardneg[ingest]'") from None
    try:
        document = docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, ValueError, KeyError, OSError, zipfile.BadZipFile) as exc:  # broken files
        raise ExtractionError("unreadable", f"DOCX: {exc}") from None
    paragraphs = [p.text for p in document.paragraphs]
    title = (document.core_properties.title or "").strip()
    if not title:
        for p in document.paragraphs:
            if p.style is not None and p.style.name.lower().startswith(("title", "heading")) and p.text.strip():
                title = p.text.strip()
                paragraphs.remove(p.text)
                break
    return title, "\n".join(paragraphs), {}


EXTRACTORS = {"html": extract_html, "pdf": extract_pdf, "markdown": extract_markdown, "text": extract_text,
              "docx": extract_docx}


def extract(data: bytes, kind: str) -> tuple[str, str, dict]:
    """(title, text, metadata) from a document's bytes; :class:`ExtractionError` when there is nothing usable."""
    if not data.strip():
        raise ExtractionError("empty after extraction", "empty file")
    title, text, meta = EXTRACTORS[kind](data)
    if not text.strip() and not title.strip():
        raise ExtractionError("empty after extraction", f"no text in the {kind}")
    return title, text, meta


# ---- folders and files ------------------------------------------------------------------------------------------

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
        import json

        rows = []
        with path.open("rb") as handle:
            for lineno, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                try:
                    record = json.loads(raw.decode("utf-8"))
                except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                    from ..data import DataError

                    raise DataError(f"{path}:{lineno}: not a valid UTF-8 JSON line ({exc}).") from None
                if not isinstance(record, dict):
                    from ..data import DataError

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
    from ..data import DataError

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


# ---- URLs -------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FetchConfig:
    """How URLs are fetched: per-request timeout, retries with exponential backoff, a size cap and concurrency."""

    timeout: float = 15.0
    retries: int = 2
    backoff: float = 0.5          # seconds before the first retry; doubled for each further one
    max_bytes: int = DEFAULT_MAX_BYTES
    concurrency: int = 4
    max_redirects: int = 5
    user_agent: str = "hardneg-ingest/0.1"


def read_url_list(path: Path) -> list[str]:
    """One URL per line; blank lines and # comments ignored, repeats kept once."""
    urls = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            urls.append(line)
    return list(dict.fromkeys(urls))


class _Retry(Exception):
    pass


def fetch_url(client, url: str, config: FetchConfig) -> RawDocument:
    """Fetch and extract one URL, retrying timeouts, connection errors, 429 and 5xx with backoff."""
    import httpx

    scheme = urlsplit(url).scheme.lower()
    if scheme not in {"http", "https"}:
        raise ExtractionError("unsupported scheme", f"{scheme or 'none'}:// (only http and https are fetched)")
    last = ""
    for attempt in range(config.retries + 1):
        if attempt:
            time.sleep(config.backoff * 2 ** (attempt - 1))
        try:
            return _fetch_once(client, url, config)
        except _Retry as exc:
            last = str(exc)
        except httpx.TimeoutException as exc:
            last = f"timeout ({type(exc).__name__})"
        except httpx.TransportError as exc:
            last = f"connection error ({exc})"
    reason = "timeout" if last.startswith("timeout") else "fetch failed"
    raise ExtractionError(reason, f"{last}; gave up after {config.retries + 1} attempts")


def _fetch_once(client, url: str, config: FetchConfig) -> RawDocument:
    import httpx

    try:
        response_cm = client.stream("GET", url)
        with response_cm as response:
            status = response.status_code
            if status == 429 or status >= 500:
                raise _Retry(f"HTTP {status}")
            if status >= 400:
                raise ExtractionError("http error", f"HTTP {status}")
            ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
            kind = CONTENT_TYPES.get(ctype)
            if kind is None:
                raise ExtractionError("unsupported content type", ctype or "none given")
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > config.max_bytes:
                raise ExtractionError("too large", f"Content-Length {declared} > {config.max_bytes}")
            body = bytearray()
            for block in response.iter_bytes(65536):  # stream and stop: never hold more than the cap
                body.extend(block)
                if len(body) > config.max_bytes:
                    raise ExtractionError("too large", f"body over {config.max_bytes} bytes")
            final = str(response.url)
    except httpx.TooManyRedirects:
        raise ExtractionError("fetch failed", f"more than {config.max_redirects} redirects") from None
    title, text, meta = extract(bytes(body), kind)
    norm = normalise_url(url)
    extra = {"final_url": normalise_url(final)} if normalise_url(final) != norm else {}
    return RawDocument(norm, title, text, url, kind, norm, {"bytes": len(body), "content_type": ctype, **meta,
                                                            **extra})


def fetch_urls(urls: list[str], config: FetchConfig = FetchConfig(),
               progress: bool = True) -> tuple[list[RawDocument], list[Skip]]:
    """Fetch every URL (at most ``config.concurrency`` at once); results keep the input order."""
    import httpx
    from tqdm.auto import tqdm

    limits = httpx.Limits(max_connections=config.concurrency, max_keepalive_connections=config.concurrency)
    docs, skips = [], []
    with httpx.Client(timeout=httpx.Timeout(config.timeout), follow_redirects=True, limits=limits,
                      max_redirects=config.max_redirects, headers={"user-agent": config.user_agent}) as client:
        def one(url: str):
            try:
                return fetch_url(client, url, config)
            except ExtractionError as exc:
                return Skip(url, exc.reason, exc.detail)

        with ThreadPoolExecutor(max_workers=config.concurrency) as pool:
            for result in tqdm(pool.map(one, urls), total=len(urls), desc="fetch", disable=not progress,
                               unit="url"):
                (skips if isinstance(result, Skip) else docs).append(result)
    return docs, skips
