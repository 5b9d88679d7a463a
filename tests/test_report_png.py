"""REPORT.md's PNG figures: drawn with matplotlib from the plotly figures, without a browser or a display.

A real study (written by hand, no training) gives every report figure; hand-made plotly figures check each
trace type, subplots, decorations, and that an unknown trace type becomes a placeholder instead of an error.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import plotly.express as px
import plotly.graph_objects as go
import pytest
from matplotlib.collections import PolyCollection, QuadMesh
from matplotlib.container import BarContainer, ErrorbarContainer
from matplotlib.dates import ConciseDateFormatter
from PIL import Image
from plotly.subplots import make_subplots

from optimize.results.report import _png, write_report
from optimize.results.report._png import draw, write_png
from optimize.results.report._render import figures
from optimize.results.report._sections import build_sections
from optimize.results.report._tables import study_data
from tests.test_report import made_study

IMAGE = re.compile(r"^!\[Figure (\d+): ([^\n]*)\]\((figures/[^)]+\.png)\)$", re.MULTILINE)
LOADED = "loaded at exit: "
NEVER_LOADED = ("kaleido", "matplotlib.pyplot", "selenium", "playwright", "keras", "tensorflow", "jax")
PROBE = f"""
import atexit, sys
watched = {("matplotlib", *NEVER_LOADED)!r}
atexit.register(lambda: print({LOADED!r} + repr(sorted(set(watched) & set(sys.modules))), file=sys.stderr))
from optimize.cli import main
sys.exit(main(sys.argv[1:]))
"""


def assert_png(path: Path, min_width: int = 600, min_height: int = 250) -> None:
    """A readable PNG: it decodes, it has a figure's size, and it is not one flat colour."""
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width >= min_width and image.height >= min_height, image.size
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is None or len(colours) > 1


def axes_of(drawn) -> list:
    """The drawn figure's plot panels (colour bars left out)."""
    return [ax for ax in drawn.axes if ax.get_label() != "<colorbar>"]


def legend_names(drawn) -> list[str]:
    return [text.get_text() for legend in drawn.legends for text in legend.get_texts()]


# --- the report's own figures ---------------------------------------------------------------------------------


def test_report_embeds_every_figure_as_png(tmp_path):
    study = made_study(None, 30)
    blocks = figures(build_sections(study, study_data(study)))
    out = tmp_path / "report"
    (out / "figures").mkdir(parents=True)
    (out / "figures" / "removed_figure.png").write_bytes(b"old")
    write_report(study, None, out)

    markdown = (out / "REPORT.md").read_text(encoding="utf-8")
    images = IMAGE.findall(markdown)
    assert [int(number) for number, _, _ in images] == list(range(1, len(blocks) + 1))
    assert [path for _, _, path in images] == [f"figures/{block.name}.png" for block in blocks]
    assert {path.name for path in (out / "figures").iterdir()} == {f"{block.name}.png" for block in blocks}
    for (number, alt, path), block in zip(images, blocks, strict=True):
        assert_png(out / path)
        assert alt.replace("\\[", "[").replace("\\]", "]") == block.caption.replace("`", "").replace("*", "")
        caption = f"*Figure {number} (interactive in `report.html`): {block.caption}*"
        assert f"]({path})\n\n{caption}\n" in markdown
    assert markdown.count("](figures/") == len(blocks)
    assert "figures/" not in (out / "report.html").read_text(encoding="utf-8")  # the page stays interactive


def test_report_figures_draw_every_trace():
    """Nothing in the report's figures falls back to a placeholder; subplot titles and legends carry over."""
    study = made_study(None, 30)
    drawn = {block.name: draw(block.figure) for block in figures(build_sections(study, study_data(study)))}
    assert {name: notes for name, (_, notes) in drawn.items() if notes} == {}
    impact, _ = drawn["parameter_impact"]
    titles = [ax.get_title() for ax in axes_of(impact) if ax.get_title()]
    assert titles == ["architecture", "learning_rate", "batch_size", "dropout", "loss"]
    assert legend_names(impact) == ["mean ± std", "best"]
    curves, _ = drawn["learning_curves"]
    assert "\n" in curves.get_suptitle() and "<" not in curves.get_suptitle()
    assert all(ax.get_xlabel() == "epoch" for ax in axes_of(curves))


