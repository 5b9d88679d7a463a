"""Rule-based findings: each rule looks at the study's numbers and, when it fires, says so with them."""

from __future__ import annotations

import math
import warnings
from collections import Counter
from dataclasses import dataclass

import pandas as pd
from optuna.trial import TrialState
from scipy import stats

from optimize.results.formatting import format_value
from optimize.results.record import VAL_JACCARD, shown_reason
from optimize.search.space import ParamSpec

from ._render import jaccard
from ._tables import ALPHA, ReportData, stopped_by_fault, study_metric_name, value_groups

EDGE = 0.1
NEAR_MAX_EPOCHS = 0.9
HIGH_GAP = 0.1
DECLINE = 0.1
MANY_PRUNED = 0.5
MIN_GROUP_TRIALS = 3
TOP_TRIALS = 3


@dataclass(frozen=True)
class Finding:
    rule: str
    text: str


def findings(data: ReportData, impact: pd.DataFrame, anova: pd.DataFrame, pruning: pd.DataFrame) -> list[Finding]:
    """Every rule's finding, in a fixed order."""
    return [
        *edge_of_range(data, anova),
        *best_epoch_near_max(data),
        *parameter_effects(data, impact, anova),
        *train_val_gap(data),
        *decline_after_peak(data),
        *many_pruned(data, pruning),
        *failures(data),
        *baselines(data),
    ]


def _best(data: ReportData) -> pd.Series | None:
    complete = data.complete
    return None if complete.empty else complete.iloc[0]


def edge_of_range(data: ReportData, anova: pd.DataFrame) -> list[Finding]:
    """The best value in the outer 10 % of a searched range (log scale for log ranges), or an extreme choice.

    Only where the trials back it: another of the `TOP_TRIALS` best COMPLETE trials at least, and most of them
    with the best one, sit at the same edge and, where ANOVA can be computed, the parameter's groups differ
    (p ≤ ALPHA); one lucky trial at an edge (the only COMPLETE one, say) is no reason to widen a range.
    """
    best = _best(data)
    if best is None:
        return []
    p_values = dict(zip(anova["parameter"], anova["p"], strict=True)) if not anova.empty else {}
    top = data.compared.head(TOP_TRIALS)
    out = []
    for name, spec in data.specs.items():
        value = best.get(name)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        side = _edge(spec, value)
        if side is None or (side == "lower" and value == 0):  # nothing below 0 (dropout, clipnorm, warmup)
            continue
        others = top[top["number"] != best["number"]]
        backing = sum(_edge(spec, other) == side for other in others[name].dropna()) if name in top else 0
        p_value = p_values.get(name, math.nan)
        if not backing or (backing + 1) * 2 <= len(others) + 1 or (math.isfinite(p_value) and p_value > ALPHA):
            continue
        if spec.is_categorical:
            where = f"the {'smallest' if side == 'lower' else 'largest'} of the searched choices "
            where += ", ".join(map(format_value, spec.choices))
            advice = f"add {'smaller' if side == 'lower' else 'larger'} choices"
        else:
            where = f"in the {side} {EDGE:.0%} of the searched range [{format_value(spec.low)}, "
            where += f"{format_value(spec.high)}]" + (" (log scale)" if spec.log else "")
            advice = f"widen the range {'downward' if side == 'lower' else 'upward'}"
        verb = "does" if backing == 1 else "do"
        text = (
            f"best trial {best['number']} has {name} = {format_value(value)}, {where}, as {verb} {backing} of the "
            f"other {len(others)} best COMPLETE trials: {advice}."
        )
        out.append(Finding("edge of range", text))
    return out


def _edge(spec: ParamSpec, value: object) -> str | None:
    if spec.is_categorical:
        numeric = [c for c in spec.choices if isinstance(c, int | float) and not isinstance(c, bool)]
        if len(numeric) < 3 or len(numeric) != len(spec.choices):
            return None
        return "lower" if value == min(numeric) else "upper" if value == max(numeric) else None
    low, high, value = float(spec.low), float(spec.high), float(value)
    if spec.log:
        low, high, value = math.log10(low), math.log10(high), math.log10(value)
    position = (value - low) / (high - low)
    return "lower" if position <= EDGE else "upper" if position >= 1 - EDGE else None


