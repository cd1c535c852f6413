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
    """How URLs are fetched: a timeout per read, an overall deadline per URL (its retries included), retries with
    exponential backoff, a size cap and concurrency.

    ``timeout`` bounds each wait for data (a server that sends a byte now and then never reaches it);
    ``deadline`` bounds the whole URL: it is checked as each piece of the body arrives and before each retry, so a
    URL ends at most one ``timeout`` past it.
    """

    timeout: float = 15.0
    deadline: float = 120.0
    retries: int = 2
    backoff: float = 0.5          # seconds before the first retry; doubled for each further one
    max_bytes: int = DEFAULT_MAX_BYTES
    concurrency: int = 4
    max_redirects: int = 5
    user_agent: str = "hardneg-ingest/0.1"

    def __post_init__(self) -> None:
        for name in ("timeout", "deadline", "backoff"):
            value = getattr(self, name)
            if not (value > 0 or (name == "backoff" and value == 0)):
                raise ValueError(f"fetch {name} must be a positive number of seconds, got {value!r}")
        for name, least in (("retries", 0), ("max_bytes", 1), ("concurrency", 1), ("max_redirects", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"fetch {name} must be a whole number of at least {least}, got {value!r}")


def read_url_list(path: Path) -> list[str]:
    """One URL per line; blank lines and # comments ignored, repeats kept once."""
    return list(dict.fromkeys(url for url, _ in url_entries(path)))


def url_entries(path: Path) -> list[tuple[str, str]]:
    """(URL, file:line) for each URL line of ``path``; blank lines and # comments ignored."""
    out = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if line and not line.startswith("#"):
            out.append((line, f"{path}:{lineno}"))
    return out


def check_urls(entries: list[tuple[str, str]]) -> tuple[list[str], list[Skip]]:
    """The URLs to fetch, each page once (``/a`` and ``/a#top`` are one page), and a skip for each malformed or
    repeated one, naming its line."""
    first: dict[str, str] = {}
    urls, skips = [], []
    for url, where in entries:
        try:
            parts = urlsplit(url)
            key = normalise_url(url)
            if parts.scheme.lower() in {"http", "https"} and not parts.hostname:
                raise ValueError("no host")
        except ValueError as exc:
            skips.append(Skip(where, "malformed URL", f"{url}: {exc}"))
            continue
        if key in first:
            skips.append(Skip(where, "duplicate URL", f"{url} is the page of {first[key]}"))
            continue
        first[key] = url
        urls.append(url)
    return urls, skips


class _Retry(Exception):
    pass


def fetch_url(client, url: str, config: FetchConfig) -> RawDocument:
    """Fetch and extract one URL, retrying timeouts, connection errors, 429 and 5xx with backoff."""
    import httpx

    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError as exc:
        raise ExtractionError("malformed URL", str(exc)) from None
    if scheme not in {"http", "https"}:
        raise ExtractionError("unsupported scheme", f"{scheme or 'none'}:// (only http and https are fetched)")
    stop = time.monotonic() + config.deadline
    last = ""
    for attempt in range(config.retries + 1):
        if attempt:
            pause = config.backoff * 2 ** (attempt - 1)
            if time.monotonic() + pause >= stop:
                break
            time.sleep(pause)
        try:
            return _fetch_once(client, url, config, stop)
        except _Retry as exc:
            last = str(exc)
        except httpx.TimeoutException as exc:
            last = f"timeout ({type(exc).__name__})"
        except httpx.TransportError as exc:
            last = f"connection error ({exc})"
    reason = "timeout" if last.startswith("timeout") else "fetch failed"
    raise ExtractionError(reason, f"{last}; gave up after {config.retries + 1} attempts")


def _fetch_once(client, url: str, config: FetchConfig, stop: float) -> RawDocument:
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
            for block in response.iter_bytes():  # stream and stop: never hold more than the cap
                body.extend(block)
                if len(body) > config.max_bytes:
                    raise ExtractionError("too large", f"body over {config.max_bytes} bytes")
                if time.monotonic() > stop:  # a server trickling bytes never trips the per-read timeout
                    raise ExtractionError("timeout", f"past the {config.deadline:g} s deadline for the URL "
                                          f"({len(body)} bytes in)")
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
            except ImportError:
                raise
            except (httpx.HTTPError, ValueError) as exc:  # an URL httpx refuses (bad host, port, characters)
                return Skip(url, "fetch failed", f"{type(exc).__name__}: {exc}")
            except Exception as exc:  # an extractor choking on what the server sent: that URL is skipped
                return Skip(url, "unreadable", f"{type(exc).__name__}: {exc}")

        with ThreadPoolExecutor(max_workers=config.concurrency) as pool:
            for result in tqdm(pool.map(one, urls), total=len(urls), desc="fetch", disable=not progress,
                               unit="url"):
                (skips if isinstance(result, Skip) else docs).append(result)
    return docs, skips