# --- one trace type at a time -----------------------------------------------------------------------------------


def test_grouped_bars_side_by_side_with_legend(tmp_path):
    fig = go.Figure(
        [go.Bar(name="best", x=["a", "b", "c"], y=[3, 2, 1]), go.Bar(name="final", x=["a", "b", "c"], y=[2, 1, 1])]
    )
    fig.update_layout(barmode="group", title="Grouped", yaxis_title="score")
    drawn, notes = draw(fig)
    (ax,) = axes_of(drawn)
    first, second = (c for c in ax.containers if isinstance(c, BarContainer))
    assert [bar.get_x() < other.get_x() for bar, other in zip(first, second, strict=True)] == [True] * 3
    assert [label.get_text() for label in ax.get_xticklabels()] == ["a", "b", "c"]
    assert legend_names(drawn) == ["best", "final"] and ax.get_ylabel() == "score" and notes == []
    write_png(fig, tmp_path / "bars.png")
    assert_png(tmp_path / "bars.png")


def test_horizontal_bars_reversed_and_stacked():
    fig = go.Figure(go.Bar(x=[0.7, 0.2, 0.1], y=["lr", "loss", "dropout"], orientation="h"))
    fig.update_layout(yaxis={"autorange": "reversed"}, xaxis_title="importance")
    (ax,) = axes_of(draw(fig)[0])
    assert ax.yaxis_inverted() and [t.get_text() for t in ax.get_yticklabels()] == ["lr", "loss", "dropout"]
    assert [bar.get_width() for bar in ax.containers[0]] == pytest.approx([0.7, 0.2, 0.1])
    assert legend_names(draw(fig)[0]) == []  # one trace: no legend, as in plotly

    stacked = go.Figure([go.Bar(x=["a", "b"], y=[1, 2]), go.Bar(x=["a", "b"], y=[3, 4])])
    stacked.update_layout(barmode="stack")
    (ax,) = axes_of(draw(stacked)[0])
    assert [bar.get_y() for bar in ax.containers[1]] == pytest.approx([1, 2])