def best_epoch_near_max(data: ReportData) -> list[Finding]:
    """COMPLETE trials peaking in the last 10 % of their max_epochs: they might still improve with more epochs."""
    best = _best(data)
    if best is None or data.max_epochs is None:
        return []
    trials = {trial.number: trial for trial in data.trials}
    complete = data.complete[data.complete["best_epoch"].notna()]
    limits = complete["number"].map(lambda number: data.max_epochs_of(trials[int(number)]))
    late_rows = complete["best_epoch"] >= NEAR_MAX_EPOCHS * limits
    late = int(late_rows.sum())
    best_limit = data.max_epochs_of(trials[int(best["number"])])
    best_late = pd.notna(best["best_epoch"]) and best["best_epoch"] >= NEAR_MAX_EPOCHS * best_limit
    if complete.empty or (not best_late and late * 2 < len(complete)):
        return []
    return [
        Finding(
            "best epoch near max_epochs",
            f"best trial {best['number']} peaked at epoch {_int(best['best_epoch'])} of max_epochs {best_limit}; "
            f"{late} of {len(complete)} COMPLETE trials peaked at epoch ≥ {NEAR_MAX_EPOCHS:.0%} of their "
            "max_epochs: raise max_epochs (and patience).",
        )
    ]


def parameter_effects(data: ReportData, impact: pd.DataFrame, anova: pd.DataFrame) -> list[Finding]:
    """ANOVA per parameter, with advice to fix it at one value only where the trials support that value.

    The candidate is the group with the highest mean, over COMPLETE trials. Advice needs all of: that group
    holds at least `MIN_GROUP_TRIALS` trials, most of the `TOP_TRIALS` best trials use its value, the groups
    differ (ANOVA p ≤ ALPHA), and the group beats the runner-up group (Welch's t-test p ≤ ALPHA): ANOVA's p
    alone may only say that some other group is bad. Otherwise the finding says which of these fails.

    The evidence is ANOVA's, not the Optuna importances shown in the report: those have no significance
    level, and PED-ANOVA's look only at the best 10 % of trials, a handful in a small study; in the test
    study it ranked the one parameter that decides the score below one that was never varied.
    """
    out, untestable = [], {}
    for row in anova.itertuples(index=False):
        if not math.isfinite(row.p):
            untestable.setdefault(row.result, []).append(row.parameter)
            continue
        groups = impact[impact["parameter"] == row.parameter]
        best = groups.loc[groups["mean"].idxmax()]
        value, significant = best["value"], row.p <= ALPHA
        top_numbers, top_values = _top_trials(data, row.parameter)
        agreeing = top_values.count(value)
        objections = []
        if best["count"] < MIN_GROUP_TRIALS:
            outside = ", and the F and p leave it out (they need ≥ 2 trials per group)" if best["count"] < 2 else ""
            objections.append(
                f"the best group {value} has only {_trials(best['count'])} (needs ≥ {MIN_GROUP_TRIALS}){outside}"
            )
        if agreeing * 2 <= len(top_values):
            objections.append(_disagreement(value, top_numbers, top_values))
        if not significant:
            objections.append(f"its groups do not differ significantly (p = {row.p:.3g} > {ALPHA})")
        elif (runner_up := _runner_up_objection(data, row.parameter, value)) is not None:
            objections.append(runner_up)
        text = (
            f"{row.parameter}: F = {row.F:.3g}, p = {row.p:.3g} over {row.groups} groups ({row.trials} trials); "
            f"best group {value} (mean {best['mean']:.4f}, n = {best['count']})."
        )
        if significant:
            text += f" Its groups differ (p ≤ {ALPHA})"
        if objections:
            keep = ": keep searching it." if significant else ""
            text += f"{keep} No advice on {row.parameter}: {'; '.join(objections)}."
        else:
            text += (
                f", {agreeing} of the {len(top_values)} best trials use {value} and its group holds "
                f"{_trials(best['count'])}: consider {_fixing(row.parameter, value)} and searching the others "
                "more densely."
            )
        out.append(Finding("significant effect" if significant else "no significant effect", text))
    for reason, names in untestable.items():
        out.append(Finding("no advice", f"{', '.join(names)}: ANOVA {reason}, so no advice on which value to keep."))
    return out


