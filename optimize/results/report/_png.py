"""A plotly figure drawn as a PNG with matplotlib, so `REPORT.md` shows figures where no browser exists.

plotly's own image export needs Chrome (kaleido), which GPU nodes lack. This reads a figure's traces and
layout, generically, so every report figure, and any added later, gets a PNG with no code of its own:

- the subplots are placed as their axis domains say (`make_subplots` grids, spans included), with the
  subplot titles, axis titles, category, date and log axes, reversed axes, integer ticks and the layout title;
- each trace type has one small drawing function in `DRAWERS`; a type without one is drawn as a placeholder
  text in its panel, and a trace that fails to draw likewise, so a figure never stops the report;
- legends (below the plots), colour bars, error bars, line shapes (`add_vline`) and annotations follow.

Only `matplotlib.figure.Figure` and the Agg canvas are used, never pyplot, so no display is needed; Agg
is made matplotlib's backend only where nothing chose one (see `_use_agg_unless_chosen`).
"""

from __future__ import annotations

import base64
import html
import math
import re
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.dates as mdates
import numpy as np
import pandas as pd
import plotly.colors
import plotly.graph_objects as go
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LinearSegmentedColormap, Normalize, to_rgba
from matplotlib.figure import Figure as MplFigure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import FuncFormatter, MaxNLocator, MultipleLocator
from matplotlib.transforms import blended_transform_factory

from optimize.results.formatting import is_missing

DPI = 150  # plotly's pixels are drawn as 1/100 inch, so a 1000 px wide figure is 1500 px wide: sharp text
PX_PER_INCH = 100
DEFAULT_SIZE = (1000, 450)  # px, where the layout gives no width or height
POINTS_PER_PX = 72 / PX_PER_INCH
MS_PER_DAY = 86_400_000  # plotly bar lengths on a date axis are milliseconds; matplotlib dates are days
TEXT_COLOUR = "#2a3f5f"  # plotly's
GRID_COLOUR = "#e6e9ef"
FALLBACK_COLOURS = plotly.colors.qualitative.Plotly
DASHES = {"solid": "-", "dot": ":", "dash": "--", "dashdot": "-.", "longdash": (0, (8, 3)), "longdashdot": "-."}
STEPS = {"hv": "steps-post", "vh": "steps-pre", "hvh": "steps-mid"}
SYMBOLS = {
    "circle": "o",
    "square": "s",
    "diamond": "D",
    "cross": "P",
    "x": "X",
    "triangle-up": "^",
    "triangle-down": "v",
    "triangle-left": "<",
    "triangle-right": ">",
    "pentagon": "p",
    "hexagon": "h",
    "hexagram": "*",
    "star": "*",
    "star-square": "s",
    "star-diamond": "D",
    "line-ns": "|",
    "line-ew": "_",
    "asterisk": "*",
    "hourglass": "d",
}
SYMBOL_NUMBERS = list(SYMBOLS)[:9]  # plotly's symbol numbers 0–8 are the first nine names, in this order
DATE_TEXT = re.compile(r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?$")
TEMPLATE_FIELD = re.compile(r"%\{([a-z]+)(?:\[(\d+)\])?(?::([^}]*))?\}")
LONGEST_TICK_LABEL = 40
MIN_TICK_FONT = 6.5  # points: category labels shrink to this before only every k-th is shown


def _use_agg_unless_chosen() -> None:
    """Agg as matplotlib's backend when nobody chose one.

    With none chosen, matplotlib imports pyplot to pick one the first time all rcParams are read (boxplot
    does), which probes GUI toolkits. A backend already chosen (MPLBACKEND, matplotlibrc, pyplot in use) is
    left alone: this module draws on its own Agg canvas whatever the backend.
    """
    if "matplotlib.pyplot" not in sys.modules and matplotlib.rcParams._get_backend_or_none() is None:
        matplotlib.use("Agg")


_use_agg_unless_chosen()


def write_png(figure: go.Figure, path: str | Path) -> list[str]:
    """Draw `figure` as a PNG file at `path`; return what could not be drawn (empty when everything was)."""
    drawn, notes = draw(figure)
    drawn.savefig(path, format="png", dpi=DPI, facecolor="white")
    return notes


def draw(figure: go.Figure) -> tuple[MplFigure, list[str]]:
    """`figure` drawn on a matplotlib figure with an Agg canvas, laid out; and what could not be drawn."""
    drawing = _Drawing(figure)
    drawing.finish(FigureCanvasAgg(drawing.fig))
    return drawing.fig, drawing.notes


# --- plotly values as numbers, categories and text -------------------------------------------------------


def _values(raw: Any) -> list:
    """A data array as a flat list; plotly's base64 typed arrays are decoded; a scalar is one value."""
    if raw is None:
        return []
    if isinstance(raw, dict) and "bdata" in raw:
        array = np.frombuffer(base64.b64decode(raw["bdata"]), dtype=np.dtype(raw.get("dtype", "f8")))
        return list(array)
    if isinstance(raw, np.ndarray):
        return list(raw.ravel())
    if isinstance(raw, list | tuple | pd.Series | pd.Index):
        return list(raw)
    return [raw]


def _numbers(raw: Any) -> np.ndarray:
    values = _values(raw)
    return pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(dtype=float)


def _grid(raw: Any) -> np.ndarray:
    """A 2-D array of numbers (a heatmap's z); missing or text cells are NaN, a 1-D z is one row."""
    if isinstance(raw, dict) and "bdata" in raw:
        shape = [int(size) for size in str(raw.get("shape", "")).split(",") if size.strip()]
        return _numbers(raw).reshape(shape or (1, -1))
    if isinstance(raw, np.ndarray):
        rows = [_values(row) for row in np.atleast_2d(raw)]
    else:
        rows = [_values(row) for row in (raw or [])]
        if rows and all(len(row) == 1 for row in rows) and not isinstance(raw[0], list | tuple | np.ndarray):
            rows = [_values(raw)]
    frame = pd.DataFrame(rows, dtype=object)
    return frame.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)


def _category(value: Any) -> str:
    """A category's label as plotly shows it: 4.0 as "4", 0.1 as "0.1"."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _is_number(value: Any) -> bool:
    if isinstance(value, bool | np.bool_):
        return False
    if isinstance(value, int | float | np.number):
        return True
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return False
        return True
    return False


def _is_date(value: Any) -> bool:
    if isinstance(value, datetime | date | np.datetime64 | pd.Timestamp):
        return True
    return isinstance(value, str) and bool(DATE_TEXT.match(value))


def _plain(text: Any) -> str:
    """plotly's HTML-ish text as plain text: <br> is a new line, tags dropped, `$` kept literal (no mathtext)."""
    if text is None:
        return ""
    text = re.sub(r"<br\s*/?>", "\n", str(text), flags=re.IGNORECASE)
    text = html.unescape(re.sub(r"<[^>]+>", "", text))
    return text.replace("$", r"\$")


def _title(spec: Any) -> str:
    """A title given as {"text": ...} (as plotly stores it) or as a plain string."""
    return _plain(spec.get("text") if isinstance(spec, dict) else spec)


def _d3(value: float, spec: str) -> str:
    """A number in a d3 format (plotly's tickformat and %{z:.3g}), for the common Python-compatible ones."""
    spec = spec.replace("~", "")
    try:
        if spec.endswith("d"):
            return format(int(round(value)), spec)
        return format(value, spec[:-1] + "g" if spec.endswith(("s", "r")) else spec)
    except (ValueError, TypeError):
        return _category(value)


