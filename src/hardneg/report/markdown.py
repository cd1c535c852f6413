"""The report as Markdown: figures linked by their path relative to the run folder."""

from __future__ import annotations

from functools import singledispatch
from pathlib import Path

from .document import Block, Bold, Cell, Code, Figure, Paragraph, Report, Section, Table


def render_markdown(report: Report, root: Path) -> str:
    """``report`` as Markdown; ``root`` is the folder the file is written to (figure links are relative to it)."""
    lines = [f"# {report.title}", ""]
    for block in report.blocks:
        lines += _block(block, 2, root)
    return "\n".join(lines)


def inline(parts: tuple[str | Bold, ...]) -> str:
    return "".join(f"**{p.text}**" if isinstance(p, Bold) else p for p in parts)


def cell(c: Cell) -> str:
    return (f"**{c.text}**" if c.bold else c.text) + (f"<sup>{c.marks}</sup>" if c.marks else "")


def table(t: Table) -> list[str]:
    return (["| " + " | ".join(t.header) + " |", "|" + "---|" * len(t.header)]
            + ["| " + " | ".join(cell(c) for c in row) + " |" for row in t.rows])


@singledispatch
def _block(block: Block, level: int, root: Path) -> list[str]:
    """A block's lines, each block followed by a blank line."""
    raise TypeError(f"No Markdown for {type(block).__name__}")


@_block.register
def _(block: Section, level: int, root: Path) -> list[str]:
    lines = [f"{'#' * level} {block.title}", ""]
    for child in block.blocks:
        lines += _block(child, level + 1, root)
    return lines


@_block.register
def _(block: Paragraph, level: int, root: Path) -> list[str]:
    return [inline(block.parts), ""]


@_block.register
def _(block: Table, level: int, root: Path) -> list[str]:
    return table(block) + [""]


@_block.register
def _(block: Figure, level: int, root: Path) -> list[str]:
    return [f"![{block.alt}]({block.path.relative_to(root).as_posix()})", ""]


@_block.register
def _(block: Code, level: int, root: Path) -> list[str]:
    return [f"```{block.language}", block.text, "```", ""]
