"""One owner per folder: a lock file naming its owner (pid, host, start time), held while the owner lives.

The lock is an OS file lock (``flock``) on the lock file, so it is released the moment its process ends, however
it ends (a kill included): a second run on the folder is refused while the first lives and takes the folder over
once it is dead. The file's text only says who holds it, for the message. A process may take a lock it already
holds (a notebook running twice); :func:`release` gives it back early.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from .io import pid_alive

logger = logging.getLogger(__name__)

try:
    import fcntl
except ImportError:  # Windows: no flock; the recorded pid decides instead
    fcntl = None


LOCK_NAME = ".hardneg.lock"


class FolderLocked(ValueError):
    """Another live process owns the folder (a user's error to fix, reported like a bad value)."""


@dataclass(frozen=True)
class Owner:
    pid: int
    host: str
    started: str

    @classmethod
    def me(cls) -> Owner:
        return cls(os.getpid(), socket.gethostname(), time.strftime("%Y-%m-%d %H:%M:%S"))

    @classmethod
    def read(cls, path: Path) -> Owner | None:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return cls(int(raw["pid"]), str(raw["host"]), str(raw["started"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def describe(self) -> str:
        return f"process {self.pid} on {self.host}, started {self.started}"


_held: dict[Path, int] = {}  # lock path -> open file descriptor holding the flock


def acquire(path: str | Path, what: str = "folder") -> None:
    """Own the lock file ``path`` (created as needed) or raise :class:`FolderLocked` naming the live owner."""
    path = Path(path).absolute()
    if path in _held:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = Owner.read(path)
    for _ in range(10):  # the file may be replaced between open and lock by an owner releasing it
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _lock(fd, path):
            os.close(fd)
            owner = Owner.read(path)
            who = owner.describe() if owner else "another process"
            raise FolderLocked(f"{path.parent} is in use by {who} ({what} lock {path.name}). Wait for it to "
                               "finish, or stop it; a second run on the same folder would redo and overwrite "
                               "its work.")
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    else:
        raise FolderLocked(f"{path}: could not take the lock (it keeps changing).")
    if previous is not None and previous.pid != os.getpid():
        logger.warning("Taking over %s: its last owner (%s) is gone", path.parent, previous.describe())
    os.ftruncate(fd, 0)
    os.write(fd, (json.dumps(Owner.me().__dict__) + "\n").encode())
    os.fsync(fd)
    _held[path] = fd


def _lock(fd: int, path: Path) -> bool:
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
    owner = Owner.read(path)
    return owner is None or owner.host != socket.gethostname() or not pid_alive(owner.pid)


def holds(path: str | Path) -> bool:
    return Path(path).absolute() in _held


def release(path: str | Path) -> None:
    """Give the lock back (the file goes; a process waiting on it retries on a fresh one)."""
    path = Path(path).absolute()
    fd = _held.pop(path, None)
    if fd is None:
        return
    try:
        path.unlink(missing_ok=True)
    finally:
        os.close(fd)


@atexit.register
def _release_all() -> None:
    for path in list(_held):
        release(path)