def _fill_template(template: str, fields: dict[str, Any]) -> str:
    """`%{z:.3g}`-style templates filled from `fields`; plotly's <extra> part dropped."""

    def replace(match: re.Match) -> str:
        value = fields.get(match.group(1))
        if match.group(2) is not None and isinstance(value, list | tuple | np.ndarray):
            value = value[int(match.group(2))]
        if is_missing(value):
            return ""
        fmt = match.group(3)
        return _d3(float(value), fmt) if fmt and _is_number(value) else _category(value)

    return _plain(TEMPLATE_FIELD.sub(replace, re.sub(r"<extra>.*?</extra>", "", template)))


# --- colours ------------------------------------------------------------------------------------------------


def _rgba(colour: Any, fallback: Any = "#888888") -> tuple[float, float, float, float]:
    """A CSS colour as plotly accepts it (hex, name, rgb(), rgba()) as matplotlib's RGBA."""
    if isinstance(colour, str):
        found = re.fullmatch(r"\s*rgba?\(([^)]*)\)\s*", colour)
        if found:
            parts = [float(part) for part in found.group(1).replace("/", ",").split(",") if part.strip()]
            alpha = parts[3] if len(parts) > 3 else 1.0
            return (parts[0] / 255, parts[1] / 255, parts[2] / 255, alpha)
        colour = colour.strip().replace(" ", "")
    try:
        return to_rgba(colour)
    except (ValueError, TypeError):
        return to_rgba(fallback)


def _colormap(scale: Any, reverse: bool = False, default: Any = "Viridis") -> LinearSegmentedColormap:
    """A plotly colorscale (a name such as "Magma_r", or [[position, colour], ...]) as a matplotlib colormap."""
    try:
        stops = plotly.colors.get_colorscale(scale) if isinstance(scale, str) else [list(stop) for stop in scale]
    except Exception:  # plotly raises its own error types for an unknown name
        stops = plotly.colors.get_colorscale(default if isinstance(default, str) else "Viridis")
    colours = [(float(position), _rgba(colour)) for position, colour in stops]
    cmap = LinearSegmentedColormap.from_list("plotly", colours)
    return cmap.reversed() if reverse else cmap


def _ink_on(background: tuple) -> str:
    """Black or white, whichever reads better on `background`."""
    red, green, blue = background[:3]
    return "black" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.55 else "white"


# --- axes: plotly's category, date, linear and log axes as positions --------------------------------------


@dataclass
class _Scale:
    """One plotly axis (xaxis2, ...): its kind and, for a category axis, its categories in plotly's order."""

    name: str
    spec: dict
    kind: str = "linear"
    categories: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, name: str, spec: dict, samples: list) -> _Scale:
        kind = spec.get("type") or "-"
        present = [value for value in samples if not is_missing(value)]
        if kind in ("-", "multicategory"):
            if present and all(_is_date(value) for value in present):
                kind = "date"
            elif all(_is_number(value) for value in present):
                kind = "linear"
            else:
                kind = "category"
        categories = list(dict.fromkeys(_category(value) for value in present)) if kind == "category" else []
        order = spec.get("categoryorder", "trace")
        if order in ("category ascending", "category descending"):
            categories.sort(key=_natural, reverse=order == "category descending")
        elif order == "array":
            wanted = [_category(value) for value in _values(spec.get("categoryarray"))]
            categories = wanted + [label for label in categories if label not in wanted]
        return cls(name, spec, kind, categories)

    def positions(self, raw: Any) -> np.ndarray:
        values = _values(raw)
        if self.kind == "category":
            index = {label: position for position, label in enumerate(self.categories)}
            return np.array([index.get(_category(value), np.nan) for value in values], dtype=float)
        if self.kind == "date":
            times = pd.to_datetime(pd.Series(values, dtype=object), errors="coerce")
            return np.array([mdates.date2num(time) if not pd.isna(time) else np.nan for time in times], dtype=float)
        return _numbers(values)


def _natural(label: str) -> tuple:
    """Numbers in numeric order, before text, as plotly's "category ascending" sorts."""
    return (0, float(label), "") if _is_number(label) else (1, 0.0, label)


def _axis_name(ref: str | None, letter: str) -> str:
    """A trace's axis reference ("x2") as its layout key ("xaxis2")."""
    ref = ref or letter
    return f"{letter}axis{ref[1:]}"


# --- panels: one matplotlib Axes per plotly subplot ---------------------------------------------------------


@dataclass
class _Panel:
    ax: Axes
    x: _Scale | None
    y: _Scale | None
    placeholders: list[str] = field(default_factory=list)
    bar_traces: list[int] = field(default_factory=list)  # indices of the bar traces drawn side by side here
    stacks: dict = field(default_factory=dict)  # (orientation, position, sign) -> stacked length so far
    labels: list = field(default_factory=list)  # (rectangle, text, colour, inside): texts shown when they fit

    def scale(self, letter: str) -> _Scale:
        return self.x if letter == "x" else self.y


@dataclass
class _Trace:
    """What a drawing function gets: the trace's plotly JSON, its panel, its colour and the layout."""

    spec: dict
    index: int
    colour: str
    panel: _Panel
    layout: dict

    @property
    def ax(self) -> Axes:
        return self.panel.ax

    @property
    def horizontal(self) -> bool:
        return self.spec.get("orientation") == "h"

    def get(self, *keys: str, default: Any = None) -> Any:
        """A nested attribute, e.g. get("marker", "line", "width"); `default` when any level is missing."""
        value: Any = self.spec
        for key in keys:
            if not isinstance(value, dict) or value.get(key) is None:
                return default
            value = value[key]
        return value

    @property
    def alpha(self) -> float:
        return float(self.spec.get("opacity", 1.0))


# --- one function per trace type -----------------------------------------------------------------------------


def _bar(trace: _Trace) -> Artist:
    """Vertical or horizontal bars: grouped (plotly's default), overlaid or stacked; base, error bars and text."""
    horizontal = trace.horizontal
    along, across = ("x", "y") if horizontal else ("y", "x")
    lengths = _numbers(trace.spec.get(along))
    raw_positions = trace.spec.get(across)
    positions = trace.panel.scale(across).positions(raw_positions) if raw_positions is not None else None
    if positions is None or len(positions) == 0:
        positions = np.arange(len(lengths), dtype=float)
    count = min(len(lengths), len(positions))
    lengths, positions = lengths[:count], positions[:count]
    value_scale = trace.panel.scale(along)
    base = trace.spec.get("base")
    if value_scale.kind == "date":
        starts = value_scale.positions(base) if base is not None else np.zeros(count)
        starts = np.resize(starts, count)
        lengths = lengths / MS_PER_DAY if base is not None else value_scale.positions(trace.spec.get(along))[:count]
    else:
        starts = np.resize(_numbers(base), count) if base is not None else np.zeros(count)

    mode = trace.layout.get("barmode", "group")
    slot = 1.0 if trace.panel.scale(across).kind == "category" else _slot(positions)
    width = slot * (1 - float(trace.layout.get("bargap", 0.2)))
    offset = np.zeros(count)
    if trace.spec.get("width") is not None:
        width = np.resize(_numbers(trace.spec["width"]), count)
    elif mode == "group" and len(trace.panel.bar_traces) > 1:
        slots = trace.panel.bar_traces
        width = width / len(slots)
        offset += (slots.index(trace.index) - (len(slots) - 1) / 2) * width
    if mode in ("stack", "relative") and base is None:
        for k, (position, length) in enumerate(zip(positions, lengths, strict=True)):
            key = (horizontal, position, length < 0 if mode == "relative" else False)
            starts[k] = trace.panel.stacks.get(key, 0.0)
            trace.panel.stacks[key] = starts[k] + (0 if np.isnan(length) else length)

    colours, mappable = _marker_colours(trace, count)
    style = {"color": colours, "alpha": trace.alpha}
    if horizontal:
        bars = trace.ax.barh(positions + offset, lengths, height=width, left=starts, **style)
        _error_bars(trace, starts + lengths, positions + offset)
    else:
        bars = trace.ax.bar(positions + offset, lengths, width=width, bottom=starts, **style)
        _error_bars(trace, positions + offset, starts + lengths)
    _colour_bar(trace, mappable, trace.get("marker", default={}))
    _bar_labels(trace, bars, colours)
    return Patch(facecolor=colours if isinstance(colours, tuple) else trace.colour, alpha=trace.alpha)


