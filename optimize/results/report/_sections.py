"""The report's sections: which tables, figures and sentences each shows, and what it says when data is short."""

from __future__ import annotations

import optuna
import pandas as pd
from optuna.trial import TrialState

from optimize.results.confirmation import confirmation_plan, confirmed_pick, load_confirmation
from optimize.results.formatting import format_params
from optimize.results.record import HEARTBEAT_LOST, VAL_JACCARD

from . import _figures as figures
from . import _tables as tables
from ._findings import findings
from ._render import Figure, Items, Section, Table, Text, jaccard

SCORED = "COMPLETE + PRUNED trials, each scored by the best val Jaccard it reached (a pruned trial in fewer epochs)"
COMPARED = (
    "COMPLETE trials, each scored by the best val Jaccard it reached (pruned trials are left out: their values come "
    "from fewer epochs)"
)


def build_sections(study: optuna.Study, data: tables.ReportData) -> list[Section]:
    impact = tables.impact_table(data)
    anova = tables.anova_table(data)
    pruning = tables.pruning_table(data)
    return [
        summary(data),
        top(data),
        confirmation(study),
        bead_metrics(data),
        parameter_impact(study, data, impact, anova),
        learning_curves(data),
        loss_functions(data),
        convergence(data),
        stability(data),
        pruning_section(data, pruning),
        workers(data),
        Section("Findings", _finding_blocks(findings(data, impact, anova, pruning))),
    ]


def summary(data: tables.ReportData) -> Section:
    section = Section("Summary")
    config = data.config
    if config is not None and config.description:
        section.blocks.append(Text(config.description))
    section.blocks.append(Table("states", tables.state_counts(data.trials), "Trials by state"))
    section.blocks.append(
        Table("trials", data.frame, "Every trial (as `export-best`'s search_results.csv)", shown=False)
    )
    if data.complete.empty:
        section.blocks.append(Text("No COMPLETE trial yet: there is no best configuration."))
        return section
    best = data.complete.iloc[0]
    trial = next(t for t in data.trials if t.number == best["number"])
    record = data.records[trial.number]
    metric = tables.study_metric_name(data)
    chosen = "" if metric == VAL_JACCARD else f"by the study's metric `{metric}` = **{trial.value:.4f}**, "
    section.blocks.append(
        Text(
            f"**Best: trial {trial.number}**, {chosen}val Jaccard **{jaccard(best['val_jaccard'])}** at epoch "
            f"{_or_na(record.best_epoch)} of {_or_na(record.epochs_run)} run "
            f"(final {jaccard(record.final_val_jaccard)}). "
            f"Configuration: `{format_params(trial.params)}`."
        )
    )
    enqueued = tables.enqueued_table(data)
    if enqueued.empty:
        section.blocks.append(Text("No enqueued baseline configurations in this study."))
    else:
        section.blocks.append(
            Table(
                "enqueued",
                enqueued,
                "Enqueued baseline configurations against the best "
                f"(minus_best = {'val Jaccard' if metric == VAL_JACCARD else metric} − best)",
            )
        )
    return section


def top(data: tables.ReportData) -> Section:
    section = Section("Top 5 configurations")
    table = tables.top_table(data)
    if table.empty:
        section.blocks.append(Text("Needs at least one trial with a val Jaccard."))
        return section
    section.blocks += [
        Text("Ranked as in `export-best`: COMPLETE trials by value, then the others by the best val Jaccard reached."),
        Table("top5", table, "Top configurations"),
        Figure("top5", figures.top_bars(table), "Best val Jaccard (peak) and final val Jaccard (last epoch)."),
    ]
    return section


def confirmation(study: optuna.Study) -> Section:
    section = Section("Confirmation")
    confirm_study = load_confirmation(study)
    if confirm_study is None:
        section.blocks.append(
            Text(
                f"Not confirmed: `optimize confirm --study {study.study_name}` re-trains the top configurations "
                "with new seeds, so that the pick does not rest on one run each."
            )
        )
        return section
    found = confirmed_pick(study, confirm_study)
    runs = tables.confirmation_runs(confirm_study)
    plan = confirmation_plan(confirm_study) or {}
    how = f"on {plan['folds']} folds" if plan.get("folds") else f"with seeds {plan.get('seeds')}"
    section.blocks += [
        Text(
            f"Study `{confirm_study.study_name}` re-trained the top {len(found.table)} configurations {how}, to full "
            f"length and without pruning: {found.runs_done} of {found.runs_planned} runs COMPLETE. "
            f"Verdict: **{found.summary()}**."
        ),
        Table("confirmation", found.table, f"Mean ± std over the re-runs ({found.metric} is the study's metric)"),
    ]
    if not runs.empty:
        section.blocks += [
            Figure(
                "confirmation",
                figures.confirmation_dots(runs, found.table, found.metric),
                "Blue dots: each re-run; bars: their mean ± std; red star: the configuration's run in the search.",
            ),
            Table("confirmation_runs", runs, "Every re-run", shown=False),
        ]
    return section


