"""The report's plotly figures, each drawn from one table of `_tables`."""

from __future__ import annotations

import math

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from optuna.trial import FrozenTrial
from plotly.subplots import make_subplots

from optimize.results.formatting import format_params
from optimize.results.frame import history_frame
from optimize.results.record import read_record

TEMPLATE = "plotly_white"
BEST_COLOUR = "red"
STATE_COLOURS = {"COMPLETE": "#2ca02c", "PRUNED": "#ff7f0e", "FAIL": "#d62728", "RUNNING": "#1f77b4"}
CURVE_COLOURS = {"best": "#1f77b4", "worst": "#9467bd"}
EVERY_INTEGER_UP_TO = 10


def _layout(fig: go.Figure, title: str, height: int = 420) -> go.Figure:
    fig.update_layout(title=title, template=TEMPLATE, height=height, margin={"t": 70, "b": 50, "l": 60, "r": 30})
    return fig


def integer_ticks(largest: float) -> dict:
    """Axis settings for counts and epochs: a tick on every integer up to 10, integer labels beyond.

    Plotly's automatic ticks on a small range fall on halves (0, 0.5, 1, ...), which reads as half a trial.
    """
    if pd.isna(largest) or largest <= EVERY_INTEGER_UP_TO:
        return {"tickmode": "linear", "tick0": 0, "dtick": 1, "tickformat": "d"}
    return {"tickformat": ",d"}


def top_bars(top: pd.DataFrame) -> go.Figure:
    """Best and final val Jaccard of the top configurations."""
    labels = [f"#{rank}: trial {number}" for rank, number in zip(top["rank"], top["number"], strict=True)]
    fig = go.Figure(
        [
            go.Bar(name="best val Jaccard", x=labels, y=top["val_jaccard"]),
            go.Bar(name="final val Jaccard", x=labels, y=top["final_val_jaccard"]),
        ]
    )
    fig.update_layout(barmode="group", yaxis_title="val Jaccard")
    return _layout(fig, "Top configurations: best and final val Jaccard")


def impact_bars(impact: pd.DataFrame) -> go.Figure:
    """Per parameter: mean val Jaccard per group with ±1 std error bars and each group's best as a red star."""
    names = list(dict.fromkeys(impact["parameter"]))
    columns = min(3, len(names))
    rows = math.ceil(len(names) / columns)
    fig = make_subplots(rows=rows, cols=columns, subplot_titles=names, vertical_spacing=0.18)
    for index, name in enumerate(names):
        part = impact[impact["parameter"] == name]
        row, col = index // columns + 1, index % columns + 1
        fig.add_trace(
            go.Bar(
                x=part["value"],
                y=part["mean"],
                error_y={"type": "data", "array": part["std"].fillna(0)},
                customdata=part["count"],
                hovertemplate="%{x}<br>mean %{y:.4f}<br>n = %{customdata}<extra></extra>",
                marker_color="#4c78a8",
                name="mean ± std",
                showlegend=index == 0,
            ),
            row=row,
            col=col,
        )
        fig.add_trace(
            go.Scatter(
                x=part["value"],
                y=part["best"],
                mode="markers",
                marker={"symbol": "star", "size": 13, "color": BEST_COLOUR},
                name="best",
                showlegend=index == 0,
            ),
            row=row,
            col=col,
        )
        fig.update_xaxes(type="category", row=row, col=col)
        fig.update_yaxes(title_text="val Jaccard", row=row, col=col)
    for index in range(len(names), rows * columns):  # the grid's empty cells: no blank panel
        row, col = index // columns + 1, index % columns + 1
        fig.update_xaxes(visible=False, row=row, col=col)
        fig.update_yaxes(visible=False, row=row, col=col)
    return _layout(fig, "Parameter impact on val Jaccard (COMPLETE trials)", height=330 * rows + 80)