def _slot(positions: np.ndarray) -> float:
    """The room one bar has on a numeric or date axis: the smallest gap between its positions."""
    distinct = np.unique(positions[~np.isnan(positions)])
    return float(np.min(np.diff(distinct))) if len(distinct) > 1 else 1.0


def _bar_labels(trace: _Trace, bars: Any, colours: Any) -> None:
    """The bars' `text`, inside each bar when it fits there (plotly's uniformtext "hide"), else left out."""
    texts = _values(trace.spec.get("text"))
    if not texts or trace.spec.get("textposition") == "none":
        return
    inside = trace.spec.get("textposition", "auto") in ("inside", "auto")
    fill = colours if isinstance(colours, list) else [colours] * len(bars)
    for rectangle, text, colour in zip(bars, np.resize(np.array(texts, dtype=object), len(bars)), fill, strict=False):
        if not is_missing(text):
            trace.panel.labels.append((rectangle, _plain(text), _rgba(colour), inside))


def _scatter(trace: _Trace) -> Artist:
    """Markers, lines or both (plotly's default: both below 20 points), with error bars and text."""
    ys = trace.panel.y.positions(trace.spec.get("y"))
    xs = (
        trace.panel.x.positions(trace.spec["x"]) if trace.spec.get("x") is not None else np.arange(len(ys), dtype=float)
    )
    if trace.spec.get("y") is None:
        ys = np.arange(len(xs), dtype=float)
    count = min(len(xs), len(ys))
    xs, ys = xs[:count], ys[:count]
    mode = trace.spec.get("mode") or ("lines+markers" if count < 20 else "lines")
    colour = trace.get("line", "color", default=None) or trace.colour
    handle_style: dict[str, Any] = {"color": _rgba(colour), "linestyle": "none"}
    if "lines" in mode:
        style = _line_style(trace, colour)
        trace.ax.plot(xs, ys, drawstyle=STEPS.get(trace.get("line", "shape", default="linear"), "default"), **style)
        handle_style.update(style)
    if "markers" in mode:
        handle_style.update(_markers(trace, xs, ys))
    if "text" in mode:
        for x, y, text in zip(xs, ys, _values(trace.spec.get("text")), strict=False):
            trace.ax.annotate(_plain(text), (x, y), xytext=(0, 6), textcoords="offset points", ha="center", fontsize=8)
    _error_bars(trace, xs, ys)
    return Line2D([], [], **handle_style)


def _line_style(trace: _Trace, colour: Any) -> dict[str, Any]:
    width = float(trace.get("line", "width", default=2))
    dash = trace.get("line", "dash", default="solid")
    return {
        "color": _rgba(colour),
        "linewidth": width * POINTS_PER_PX,
        "linestyle": DASHES.get(dash, "--"),
        "alpha": trace.alpha,
    }


def _markers(trace: _Trace, xs: np.ndarray, ys: np.ndarray) -> dict[str, Any]:
    """The markers, one scatter call per symbol; returns the legend handle's marker style."""
    count = len(xs)
    marker = trace.get("marker", default={})
    sizes = np.resize(_numbers(marker.get("size", 6)), count) if count else np.array([])
    symbols = [_symbol(value) for value in np.resize(np.array(_values(marker.get("symbol", "circle")), object), count)]
    colours, mappable = _marker_colours(trace, count)
    edge = marker.get("line") or {}
    alpha = float(marker.get("opacity", 1.0)) * trace.alpha if _is_number(marker.get("opacity", 1.0)) else trace.alpha
    outline = _rgba(edge.get("color"), TEXT_COLOUR) if edge.get("width") else "none"
    for shape, hollow in dict.fromkeys(symbols):
        chosen = np.array([symbol == (shape, hollow) for symbol in symbols])
        chosen_colours = [colours[k] for k in np.flatnonzero(chosen)] if isinstance(colours, list) else colours
        trace.ax.scatter(
            xs[chosen],
            ys[chosen],
            s=(sizes[chosen] * POINTS_PER_PX) ** 2,
            marker=shape,
            facecolors="none" if hollow else chosen_colours,
            edgecolors=chosen_colours if hollow else outline,
            linewidths=float(edge.get("width", 1.5 if hollow else 0)) * POINTS_PER_PX,
            alpha=alpha,
            zorder=3,
        )
    _colour_bar(trace, mappable, marker)
    shape, hollow = symbols[0] if symbols else ("o", False)
    plain = colours if isinstance(colours, tuple) else _rgba(trace.colour)
    return {
        "marker": shape,
        "markersize": float(sizes[0] if count else 6) * POINTS_PER_PX,
        "markerfacecolor": "none" if hollow else plain,
        "markeredgecolor": plain,
        "markeredgewidth": 0 if not hollow else 1,
    }


def _symbol(value: Any) -> tuple[str, bool]:
    """A plotly marker symbol (name or number, "-open" for hollow) as (matplotlib marker, hollow)."""
    if _is_number(value) and not isinstance(value, str):
        number = int(value)
        name = SYMBOL_NUMBERS[number % 100] if number % 100 < len(SYMBOL_NUMBERS) else "circle"
        return SYMBOLS[name], number // 100 % 2 == 1  # +100: open, +200: dot, +300: open-dot
    name = str(value)
    hollow = "-open" in name
    name = name.replace("-open", "").replace("-dot", "")
    return SYMBOLS.get(name, SYMBOLS.get(name.split("-")[0], "o")), hollow


def _marker_colours(trace: _Trace, count: int) -> tuple[Any, Any]:
    """The marker colour: one RGBA, or a list of RGBA (colours given per point, or numbers through a
    colorscale, then with the ScalarMappable that a colour bar shows)."""
    marker = trace.get("marker", default={})
    given = marker.get("color")
    values = _values(given) if isinstance(given, list | tuple | np.ndarray | dict) else []
    if not values:
        return _rgba(given if isinstance(given, str) else trace.colour), None
    if all(_is_number(value) for value in values if not is_missing(value)) and not any(
        isinstance(value, str) for value in values
    ):
        numbers = _numbers(values)
        cmap = _colormap(marker.get("colorscale", "Viridis"), bool(marker.get("reversescale")))
        low = marker.get("cmin", np.nanmin(numbers) if np.isfinite(numbers).any() else 0)
        high = marker.get("cmax", np.nanmax(numbers) if np.isfinite(numbers).any() else 1)
        mappable = ScalarMappable(Normalize(low, high), cmap)
        return [tuple(colour) for colour in mappable.to_rgba(np.resize(numbers, count))], mappable
    return [_rgba(value) for value in np.resize(np.array(values, dtype=object), count)], None


def _colour_bar(trace: _Trace, mappable: Any, owner: dict) -> None:
    if mappable is None or not owner.get("showscale"):
        return
    bar = trace.ax.figure.colorbar(mappable, ax=trace.ax, fraction=0.08, pad=0.02)
    bar.set_label(_title((owner.get("colorbar") or {}).get("title")), color=TEXT_COLOUR)
    bar.ax.tick_params(labelsize=8, colors=TEXT_COLOUR)
    bar.outline.set_visible(False)


