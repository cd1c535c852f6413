"""Per-type extraction: a document's bytes (HTML, PDF, Markdown, text, DOCX) become (title, text, metadata).

``EXTRACTORS`` maps a kind to its reader; ``DOC_TYPES`` (file suffixes) and ``CONTENT_TYPES`` (HTTP content types)
map inputs to a kind. Each format's library is imported only when a document of that kind is read.
"""

from __future__ import annotations

import io
import re
import zipfile

from .clean import normalise_unicode, normalise_whitespace
from .documents import ExtractionError

DOC_TYPES = {".html": "html", ".htm": "html", ".pdf": "pdf", ".md": "markdown", ".markdown": "markdown",
             ".txt": "text", ".docx": "docx"}
CONTENT_TYPES = {"text/html": "html", "application/xhtml+xml": "html", "text/plain": "text",
                 "text/markdown": "markdown", "text/x-markdown": "markdown", "application/pdf": "pdf",
                 "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx"}

_CONTROL_BYTES = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")
# Archive formats are unpacked in memory: a small file may expand to gigabytes (a zip bomb). Refused before
# extraction: more than MAX_EXPANDED bytes unpacked, or past SMALL_EXPANDED at over MAX_RATIO times the packed size.
MAX_EXPANDED = 100 * 1024 * 1024
SMALL_EXPANDED = 10 * 1024 * 1024
MAX_RATIO = 100


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
    check_expansion(data)
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


def check_expansion(data: bytes) -> None:
    """An :class:`ExtractionError` for a zip archive that would unpack to too much (sizes from its directory,
    which zipfile enforces while reading)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            expanded = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise ExtractionError("unreadable", f"not a zip archive: {exc}") from None
    ratio = expanded / max(1, len(data))
    if expanded > MAX_EXPANDED or (expanded > SMALL_EXPANDED and ratio > MAX_RATIO):
        raise ExtractionError("expands too much", f"{len(data)} bytes unpack to {expanded} ({ratio:.0f}x; limits "
                              f"{MAX_EXPANDED} bytes, and {MAX_RATIO}x past {SMALL_EXPANDED})")


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
