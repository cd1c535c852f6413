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


def content_id(text: str) -> str:
    return "h" + hashlib.sha1(text.encode()).hexdigest()[:16]