def _error_bars(trace: _Trace, xs: np.ndarray, ys: np.ndarray) -> None:
    """error_x and error_y (data arrays, percent, constant, sqrt) at the points (xs, ys): bar ends or markers."""
    for key, values in (("error_x", xs), ("error_y", ys)):
        spec = trace.spec.get(key) or {}
        if not spec or spec.get("visible") is False or not len(values):
            continue
        errors = _error_sizes(spec, values)
        if errors is None:
            continue
        colour = _rgba(spec.get("color"), TEXT_COLOUR) if spec.get("color") else to_rgba(TEXT_COLOUR)
        trace.ax.errorbar(
            xs,
            ys,
            **{"xerr" if key == "error_x" else "yerr": errors},
            fmt="none",
            ecolor=colour,
            elinewidth=float(spec.get("thickness", 2)) * POINTS_PER_PX,
            capsize=float(spec.get("width", 4)) * POINTS_PER_PX,
            zorder=4,
        )


def _error_sizes(spec: dict, values: np.ndarray) -> np.ndarray | None:
    """The (2, n) error sizes, minus then plus, as plotly's error_x / error_y describe them."""
    kind = spec.get("type") or ("data" if spec.get("array") is not None else "percent")
    count = len(values)
    if kind == "data":
        if spec.get("array") is None:
            return None
        plus = np.resize(_numbers(spec["array"]), count)
        asymmetric = spec.get("symmetric") is False or (
            spec.get("symmetric") is None and spec.get("arrayminus") is not None
        )
        minus = np.resize(_numbers(spec["arrayminus"]), count) if asymmetric else plus
    elif kind == "percent":
        plus = minus = np.abs(values) * float(spec.get("value", 10)) / 100
    elif kind == "constant":
        plus = minus = np.full(count, float(spec.get("value", 10)))
    else:  # sqrt
        plus = minus = np.sqrt(np.abs(values))
    return np.vstack([np.nan_to_num(minus), np.nan_to_num(plus)])


def _distribution_groups(trace: _Trace) -> tuple[bool, list[tuple[float, np.ndarray]]]:
    """A violin's or box's values grouped by position: (horizontal, [(position, values), ...])."""
    spec = trace.spec
    horizontal = spec.get("orientation") == "h" or (spec.get("orientation") is None and spec.get("y") is None)
    along, across = ("x", "y") if horizontal else ("y", "x")
    values = _numbers(spec.get(along))
    if spec.get(across) is not None:
        positions = trace.panel.scale(across).positions(spec[across])
    else:
        positions = trace.panel.scale(across).positions([spec.get("name", f"trace {trace.index}")] * len(values))
    positions = np.resize(positions, len(values))
    groups = []
    for position in dict.fromkeys(positions[~np.isnan(positions)]):
        chosen = values[(positions == position) & ~np.isnan(values)]
        if len(chosen):
            groups.append((float(position), chosen))
    return horizontal, groups


def _violin(trace: _Trace) -> Artist:
    """Violins (density between the lowest and highest value), optional inner box, mean line and points."""
    horizontal, groups = _distribution_groups(trace)
    colour = _rgba(
        trace.get("line", "color", default=None) or trace.get("marker", "color", default=None) or trace.colour
    )
    orientation = "horizontal" if horizontal else "vertical"
    width = 0.8 if trace.spec.get("width") in (None, 0) else float(trace.spec["width"])
    for position, values in groups:
        body = None
        if np.unique(values).size > 1:  # one value has no density: only its point is drawn
            parts = trace.ax.violinplot([values], [position], widths=width, showextrema=False, orientation=orientation)
            body = parts["bodies"][0]
            body.set(facecolor=colour[:3] + (0.35,), edgecolor=colour, linewidth=1.2)
        if trace.get("box", "visible", default=False):
            _box_artist(trace, [values], [position], 0.12 * width, orientation, colour)
        if trace.get("meanline", "visible", default=False):
            mean = float(np.mean(values))
            half = _violin_half_width(body, position, mean, horizontal) if body is not None else width * 0.1
            _span(trace.ax, position, mean, half, horizontal, colour)
        _points(trace, values, position, width, horizontal, colour, trace.spec.get("points", "outliers"))
    return Patch(facecolor=colour[:3] + (0.35,), edgecolor=colour)


def _violin_half_width(body: Any, position: float, value: float, horizontal: bool) -> float:
    """How wide the violin's body is at `value`, so its mean line spans the body as in plotly."""
    vertices = body.get_paths()[0].vertices
    along, across = (vertices[:, 0], vertices[:, 1]) if horizontal else (vertices[:, 1], vertices[:, 0])
    side = across >= position
    order = np.argsort(along[side])
    return float(np.interp(value, along[side][order], across[side][order] - position))


def _box(trace: _Trace) -> Artist:
    """Box plots from raw values (or from given q1/median/q3), with points as `boxpoints` says."""
    colour = _rgba(
        trace.get("line", "color", default=None) or trace.get("marker", "color", default=None) or trace.colour
    )
    width = 0.5 if trace.spec.get("width") in (None, 0) else float(trace.spec["width"])
    if trace.spec.get("q1") is not None and trace.spec.get("y") is None and trace.spec.get("x") is None:
        return _box_from_quartiles(trace, colour, width)
    horizontal, groups = _distribution_groups(trace)
    orientation = "horizontal" if horizontal else "vertical"
    shown_points = trace.spec.get("boxpoints", "outliers")
    for position, values in groups:
        _box_artist(trace, [values], [position], width, orientation, colour)
        if trace.spec.get("boxmean"):
            _span(trace.ax, position, float(np.mean(values)), width / 2, horizontal, colour, dash="--")
        _points(trace, values, position, width, horizontal, colour, shown_points)
    return Patch(facecolor=colour[:3] + (0.3,), edgecolor=colour)


def _box_from_quartiles(trace: _Trace, colour: tuple, width: float) -> Artist:
    horizontal = trace.horizontal
    across = "y" if horizontal else "x"
    q1, median, q3 = (_numbers(trace.spec.get(key)) for key in ("q1", "median", "q3"))
    low = _numbers(trace.spec.get("lowerfence")) if trace.spec.get("lowerfence") is not None else q1
    high = _numbers(trace.spec.get("upperfence")) if trace.spec.get("upperfence") is not None else q3
    raw = trace.spec.get(across)
    positions = trace.panel.scale(across).positions(raw) if raw is not None else np.arange(len(q1), dtype=float)
    stats = [
        {"q1": a, "med": m, "q3": b, "whislo": lo, "whishi": hi, "fliers": []}
        for a, m, b, lo, hi in zip(q1, median, q3, np.resize(low, len(q1)), np.resize(high, len(q1)), strict=False)
    ]
    trace.ax.bxp(
        stats,
        positions=np.resize(positions, len(stats)),
        widths=width,
        orientation="horizontal" if horizontal else "vertical",
        patch_artist=True,
        boxprops={"facecolor": colour[:3] + (0.3,), "edgecolor": colour},
        medianprops={"color": colour},
        whiskerprops={"color": colour},
        capprops={"color": colour},
        manage_ticks=False,
    )
    return Patch(facecolor=colour[:3] + (0.3,), edgecolor=colour)


