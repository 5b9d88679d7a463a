"""`optimize report`: numbers checked against the database, every section present, and report.html in a browser."""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState
from scipy import stats

from optimize.cli import main
from optimize.results.record import HISTORY_ATTR, history_columns, read_record
from optimize.results.report import write_report
from optimize.results.report._tables import convergence_table, study_data
from optimize.workers.objective import history_summary
from tests.helpers import dump_dom, needs_chromium, uncaught_errors

SECTIONS = (
    "Summary",
    "Top 5 configurations",
    "Per-parameter impact",
    "Learning curves",
    "Loss functions compared",
    "Convergence",
    "Stability",
    "Pruning",
    "Workers",
    "Findings",
)
MADE_CONFIG = """
description = "hand-made study for the report tests"

[data.synthetic]
n_images = 8

[training]
max_epochs = 40
patience = 10

[search]
architecture = ["unet", "resunet"]
learning_rate = { low = 1e-5, high = 5e-4, log = true }
batch_size = [4, 8, 16]
dropout = [0.0, 0.1, 0.2]
loss = ["dice", "focal", "combined"]

[pruner]
kind = "asha"
min_resource = 5
reduction_factor = 2
"""
DISTRIBUTIONS = {
    "architecture": CategoricalDistribution(["unet", "resunet"]),
    "learning_rate": FloatDistribution(1e-5, 5e-4, log=True),
    "batch_size": CategoricalDistribution([4, 8, 16]),
    "dropout": CategoricalDistribution([0.0, 0.1, 0.2]),
    "loss": CategoricalDistribution(["dice", "focal", "combined"]),
}
JS_ERROR_COLLECTOR = (
    "<script>addEventListener('error', function (e) { var d = document.documentElement;"
    " d.setAttribute('data-js-errors', (d.getAttribute('data-js-errors') || '') + ' | ' + e.message); });</script>"
)


def made_trial(
    rng: np.random.Generator,
    state: TrialState,
    epochs: int,
    start: datetime,
    worker="",
    params: dict | None = None,
    peak: float | None = None,
    **attrs,
):
    """A trial as the objective stores it: params, per-epoch history, its summary and intermediate values.

    `worker=None` leaves the worker out, as for a worker killed before it could store anything. Random
    params and a random peak val Jaccard unless `params` and `peak` are given.
    """
    if params is None:
        params = {name: rng.choice(d.choices).item() for name, d in DISTRIBUTIONS.items() if name != "learning_rate"}
        params["learning_rate"] = float(10 ** rng.uniform(-5, math.log10(5e-4)))
    if peak is None:
        peak = 0.1 + 0.3 * (params["loss"] != "dice") + 0.1 * rng.random()
    rows = []
    for epoch in range(1, epochs + 1):
        val = peak * (1 - math.exp(-epoch / 6)) - 0.002 * max(0, epoch - 25) + 0.005 * rng.random()
        train = val + 0.02 * epoch / 10
        rows.append(
            {"epoch": epoch, "loss": 1 - train, "val_loss": 1 - val + 0.01 * rng.random(), "jaccard": train}
            | {"val_jaccard": val, "lr": params["learning_rate"], "seconds": 2.0}
        )
    summary = history_summary(rows) if rows else {"epochs_run": 0}
    worker = f"node{rng.integers(1, 3)}:100" if worker == "" else worker
    user_attrs = {**summary, "worker": worker, **attrs}
    trial = optuna.trial.create_trial(
        state=state,
        value=summary.get("best_val_jaccard") if state == TrialState.COMPLETE else None,
        params=params,
        distributions=DISTRIBUTIONS,
        user_attrs={key: value for key, value in user_attrs.items() if value is not None},
        system_attrs={HISTORY_ATTR: history_columns(rows)},
        intermediate_values={row["epoch"]: row["val_jaccard"] for row in rows},
    )
    trial.datetime_start = start
    trial.datetime_complete = start + timedelta(seconds=2 * max(epochs, 1))
    return trial, trial.datetime_complete