def learning_curves(best: FrozenTrial, worst: FrozenTrial | None) -> go.Figure:
    """Loss and Jaccard, train and val, per epoch for the best (and worst) trial; dotted line at the best epoch.

    Each trial has one colour (train solid, val dashed) and every line its own legend entry.
    """
    trials = [("best", best)] + ([("worst", worst)] if worst is not None else [])
    metrics = (("loss", "loss"), ("jaccard", "Jaccard"))
    titles = [f"{kind} trial {trial.number}: {title}" for kind, trial in trials for _, title in metrics]
    fig = make_subplots(rows=len(trials), cols=2, subplot_titles=titles, vertical_spacing=0.16)
    for row, (kind, trial) in enumerate(trials, start=1):
        history = history_frame(trial)
        for col, (metric, title) in enumerate(metrics, start=1):
            for split, column, dash in (("train", metric, "solid"), ("val", f"val_{metric}", "dash")):
                fig.add_trace(
                    go.Scatter(
                        x=history["epoch"],
                        y=history[column],
                        mode="lines+markers",
                        line={"dash": dash, "color": CURVE_COLOURS[kind]},
                        name=f"{_trial_label(kind, trial)}: {split} {title}",
                        showlegend=True,
                    ),
                    row=row,
                    col=col,
                )
            best_epoch = read_record(trial).best_epoch
            if best_epoch:
                fig.add_vline(x=best_epoch, line_dash="dot", line_color=BEST_COLOUR, row=row, col=col)
            fig.update_yaxes(title_text=title, row=row, col=col)
        fig.update_xaxes(title_text="epoch", **integer_ticks(history["epoch"].max()), row=row)
    subtitle = " | ".join(f"{kind}: {format_params(trial.params)}" for kind, trial in trials)
    return _layout(fig, f"Learning curves (dotted: best epoch)<br><sup>{subtitle}</sup>", height=340 * len(trials) + 90)


def _trial_label(kind: str, trial: FrozenTrial) -> str:
    """A line's owner, as "best trial 3 (resunet, dice)": its text-valued parameters tell the lines apart."""
    choices = [value for value in trial.params.values() if isinstance(value, str)]
    return f"{kind} trial {trial.number}" + (f" ({', '.join(choices)})" if choices else "")


def loss_violins(scored: pd.DataFrame) -> go.Figure:
    """Distribution of val Jaccard per loss function: violin, box and every trial as a point.

    The density stops at each loss's lowest and highest trial (`spanmode="hard"`): a smoothed tail beyond
    them would show scores outside [0, 1] that no trial had.
    """
    fig = go.Figure()
    for loss, part in scored.groupby("loss", sort=True):
        fig.add_trace(
            go.Violin(
                x=[loss] * len(part),
                y=part["val_jaccard"],
                name=str(loss),
                box_visible=True,
                meanline_visible=True,
                points="all",
                pointpos=0,
                spanmode="hard",
                customdata=part["number"],
                hovertemplate="trial %{customdata}: %{y:.4f}<extra></extra>",
            )
        )
    fig.update_layout(yaxis_title="val Jaccard", showlegend=False)
    return _layout(fig, "Loss functions: val Jaccard per trial (COMPLETE + PRUNED)")


def convergence(table: pd.DataFrame) -> go.Figure:
    """Best epoch against val Jaccard (coloured by epochs run), and val Jaccard per epoch to the best."""
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=("best epoch vs best val Jaccard", "efficiency: val Jaccard per epoch")
    )
    fig.add_trace(
        go.Scatter(
            x=table["best_epoch"],
            y=table["val_jaccard"],
            mode="markers",
            marker={
                "size": 10,
                "color": table["epochs_run"],
                "colorscale": "Viridis",
                "showscale": True,
                "colorbar": {"title": "epochs run", "x": 0.45},
            },
            customdata=table[["number", "state"]],
            hovertemplate="trial %{customdata[0]} (%{customdata[1]})<br>epoch %{x}: %{y:.4f}<extra></extra>",
            showlegend=False,
        ),
        row=1,
        col=1,
    )
    ordered = table.sort_values("jaccard_per_epoch", ascending=False)
    fig.add_trace(
        go.Bar(x=[f"trial {n}" for n in ordered["number"]], y=ordered["jaccard_per_epoch"], showlegend=False),
        row=1,
        col=2,
    )
    fig.update_xaxes(title_text="best epoch", **integer_ticks(table["best_epoch"].max()), row=1, col=1)
    fig.update_yaxes(title_text="val Jaccard", row=1, col=1)
    fig.update_yaxes(title_text="val Jaccard per epoch", row=1, col=2)
    return _layout(fig, "Convergence")