def _box_artist(trace: _Trace, data: list, positions: list, width: float, orientation: str, colour: tuple) -> None:
    """A filled box with median and whiskers (1.5 interquartile ranges); points are drawn by `_points`."""
    fill = (
        _rgba(trace.spec.get("fillcolor"), colour[:3] + (0.3,)) if trace.spec.get("fillcolor") else colour[:3] + (0.3,)
    )
    line_width = float(trace.get("line", "width", default=2)) * POINTS_PER_PX * 0.75
    props = {"color": colour, "linewidth": line_width}
    trace.ax.boxplot(
        data,
        positions=positions,
        widths=width,
        orientation=orientation,
        patch_artist=True,
        showfliers=False,
        manage_ticks=False,
        boxprops={"facecolor": fill, "edgecolor": colour, "linewidth": line_width},
        medianprops=props,
        whiskerprops=props,
        capprops=props,
    )


def _span(ax: Axes, position: float, value: float, half: float, horizontal: bool, colour: tuple, dash="-") -> None:
    """A short line across a violin or box at `value` (the mean)."""
    if horizontal:
        ax.plot([value, value], [position - half, position + half], color=colour, linewidth=1.5, linestyle=dash)
    else:
        ax.plot([position - half, position + half], [value, value], color=colour, linewidth=1.5, linestyle=dash)


def _points(
    trace: _Trace, values: np.ndarray, position: float, width: float, horizontal: bool, colour: tuple, shown: Any
) -> None:
    """A violin's or box's points: all, or the outliers beyond 1.5 interquartile ranges; jittered, seeded."""
    if shown in (False, None, "false"):
        return
    if shown != "all":
        q1, q3 = np.percentile(values, [25, 75])
        values = values[(values < q1 - 1.5 * (q3 - q1)) | (values > q3 + 1.5 * (q3 - q1))]
    if not len(values):
        return
    jitter = float(trace.spec.get("jitter", 0.3 if shown == "all" else 0))
    offset = float(trace.spec.get("pointpos", 0)) * width / 2
    spread = np.random.default_rng(trace.index).uniform(-1, 1, len(values)) * jitter * width / 4
    across = position + offset + spread
    xs, ys = (values, across) if horizontal else (across, values)
    size = float(trace.get("marker", "size", default=6)) * POINTS_PER_PX
    trace.ax.scatter(xs, ys, s=size**2, color=colour, alpha=0.8, linewidths=0, zorder=3)


def _heatmap(trace: _Trace) -> Artist | None:
    """A heatmap on category or numeric axes; missing cells left blank; cell texts from texttemplate or text."""
    z = _grid(trace.spec.get("z"))
    if z.size == 0:
        return None
    if trace.spec.get("transpose"):
        z = z.T
    x_edges, columns = _cells(trace.panel.x, trace.spec.get("x"), z.shape[1])
    y_edges, rows = _cells(trace.panel.y, trace.spec.get("y"), z.shape[0])
    full = np.full((len(y_edges) - 1, len(x_edges) - 1), np.nan)
    for row, full_row in enumerate(rows):
        for column, full_column in enumerate(columns):
            if full_row >= 0 and full_column >= 0:
                full[full_row, full_column] = z[row, column]
    default_scale = (trace.layout.get("colorscale") or {}).get("sequential") or "Plasma"
    cmap = _colormap(trace.spec.get("colorscale", default_scale), bool(trace.spec.get("reversescale")))
    finite = full[np.isfinite(full)]
    low = trace.spec.get("zmin", finite.min() if finite.size else 0.0)
    high = trace.spec.get("zmax", finite.max() if finite.size else 1.0)
    mesh = trace.ax.pcolormesh(x_edges, y_edges, np.ma.masked_invalid(full), cmap=cmap, vmin=low, vmax=high)
    if trace.spec.get("showscale", True):
        _colour_bar(trace, mesh, {"showscale": True, "colorbar": trace.spec.get("colorbar")})
    template, texts = trace.spec.get("texttemplate"), trace.spec.get("text")
    if template or texts is not None:
        _cell_texts(trace, z, x_edges, y_edges, rows, columns, mesh)
    return None


def _cells(scale: _Scale, raw: Any, count: int) -> tuple[np.ndarray, list[int]]:
    """A heatmap axis as cell edges, and for each of z's columns (or rows) its cell among them."""
    if scale.kind == "category" and raw is not None:
        positions = scale.positions(raw)[:count]
        return np.arange(len(scale.categories) + 1) - 0.5, [int(p) if not np.isnan(p) else -1 for p in positions]
    centres = scale.positions(raw) if raw is not None else np.arange(count, dtype=float)
    if len(centres) == count + 1:  # plotly accepts the edges themselves
        return np.sort(centres), list(np.argsort(np.argsort(centres[:-1])))
    centres = np.resize(centres, count)
    order = np.argsort(centres)
    ordered = centres[order]
    gaps = np.diff(ordered) if count > 1 else np.array([1.0])
    middles = ordered[:-1] + gaps / 2
    edges = np.concatenate([[ordered[0] - gaps[0] / 2], middles, [ordered[-1] + gaps[-1] / 2]])
    return edges, list(np.argsort(order))


def _cell_texts(
    trace: _Trace, z: np.ndarray, x_edges: np.ndarray, y_edges: np.ndarray, rows: list, columns: list, mesh: Any
) -> None:
    """Each cell's text (texttemplate, else text) in black or white, whichever reads on the cell's colour."""
    template = trace.spec.get("texttemplate") or "%{text}"
    texts = trace.spec.get("text")
    xs, ys = _values(trace.spec.get("x")), _values(trace.spec.get("y"))
    for row, full_row in enumerate(rows):
        for column, full_column in enumerate(columns):
            value = z[row, column]
            if full_row < 0 or full_column < 0 or (np.isnan(value) and "%{z" in template):
                continue
            fields = {"z": value, "x": xs[column] if column < len(xs) else column}
            fields |= {"y": ys[row] if row < len(ys) else row}
            if texts is not None:
                fields["text"] = texts[row][column] if isinstance(texts[row], list | np.ndarray) else texts[row]
            text = _fill_template(template, fields)
            centre = (
                (x_edges[full_column] + x_edges[full_column + 1]) / 2,
                (y_edges[full_row] + y_edges[full_row + 1]) / 2,
            )
            ink = _ink_on(mesh.cmap(mesh.norm(value))) if not np.isnan(value) else TEXT_COLOUR
            trace.ax.text(*centre, text, ha="center", va="center", fontsize=8, color=ink)


def _histogram(trace: _Trace) -> Artist:
    """A histogram of raw values, binned by matplotlib ("auto" bins) since plotly bins in the browser."""
    horizontal = trace.spec.get("orientation") == "h" or (
        trace.spec.get("x") is None and trace.spec.get("y") is not None
    )
    values = _numbers(trace.spec.get("y" if horizontal else "x"))
    values = values[~np.isnan(values)]
    colour = _rgba(trace.get("marker", "color", default=None) or trace.colour)
    if len(values):
        trace.ax.hist(
            values, bins="auto", orientation="horizontal" if horizontal else "vertical", color=colour, alpha=trace.alpha
        )
    return Patch(facecolor=colour, alpha=trace.alpha)


DRAWERS: dict[str, Callable[[_Trace], Artist | None]] = {
    "bar": _bar,
    "scatter": _scatter,
    "scattergl": _scatter,
    "violin": _violin,
    "box": _box,
    "heatmap": _heatmap,
    "histogram": _histogram,
}
"""Trace type → the function drawing it. A type missing here is drawn as a placeholder text."""
NO_LEGEND_BY_DEFAULT = {"heatmap", "contour", "histogram2d", "histogram2dcontour", "surface"}


