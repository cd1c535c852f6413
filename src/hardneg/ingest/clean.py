"""Text cleaning after extraction: unicode, whitespace, and boilerplate that extraction let through."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

# Consent and cookie notices: a line is dropped when it matches one of these and is short (a banner, not prose).
BOILERPLATE_PATTERNS = (
    r"\bcookies?\b.*\b(accept|consent|use|policy|settings|preferences)\b",
    r"\b(accept|reject|allow|manage) (all )?cookies\b",
    r"^(skip to (main )?content|back to top|toggle navigation|main menu|menu|search\.*)$",
    r"^(©|\(c\)|copyright\b).{0,120}$",
    r"^all rights reserved\.?$",
)
_BOILERPLATE = [re.compile(p, re.IGNORECASE) for p in BOILERPLATE_PATTERNS]
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b-\u200d\u2060\ufeff]")
_SPACES = re.compile(r"[^\S\n]+")
_BLANKS = re.compile(r"\n{3,}")
BANNER_MAX_CHARS = 300


def normalise_unicode(text: str) -> str:
    """NFKC (ligatures, full-width forms, non-breaking spaces) without control or zero-width characters."""
    return _CONTROL.sub("", unicodedata.normalize("NFKC", text))


def normalise_whitespace(text: str) -> str:
    """One space between words, trimmed lines, at most one blank line between paragraphs."""
    lines = [_SPACES.sub(" ", line).strip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return _BLANKS.sub("\n\n", "\n".join(lines)).strip()


def is_boilerplate(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and len(stripped) <= BANNER_MAX_CHARS and any(p.search(stripped) for p in _BOILERPLATE)


def clean_text(text: str, drop_lines: frozenset[str] = frozenset()) -> str:
    """Unicode and whitespace normalised; cookie/consent banners and the given repeated lines removed."""
    text = normalise_whitespace(normalise_unicode(text))
    kept = [line for line in text.split("\n") if not is_boilerplate(line) and line not in drop_lines]
    return normalise_whitespace("\n".join(kept))


def repeated_lines(texts: list[str], min_docs: int = 3, min_share: float = 0.5, max_chars: int = 120) -> frozenset[str]:
    """Short lines found in many documents: navigation menus and footers that survived extraction.

    A line counts when it appears in at least ``min_docs`` documents and in at least ``min_share`` of them; long
    lines are kept whatever their count (shared prose, e.g. a legal paragraph, is content, not navigation).
    """
    if len(texts) < min_docs:
        return frozenset()
    counts: Counter = Counter()
    for text in texts:
        counts.update({line for line in text.split("\n") if line.strip() and len(line) <= max_chars})
    needed = max(min_docs, min_share * len(texts))
    return frozenset(line for line, n in counts.items() if n >= needed)