def heatmaps(cells: pd.DataFrame) -> go.Figure:
    """Learning rate × batch size per architecture: mean val Jaccard (top) and mean stability (bottom)."""
    architectures = list(dict.fromkeys(cells["architecture"]))
    rates, sizes = _categories(cells["learning_rate"]), _categories(cells["batch_size"])
    titles = [f"{a}: val Jaccard" for a in architectures] + [f"{a}: stability" for a in architectures]
    fig = make_subplots(
        rows=2, cols=len(architectures), subplot_titles=titles, vertical_spacing=0.2, horizontal_spacing=0.12
    )
    for col, architecture in enumerate(architectures, start=1):
        part = cells[cells["architecture"] == architecture]
        for row, (column, scale) in enumerate((("val_jaccard", "Viridis"), ("stability", "Magma_r")), start=1):
            grid = part.pivot_table(index="learning_rate", columns="batch_size", values=column, observed=True)
            grid = grid.reindex(index=rates, columns=sizes)
            fig.add_trace(
                go.Heatmap(
                    z=grid.to_numpy(),
                    x=[str(c) for c in grid.columns],
                    y=[str(i) for i in grid.index],
                    colorscale=scale,
                    texttemplate="%{z:.3g}",
                    showscale=False,
                    hovertemplate=f"lr %{{y}}, batch %{{x}}<br>{column} %{{z:.4g}}<extra></extra>",
                ),
                row=row,
                col=col,
            )
            fig.update_xaxes(type="category", title_text="batch size", row=row, col=col)
            fig.update_yaxes(type="category", title_text="learning rate" if col == 1 else None, row=row, col=col)
    return _layout(fig, "Learning rate × batch size per architecture", height=720)


