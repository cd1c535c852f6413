"""What reading an input yields: a :class:`RawDocument`, or a :class:`Skip` with a reason.

Every input either becomes a document or a skip; nothing is dropped silently. Readers signal a skip by raising
:class:`ExtractionError`, whose ``reason`` is the category the ingest report counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
# Extracted text per document (title and body): about a thousand pages. Past it a document is skipped with its own
# reason: the size cap bounds the bytes read, and compressed formats can unpack to far more text.
DEFAULT_MAX_CHARS = 5_000_000


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