def _runner_up_objection(data: ReportData, name: str, value: str) -> str | None:
    """Why the best group `value` is not shown to beat the next best group of ≥ 2 trials, or None when it is."""
    rows = data.compared[data.compared[name].notna()]
    labels = value_groups(rows[name], data.specs.get(name)).astype(str)
    groups = {label: group.to_numpy(float) for label, group in rows["val_jaccard"].groupby(labels) if len(group) >= 2}
    best = groups.pop(value, None)
    if best is None or not groups:
        return None
    other = max(groups, key=lambda label: groups[label].mean())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p_value = float(stats.ttest_ind(best, groups[other], equal_var=False).pvalue)
    if p_value <= ALPHA:
        return None
    return (
        f"it does not beat the runner-up {other} (mean {groups[other].mean():.4f}, n = {len(groups[other])}) "
        f"beyond chance (Welch's t-test p = {p_value:.3g} > {ALPHA})"
    )


def _top_trials(data: ReportData, name: str) -> tuple[list[int], list[str]]:
    """The numbers and group labels (as in the impact table) of the best `TOP_TRIALS` COMPLETE trials."""
    rows = data.compared[data.compared[name].notna()]
    labels = value_groups(rows[name], data.specs.get(name)).astype(str)
    top = rows.head(TOP_TRIALS)
    return top["number"].astype(int).tolist(), labels.loc[top.index].tolist()


def _disagreement(value: str, numbers: list[int], values: list[str]) -> str:
    """'none of the 3 best trials (4, 7, 9) uses unet; they use resunet', or 'only 1 of ...; the others use ...'."""
    best = f"the {len(values)} best trials ({', '.join(map(str, numbers))})"
    others = Counter(other for other in values if other != value)
    listed = ", ".join(other if n == 1 else f"{other} × {n}" for other, n in others.most_common())
    agreeing = values.count(value)
    if not agreeing:
        return f"none of {best} uses {value}; they use {listed}"
    return f"only {agreeing} of {best} {'uses' if agreeing == 1 else 'use'} {value}; the others use {listed}"


def _fixing(name: str, value: str) -> str:
    """ "fixing loss at dice", or for a quantile bin of a numeric range (labelled "low–high") narrowing to it."""
    return f"narrowing {name} to {value}" if "–" in value else f"fixing {name} at {value}"


def _trials(count: int) -> str:
    return f"{count} trial{'' if count == 1 else 's'}"


def train_val_gap(data: ReportData) -> list[Finding]:
    """Train Jaccard well above val Jaccard at the best epoch."""
    best, complete = _best(data), data.complete
    if best is None:
        return []
    gaps = complete["train_val_gap"].dropna()
    best_gap = best["train_val_gap"]
    if gaps.empty or (not (pd.notna(best_gap) and best_gap > HIGH_GAP) and gaps.median() <= HIGH_GAP):
        return []
    return [
        Finding(
            "high train–val gap",
            f"train minus val Jaccard at the best epoch: {jaccard(best_gap)} for best trial {best['number']}, "
            f"median {gaps.median():.4f} over {len(gaps)} COMPLETE trials (threshold {HIGH_GAP}): a sign of "
            "overfitting; more dropout, augmentation or data may help.",
        )
    ]


def decline_after_peak(data: ReportData) -> list[Finding]:
    """The best trial's final val Jaccard more than 10 % below its peak."""
    best = _best(data)
    if best is None or pd.isna(best["final_val_jaccard"]) or not best["val_jaccard"]:
        return []
    drop = 1 - best["final_val_jaccard"] / best["val_jaccard"]
    if drop <= DECLINE:
        return []
    return [
        Finding(
            "decline after the peak",
            f"best trial {best['number']} peaked at {best['val_jaccard']:.4f} (epoch {_int(best['best_epoch'])}) "
            f"and ended at {best['final_val_jaccard']:.4f} (epoch {_int(best['epochs_run'])}), {drop:.0%} lower: "
            "keep the best epoch's weights; a lower learning rate or a schedule may hold the peak.",
        )
    ]