def _categories(values: pd.Series) -> list:
    """The values in their categorical order (as grouped), else in order of first appearance."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        return [c for c in values.cat.categories if c in set(values)]
    return list(dict.fromkeys(values))


def importance_bars(importances: pd.DataFrame) -> go.Figure:
    fig = go.Figure(go.Bar(x=importances["importance"], y=importances["parameter"], orientation="h"))
    fig.update_layout(yaxis={"autorange": "reversed"}, xaxis_title="importance")
    return _layout(fig, "Parameter importances (Optuna, PED-ANOVA)", height=120 + 40 * len(importances))


def pruning_bars(pruning: pd.DataFrame) -> go.Figure:
    labels = [
        f"{stopped} (epoch {epoch:g})" if pd.notna(epoch) else stopped
        for stopped, epoch in zip(pruning["stopped"], pruning["epoch"], strict=True)
    ]
    fig = go.Figure(go.Bar(x=labels, y=pruning["trials"], marker_color=STATE_COLOURS["PRUNED"]))
    fig.update_layout(yaxis_title="trials pruned")
    fig.update_yaxes(rangemode="tozero", **integer_ticks(pruning["trials"].max()))
    return _layout(fig, "Where pruned trials stopped")


def worker_timeline(timeline: pd.DataFrame) -> go.Figure:
    """A Gantt chart of trials per worker, coloured by state."""
    frame = timeline.assign(label=timeline["number"].map(lambda n: f"trial {n}"))
    frame.loc[frame["end"] <= frame["start"], "end"] = frame["start"] + pd.Timedelta(seconds=1)
    fig = px.timeline(
        frame,
        x_start="start",
        x_end="end",
        y="worker",
        color="state",
        text="label",
        color_discrete_map=STATE_COLOURS,
        hover_data={"number": True, "seconds": ":.1f"},
    )
    fig.update_traces(textposition="inside", insidetextanchor="middle", textangle=0)
    fig.update_layout(uniformtext={"minsize": 9, "mode": "hide"})
    fig.update_yaxes(categoryorder="category ascending", title_text="worker (host:pid)")
    fig.update_xaxes(title_text="time (as stored by Optuna)")
    return _layout(fig, "Trials per worker", height=160 + 50 * frame["worker"].nunique())


def f1_against_jaccard(table: pd.DataFrame, best_number: int) -> go.Figure:
    """Object F1 against val Jaccard, one dot per COMPLETE trial; the best trial as a red star."""
    best = table["number"] == best_number
    fig = go.Figure()
    for rows, name, marker in (
        (table[~best], "trial", {"size": 9, "color": "#4c78a8"}),
        (table[best], f"best trial {best_number}", {"size": 15, "color": BEST_COLOUR, "symbol": "star"}),
    ):
        fig.add_trace(
            go.Scatter(
                x=rows["val_jaccard"],
                y=rows["val_object_f1"],
                mode="markers",
                marker=marker,
                name=name,
                customdata=rows["number"],
                hovertemplate="trial %{customdata}<br>val Jaccard %{x:.4f}<br>object F1 %{y:.4f}<extra></extra>",
            )
        )
    fig.update_layout(xaxis_title="val Jaccard (pixels)", yaxis_title="object F1 (beads matched at IoU 0.5)")
    return _layout(fig, "Bead-level F1 against pixel Jaccard, per COMPLETE trial")


def bead_counts(counts: pd.DataFrame, trial_number: int) -> go.Figure:
    """Predicted against true beads per validation image of one trial, with the line of a perfect count."""
    largest = float(max(counts["true"].max(), counts["predicted"].max(), 1))
    fig = go.Figure(
        [
            go.Scatter(
                x=[0, largest],
                y=[0, largest],
                mode="lines",
                line={"dash": "dot", "color": "grey"},
                name="predicted = true",
            ),
            go.Scatter(
                x=counts["true"],
                y=counts["predicted"],
                mode="markers",
                marker={"size": 10, "color": "#4c78a8"},
                name="validation image",
                customdata=counts["image"],
                hovertemplate="image %{customdata}<br>true %{x}<br>predicted %{y}<extra></extra>",
            ),
        ]
    )
    fig.update_layout(xaxis_title="true beads", yaxis_title="predicted beads")
    return _layout(fig, f"Bead counts per validation image, trial {trial_number}")


def confirmation_dots(runs: pd.DataFrame, table: pd.DataFrame, metric: str) -> go.Figure:
    """One dot per re-run of each confirmed configuration, its mean as a bar, its single run as a red star."""
    labels = {
        row.source_trial: f"trial {row.source_trial} (#{row.rank_single_run})" for row in table.itertuples(index=False)
    }
    fig = go.Figure(
        [
            go.Bar(
                x=[labels[number] for number in table["source_trial"]],
                y=table["value_mean"],
                error_y={"type": "data", "array": table["value_std"].fillna(0)},
                marker_color="#c6dbef",
                name="mean ± std of the re-runs",
            ),
            go.Scatter(
                x=[labels[number] for number in runs["source_trial"]],
                y=runs["value"],
                mode="markers",
                marker={"size": 9, "color": "#1f77b4"},
                name="re-run",
                customdata=runs["run"],
                hovertemplate="%{x}<br>%{customdata}: %{y:.4f}<extra></extra>",
            ),
            go.Scatter(
                x=[labels[number] for number in table["source_trial"]],
                y=table["single_run_value"],
                mode="markers",
                marker={"size": 14, "color": BEST_COLOUR, "symbol": "star"},
                name="single run (search)",
            ),
        ]
    )
    fig.update_layout(yaxis_title=metric, xaxis_title="configuration (single-run rank)")
    return _layout(fig, f"Confirmation: {metric} of each re-run against the search's single run")
