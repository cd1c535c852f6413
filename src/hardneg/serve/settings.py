"""What a server is allowed to do: where it listens, who may call it, and how much one request may ask for.

Kept free of web-framework imports so the command line can build and check settings without loading FastAPI.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

TOKEN_ENV = "HARDNEG_SERVE_TOKEN"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class ServeSettings:
    """A server's settings; each limit's name is also its command-line option (``--max-documents`` ...), and an
    error caused by a limit names that option."""

    host: str = "127.0.0.1"          # localhost only unless told otherwise
    port: int = 8080
    token: str | None = None         # bearer token every route but /health requires; None: no authentication
    bare: bool = False               # re-rank endpoints default to the re-ranker alone instead of the whole system
    max_documents: int = 1000        # documents per re-rank request
    max_document_chars: int = 10_000  # characters per document, and per query
    max_body_bytes: int = 16 * 1024 * 1024
    max_top_k: int = 1000            # /search results per request
    timeout_s: float = 30.0          # per request, queueing included
    max_concurrency: int = 8         # requests worked on at once; the rest wait (within their timeout)
    max_connections: int = 64        # open connections before the server answers 503 (each may buffer a body)
    batch_pairs: int = 64            # cross-encoder pairs scored together across concurrent requests
    batch_wait_ms: float = 5.0       # how long a batch waits for more pairs before it is scored

    def __post_init__(self) -> None:
        positive = ("port", "max_documents", "max_document_chars", "max_body_bytes", "max_top_k", "timeout_s",
                    "max_concurrency", "max_connections", "batch_pairs")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"--{option(name)} must be positive, got {getattr(self, name)}")
        if self.batch_wait_ms < 0:
            raise ValueError(f"--batch-wait-ms must be zero or more, got {self.batch_wait_ms}")
        if self.token is not None and not self.token.strip():
            raise ValueError(f"the token is empty: give a non-empty --token (or ${TOKEN_ENV}), or none at all")

    @property
    def exposed(self) -> bool:
        """Whether the server listens beyond this machine."""
        return self.host not in LOOPBACK

    def limits(self) -> dict:
        """The limits, for /info."""
        skip = {"host", "port", "token", "bare"}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}


def option(name: str) -> str:
    """A setting's command-line option name (without the dashes)."""
    return "timeout" if name == "timeout_s" else name.replace("_", "-")