# --- the whole figure ---------------------------------------------------------------------------------------


class _Drawing:
    """One plotly figure drawn onto one matplotlib figure: panels, traces, decorations, legend."""

    def __init__(self, figure: go.Figure) -> None:
        spec = figure.to_plotly_json()
        self.layout: dict = {key: value for key, value in spec.get("layout", {}).items() if key != "template"}
        template = (spec.get("layout", {}).get("template") or {}).get("layout") or {}
        self.layout.setdefault("colorscale", template.get("colorscale"))
        self.colorway = list(self.layout.get("colorway") or template.get("colorway") or FALLBACK_COLOURS)
        self.traces: list[dict] = list(spec.get("data", []))
        self.cartesian = ["xaxis" in trace for trace in figure.data]
        self.notes: list[str] = []
        self.legend: dict[str, Artist] = {}

        width = float(self.layout.get("width") or DEFAULT_SIZE[0])
        height = float(self.layout.get("height") or DEFAULT_SIZE[1])
        self.width = width
        legend_rows, self.legend_columns = self._legend_shape(width)
        height += 22 * legend_rows + (20 if legend_rows and self._legend_title() else 0)
        self.fig = MplFigure(figsize=(width / PX_PER_INCH, height / PX_PER_INCH), layout="constrained")
        self.fig.set_facecolor("white")
        self.fig.get_layout_engine().set(h_pad=0.06, w_pad=0.08, hspace=0.06, wspace=0.04)
        self.scales = self._scales()
        self.panels = self._panels()
        self._draw_traces()
        for panel in self.panels.values():
            self._style_panel(panel)
        self._decorations()
        self._title()
        self._legend()

    # panels and their scales

    def _trace_axes(self, index: int) -> tuple[str, str] | None:
        if not self.cartesian[index]:
            return None
        trace = self.traces[index]
        return _axis_name(trace.get("xaxis"), "x"), _axis_name(trace.get("yaxis"), "y")

    def _scales(self) -> dict[str, _Scale]:
        samples: dict[str, list] = {}
        for index, trace in enumerate(self.traces):
            axes = self._trace_axes(index)
            if axes is None:
                continue
            for letter, name in zip("xy", axes, strict=True):
                samples.setdefault(name, []).extend(_samples(trace, letter))
        names = set(samples) | {key for key in self.layout if re.fullmatch(r"[xy]axis\d*", key)}
        return {name: _Scale.of(name, self.layout.get(name) or {}, samples.get(name, [])) for name in names}

    def _panel_keys(self) -> list[tuple]:
        """Every subplot: the (x axis, y axis) pairs of the traces and of the layout's anchored axes, and the
        domains of traces that have no axes (pie, ...), in plotly's order."""
        keys: list[tuple] = []
        for key in sorted((k for k in self.layout if re.fullmatch(r"xaxis\d*", k)), key=lambda k: int(k[5:] or 1)):
            anchor = (self.layout[key] or {}).get("anchor")
            if anchor and anchor != "free":
                keys.append((key, _axis_name(anchor, "y")))
        for index, trace in enumerate(self.traces):
            axes = self._trace_axes(index)
            if axes is None:
                domain = trace.get("domain") or {}
                axes = ("domain", tuple(domain.get("x", (0, 1))), tuple(domain.get("y", (0, 1))))
            keys.append(axes)
        return list(dict.fromkeys(keys)) or [("xaxis", "yaxis")]

    def _domain(self, key: tuple) -> tuple[tuple[float, float], tuple[float, float]]:
        if key[0] == "domain":
            return key[1], key[2]
        x = (self.layout.get(key[0]) or {}).get("domain") or (0, 1)
        y = (self.layout.get(key[1]) or {}).get("domain") or (0, 1)
        return (float(x[0]), float(x[1])), (float(y[0]), float(y[1]))

    def _panels(self) -> dict[tuple, _Panel]:
        """One Axes per subplot, on a grid made from the domains: columns start where a domain starts."""
        keys = self._panel_keys()
        domains = {key: self._domain(key) for key in keys}
        lefts = sorted({round(x[0], 6) for x, _ in domains.values()})
        tops = sorted({round(y[1], 6) for _, y in domains.values()}, reverse=True)
        widths = [_extent(lefts, k, [x for x, _ in domains.values()], start=True) for k in range(len(lefts))]
        heights = [_extent(tops, k, [y for _, y in domains.values()], start=False) for k in range(len(tops))]
        grid = self.fig.add_gridspec(len(tops), len(lefts), width_ratios=widths, height_ratios=heights)
        panels = {}
        for key, (x, y) in domains.items():
            first_column = lefts.index(round(x[0], 6))
            last_column = max(k for k, left in enumerate(lefts) if left < x[1] - 1e-9) if x[1] > x[0] else first_column
            first_row = tops.index(round(y[1], 6))
            last_row = max(k for k, top in enumerate(tops) if top > y[0] + 1e-9) if y[1] > y[0] else first_row
            ax = self.fig.add_subplot(grid[first_row : last_row + 1, first_column : max(first_column, last_column) + 1])
            if key[0] == "domain":
                ax.set_axis_off()
                panels[key] = _Panel(ax, None, None)
            else:
                panels[key] = _Panel(
                    ax, self.scales.get(key[0]) or _Scale(key[0], {}), self.scales.get(key[1]) or _Scale(key[1], {})
                )
        return panels

    def _panel_of(self, index: int) -> _Panel:
        axes = self._trace_axes(index)
        if axes is None:
            domain = self.traces[index].get("domain") or {}
            axes = ("domain", tuple(domain.get("x", (0, 1))), tuple(domain.get("y", (0, 1))))
        return self.panels[axes]

    # traces

    def _draw_traces(self) -> None:
        for index, trace in enumerate(self.traces):
            if trace.get("type") == "bar" and trace.get("visible", True) is True:
                panel = self._panel_of(index)
                panel.bar_traces.append(index)
        for index, spec in enumerate(self.traces):
            kind = spec.get("type", "scatter")
            if spec.get("visible", True) is not True:
                continue
            panel = self._panel_of(index)
            trace = _Trace(spec, index, self._colour(spec, index), panel, self.layout)
            drawer = DRAWERS.get(kind)
            if drawer is None or panel.x is None:
                self._placeholder(panel, f"{kind} trace not drawn here (see report.html)")
                continue
            try:
                handle = drawer(trace)
            except Exception as error:  # one trace that fails must not cost the report its figure
                self._placeholder(panel, f"{kind} trace not drawn: {type(error).__name__}: {error}")
                continue
            if handle is not None and self._in_legend(spec):
                self.legend.setdefault(_plain(spec.get("name") or f"trace {index}"), handle)

    def _colour(self, spec: dict, index: int) -> str:
        """A trace's own colour (marker, line), else the colorway's colour for its index, as plotly does."""
        for owner in ("marker", "line"):
            colour = (spec.get(owner) or {}).get("color")
            if isinstance(colour, str):
                return colour
        return self.colorway[index % len(self.colorway)]

    def _placeholder(self, panel: _Panel, text: str) -> None:
        self.notes.append(text)
        panel.placeholders.append(text)
        panel.ax.text(
            0.5,
            0.5 - 0.08 * (len(panel.placeholders) - 1),
            "\n".join(textwrap.wrap(text, 60)),
            transform=panel.ax.transAxes,
            ha="center",
            va="center",
            fontsize=10,
            color="#8a5a00",
            bbox={"boxstyle": "round", "facecolor": "#fff6e0", "edgecolor": "#e0b050"},
        )

    # axes

    def _style_panel(self, panel: _Panel) -> None:
        ax = panel.ax
        if panel.x is None:
            return
        ax.set_facecolor("white")
        for side, spine in ax.spines.items():
            spine.set_visible(side in ("left", "bottom"))
            spine.set_color("#b8bcc6")
        ax.tick_params(labelsize=9, colors=TEXT_COLOUR, length=3)
        ax.grid(True, color=GRID_COLOUR, linewidth=0.8)
        ax.set_axisbelow(True)
        for letter, scale in (("x", panel.x), ("y", panel.y)):
            self._style_axis(ax, letter, scale)
        if panel.x.spec.get("visible") is False and panel.y.spec.get("visible") is False:
            ax.set_axis_off()  # e.g. make_subplots' empty grid cells, hidden as the report's figures do

    def _style_axis(self, ax: Axes, letter: str, scale: _Scale) -> None:
        axis = ax.xaxis if letter == "x" else ax.yaxis
        spec = scale.spec
        set_label, set_scale, set_lim = (
            (ax.set_xlabel, ax.set_xscale, ax.set_xlim)
            if letter == "x"
            else (ax.set_ylabel, ax.set_yscale, ax.set_ylim)
        )
        set_label(_title(spec.get("title")), fontsize=10, color=TEXT_COLOUR)
        if scale.kind == "category":
            positions = range(len(scale.categories))
            axis.set_ticks(list(positions), [_shorten(label) for label in scale.categories])
            if scale.categories:
                set_lim(-0.5, len(scale.categories) - 0.5)
            (ax.xaxis if letter == "x" else ax.yaxis).grid(False)
        elif scale.kind == "date":
            locator = mdates.AutoDateLocator()
            axis.set_major_locator(locator)
            axis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        elif scale.kind == "log":
            set_scale("log")
        fmt = spec.get("tickformat")
        if scale.kind in ("linear", "log") and fmt:
            if fmt.rstrip("~").endswith("d"):
                axis.set_major_locator(MaxNLocator(integer=True))
            axis.set_major_formatter(FuncFormatter(lambda value, _, fmt=fmt: _d3(value, fmt)))
        dtick = spec.get("dtick")
        if scale.kind == "linear" and spec.get("tickmode") in ("linear", None) and _is_number(dtick):
            low, high = ax.get_xlim() if letter == "x" else ax.get_ylim()
            if float(dtick) > 0 and abs(high - low) / float(dtick) <= 30:
                axis.set_major_locator(MultipleLocator(float(dtick), offset=float(spec.get("tick0", 0) or 0)))
        limits = spec.get("range")
        if limits is not None and len(limits) == 2 and None not in limits:
            values = scale.positions(limits) if scale.kind == "date" else _numbers(limits)  # category: indices
            if scale.kind == "log":
                values = 10.0**values
            set_lim(*values)
        elif spec.get("rangemode") in ("tozero", "nonnegative") and scale.kind == "linear":
            low, high = ax.get_xlim() if letter == "x" else ax.get_ylim()
            set_lim(min(low, 0) if spec.get("rangemode") == "tozero" else max(low, 0), max(high, 0))
        if spec.get("autorange") == "reversed":
            (ax.invert_xaxis if letter == "x" else ax.invert_yaxis)()
        if spec.get("showticklabels") is False:
            axis.set_ticklabels([])
        if spec.get("visible") is False:
            axis.set_visible(False)

    # layout decorations

    def _reference(self, ref: str | None, letter: str) -> tuple[Any, _Panel | None, _Scale | None]:
        """An annotation's or shape's xref / yref as (transform, its panel, its scale for data values)."""
        ref = ref or letter
        if ref == "paper":
            return self.fig.transFigure, None, None
        name = _axis_name(ref.split(" ")[0], letter)
        panel = next((p for k, p in self.panels.items() if k[0 if letter == "x" else 1] == name), None)
        if panel is None:
            return None, None, None
        if ref.endswith(" domain"):
            return panel.ax.transAxes, panel, None
        return panel.ax.transData, panel, panel.scale(letter)

    def _position(self, spec: dict, key: str, letter: str) -> tuple[Any, Any, _Panel | None]:
        transform, panel, scale = self._reference(spec.get(f"{letter}ref"), letter)
        value = spec.get(key)
        if transform is None or value is None:
            return transform, None, panel
        value = float(scale.positions([value])[0]) if scale is not None else float(value)
        return transform, value, panel

    def _decorations(self) -> None:
        """The layout's shapes and annotations; one that cannot be drawn is left out and noted, never raised."""
        for kind, draw_one in (("shapes", self._shape), ("annotations", self._annotation)):
            for item in self.layout.get(kind) or []:
                try:
                    draw_one(item)
                except Exception as error:  # a decoration must not cost the report its figure
                    self.notes.append(f"{kind[:-1]} not drawn: {type(error).__name__}: {error}")

    def _shape(self, shape: dict) -> None:
        """A line or rectangle shape (add_vline, add_hline, add_vrect, ...); other kinds are left out."""
        kind = shape.get("type", "rect" if "fillcolor" in shape else "line")
        if kind not in ("line", "rect"):
            return
        x_transform, x0, x_panel = self._position(shape, "x0", "x")
        _, x1, _ = self._position(shape, "x1", "x")
        y_transform, y0, y_panel = self._position(shape, "y0", "y")
        _, y1, _ = self._position(shape, "y1", "y")
        if None in (x_transform, y_transform, x0, x1, y0, y1):
            return
        owner = (x_panel or y_panel).ax if (x_panel or y_panel) else None
        transform = blended_transform_factory(x_transform, y_transform)
        line = shape.get("line") or {}
        style = {
            "color": _rgba(line.get("color"), "#444444"),
            "linewidth": float(line.get("width", 2)) * POINTS_PER_PX,
            "linestyle": DASHES.get(line.get("dash", "solid"), "--"),
            "alpha": float(shape.get("opacity", 1)),
            "transform": transform,
        }
        if kind == "line":
            line_artist = Line2D([x0, x1], [y0, y1], **style)
            if owner is not None:
                owner.add_line(line_artist)
            else:
                self.fig.add_artist(line_artist)
        else:
            fill = _rgba(shape.get("fillcolor"), "none") if shape.get("fillcolor") else "none"
            artist = Rectangle(
                (min(x0, x1), min(y0, y1)),
                abs(x1 - x0),
                abs(y1 - y0),
                facecolor=fill,
                edgecolor=style["color"],
                linewidth=style["linewidth"] if line.get("width", 0) else 0,
                alpha=style["alpha"],
                transform=transform,
                zorder=0.5,
            )
            if owner is not None:
                owner.add_patch(artist)
            else:
                self.fig.add_artist(artist)

    def _annotation(self, note: dict) -> None:
        """A subplot title (a paper annotation centred above a panel) as its Axes title; others as text."""
        text = _plain(note.get("text"))
        if not text:
            return
        panel = self._titled_panel(note)
        if panel is not None:
            width = self._domain(next(k for k, p in self.panels.items() if p is panel))[0]
            chars = _chars((width[1] - width[0]) * self.width, 11)
            panel.ax.set_title(_wrap(text, chars), fontsize=11, color=TEXT_COLOUR)
            return
        x_transform, x, x_panel = self._position(note, "x", "x")
        y_transform, y, _ = self._position(note, "y", "y")
        if None in (x_transform, y_transform, x, y):
            return
        style = {
            "transform": blended_transform_factory(x_transform, y_transform),
            "ha": {"left": "left", "right": "right"}.get(note.get("xanchor"), "center"),
            "va": {"top": "top", "bottom": "bottom"}.get(note.get("yanchor"), "center"),
            "fontsize": 9,
            "color": TEXT_COLOUR,
        }
        if x_panel is not None and note.get("showarrow", True):
            x_panel.ax.annotate(
                text,
                (x, y),
                xycoords=style.pop("transform"),
                xytext=(20, 25),
                textcoords="offset points",
                arrowprops={"arrowstyle": "->", "color": TEXT_COLOUR},
                **style,
            )
        else:
            self.fig.text(x, y, text, **style)

    def _titled_panel(self, note: dict) -> _Panel | None:
        if note.get("xref") != "paper" or note.get("yref") != "paper" or note.get("showarrow", True):
            return None
        for key, panel in self.panels.items():
            (x0, x1), (_, y1) = self._domain(key)
            if abs(float(note.get("x", -1)) - (x0 + x1) / 2) < 1e-6 and abs(float(note.get("y", -1)) - y1) < 1e-6:
                return panel
        return None

    def _title(self) -> None:
        """The layout title, top left as plotly_white puts it; its <br> lines (subtitles) a size smaller."""
        text = _title(self.layout.get("title"))
        if not text:
            return
        size = 13 if "\n" not in text else 12
        self.fig.suptitle(_wrap(text, _chars(self.width, size)), fontsize=size, color=TEXT_COLOUR, x=0.01, ha="left")

    # legend

    def _in_legend(self, spec: dict) -> bool:
        if spec.get("showlegend") is not None:
            return bool(spec["showlegend"])
        return spec.get("type", "scatter") not in NO_LEGEND_BY_DEFAULT

    def _legend_entries(self) -> list[str]:
        names = [
            _plain(spec.get("name") or f"trace {index}")
            for index, spec in enumerate(self.traces)
            if self._in_legend(spec) and spec.get("visible", True) is True and spec.get("type", "scatter") in DRAWERS
        ]
        names = list(dict.fromkeys(names))
        shown = self.layout.get("showlegend")
        if shown is None:
            shown = len(names) > 1 or any(spec.get("showlegend") is True for spec in self.traces)
        return names if shown else []

    def _legend_title(self) -> str:
        return _title((self.layout.get("legend") or {}).get("title"))

    def _legend_shape(self, width: float) -> tuple[int, int]:
        """The legend's rows and columns below the plots: as many columns as the longest name allows."""
        names = self._legend_entries()
        if not names:
            return 0, 0
        longest = max(len(name) for name in names)
        columns = max(1, min(len(names), int(width * 0.95 / (longest * 7 + 50))))
        return math.ceil(len(names) / columns), columns

    def _legend(self) -> None:
        names = [name for name in self._legend_entries() if name in self.legend]
        if not names:
            return
        self.fig.legend(
            [self.legend[name] for name in names],
            names,
            loc="outside lower center",
            ncols=min(self.legend_columns or 1, len(names)),
            frameon=False,
            fontsize=9,
            title=self._legend_title() or None,
            title_fontsize=9,
            labelcolor=TEXT_COLOUR,
        )

    # after layout: tick labels that fit, bar texts that fit

    def finish(self, canvas: FigureCanvasAgg) -> None:
        """Rotate or thin category tick labels that would overlap, then keep the bar texts that fit their bar."""
        canvas.draw()
        changed = False
        for panel in self.panels.values():
            if panel.x is not None:
                changed |= _fit_ticks(panel.ax, panel.x, "x")
                changed |= _fit_ticks(panel.ax, panel.y, "y")
        if changed:
            canvas.draw()
        renderer = canvas.get_renderer()
        for panel in self.panels.values():
            for rectangle, text, colour, inside in panel.labels:
                _bar_text(panel.ax, renderer, rectangle, text, colour, inside)


