"""URLs fetched over HTTP(S) with httpx: retries with backoff, a size cap, bounded concurrency, input order kept."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .documents import DEFAULT_MAX_BYTES, ExtractionError, RawDocument, Skip
from .ids import normalise_url
from .readers import CONTENT_TYPES, extract


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
