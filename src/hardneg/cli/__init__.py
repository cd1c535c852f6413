"""The ``hardneg`` command: each subcommand turns its options into one library call."""

from __future__ import annotations

import sys

import typer

from . import data, serve, stages, use  # noqa: F401  (each module registers its commands on the app)
from .common import DEBUG, app

__all__ = ["app", "main"]


def main() -> None:
    try:
        app()
    except OSError as exc:  # a full disk, a permission, a path that is a folder: the machine's error, in one line
        if DEBUG["on"]:
            raise
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)


if __name__ == "__main__":
    sys.exit(main())