def _samples(trace: dict, letter: str) -> list:
    """The values a trace puts on its x or y axis, which decide that axis's kind and categories."""
    kind = trace.get("type", "scatter")
    values = _values(trace.get(letter))
    if kind == "bar" and trace.get("base") is not None and (trace.get("orientation") == "h") == (letter == "x"):
        values += _values(trace["base"])
        values = [value for value in values if not _is_number(value)] or values
    if kind in ("violin", "box") and not values:
        horizontal = trace.get("orientation") == "h" or (trace.get("orientation") is None and trace.get("y") is None)
        if (letter == "y") == horizontal and trace.get("q1") is None:
            values = [trace.get("name", "")] if trace.get("x" if horizontal else "y") is not None else []
    return values


def _extent(starts: list[float], k: int, domains: list, start: bool) -> float:
    """The size of grid column (or row) k: from its start to the nearest domain end after it."""
    if start:
        ends = [end for begin, end in domains if round(begin, 6) == starts[k]]
        following = starts[k + 1] if k + 1 < len(starts) else 1.0
        return max(1e-3, min(min(ends, default=following), following) - starts[k])
    ends = [begin for begin, end in domains if round(end, 6) == starts[k]]
    following = starts[k + 1] if k + 1 < len(starts) else 0.0
    return max(1e-3, starts[k] - max(max(ends, default=following), following))


