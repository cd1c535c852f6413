"""Stable ids for documents: normalised URLs, normalised relative paths, and content hashes."""

from __future__ import annotations

import hashlib
import re
from urllib.parse import urlsplit, urlunsplit


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


# Characters a TSV field (qrels) or a line cannot hold: tab, newline and the other control characters.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def safe_id(raw: str) -> str:
    """An id fit for a qrels TSV field: surrounding spaces dropped (the loader strips them) and control characters
    percent-escaped (a tab becomes %09, a newline %0A)."""
    return _UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), raw.strip())


def unsafe_in(value: str) -> str | None:
    """The first character of ``value`` a qrels field cannot hold, or None."""
    found = _UNSAFE.search(value)
    return found.group() if found else None


def content_id(text: str) -> str:
    return "h" + hashlib.sha1(text.encode()).hexdigest()[:16]
