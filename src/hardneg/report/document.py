"""The report as a small document model, built once and rendered twice (Markdown and HTML).

A :class:`Report` holds blocks; a :class:`Section` is a block holding more blocks, so nesting gives heading levels.
Text is plain text: each renderer escapes it for its own format.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Bold:
    text: str


Inline = str | Bold


@dataclass(frozen=True)
class Paragraph:
    parts: tuple[Inline, ...]
    css_class: str | None = None  # HTML only (e.g. "note": smaller, grey)

    @classmethod
    def of(cls, *parts: Inline, css_class: str | None = None) -> Paragraph:
        return cls(tuple(parts), css_class)


@dataclass(frozen=True)
class Cell:
    """A table cell: text, optionally bold (the best of a column), with superscript significance marks."""

    text: str
    bold: bool = False
    marks: str = ""


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    css_class: str = "results"  # HTML only; "results" right-aligns the numeric columns

    @classmethod
    def of(cls, header: list[str], rows: list[list[str | Cell]], css_class: str = "results") -> Table:
        return cls(tuple(header), tuple(tuple(c if isinstance(c, Cell) else Cell(c) for c in row) for row in rows),
                   css_class)


@dataclass(frozen=True)
class Figure:
    """A PNG written beside the report: linked from Markdown, embedded in HTML."""

    path: Path
    alt: str


@dataclass(frozen=True)
class Code:
    text: str
    language: str = ""


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)


Block = Paragraph | Table | Figure | Code | Section


@dataclass
class Report:
    title: str
    blocks: list[Block] = field(default_factory=list)

    def figures(self) -> list[Path]:
        """Every figure's path, in reading order, each once."""
        return list(dict.fromkeys(b.path for b in walk(self.blocks) if isinstance(b, Figure)))


def walk(blocks: list[Block]) -> Iterator[Block]:
    for block in blocks:
        yield block
        if isinstance(block, Section):
            yield from walk(block.blocks)