def made_study(url: str | None, n_trials: int, seed: int = 0, config: bool = True) -> optuna.Study:
    """A study written by hand (no training): COMPLETE, PRUNED at the rungs 5/10/20, FAIL and a retry.

    `url=None` keeps it in memory; `config=False` leaves out the stored config, as a study made elsewhere.
    """
    study = optuna.create_study(study_name="made", storage=url, direction="maximize")
    if config:
        study.set_user_attr("config_toml", MADE_CONFIG)
        study.set_user_attr("config_file", "studies/made.toml")
    rng = np.random.default_rng(seed)
    clock = datetime(2025, 10, 10, 4, 31)
    for number in range(n_trials):
        if number == 5:
            trial, clock = made_trial(rng, TrialState.FAIL, 3, clock, worker=None)
        elif number == 8:
            trial, clock = made_trial(rng, TrialState.FAIL, 2, clock, reason="ResourceExhaustedError: OOM")
        elif number == 9:
            trial, clock = made_trial(rng, TrialState.COMPLETE, 30, clock, retry_of=5)
        elif number == 0 or number % 3 == 2:
            trial, clock = made_trial(rng, TrialState.COMPLETE, int(rng.integers(25, 41)), clock, enqueued=number == 0)
        else:
            rung = (5, 10, 20)[number % 3]
            trial, clock = made_trial(
                rng, TrialState.PRUNED, rung, clock, reason=f"pruned at epoch {rung}", enqueued=number == 1
            )
        study.add_trial(trial)
    return study


def report_files(out: Path) -> tuple[str, str]:
    return (out / "REPORT.md").read_text(encoding="utf-8"), (out / "report.html").read_text(encoding="utf-8")


def assert_every_section(markdown: str, html: str) -> None:
    for title in SECTIONS:
        assert f"\n## {title}\n" in markdown
        assert f"<h2>{title}</h2>" in html
    assert "Ã" not in markdown + html  # no doubly encoded UTF-8 (Ã— for ×)
    assert '<meta charset="utf-8">' in html


