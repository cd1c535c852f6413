"""The report as one self-contained HTML page: the style inline, every figure embedded as base64 PNG."""

from __future__ import annotations

import base64
import html
from functools import singledispatch

from .document import Block, Bold, Cell, Code, Figure, Paragraph, Report, Section, Table

CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;
margin-top:2em}table{border-collapse:collapse;margin:1em 0;font-size:.9em}th,td{border:1px solid #ccc;
padding:.3em .55em;text-align:left;vertical-align:top}th{background:#f3f3f3}table.results td:nth-child(n+3){
text-align:right;font-variant-numeric:tabular-nums}sup{color:#2a6f2a;font-size:.7em}img{max-width:100%;
border:1px solid #eee}pre{background:#f7f7f7;padding:1em;overflow-x:auto;font-size:.8em}.note{color:#555;
font-size:.9em}.neg td{font-size:.85em}.hard{color:#8a1c1c}.random{color:#555}"""


def render_html(report: Report) -> str:
    title = html.escape(report.title)
    parts = [f"<h1>{title}</h1>"]
    for block in report.blocks:
        parts += _block(block, 2)
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{title}</title><style>{CSS}</style></head><body>" + "\n".join(parts) + "</body></html>")


def inline(parts: tuple[str | Bold, ...]) -> str:
    return "".join(f"<b>{html.escape(p.text)}</b>" if isinstance(p, Bold) else html.escape(p) for p in parts)


def cell(c: Cell) -> str:
    text = html.escape(c.text)
    return (f"<b>{text}</b>" if c.bold else text) + (f"<sup>{html.escape(c.marks)}</sup>" if c.marks else "")


def table(t: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in t.header)
    body = "".join("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in row) + "</tr>" for row in t.rows)
    return f'<table class="{html.escape(t.css_class)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


@singledispatch
def _block(block: Block, level: int) -> list[str]:
    """A block's HTML fragments (the page joins them with newlines)."""
    raise TypeError(f"No HTML for {type(block).__name__}")


@_block.register
def _(block: Section, level: int) -> list[str]:
    parts = [f"<h{level}>{html.escape(block.title)}</h{level}>"]
    for child in block.blocks:
        parts += _block(child, level + 1)
    return parts


@_block.register
def _(block: Paragraph, level: int) -> list[str]:
    css = f" class='{html.escape(block.css_class)}'" if block.css_class else ""
    return [f"<p{css}>{inline(block.parts)}</p>"]


@_block.register
def _(block: Table, level: int) -> list[str]:
    return [table(block)]


@_block.register
def _(block: Figure, level: int) -> list[str]:
    data = base64.b64encode(block.path.read_bytes()).decode("ascii")
    return [f'<p><img src="data:image/png;base64,{data}" alt="{html.escape(block.alt)}"></p>']


@_block.register
def _(block: Code, level: int) -> list[str]:
    return [f"<pre>{html.escape(block.text)}</pre>"]