def bead_metrics(data: tables.ReportData) -> Section:
    section = Section("Bead-level metrics")
    table = tables.object_metrics_table(data)
    if table.empty:
        section.blocks.append(Text("Needs ≥ 1 COMPLETE trial with bead-level metrics (trials of this version)."))
        return section
    best_number = int(table["number"].iloc[0])
    section.blocks += [
        Text(
            "Each COMPLETE trial's model, at its best epoch, predicts the validation images; predictions above 0.5 "
            "form beads (connected components), matched one-to-one to the true beads at IoU ≥ 0.5. AP50 = "
            "TP / (TP + FP + FN); count error = mean over images of |predicted − true| / true."
        ),
        Table("object_metrics", table, "Bead-level metrics of the top COMPLETE trials"),
    ]
    if len(table) >= 3:
        constant = [name for name in ("val_jaccard", "val_object_f1") if table[name].nunique() < 2]
        if constant:
            correlation = f"n/a ({' and '.join(constant)} the same in every trial)"
        else:
            correlation = f"{table['val_jaccard'].corr(table['val_object_f1'], method='spearman'):.2f}"
        section.blocks.append(
            Text(f"Rank correlation (Spearman) of val Jaccard and object F1 over these trials: {correlation}.")
        )
    all_scored = data.complete[data.complete["val_object_f1"].notna()]
    section.blocks.append(
        Figure(
            "f1_vs_jaccard",
            figures.f1_against_jaccard(all_scored, best_number),
            "One dot per COMPLETE trial; red star: the best trial.",
        )
    )
    counts = tables.bead_counts_table(next(t for t in data.trials if t.number == best_number))
    if counts is not None:
        section.blocks += [
            Table("bead_counts", counts, f"Beads per validation image, trial {best_number}", shown=False),
            Figure(
                "bead_counts",
                figures.bead_counts(counts, best_number),
                f"Predicted against true beads per validation image of trial {best_number}; dotted: a perfect count.",
            ),
        ]
    return section


def parameter_impact(
    study: optuna.Study, data: tables.ReportData, impact: pd.DataFrame, anova: pd.DataFrame
) -> Section:
    section = Section("Per-parameter impact")
    section.blocks.append(
        Text(
            f"Uses {len(data.compared)} {COMPARED}. Numeric parameters with more than {tables.MAX_LEVELS} distinct "
            f"values are split into up to {tables.MAX_BINS} quantile bins (on log10 for log-scaled ranges); "
            "std needs ≥ 2 trials."
        )
    )
    if impact.empty:
        section.blocks.append(Text("Needs ≥ 1 COMPLETE trial with a val Jaccard."))
    else:
        section.blocks += [
            Table("parameter_impact", impact, "val Jaccard per parameter value"),
            Figure(
                "parameter_impact", figures.impact_bars(impact), "Bars: mean ± std; red star: best trial per value."
            ),
        ]
    section.blocks.append(
        Text("One-way ANOVA (scipy `f_oneway`) of val Jaccard across each parameter's groups of ≥ 2 COMPLETE trials.")
    )
    section.blocks.append(Table("anova", anova, "ANOVA per parameter"))
    importances, note = tables.importance_table(study, data)
    if importances is None:
        section.blocks.append(Text(f"Parameter importances: {note}."))
    else:
        section.blocks += [
            Table("importances", importances, f"Optuna parameter importances ({note})"),
            Figure("importances", figures.importance_bars(importances), f"Parameter importances, {note}."),
        ]
    return section


def learning_curves(data: tables.ReportData) -> Section:
    section = Section("Learning curves")
    best, worst = tables.curve_trials(data)
    if best is None:
        section.blocks.append(Text("Needs ≥ 1 COMPLETE or PRUNED trial that trained an epoch."))
        return section
    if worst is None:
        section.blocks.append(Text("Only one trial trained: a worst trial needs ≥ 2 COMPLETE or PRUNED trials."))
    else:
        section.blocks.append(
            Text(
                f"Worst: trial {worst.number} ({worst.state.name}), the lowest val Jaccard among the other COMPLETE "
                "trials, or among PRUNED ones when there is no other COMPLETE trial."
            )
        )
    described = f"best trial {best.number}" + (f" and worst trial {worst.number}" if worst else "")
    section.blocks.append(
        Figure(
            "learning_curves",
            figures.learning_curves(best, worst),
            f"Loss and Jaccard, train (solid) and val (dashed), of {described}; dotted line: best epoch.",
        )
    )
    return section


def loss_functions(data: tables.ReportData) -> Section:
    section = Section("Loss functions compared")
    if "loss" not in data.params:
        fixed = f" (fixed: {data.config.training.loss})" if data.config else ""
        section.blocks.append(Text(f"The loss is not searched in this study{fixed}."))
        return section
    scored = data.scored[data.scored["loss"].notna()]
    if scored.empty:
        section.blocks.append(Text("Needs ≥ 1 COMPLETE or PRUNED trial with a val Jaccard."))
        return section
    section.blocks += [
        Text(f"Distribution of val Jaccard per loss over {len(scored)} {SCORED}."),
        Figure("loss_functions", figures.loss_violins(scored), "Violin, box (median, quartiles) and every trial."),
    ]
    return section


