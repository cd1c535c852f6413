"""hardneg's section of a trained model's card (the folder's README.md), shared by the re-ranker and the embedder."""

from __future__ import annotations

import json
from pathlib import Path

from .io import atomic_write


def card_footer(card: dict, settings: dict, loader: str) -> tuple[list[str], list[str]]:
    """(the mining-settings line, if any; the training settings block and how to load the model)."""
    mining = [f"- **Mining settings**: `{json.dumps(card['mining'], sort_keys=True)}`"] if card.get("mining") else []
    return mining, ["", "Training settings:", "", "```json", json.dumps(settings, indent=2, sort_keys=True), "```",
                    "", f"Load it with `{loader}(\"<this folder>\")`; `hardneg_training.json` holds the full log.", ""]


def write_card_section(folder: str | Path, section: str, title: str) -> None:
    """Put ``section`` in the README.md sentence-transformers wrote, before its model details (or start one
    titled ``title``)."""
    readme = Path(folder) / "README.md"
    text = readme.read_text(encoding="utf-8") if readme.is_file() else f"# {title}\n"
    at = text.find("\n## Model Details")
    text = text[:at] + "\n" + section + text[at:] if at >= 0 else text.rstrip() + "\n" + section
    with atomic_write(readme) as handle:
        handle.write(text)