def many_pruned(data: ReportData, pruning: pd.DataFrame) -> list[Finding]:
    """Most finished trials stopped by the pruner (not those stopped by a NaN or out of memory), with the
    pruner's setting that makes it wait longer."""
    by_pruner = [t for t in data.trials if t.state == TrialState.PRUNED and not stopped_by_fault(data, t)]
    finished = sum(t.state == TrialState.COMPLETE for t in data.trials) + len(by_pruner)
    if not finished or len(by_pruner) / finished <= MANY_PRUNED:
        return []
    stops = pruning[pruning["epoch"].notna() & (pruning["trials"] > 0)] if not pruning.empty else pruning
    where = "; ".join(
        f"{row.trials} at {row.stopped} (epoch {_int(row.epoch)})"
        if row.stopped.startswith("rung")
        else f"{row.trials} at epoch {_int(row.epoch)} ({row.stopped})"
        for row in stops.itertuples()
    )
    setting = _waiting_setting(data)
    advice = f"If early epochs predict the final value poorly, raise {setting}." if setting else ""
    return [
        Finding(
            "many pruned",
            f"{len(by_pruner)} of {finished} finished trials ({len(by_pruner) / finished:.0%}) were pruned"
            + (f": {where}" if where else "")
            + f". {advice}".rstrip(),
        )
    ]


def _waiting_setting(data: ReportData) -> str | None:
    """The `[pruner]` setting that makes the study's pruner wait longer before it prunes."""
    kind = data.config.pruner.kind if data.config else None
    return {
        "asha": "the pruner's min_resource",
        "hyperband": "the pruner's min_resource",
        "median": "the pruner's n_warmup_steps",
        None: "the pruner's first pruning epoch",
    }.get(kind)


def failures(data: ReportData) -> list[Finding]:
    failed = [trial for trial in data.trials if trial.state == TrialState.FAIL]
    if not failed:
        return []
    reasons = Counter(shown_reason(trial, data.records[trial.number]) for trial in failed)
    listed = "; ".join(f"{reason} × {n}" for reason, n in reasons.most_common())
    return [Finding("failures", f"{len(failed)} of {len(data.trials)} trials failed: {listed}.")]


def baselines(data: ReportData) -> list[Finding]:
    """How the best enqueued baseline did against the best trial, by the study's metric.

    Val Jaccard studies compare COMPLETE + PRUNED trials (a pruned one by the best val Jaccard it reached);
    other metrics are measured on COMPLETE trials only.
    """
    best = _best(data)
    if best is None:
        return []
    metric = study_metric_name(data)
    scored = data.scored if metric == VAL_JACCARD else data.complete[data.complete[metric].notna()]
    enqueued = {number for number, record in data.records.items() if record.enqueued}
    rows = scored[scored["number"].isin(enqueued)]
    if rows.empty:
        return []
    pool = "COMPLETE + PRUNED" if metric == VAL_JACCARD else "COMPLETE"
    name = "" if metric == VAL_JACCARD else f"{metric} "
    top = rows.loc[rows[metric].idxmax()]
    if top["number"] == best["number"]:
        others = len(scored) - len(rows)
        text = (
            f"the best trial ({best['number']}, {name}{best[metric]:.4f}) is an enqueued baseline: "
            f"the search did not beat it in {others} other {pool} trial{'' if others == 1 else 's'}."
        )
    else:
        gap = best[metric] - top[metric]
        text = (
            f"the best enqueued baseline (trial {top['number']}, {name}{top[metric]:.4f}) is "
            f"{abs(gap):.4f} {'below' if gap >= 0 else 'above'} the best trial ({best['number']}, "
            f"{name}{best[metric]:.4f}){', reached before it was pruned' if top['state'] == 'PRUNED' else ''}."
        )
    return [Finding("baselines", text)]


def _int(value: object) -> str:
    return "n/a" if value is None or pd.isna(value) else str(int(value))