def _chars(width_px: float, font_size: float) -> int:
    """How many characters of DejaVu Sans at `font_size` points fit in `width_px` (plotly pixels), with room."""
    return int(width_px / (font_size * 0.85))


def _wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.fill(line, max(width, 20)) for line in text.split("\n"))


def _shorten(label: str) -> str:
    return label if len(label) <= LONGEST_TICK_LABEL else label[: LONGEST_TICK_LABEL - 1] + "…"


def _fit_ticks(ax: Axes, scale: _Scale, letter: str) -> bool:
    """Category labels that would overlap: slanted; if still too dense, upright, smaller, then only every k-th."""
    if scale.kind != "category" or len(scale.categories) < 2:
        return False
    labels = (ax.get_xticklabels if letter == "x" else ax.get_yticklabels)()
    if not labels:
        return False
    box = ax.get_window_extent()
    slot = (box.width if letter == "x" else box.height) / len(scale.categories)
    boxes = [label.get_window_extent() for label in labels]
    line = max(b.height for b in boxes)
    if letter == "x":
        if max(b.width for b in boxes) <= slot * 0.95:
            return False
        if slot >= line * 1.5:
            for label in labels:
                label.set(rotation=35, ha="right", rotation_mode="anchor")
            return True
        for label in labels:
            label.set(rotation=90, ha="center")
    elif slot >= line * 1.1:
        return False
    size = labels[0].get_fontsize()
    smaller = max(MIN_TICK_FONT, size * slot / (line * 1.1))
    for label in labels:
        label.set_fontsize(smaller)
    _thin(labels, math.ceil(line * smaller / size * 1.1 / slot))
    return True


def _thin(labels: list, every: int) -> None:
    for position, label in enumerate(labels):
        label.set_visible(position % every == 0)


def _bar_text(ax: Axes, renderer: Any, rectangle: Rectangle, text: str, colour: tuple, inside: bool) -> None:
    """A bar's text centred in it when it fits (else left out), or just beyond its end for "outside"."""
    bar = rectangle.get_window_extent(renderer)
    centre = ax.transData.inverted().transform(((bar.x0 + bar.x1) / 2, (bar.y0 + bar.y1) / 2))
    label = ax.text(*centre, text, ha="center", va="center", fontsize=8, color=_ink_on(colour), clip_on=True)
    extent = label.get_window_extent(renderer)
    if inside and (extent.width > bar.width - 4 or extent.height > bar.height - 2):
        label.remove()
    elif not inside:
        label.set_color(TEXT_COLOUR)
        label.set_position(ax.transData.inverted().transform(((bar.x0 + bar.x1) / 2, bar.y1 + extent.height)))