def test_report_matches_database(finished_study, monkeypatch, capsys):
    study, studies, _, _ = finished_study
    monkeypatch.setenv("OPTIMIZE_STUDIES_DIR", str(studies))
    assert main(["report", "--study", "tiny"]) == 0
    out = studies / "tiny" / "report"
    printed = capsys.readouterr().out
    assert str(out / "REPORT.md") in printed and str(out / "report.html") in printed
    markdown, html = report_files(out)
    assert_every_section(markdown, html)
    trials = study.get_trials()

    complete = sorted((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: (-t.value, t.number))
    others = [t for t in trials if t.state != TrialState.COMPLETE]
    others = sorted(others, key=lambda t: (-t.user_attrs["best_val_jaccard"], t.number))
    top = pd.read_csv(out / "tables" / "top5.csv")
    assert top["number"].tolist() == [t.number for t in (complete + others)[:5]]
    assert top["val_jaccard"].iloc[0] == pytest.approx(study.best_value)
    assert f"**Best: trial {study.best_trial.number}**, val Jaccard **{study.best_value:.4f}**" in markdown

    by_architecture: dict[str, list[float]] = {}  # COMPLETE trials only: a pruned trial's value has fewer epochs
    for trial in complete:
        by_architecture.setdefault(trial.params["architecture"], []).append(trial.value)
    architecture, values = max(by_architecture.items(), key=lambda item: len(item[1]))
    impact = pd.read_csv(out / "tables" / "parameter_impact.csv")
    row = impact[(impact["parameter"] == "architecture") & (impact["value"] == architecture)].iloc[0]
    assert row["count"] == len(values)
    assert row["mean"] == pytest.approx(np.mean(values))
    assert row["std"] == pytest.approx(np.std(values, ddof=1) if len(values) > 1 else math.nan, nan_ok=True)
    assert row["best"] == pytest.approx(max(values))

    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    pruning = pd.read_csv(out / "tables" / "pruning.csv")
    assert pruning["trials"].sum() == len(pruned)
    for rung, epoch in enumerate((1, 2)):  # tiny.toml: min_resource 1, reduction_factor 2, max_epochs 3
        expected = sum(read_record(t).reason_text == f"pruned at epoch {epoch}" for t in pruned)
        assert pruning.set_index("stopped").loc[f"rung {rung}", "trials"] == expected
    assert f"{len(pruned)} trials were pruned." in markdown
    epochs = pd.read_csv(out / "tables" / "epochs.csv").set_index("state")
    assert epochs.loc["total", "epochs_run"] == sum(t.user_attrs["epochs_run"] for t in trials)
    assert epochs.loc["total", "epochs_at_max"] == 3 * len(trials)

    enqueued = pd.read_csv(out / "tables" / "enqueued.csv")
    assert enqueued["number"].tolist() == [t.number for t in trials if t.user_attrs.get("enqueued")]
    states = pd.read_csv(out / "tables" / "states.csv").set_index("state")["trials"]
    assert states["total"] == len(trials) and states.get("PRUNED", 0) == len(pruned)
    workers = pd.read_csv(out / "tables" / "workers.csv")
    assert set(workers["worker"]) == {t.user_attrs["worker"] for t in trials}
    assert "batch_size" in markdown.split("## Stability")[1].split("## Pruning")[0]  # says what the heatmaps miss


def test_varied_study_heatmaps_failures_and_findings(tmp_path):
    study = made_study(None, 30)
    out = write_report(study, None, tmp_path / "report")
    markdown, html = report_files(out)
    assert_every_section(markdown, html)
    tables = {path.stem for path in (out / "tables").glob("*.csv")}
    assert {"top5", "parameter_impact", "anova", "convergence", "heatmap", "pruning", "failures", "timeline"} <= tables

    trials = study.get_trials()
    scored = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    groups = {}
    for trial in (t for t in trials if t.state == TrialState.COMPLETE):
        groups.setdefault(trial.params["batch_size"], []).append(trial.value)
    expected = stats.f_oneway(*[values for values in groups.values() if len(values) >= 2])
    anova = pd.read_csv(out / "tables" / "anova.csv").set_index("parameter")
    assert anova.loc["batch_size", "F"] == pytest.approx(expected.statistic)
    assert anova.loc["batch_size", "p"] == pytest.approx(expected.pvalue)

    failures = pd.read_csv(out / "tables" / "failures.csv", dtype={"retried_by": str}).set_index("number")
    assert failures.loc[5, "reason"] == "worker lost (heartbeat)" and failures.loc[5, "retried_by"] == "9"
    assert failures.loc[8, "reason"] == "ResourceExhaustedError: OOM"
    assert failures.loc[9, "retry_of"] == 5
    pruning = pd.read_csv(out / "tables" / "pruning.csv").set_index("stopped")
    assert pruning["epoch"].dropna().astype(int).tolist() == [5, 10, 20, 40]  # ASHA rungs up to max_epochs 40
    assert pruning.loc["rung 3", "trials"] == 0

    heatmap = pd.read_csv(out / "tables" / "heatmap.csv")
    assert set(heatmap["architecture"]) == {"unet", "resunet"}
    assert heatmap["trials"].sum() == len(scored)
    findings = markdown.split("## Findings")[1]
    assert (
        "**failures**: 2 of 30 trials failed: worker lost (heartbeat) × 1; ResourceExhaustedError: OOM × 1" in findings
    )
    n_pruned = sum(t.state == TrialState.PRUNED for t in trials)
    share = f"({n_pruned / len(scored):.0%})"
    assert f"**many pruned**: {n_pruned} of {len(scored)} finished trials {share} were pruned: " in findings
    assert "raise the pruner's min_resource." in findings
    assert re.search(r"\*\*(no )?significant effect\*\*: batch_size: F = [\d.]+, p = [\d.e-]+", findings)


def known_study(url: str | None) -> optuna.Study:
    """A study whose answers are known: 17 COMPLETE trials, their peak val Jaccard set by architecture.

    - architecture decides the score: resunet 0.86–0.93, unet 0.28–0.35 (8 trials each), and a lucky resunet
      at 0.97 whose loss, combined, appears nowhere else: the best loss group by mean, with n = 1.
    - dropout 0.2 is used by the 3 best trials and 2 unets (n = 5), every other trial has 0.1 (n = 12):
      the best group, well supported, but the two groups do not differ beyond chance.
    - learning_rate rises with the score (as if it mattered as much as architecture), 17 values in 4 bins.
    The peaks are 0.01 apart, more than the history's noise (0.005), so the ranking is the peaks' ranking.
    """
    study = optuna.create_study(study_name="known", storage=url, direction="maximize")
    study.set_user_attr("config_toml", MADE_CONFIG)
    configs = []
    for k in range(8):
        loss = "dice" if k % 2 else "focal"
        configs += [("unet", loss, 0.28 + 0.01 * k, 0.2 if k < 2 else 0.1), ("resunet", loss, 0.86 + 0.01 * k, 0.1)]
    configs[-1], configs[-3] = ("resunet", "dice", 0.93, 0.2), ("resunet", "focal", 0.92, 0.2)
    configs.append(("resunet", "combined", 0.97, 0.2))
    rng = np.random.default_rng(1)
    clock = datetime(2025, 10, 10, 4, 31)
    for architecture, loss, peak, dropout in configs:
        params = {"architecture": architecture, "loss": loss, "dropout": dropout, "batch_size": 8}
        params["learning_rate"] = 1e-5 * 10 ** (peak * 1.5)
        trial, clock = made_trial(rng, TrialState.COMPLETE, 30, clock, params=params, peak=peak)
        study.add_trial(trial)
    return study


def test_advice_needs_support(tmp_path, capsys):
    """Advice only where group size, the best trials and ANOVA all back it; otherwise the reason, with numbers."""
    url = f"sqlite:///{tmp_path / 'known.db'}"
    study = known_study(url)
    assert main(["report", "--study", "known", "--storage", url, "--out", str(tmp_path / "report")]) == 0
    capsys.readouterr()
    findings = report_files(tmp_path / "report")[0].split("## Findings")[1]
    lines = dict(re.findall(r"^- \*\*(?:no )?significant effect\*\*: (\w+): (.*)$", findings, flags=re.M))
    best3 = sorted(study.trials, key=lambda t: -t.value)[:3]
    numbers = ", ".join(str(t.number) for t in best3)
    assert [t.params["loss"] for t in best3] == ["combined", "dice", "focal"]

    n_resunet = sum(t.params["architecture"] == "resunet" for t in study.trials)
    assert (
        f"Its groups differ (p ≤ 0.05), 3 of the 3 best trials use resunet and its group holds {n_resunet} trials: "
        "consider fixing architecture at resunet and searching the others more densely." in lines["architecture"]
    )

    assert "consider fixing loss" not in findings  # the old rule advised the n = 1 group
    assert "best group combined (mean 0.9" in lines["loss"]
    assert (
        "No advice on loss: the best group combined has only 1 trial (needs ≥ 3), and the F and p leave it out "
        "(they need ≥ 2 trials per group); " in lines["loss"]
    )
    assert f"only 1 of the 3 best trials ({numbers}) uses combined; the others use dice, focal" in lines["loss"]

    dropout = [t.value for t in study.trials if t.params["dropout"] == 0.2]
    p = stats.f_oneway(dropout, [t.value for t in study.trials if t.params["dropout"] == 0.1]).pvalue
    assert p > 0.05 and len(dropout) >= 3
    assert f"best group 0.2 (mean {np.mean(dropout):.4f}, n = {len(dropout)})" in lines["dropout"]
    assert lines["dropout"].endswith(
        f"No advice on dropout: its groups do not differ significantly (p = {p:.3g} > 0.05)."
    )
    impact = pd.read_csv(tmp_path / "report" / "tables" / "parameter_impact.csv")
    rates = impact[impact["parameter"] == "learning_rate"]
    assert len(rates) == 4
    top_bin = rates.loc[rates["mean"].idxmax()]
    assert (
        f"{top_bin['count']} trials: consider narrowing learning_rate to {top_bin['value']} and"
        in lines["learning_rate"]
    )
    assert "**no advice**: batch_size: ANOVA n/a: needs ≥ 2 groups with ≥ 2 trials" in findings


def embedded_figures(html: str) -> dict[str, dict]:
    """Each plotly figure of report.html, by its title's first line: {"data": [...], "layout": {...}} as embedded."""
    decoder, figures = json.JSONDecoder(), {}
    for call in re.finditer(r'Plotly\.newPlot\(\s*"figure-\d+",\s*', html):
        data, end = decoder.raw_decode(html, call.end())
        layout, _ = decoder.raw_decode(html, re.compile(r",\s*").match(html, end).end())
        figures[layout["title"]["text"].split("<br>")[0]] = {"data": data, "layout": layout}
    return figures


def axes(figure: dict, letter: str) -> dict[str, dict]:
    return {name: axis for name, axis in figure["layout"].items() if re.fullmatch(f"{letter}axis\\d*", name)}


def test_figures_say_what_they_show(tmp_path):
    """Violins end at the data; counts and epochs tick on integers; every curve in the legend; every panel a y title."""
    study = made_study(None, 30)
    out = write_report(study, None, tmp_path / "report")
    figures = embedded_figures(report_files(out)[1])

    violins = figures["Loss functions: val Jaccard per trial (COMPLETE + PRUNED)"]["data"]
    assert {trace["type"] for trace in violins} == {"violin"}
    assert all(trace["spanmode"] == "hard" for trace in violins)

    counts = figures["Where pruned trials stopped"]["layout"]["yaxis"]
    assert pd.read_csv(out / "tables" / "pruning.csv")["trials"].max() <= 10  # small counts: a tick per trial
    assert (counts["dtick"], counts["tickformat"], counts["rangemode"]) == (1, "d", "tozero")

    curves = figures["Learning curves (dotted: best epoch)"]
    names = [trace["name"] for trace in curves["data"]]
    assert len(names) == 8 and len(set(names)) == 8  # best and worst trial × loss, Jaccard × train, val
    assert all(trace.get("showlegend") is not False for trace in curves["data"])
    best = study.best_trial
    assert f"best trial {best.number} ({best.params['architecture']}, {best.params['loss']}): val Jaccard" in names
    epoch_axes = [*axes(curves, "x").values(), figures["Convergence"]["layout"]["xaxis"]]
    assert all(axis["tickformat"] in ("d", ",d") for axis in epoch_axes)

    for title in (
        "Parameter impact on val Jaccard (COMPLETE trials)",
        "Learning curves (dotted: best epoch)",
        "Convergence",
    ):
        figure = figures[title]
        panels = {"yaxis" + trace.get("yaxis", "y")[1:] for trace in figure["data"]}
        assert len(panels) >= 2 and all(figure["layout"][axis]["title"]["text"] for axis in panels), title
        empty = set(axes(figure, "y")) - panels
        assert all(figure["layout"][axis]["visible"] is False for axis in empty), title


@pytest.mark.parametrize("n_trials, config", [(0, True), (1, True), (2, True), (2, False)])
def test_small_studies_say_what_they_need(tmp_path, n_trials, config):
    url = f"sqlite:///{tmp_path / 'made.db'}"
    study = made_study(url, n_trials, config=config)
    out = write_report(study, url, tmp_path / "report")
    markdown, html = report_files(out)
    assert_every_section(markdown, html)
    assert f"{n_trials} trials read from `{url}`" in markdown
    if n_trials == 0:
        assert "No COMPLETE trial yet" in markdown and "No trial has started yet." in markdown
    else:
        assert "needs ≥ 2 COMPLETE trials (has 1)" in markdown
        assert "n/a: needs ≥ 2 groups with ≥ 2 trials" in markdown
    if n_trials == 1:
        assert "a worst trial needs ≥ 2 COMPLETE or PRUNED trials" in markdown
    if not config:
        assert "no stored config (`config_toml`)" in markdown


@needs_chromium
@pytest.mark.parametrize("kind", ["finished", "made"])
def test_report_html_renders_every_figure_without_errors(kind, request, tmp_path):
    """On the trained study and on a hand-made one with every figure (heatmaps and failures too)."""
    study = request.getfixturevalue("finished_study")[0] if kind == "finished" else made_study(None, 30)
    out = write_report(study, None, tmp_path / "report")
    markdown, html = report_files(out)
    assert not re.search(r"<script[^>]*\bsrc=", html)  # plotly.js is inline: the page works offline
    assert html.count("plotly.js v") == 1  # embedded once, with the first figure
    n_figures = len(re.findall(r"^\*Figure \d+ ", markdown, flags=re.M))
    assert n_figures >= 7
    dom, stderr = open_with_error_collector(out / "report.html", tmp_path)
    assert dom.count('class="plotly-graph-div js-plotly-plot"') == n_figures  # js-plotly-plot: Plotly drew it
    assert dom.count('class="main-svg"') >= n_figures
    assert not uncaught_errors(stderr)
    assert "data-js-errors=" not in html_tag(dom)


@needs_chromium
def test_loss_violins_end_at_the_scores(tmp_path):
    """Drawn in Chromium, the loss figure's y axis covers the trials' scores, not a density tail beyond them.

    The known study's scores cluster at 0.3 and 0.9; a smoothed density drew them from −0.2 to 1.4.
    """
    study = known_study(None)
    out = write_report(study, None, tmp_path / "report")
    number = re.search(r"^\*Figure (\d+) [^:]*: Violin", report_files(out)[0], flags=re.M).group(1)
    dom, _ = dump_dom((out / "report.html").as_uri(), tmp_path / "profile")
    figure = dom.split(f'id="figure-{number}"')[1].split('id="figure-')[0]
    labels = re.findall(r'<g class="ytick"><text[^>]*data-unformatted="([^"]*)"', figure)
    ticks = [float(label.replace("−", "-")) for label in labels]
    scores = [trial.value for trial in study.trials]
    step = ticks[1] - ticks[0]
    assert min(scores) - step < ticks[0] and ticks[-1] < max(scores) + step, (ticks, min(scores), max(scores))


def open_with_error_collector(page: Path, tmp_path: Path) -> tuple[str, str]:
    """The page's DOM in Chromium, from a copy that records every uncaught error on <html data-js-errors>."""
    copy = tmp_path / f"checked_{page.name}"
    copy.write_text(page.read_text(encoding="utf-8").replace("<head>", "<head>" + JS_ERROR_COLLECTOR, 1))
    return dump_dom(copy.as_uri(), tmp_path / "profile")


def html_tag(dom: str) -> str:
    return re.search(r"<html[^>]*>", dom).group(0)


@needs_chromium
def test_error_checks_catch_a_broken_page(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><head></head><body><script>undefinedFunction();</script></body></html>")
    dom, stderr = open_with_error_collector(page, tmp_path)
    assert uncaught_errors(stderr)
    assert "data-js-errors=" in html_tag(dom)


def study_of(name: str, config: str, trials: list) -> optuna.Study:
    """An in-memory study with this stored config and these trials."""
    study = optuna.create_study(study_name=name, direction="maximize")
    study.set_user_attr("config_toml", config)
    for trial in trials:
        study.add_trial(trial)
    return study


def findings_of(study: optuna.Study, out: Path) -> str:
    return report_files(write_report(study, None, out))[0].split("## Findings")[1]


def test_advice_compares_complete_trials_and_needs_the_best_group_to_beat_the_runner_up(tmp_path):
    """Batch sizes 8 and 16 score alike, 4 is bad: ANOVA's p only says 4 is bad, so no "fix at 16". Pruned
    trials at 16 with their early values would drag its mean below 8's; they are left out. Dropout 0.2 is
    the best trial's but no other top trial's: one trial at the edge is no reason to widen it."""
    rng = np.random.default_rng(0)
    clock = datetime(2025, 10, 10, 4, 31)
    trials = []
    peaks = {4: [0.10, 0.11, 0.12, 0.13], 8: [0.50, 0.52, 0.54, 0.56], 16: [0.51, 0.53, 0.55, 0.57]}
    for batch_size, values in peaks.items():
        for k, peak in enumerate(values):
            dropout = 0.2 if peak == 0.57 else (0.0, 0.1)[k % 2]
            params = {"architecture": "unet", "learning_rate": 1e-4, "batch_size": batch_size}
            params |= {"dropout": dropout, "loss": "dice"}
            trial, clock = made_trial(rng, TrialState.COMPLETE, 30, clock, params=params, peak=peak)
            trials.append(trial)
    for _ in range(3):
        params = {"architecture": "unet", "learning_rate": 1e-4, "batch_size": 16, "dropout": 0.1, "loss": "dice"}
        trial, clock = made_trial(rng, TrialState.PRUNED, 5, clock, params=params, peak=0.3, reason="pruned")
        trials.append(trial)
    study = study_of("runner_up", MADE_CONFIG, trials)
    findings = findings_of(study, tmp_path / "report")

    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    impact = pd.read_csv(tmp_path / "report" / "tables" / "parameter_impact.csv").set_index(["parameter", "value"])
    assert impact.loc[("batch_size", "16"), "count"] == 4
    sixteen, eight = ([t.value for t in complete if t.params["batch_size"] == size] for size in (16, 8))
    p = stats.ttest_ind(sixteen, eight, equal_var=False).pvalue
    line = re.search(r"significant effect\*\*: batch_size: (.*)", findings).group(1)
    assert "best group 16 (mean" in line and "Its groups differ" in line
    assert f"it does not beat the runner-up 8 (mean {np.mean(eight):.4f}, n = 4) beyond chance " in line
    assert f"(Welch's t-test p = {p:.3g} > 0.05)" in line and "consider fixing batch_size" not in findings

    assert "has dropout = 0.2" not in findings  # the best trial's alone; the next two have 0.0 and 0.1
    best3 = sorted(complete, key=lambda t: -t.value)[:3]
    assert sum(t.params["batch_size"] == 16 for t in best3) == 2
    assert (
        f"best trial {best3[0].number} has batch_size = 16, the largest of the searched choices 4, 8, 16, as does "
        "1 of the other 2 best COMPLETE trials: add larger choices." in findings
    )


def test_a_lone_trial_at_an_edge_is_no_reason_to_widen_a_range(tmp_path):
    """The only COMPLETE trial at the top of the learning-rate range was told to widen it ('as do 1 of the 1 best
    COMPLETE trials': itself); a second trial there backs it."""
    rng = np.random.default_rng(1)
    clock = datetime(2025, 10, 10, 4, 31)
    params = {"architecture": "unet", "learning_rate": 4.9e-4, "batch_size": 8, "dropout": 0.1, "loss": "dice"}
    lone, clock = made_trial(rng, TrialState.COMPLETE, 30, clock, params=params, peak=0.5)
    assert "widen the range" not in findings_of(study_of("lone", MADE_CONFIG, [lone]), tmp_path / "lone")
    second, clock = made_trial(rng, TrialState.COMPLETE, 30, clock, params=params | {"batch_size": 4}, peak=0.4)
    findings = findings_of(study_of("two", MADE_CONFIG, [lone, second]), tmp_path / "two")
    assert (
        "best trial 0 has learning_rate = 0.00049, in the upper 10% of the searched range [1e-05, 0.0005] (log "
        "scale), as does 1 of the other 1 best COMPLETE trials: widen the range upward." in findings
    )


PRUNER_CONFIG = MADE_CONFIG.replace(
    '[pruner]\nkind = "asha"\nmin_resource = 5\nreduction_factor = 2\n', '[pruner]\nkind = "median"\n'
)


def test_pruning_findings_count_the_pruners_decisions_and_name_its_setting(tmp_path):
    """Trials stopped by a NaN or out of memory are not the pruner's doing; the median pruner waits by
    n_warmup_steps, not min_resource. A study of imported trials without best epochs gets no epoch advice."""
    rng = np.random.default_rng(0)
    clock = datetime(2025, 10, 10, 4, 31)
    trials = []
    for state, epochs, attrs in [
        (TrialState.COMPLETE, 40, {}),
        (TrialState.COMPLETE, 40, {}),
        (TrialState.PRUNED, 5, {"reason": "pruned", "pruned_epoch": 5}),
        (TrialState.PRUNED, 3, {"reason": "nan", "pruned_epoch": 3}),
        (TrialState.PRUNED, 0, {"reason": "oom"}),
        (TrialState.PRUNED, 0, {"reason": "oom"}),
    ]:
        trial, clock = made_trial(rng, state, epochs, clock, **attrs)
        trials.append(trial)
    study = study_of("faults", PRUNER_CONFIG, trials)
    findings = findings_of(study, tmp_path / "faults")
    assert "many pruned" not in findings  # 1 of 3 by the pruner
    epochs = pd.read_csv(tmp_path / "faults" / "tables" / "epochs.csv").set_index("state")
    assert epochs.loc["PRUNED", "trials"] == 1 and epochs.loc["total", "epochs_at_max"] == 3 * 40

    for _ in range(2):
        trial, clock = made_trial(rng, TrialState.PRUNED, 10, clock, reason="pruned", pruned_epoch=10)
        trials.append(trial)
    findings = findings_of(study_of("median", PRUNER_CONFIG, trials), tmp_path / "median")
    assert (
        "**many pruned**: 3 of 5 finished trials (60%) were pruned: 1 at epoch 5 (not a rung); 2 at epoch 10 (not "
        "a rung). If early epochs predict the final value poorly, raise the pruner's n_warmup_steps." in findings
    )

    distributions = {"loss": CategoricalDistribution(["dice", "focal", "combined"])}
    imported = [
        optuna.trial.create_trial(value=0.5 + k / 100, params={"loss": "dice"}, distributions=distributions)
        for k in range(3)
    ]
    assert "best epoch near max_epochs" not in findings_of(study_of("imported", MADE_CONFIG, imported), tmp_path / "i")


def test_a_searched_max_epochs_is_each_trials_own(tmp_path):
    """Rungs go up to the highest searched max_epochs, and a trial's epochs and its peak count against its own."""
    config = MADE_CONFIG.replace("max_epochs = 40\n", "").replace("[search]\n", "[search]\nmax_epochs = [10, 20]\n")
    distributions = {**DISTRIBUTIONS, "max_epochs": CategoricalDistribution([10, 20])}
    trials = []
    for k, max_epochs in enumerate([10, 20, 10, 20]):
        params = {"architecture": "unet", "learning_rate": 1e-4, "batch_size": 8, "dropout": 0.1, "loss": "dice"}
        rows = [{"epoch": e, "val_jaccard": 0.1 * e / max_epochs + k / 1000, "jaccard": 0.5} for e in range(max_epochs)]
        summary = history_summary([{**row, "epoch": row["epoch"] + 1, "loss": 0.5, "val_loss": 0.5} for row in rows])
        trials.append(
            optuna.trial.create_trial(
                value=summary["best_val_jaccard"],
                params={**params, "max_epochs": max_epochs},
                distributions=distributions,
                user_attrs={**summary, "worker": "node:1"},
                intermediate_values={e + 1: r["val_jaccard"] for e, r in enumerate(rows)},
            )
        )
        assert trials[-1].user_attrs["best_epoch"] == max_epochs
    markdown = report_files(write_report(study_of("epochs", config, trials), None, tmp_path / "report"))[0]
    assert "rungs at epochs 5, 10, 20 (max_epochs searched, up to 20;" in markdown
    epochs = pd.read_csv(tmp_path / "report" / "tables" / "epochs.csv").set_index("state")
    assert epochs.loc["COMPLETE", "epochs_at_max"] == epochs.loc["COMPLETE", "epochs_run"] == 60
    assert "4 of 4 COMPLETE trials peaked at epoch ≥ 90% of their max_epochs: raise max_epochs" in markdown


def test_a_best_epoch_0_from_an_imported_row_gets_no_jaccard_per_epoch():
    """The users' scripts may count epochs from 0, and import-results keeps their best epoch: 0.4 / 0 is no rate."""
    distributions = {"loss": CategoricalDistribution(["dice", "focal", "combined"])}
    trials = [
        optuna.trial.create_trial(
            value=value,
            params={"loss": "dice"},
            distributions=distributions,
            user_attrs={"best_epoch": best_epoch, "epochs_run": 5, "best_val_jaccard": value},
        )
        for value, best_epoch in ((0.4, 0), (0.3, 3))
    ]
    table = convergence_table(study_data(study_of("imported", MADE_CONFIG, trials))).set_index("number")
    assert math.isnan(table.loc[0, "jaccard_per_epoch"]) and table.loc[1, "jaccard_per_epoch"] == pytest.approx(0.1)