def test_bar_error_bars_and_timeline_on_a_date_axis():
    fig = go.Figure(go.Bar(x=["a", "b"], y=[0.5, 0.6], error_y={"type": "data", "array": [0.1, 0.05]}))
    (ax,) = axes_of(draw(fig)[0])
    (errors,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert errors.lines[2][0].get_segments()[0][:, 1] == pytest.approx([0.4, 0.6])

    frame = {
        "start": np.array(["2025-01-01T10:00", "2025-01-01T10:05"], dtype="datetime64[s]"),
        "end": np.array(["2025-01-01T10:04", "2025-01-01T10:09"], dtype="datetime64[s]"),
        "worker": ["node1", "node2"],
        "state": ["COMPLETE", "PRUNED"],
        "label": ["trial 0", "trial 1"],
    }
    timeline = px.timeline(frame, x_start="start", x_end="end", y="worker", color="state", text="label")
    drawn, notes = draw(timeline)
    (ax,) = axes_of(drawn)
    assert isinstance(ax.xaxis.get_major_formatter(), ConciseDateFormatter) and notes == []
    widths = [bar.get_width() for container in ax.containers for bar in container]
    assert widths == pytest.approx([4 / 24 / 60] * 2)  # 4 minutes, in days
    assert legend_names(drawn) == ["COMPLETE", "PRUNED"]


def test_scatter_markers_lines_colour_scale_symbols_and_log_axis():
    fig = go.Figure(
        [
            go.Scatter(
                x=[1, 10, 100],
                y=[0.2, 0.4, 0.3],
                mode="markers",
                name="trials",
                marker={"color": [5, 10, 20], "colorscale": "Viridis", "showscale": True, "colorbar": {"title": "n"}},
                error_y={"type": "data", "array": [0.01, 0.02, 0.03]},
            ),
            go.Scatter(x=[1, 100], y=[0.1, 0.5], mode="lines", line={"dash": "dash", "color": "red"}, name="trend"),
            go.Scatter(x=[3], y=[0.45], mode="markers", marker={"symbol": "star", "size": 13}, name="best"),
            go.Scatter(x=[2, 20, 50], y=[0.3, 0.35, 0.32], mode="lines+markers", name="both"),
        ]
    )
    fig.update_xaxes(type="log", title_text="learning rate")
    drawn, notes = draw(fig)
    panels = axes_of(drawn)
    assert len(panels) == 1 and len(drawn.axes) == 2  # the panel and its colour bar
    ax = panels[0]
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "learning rate" and notes == []
    assert any(line.get_linestyle() == "--" for line in ax.get_lines())
    assert any(isinstance(c, ErrorbarContainer) for c in ax.containers)
    assert legend_names(drawn) == ["trials", "trend", "best", "both"]
    colourbar = next(a for a in drawn.axes if a.get_label() == "<colorbar>")
    assert colourbar.get_ylabel() == "n"


def test_violin_and_box():
    rng = np.random.default_rng(0)
    fig = go.Figure(
        [
            go.Violin(
                x=["dice"] * 9, y=rng.random(9), name="dice", box_visible=True, meanline_visible=True, points="all"
            ),
            go.Violin(x=["focal"] * 9, y=rng.random(9), name="focal", spanmode="hard"),
            go.Violin(x=["one"], y=[0.5], name="one"),  # one value: no density, still its point
            go.Box(y=rng.random(12), name="box", boxpoints="all"),
        ]
    )
    drawn, notes = draw(fig)
    assert notes == []
    (ax,) = axes_of(drawn)
    assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 2  # the two densities
    assert [t.get_text() for t in ax.get_xticklabels()] == ["dice", "focal", "one", "box"]

    horizontal = go.Figure([go.Box(x=rng.random(12), name="a"), go.Box(x=rng.random(12) + 1, name="b")])
    drawn, notes = draw(horizontal)
    (ax,) = axes_of(drawn)
    assert notes == [] and [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]
    assert ax.get_xlim()[1] > 1.5


def test_heatmap_cells_texts_and_missing_cell():
    fig = go.Figure(
        go.Heatmap(
            z=[[0.1, None, 0.3], [0.4, 0.5, 0.6]],
            x=["4", "8", "16"],
            y=["low", "high"],
            colorscale="Magma_r",
            texttemplate="%{z:.2f}",
        )
    )
    fig.update_xaxes(type="category")
    drawn, notes = draw(fig)
    ax = axes_of(drawn)[0]
    assert notes == [] and any(isinstance(c, QuadMesh) for c in ax.collections)
    assert sorted(text.get_text() for text in ax.texts) == ["0.10", "0.30", "0.40", "0.50", "0.60"]
    assert len(drawn.axes) == 2  # showscale defaults to true: a colour bar


def test_histogram():
    drawn, notes = draw(go.Figure(go.Histogram(x=np.random.default_rng(1).normal(size=200))))
    assert notes == [] and len(axes_of(drawn)[0].patches) > 3


def test_subplots_titles_axis_titles_and_vline(tmp_path):
    fig = make_subplots(rows=2, cols=2, subplot_titles=["one", "two", "three"], vertical_spacing=0.2)
    fig.add_trace(go.Scatter(x=[1, 2, 3], y=[3, 1, 2], name="a"), row=1, col=1)
    fig.add_trace(go.Bar(x=["p", "q"], y=[1, 2], name="b"), row=1, col=2)
    fig.add_trace(go.Scatter(x=[1, 2], y=[1, 4], name="c"), row=2, col=1)
    fig.add_vline(x=2, line_dash="dot", line_color="red", row=1, col=1)
    fig.update_yaxes(title_text="left", row=1, col=1)
    fig.update_xaxes(title_text="epoch", row=2, col=1)
    fig.update_xaxes(visible=False, row=2, col=2)
    fig.update_yaxes(visible=False, row=2, col=2)
    fig.update_layout(title="Grid<br><sup>with a subtitle</sup>", height=600)
    drawn, notes = draw(fig)
    shown = [ax for ax in axes_of(drawn) if ax.axison]
    assert notes == [] and len(shown) == 3
    assert [ax.get_title() for ax in shown] == ["one", "two", "three"]
    assert shown[0].get_ylabel() == "left" and shown[2].get_xlabel() == "epoch"
    assert drawn.get_suptitle() == "Grid\nwith a subtitle"
    assert any(list(line.get_xdata()) == [2, 2] for line in shown[0].get_lines())  # the vline
    first, second, third = (ax.get_position() for ax in shown)
    assert first.x1 < second.x0 and third.y1 < first.y0  # the grid is kept: columns and rows
    write_png(fig, tmp_path / "grid.png")
    assert_png(tmp_path / "grid.png")


def test_unknown_trace_type_is_a_placeholder_not_an_error(tmp_path):
    fig = make_subplots(rows=1, cols=2, specs=[[{"type": "xy"}, {"type": "domain"}]], subplot_titles=["bars", "pie"])
    fig.add_trace(go.Bar(x=["a"], y=[1]), row=1, col=1)
    fig.add_trace(go.Contour(z=[[1, 2], [3, 4]]), row=1, col=1)  # on axes, but not drawn here
    fig.add_trace(go.Pie(values=[1, 2], labels=["x", "y"]), row=1, col=2)  # no axes at all
    notes = write_png(fig, tmp_path / "unknown.png")
    assert_png(tmp_path / "unknown.png")
    assert [note.split(" ")[0] for note in notes] == ["contour", "pie"]
    drawn, _ = draw(fig)
    texts = [text.get_text() for ax in drawn.axes for text in ax.texts]
    assert any("contour trace not drawn" in text for text in texts) and any("pie trace" in text for text in texts)


def test_a_trace_that_fails_to_draw_is_a_placeholder(monkeypatch, tmp_path):
    def broken(trace):
        raise ValueError("bad data")

    monkeypatch.setitem(_png.DRAWERS, "bar", broken)
    fig = go.Figure([go.Bar(x=["a"], y=[1]), go.Scatter(x=[0], y=[1], name="cost $5 <b>now</b>")])
    fig.add_annotation(text="placed by words", xref="paper", yref="paper", x="left", y=1, showarrow=False)
    fig.add_annotation(text="an arrow", x=0, y=1)
    notes = write_png(fig, tmp_path / "broken.png")
    assert notes[0] == "bar trace not drawn: ValueError: bad data"
    assert notes[1].startswith("annotation not drawn: ValueError") and len(notes) == 2
    assert_png(tmp_path / "broken.png")


# --- no browser, no display ----------------------------------------------------------------------------------------


def run_probe(*args: str, env: dict[str, str]) -> tuple[subprocess.CompletedProcess, list[str]]:
    result = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=env, timeout=300)
    lines = [line for line in result.stderr.splitlines() if line.startswith(LOADED)]
    assert len(lines) == 1, result.stderr
    return result, ast.literal_eval(lines[0].removeprefix(LOADED))


def test_report_command_needs_no_browser_and_no_display(tmp_path):
    url = f"sqlite:///{tmp_path / 'made.db'}"
    made_study(url, 12)
    hidden = ("DISPLAY", "WAYLAND_DISPLAY", "MPLBACKEND", "OPTIMIZE_STORAGE", "BROWSER")
    env = {key: value for key, value in os.environ.items() if key not in hidden}
    env |= {"OPTIMIZE_STUDIES_DIR": str(tmp_path / "studies"), "PATH": os.path.dirname(sys.executable)}
    out = tmp_path / "out"
    result, loaded = run_probe("report", "--study", "made", "--storage", url, "--out", str(out), env=env)
    assert result.returncode == 0, result.stderr
    assert loaded == ["matplotlib"]  # drawn with matplotlib's Agg canvas: no kaleido, no pyplot, no Keras
    pngs = sorted((out / "figures").glob("*.png"))
    assert pngs and len(pngs) == (out / "REPORT.md").read_text(encoding="utf-8").count("](figures/")
    for path in pngs:
        assert_png(path)

    result, loaded = run_probe("status", "--study", "made", "--storage", url, env=env)
    assert result.returncode == 0, result.stderr
    assert loaded == []  # commands that write no report do not pay for matplotlib
