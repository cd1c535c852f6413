"""Models named by a Hugging Face hub id: a local folder, the hub cache, or the hub; offline, a clear error at once.

Without this, a hub id on a machine with no connection retries for over a minute and ends in a traceback.
"""

from __future__ import annotations

import functools
import socket
from pathlib import Path
from urllib.parse import urlsplit


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub answers a connection (False at once when HF_HUB_OFFLINE is set)."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    parts = urlsplit(constants.ENDPOINT)
    try:
        socket.create_connection((parts.hostname, parts.port or (80 if parts.scheme == "http" else 443)),
                                 timeout=timeout).close()
    except OSError:
        return False
    return True


def in_cache(name: str) -> bool:
    """Whether the hub cache holds model ``name`` (its config.json)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(name, "config.json"), str)
    except ValueError:  # not a valid repo id
        return False


def locate_model(name: str, what: str = "model") -> tuple[str, bool]:
    """(``name``, whether to load it from local files only); a ValueError, at once, when ``name`` is neither a
    folder, nor in the hub cache, and the hub cannot be reached."""
    if Path(name).exists():
        return name, False
    if hub_reachable():
        return name, False
    if in_cache(name):
        return name, True
    raise ValueError(f"{what} {name!r} is not a folder on this machine nor in the Hugging Face cache, and the hub "
                     "cannot be reached (offline). Make it available: on a machine with a connection run "
                     f"`huggingface-cli download {name}` (or save it with save_pretrained) and copy the folder here, "
                     "then give its path, or point HF_HOME at a cache that holds it.")
