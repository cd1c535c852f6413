"""What every command shares: the app, common options, logging and one-line errors."""

from __future__ import annotations

import logging
import traceback
from typing import Annotated

import typer
import yaml

from ..config import MiningConfig

# `hardneg mine` options default to MiningConfig's own, so a measured default changes in one place.
MINING_DEFAULTS = {name: field.default for name, field in MiningConfig.model_fields.items()}

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Mine hard negatives with an embedding ensemble and train cross-encoder re-rankers.")

DataDir = Annotated[str | None, typer.Option("--data-dir", envvar="HARDNEG_DATA",
                                                help="Folder holding BEIR datasets (env HARDNEG_DATA).")]
Quiet = Annotated[bool, typer.Option("--no-progress", help="Hide progress bars.")]
Verbose = Annotated[int, typer.Option("--verbose", "-v", count=True, help="More logging (-v info, -vv debug).")]
Engine = Annotated[str | None, typer.Option("--engine", help="local, or ray: embed and mine on a Ray cluster "
                                            r"(compute.engine; pip install 'hardneg\[ray]').")]
Address = Annotated[str | None, typer.Option("--address", help="The Ray cluster for --engine ray: auto, or "
                                             "ray://HOST:10001 (compute.address); default: start Ray here.")]
Device = Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps (compute.device).")]


def compute_settings(engine: str | None, address: str | None, device: str | None) -> dict:
    """The ``compute`` settings the shared options give (those left unset keep the config's)."""
    given = {"engine": engine, "address": address, "device": device}
    return {key: value for key, value in given.items() if value is not None}


def setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if verbose == 0:
        logging.getLogger("hardneg").setLevel(logging.INFO)


DEBUG = {"on": False}


def fail(exc: Exception) -> None:
    if DEBUG["on"]:
        traceback.print_exception(exc)
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


@app.callback()
def _options(debug: Annotated[bool, typer.Option(envvar="HARDNEG_DEBUG", help="Show an error's traceback.")] = False):
    DEBUG["on"] = debug


def parse_sets(values: list[str]) -> dict:
    overrides = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"--set expects key=value, got {item!r}")
        overrides[key] = yaml.safe_load(raw)
    return overrides
