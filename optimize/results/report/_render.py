"""The report's building blocks, rendered the same way as Markdown and as a self-contained HTML page."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from optimize.results.formatting import format_value
from optimize.results.frame import whole_numbers

PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}
FIGURE_FOLDER = "figures"  # REPORT.md's PNG figures, next to it
CSS = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { border-bottom: 2px solid #ddd; } h2 { margin-top: 2em; border-bottom: 1px solid #eee; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
caption { caption-side: top; text-align: left; font-weight: 600; padding: 0.3em 0; }
code { background: #f4f4f4; padding: 0 0.2em; } figure { margin: 1em 0; }
figcaption { color: #555; font-size: 0.9em; } .note { color: #8a5a00; }
"""


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Items:
    items: list[str]


@dataclass(frozen=True)
class Table:
    """A table written as `tables/<name>.csv`; shown in the report too unless `shown` is false."""

    name: str
    frame: pd.DataFrame
    caption: str = ""
    shown: bool = True


@dataclass(frozen=True)
class Figure:
    name: str
    figure: go.Figure
    caption: str


@dataclass
class Section:
    title: str
    blocks: list = field(default_factory=list)


def cell(value: object) -> str:
    """One table cell: 4 significant digits for floats, n/a for a missing value, times to the second."""
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return "n/a"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, np.generic):
        value = value.item()
    return format_value(value)


def jaccard(value: object) -> str:
    """A Jaccard value in running text: 4 decimals, or n/a."""
    return "n/a" if value is None or pd.isna(value) else f"{value:.4f}"


def display(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.apply(lambda column: column.map(cell)) if not frame.empty else frame.astype(str)


def figures(sections: list[Section]) -> list[Figure]:
    return [block for section in sections for block in section.blocks if isinstance(block, Figure)]


def write_tables(sections: list[Section], folder: Path) -> list[Path]:
    """Every table as CSV (full precision) in `folder`, which holds only the report's tables."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.csv"):
        old.unlink()
    paths = []
    for section in sections:
        for block in section.blocks:
            if isinstance(block, Table):
                path = folder / f"{block.name}.csv"
                whole_numbers(block.frame).to_csv(path, index=False)
                paths.append(path)
    return paths


def markdown(title: str, sections: list[Section]) -> str:
    """The report as Markdown: each figure as its PNG `figures/<name>.png` (written by `write_report`), then
    its caption, which points to the interactive figure in report.html."""
    lines = [f"# {title}", ""]
    number = 0
    for section in sections:
        lines += [f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Text):
                lines += [block.text, ""]
            elif isinstance(block, Items):
                lines += [f"- {item}" for item in block.items] + [""]
            elif isinstance(block, Table):
                lines += (_markdown_table(block) if block.shown else [_csv_only(block)]) + [""]
            elif isinstance(block, Figure):
                number += 1
                alt = re.sub(r"[`*]", "", f"Figure {number}: {block.caption}").replace("[", "\\[").replace("]", "\\]")
                lines += [f"![{alt}]({FIGURE_FOLDER}/{block.name}.png)", ""]
                lines += [f"*Figure {number} (interactive in `report.html`): {block.caption}*", ""]
    return "\n".join(lines).rstrip() + "\n"


def _markdown_table(table: Table) -> list[str]:
    frame = display(table.frame)
    escape = lambda text: str(text).replace("|", "\\|")  # noqa: E731
    lines = [f"**{table.caption}** (`tables/{table.name}.csv`)", ""] if table.caption else []
    if frame.empty:
        return lines + ["(no rows)"]
    lines.append("| " + " | ".join(escape(c) for c in frame.columns) + " |")
    lines.append("|" + "|".join("---" for _ in frame.columns) + "|")
    lines += ["| " + " | ".join(escape(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return lines


def _csv_only(table: Table) -> str:
    return f"{table.caption}: {len(table.frame)} rows in `tables/{table.name}.csv`."


def page(title: str, sections: list[Section]) -> str:
    """The HTML page: plotly.js is embedded once, with the first figure, so the page works offline."""
    body = [f"<h1>{html.escape(title)}</h1>"]
    number = 0
    for section in sections:
        body.append(f"<section><h2>{html.escape(section.title)}</h2>")
        for block in section.blocks:
            if isinstance(block, Text):
                body.append(f"<p>{_inline(block.text)}</p>")
            elif isinstance(block, Items):
                body.append("<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in block.items) + "</ul>")
            elif isinstance(block, Table):
                body.append(_html_table(block) if block.shown else f"<p>{_inline(_csv_only(block))}</p>")
            elif isinstance(block, Figure):
                number += 1
                plot = block.figure.to_html(
                    full_html=False, include_plotlyjs=number == 1, config=PLOTLY_CONFIG, div_id=f"figure-{number}"
                )
                caption = f"Figure {number}: {block.caption}"
                body.append(f"<figure>{plot}<figcaption>{_inline(caption)}</figcaption></figure>")
        body.append("</section>")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def _html_table(table: Table) -> str:
    frame = display(table.frame)
    caption = f"<caption>{html.escape(table.caption)}</caption>" if table.caption else ""
    if frame.empty:
        return f"<table>{caption}<tr><td>(no rows)</td></tr></table>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>" for row in frame.itertuples(index=False)
    )
    return f'<table id="table-{table.name}">{caption}<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


def _inline(text: str) -> str:
    """Markdown's `code` and **bold** as HTML, everything else escaped."""
    escaped = html.escape(text)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", escaped)