def convergence(data: tables.ReportData) -> Section:
    section = Section("Convergence")
    table = tables.convergence_table(data)
    if table.empty:
        section.blocks.append(Text("Needs ≥ 1 COMPLETE or PRUNED trial with a best epoch."))
        return section
    section.blocks += [
        Text("Efficiency = best val Jaccard ÷ best epoch: how much each epoch to the peak bought."),
        Table("convergence", table, "Best epoch, efficiency, stability and train–val gap per trial"),
        Figure("convergence", figures.convergence(table), "Left: best epoch × val Jaccard; right: efficiency."),
    ]
    return section


def stability(data: tables.ReportData) -> Section:
    section = Section("Stability")
    section.blocks.append(
        Text(
            "Stability = std of val loss over the last 10 epochs of a trial (lower is steadier); it is in the "
            "convergence table per trial."
        )
    )
    cells, missing = tables.heatmap_table(data)
    if missing:
        section.blocks.append(
            Text(f"Learning rate × batch size heatmaps need both searched; not searched here: {', '.join(missing)}.")
        )
    elif cells is None:
        section.blocks.append(Text("Heatmaps need ≥ 1 COMPLETE or PRUNED trial with a val Jaccard."))
    else:
        section.blocks += [
            Table("heatmap", cells, "Mean val Jaccard and stability per architecture × learning rate × batch size"),
            Figure("heatmaps", figures.heatmaps(cells), f"Cell means over {SCORED}; empty cell: no trial."),
        ]
    return section


def pruning_section(data: tables.ReportData, pruning: pd.DataFrame) -> Section:
    section = Section("Pruning")
    config = data.config
    if config is None:
        section.blocks.append(Text("The study has no stored config (`config_toml`): rungs and max_epochs unknown."))
    else:
        rungs = config.pruner.asha_rungs(data.max_epochs)
        pruner = config.pruner
        searched = config.search.get("max_epochs")
        limit = f"max_epochs searched, up to {data.max_epochs}" if searched else f"max_epochs {data.max_epochs}"
        if rungs:
            section.blocks.append(
                Text(
                    f"ASHA: min_resource {pruner.min_resource}, reduction_factor {pruner.reduction_factor}, "
                    f"min_early_stopping_rate {pruner.min_early_stopping_rate}; rungs at epochs "
                    f"{', '.join(map(str, rungs))} ({limit}; a trial is never "
                    "pruned at its last epoch)."
                )
            )
        else:
            section.blocks.append(Text(f"Pruner: {pruner.kind} (no ASHA rungs); pruned trials by stopping epoch."))
    n_pruned = sum(trial.state == TrialState.PRUNED for trial in data.trials)
    section.blocks.append(Text(f"{n_pruned} trials were pruned."))
    section.blocks.append(Table("pruning", pruning, "PRUNED trials per rung, other epoch or reason"))
    if n_pruned:
        section.blocks.append(Figure("pruning", figures.pruning_bars(pruning), "Trials pruned at each rung."))
    epochs = tables.epochs_table(data)
    if epochs is not None and not epochs.empty:
        section.blocks.append(
            Table(
                "epochs",
                epochs,
                "Epochs trained against COMPLETE and pruned trials at their max_epochs (saved by pruning + early "
                "stopping; trials stopped by a NaN or out of memory left out)",
            )
        )
    return section


def workers(data: tables.ReportData) -> Section:
    section = Section("Workers")
    timeline = tables.timeline_table(data)
    if timeline.empty:
        section.blocks.append(Text("No trial has started yet."))
        return section
    section.blocks += [
        Table("workers", tables.workers_table(timeline), "Trials and busy seconds per worker (host:pid)"),
        Figure("timeline", figures.worker_timeline(timeline), "Trials per worker over time, coloured by state."),
        Table("timeline", timeline, "Trial start and end per worker (times as stored by Optuna)", shown=False),
    ]
    failed = tables.failures_table(data)
    if failed.empty:
        section.blocks.append(Text("No failed, interrupted or retried trials."))
    else:
        section.blocks.append(
            Text(f"A FAIL trial without a reason was marked FAIL by a heartbeat check: `{HEARTBEAT_LOST}`.")
        )
        section.blocks.append(Table("failures", failed, "Failures and retries"))
    return section


def _finding_blocks(found: list) -> list:
    if not found:
        return [Text("No rule fired on this study's data.")]
    return [
        Text("Each finding comes from a fixed rule over the numbers above (rule name in bold)."),
        Items([f"**{finding.rule}**: {finding.text}" for finding in found]),
    ]


def _or_na(value: object) -> str:
    return "n/a" if value is None else str(value)
