"""The report's numbers: pure computations over the study's trials, returned as DataFrames."""

from __future__ import annotations

import math
import warnings
from collections import Counter
from dataclasses import dataclass

import numpy as np
import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState
from scipy import stats

from optimize.results.formatting import format_value
from optimize.results.frame import stored_config, trials_frame
from optimize.results.record import (
    OBJECT_METRICS,
    VAL_JACCARD,
    VAL_OBJECT_F1,
    Reason,
    TrialRecord,
    read_record,
    shown_reason,
    stored_val_counts,
)
from optimize.search.config import StudyConfig
from optimize.search.space import ParamSpec

IMPACT_STATES = (TrialState.COMPLETE.name, TrialState.PRUNED.name)
MAX_LEVELS = 6
MAX_BINS = 4
ALPHA = 0.05
HEATMAP_PARAMS = ("learning_rate", "batch_size")
UNRECORDED_WORKER = "unrecorded"


@dataclass(frozen=True)
class ReportData:
    """Everything the report reads from the database, once."""

    trials: list[FrozenTrial]
    records: dict[int, TrialRecord]
    """Each trial's record, by trial number."""
    frame: pd.DataFrame
    config: StudyConfig | None
    params: list[str]
    specs: dict[str, ParamSpec]

    @property
    def scored(self) -> pd.DataFrame:
        """COMPLETE and PRUNED trials with a val Jaccard: the ones the impact statistics use."""
        if self.frame.empty:
            return self.frame
        return self.frame[self.frame["state"].isin(IMPACT_STATES) & self.frame["val_jaccard"].notna()]

    @property
    def complete(self) -> pd.DataFrame:
        if self.frame.empty:
            return self.frame
        return self.frame[self.frame["state"] == TrialState.COMPLETE.name]

    @property
    def compared(self) -> pd.DataFrame:
        """COMPLETE trials with a val Jaccard: the ones the parameter statistics and advice use. A pruned trial's
        value comes from fewer epochs, so pooling it with trained-out ones would credit the values it was
        pruned with."""
        complete = self.complete
        return complete if complete.empty else complete[complete["val_jaccard"].notna()]

    @property
    def max_epochs(self) -> int | None:
        """The most epochs a trial can train: `[training] max_epochs`, or the highest searched one."""
        if self.config is None:
            return None
        searched = self.config.search.get("max_epochs")
        return int(searched.highest()) if searched is not None else self.config.training.max_epochs

    def max_epochs_of(self, trial: FrozenTrial) -> int | None:
        """The epochs this trial could train: its own `max_epochs` when searched, else the study's."""
        if self.config is None:
            return None
        return int(trial.params.get("max_epochs", self.config.training.max_epochs))


def study_data(study: optuna.Study) -> ReportData:
    """Read the trials, the stored config and the searched parameter names (config order, then any others)."""
    trials = study.get_trials(deepcopy=False)
    config = stored_config(study)
    specs = {spec.name: spec for spec in config.search} if config else {}
    seen = [name for trial in trials for name in trial.params]
    params = [name for name in specs if name in seen] + sorted(set(seen) - set(specs))
    records = {trial.number: read_record(trial) for trial in trials}
    frame = trials_frame(trials)
    if config and config.metric != VAL_JACCARD and not frame.empty:
        # A COMPLETE trial's Optuna value is the study's metric, also where its record lacks it (an import).
        complete = frame["state"] == TrialState.COMPLETE.name
        frame.loc[complete, config.metric] = frame.loc[complete, config.metric].fillna(frame.loc[complete, "value"])
    return ReportData(trials, records, frame, config, params, specs)


def state_counts(trials: list[FrozenTrial]) -> pd.DataFrame:
    counts = Counter(trial.state.name for trial in trials)
    rows = [(state.name, counts[state.name]) for state in TrialState if counts[state.name]]
    return pd.DataFrame(rows + [("total", len(trials))], columns=["state", "trials"])


def study_metric_name(data: ReportData) -> str:
    """The metric the study maximizes, from its stored config (val Jaccard when unknown): a `trials_frame` column."""
    return data.config.metric if data.config else VAL_JACCARD


def metric_columns(data: ReportData) -> list[str]:
    """The score columns of the trial tables: val Jaccard, led by the study's metric when it is another."""
    metric = study_metric_name(data)
    return [VAL_JACCARD] if metric == VAL_JACCARD else [metric, VAL_JACCARD]


def enqueued_table(data: ReportData) -> pd.DataFrame:
    """The enqueued baseline configurations and how each did against the best COMPLETE trial, by the study's metric
    (minus_best: the baseline's metric minus the best trial's)."""
    frame = data.frame
    if frame.empty:
        return frame
    numbers = {number for number, record in data.records.items() if record.enqueued}
    rows = frame[frame["number"].isin(numbers)]
    metric = study_metric_name(data)
    if metric == VAL_JACCARD:
        best = data.complete["val_jaccard"].max()
    else:
        best = data.complete.iloc[0][metric] if not data.complete.empty else math.nan
    table = rows[["rank", "number", "state", *data.params, *metric_columns(data), "best_epoch", "epochs_run"]].copy()
    table["minus_best"] = table[metric] - best
    return table.reset_index(drop=True)


def top_table(data: ReportData, n: int = 5) -> pd.DataFrame:
    """The first `n` trials in `trials_frame` order (COMPLETE by value, then the others by val Jaccard)."""
    frame = data.frame
    if frame.empty:
        return frame
    rows = frame[frame["val_jaccard"].notna()].head(n)
    columns = ["rank", "number", "state", *data.params, *metric_columns(data), "best_epoch", "epochs_run"]
    return rows[[*columns, "final_val_jaccard"]].reset_index(drop=True)


def object_metrics_table(data: ReportData, n: int = 10) -> pd.DataFrame:
    """The first `n` COMPLETE trials with bead-level metrics, in `trials_frame` order, with val Jaccard beside them."""
    complete = data.complete
    if complete.empty:
        return complete
    rows = complete[complete[VAL_OBJECT_F1].notna()].head(n)
    columns = ["rank", "number", *data.params, "val_jaccard", *OBJECT_METRICS]
    return rows[columns].reset_index(drop=True)


def bead_counts_table(trial: FrozenTrial) -> pd.DataFrame | None:
    """True and predicted beads per validation image of `trial` (as stored by its worker); None when absent."""
    counts = stored_val_counts(trial)
    if counts is None:
        return None
    frame = pd.DataFrame({"image": range(1, len(counts["true"]) + 1), **counts})
    frame["error"] = frame["predicted"] - frame["true"]
    return frame


def confirmation_runs(confirm_study: optuna.Study) -> pd.DataFrame:
    """Every COMPLETE re-run of a confirmation study: its source trial, seed or fold, value and val Jaccard."""
    rows = []
    for trial in confirm_study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        record = read_record(trial)
        if record.confirm_of is None:
            continue
        run = f"fold {record.confirm_fold}" if record.confirm_fold is not None else f"seed {record.confirm_seed}"
        rows.append(
            {
                "source_trial": record.confirm_of,
                "run": run,
                "trial": trial.number,
                "value": trial.value,
                "val_jaccard": record.best_val_jaccard,
                "val_object_f1": record.val_object_f1,
            }
        )
    return pd.DataFrame(rows, columns=["source_trial", "run", "trial", "value", "val_jaccard", "val_object_f1"])


def value_groups(values: pd.Series, spec: ParamSpec | None) -> pd.Series:
    """Each trial's group label for one parameter, as an ordered categorical.

    Categorical parameters and numbers with few distinct values are grouped as they are; other numbers
    go into up to four quantile bins, computed on log10 values for log-scaled ranges.
    """
    present = values.dropna()
    numeric = pd.api.types.is_numeric_dtype(present) and not pd.api.types.is_bool_dtype(present)
    if not numeric or present.nunique() <= MAX_LEVELS or (spec is not None and spec.is_categorical):
        order = list(spec.choices) if spec is not None and spec.is_categorical else []
        order += sorted((value for value in present.unique() if value not in order), key=None if numeric else str)
        labels = {value: format_value(value) for value in order}
        categories = list(dict.fromkeys(labels.values()))
        return pd.Series(pd.Categorical(values.map(labels), categories=categories, ordered=True), index=values.index)
    log = bool(spec.log) if spec is not None else bool((present > 0).all() and present.max() / present.min() > 100)
    scale = np.log10(values.astype(float)) if log else values.astype(float)
    edges = np.unique(np.quantile(scale.dropna(), np.linspace(0, 1, min(MAX_BINS, present.nunique()) + 1)))
    texts = _edge_texts(10**edges if log else edges)
    # Edges that print alike even at full precision (10**x of nearby logs) would label two bins alike: merge them.
    keep = [index for index, text in enumerate(texts) if index == 0 or text != texts[index - 1]]
    keep = [*keep[:-1], len(texts) - 1] if len(keep) > 1 else [0, len(texts) - 1]
    labels = [f"{texts[lo]}–{texts[hi]}" for lo, hi in zip(keep[:-1], keep[1:], strict=True)]
    return pd.cut(scale, edges[keep], labels=labels, include_lowest=True, ordered=True)


def _edge_texts(bounds: np.ndarray) -> list[str]:
    """The bin edges with 3 significant digits, or with as many more as it takes to print them apart."""
    for digits in range(3, 18):
        texts = [f"{bound:.{digits}g}" for bound in bounds]
        if len(set(texts)) == len(texts):
            break
    return texts


def impact_table(data: ReportData) -> pd.DataFrame:
    """Per parameter and group: mean, std, best and count of val Jaccard over COMPLETE trials."""
    compared = data.compared
    parts = []
    for name in data.params:
        rows = compared[compared[name].notna()] if name in compared else compared.iloc[0:0]
        if rows.empty:
            continue
        groups = value_groups(rows[name], data.specs.get(name))
        summary = rows["val_jaccard"].groupby(groups, observed=True).agg(["mean", "std", "max", "count"])
        summary = summary.rename(columns={"max": "best"}).rename_axis("value").reset_index()
        summary.insert(0, "parameter", name)
        summary["value"] = summary["value"].astype(str)
        parts.append(summary)
    if not parts:
        return pd.DataFrame(columns=["parameter", "value", "mean", "std", "best", "count"])
    return pd.concat(parts, ignore_index=True)


def anova_table(data: ReportData) -> pd.DataFrame:
    """One-way ANOVA of val Jaccard across each parameter's groups of at least two COMPLETE trials."""
    compared = data.compared
    rows = []
    for name in data.params:
        present = compared[compared[name].notna()] if name in compared else compared.iloc[0:0]
        samples = []
        if not present.empty:
            groups = present["val_jaccard"].groupby(value_groups(present[name], data.specs.get(name)), observed=True)
            samples = [group.to_numpy(float) for _, group in groups if len(group) >= 2]
        f_value = p_value = math.nan
        if len(samples) >= 2:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = stats.f_oneway(*samples)
            f_value, p_value = float(result.statistic), float(result.pvalue)
        if len(samples) < 2:
            note = "n/a: needs ≥ 2 groups with ≥ 2 trials"
        elif not math.isfinite(p_value):
            note = "n/a: no variation within the groups"
        else:
            note = f"significant (p ≤ {ALPHA})" if p_value <= ALPHA else f"not significant (p > {ALPHA})"
        rows.append((name, len(samples), int(sum(len(s) for s in samples)), f_value, p_value, note))
    return pd.DataFrame(rows, columns=["parameter", "groups", "trials", "F", "p", "result"])


def importance_table(study: optuna.Study, data: ReportData) -> tuple[pd.DataFrame | None, str]:
    """Optuna's PED-ANOVA parameter importances over COMPLETE trials, or why there are none."""
    if len(data.complete) < 2:
        return None, f"needs ≥ 2 COMPLETE trials (has {len(data.complete)})"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            evaluator = optuna.importance.PedAnovaImportanceEvaluator()
            importances = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except Exception as error:  # Optuna raises several types on degenerate studies.
        return None, f"Optuna could not compute importances: {type(error).__name__}: {error}"
    table = pd.DataFrame(list(importances.items()), columns=["parameter", "importance"])
    return table, f"PED-ANOVA over {len(data.complete)} COMPLETE trials"


def curve_trials(data: ReportData) -> tuple[FrozenTrial | None, FrozenTrial | None]:
    """The best trial (rank 1) and the worst one: the worst COMPLETE trial, or with fewer than two, the worst PRUNED."""
    by_number = {trial.number: trial for trial in data.trials}
    scored = data.scored
    scored = scored[scored["epochs_run"].fillna(0) > 0] if not scored.empty else scored
    if scored.empty:
        return None, None
    others = scored.iloc[1:]
    complete = others[others["state"] == TrialState.COMPLETE.name]
    others = complete if not complete.empty else others
    worst = by_number[int(others.loc[others["val_jaccard"].idxmin(), "number"])] if not others.empty else None
    return by_number[int(scored.iloc[0]["number"])], worst


def convergence_table(data: ReportData) -> pd.DataFrame:
    """Best epoch, val Jaccard, Jaccard per epoch (none at a best epoch 0), stability and train–val gap of each
    scored trial."""
    columns = ["number", "state", "best_epoch", "epochs_run", "val_jaccard", "stability", "train_val_gap"]
    scored = data.scored
    if scored.empty:
        return pd.DataFrame(columns=[*columns, "jaccard_per_epoch"])
    table = scored[scored["best_epoch"].notna()][columns].copy()
    epochs = table["best_epoch"].astype(float)
    table["jaccard_per_epoch"] = table["val_jaccard"] / epochs.where(epochs > 0)
    return table.sort_values("number").reset_index(drop=True)


def heatmap_table(data: ReportData) -> tuple[pd.DataFrame | None, list[str]]:
    """Mean val Jaccard and stability per architecture × learning-rate group × batch size, or the missing params."""
    missing = [name for name in HEATMAP_PARAMS if name not in data.params]
    scored = data.scored
    if missing or scored.empty:
        return None, missing
    rows = scored.copy()
    rows["learning_rate"] = value_groups(rows["learning_rate"], data.specs.get("learning_rate"))
    rows["batch_size"] = value_groups(rows["batch_size"], data.specs.get("batch_size"))
    if "architecture" not in rows:
        fixed = data.config.training.architecture if data.config else "fixed"
        rows["architecture"] = fixed
    keys = ["architecture", "learning_rate", "batch_size"]
    table = rows.groupby(keys, observed=True).agg(
        val_jaccard=("val_jaccard", "mean"), stability=("stability", "mean"), trials=("number", "count")
    )
    return table.reset_index(), []


def pruning_table(data: ReportData) -> pd.DataFrame:
    """PRUNED trials per rung (every rung listed), per other epoch, and per other reason (nan, oom)."""
    rungs = data.config.pruner.asha_rungs(data.max_epochs) if data.config else []
    counts: Counter = Counter()
    for trial in data.trials:
        if trial.state != TrialState.PRUNED:
            continue
        record = data.records[trial.number]
        if record.reason == Reason.PRUNED and record.pruned_epoch is not None:
            counts[("epoch", record.pruned_epoch)] += 1
        else:
            counts[("reason", record.reason_text or Reason.PRUNED.value)] += 1
    rows = [(f"rung {k}", epoch, counts.pop(("epoch", epoch), 0)) for k, epoch in enumerate(rungs)]
    rows += [("not a rung", epoch, n) for (kind, epoch), n in sorted(counts.items()) if kind == "epoch"]
    rows += [(f"reason: {reason}", None, n) for (kind, reason), n in sorted(counts.items()) if kind == "reason"]
    return pd.DataFrame(rows, columns=["stopped", "epoch", "trials"])


def epochs_table(data: ReportData) -> pd.DataFrame | None:
    """Epochs trained by COMPLETE trials and those the pruner stopped, against training each to its max_epochs.

    Trials stopped by a NaN or out of memory are left out: they saved nothing, they failed.
    """
    if data.max_epochs is None:
        return None
    rows = []
    for state in (TrialState.COMPLETE, TrialState.PRUNED):
        trials = [trial for trial in data.trials if trial.state == state and not stopped_by_fault(data, trial)]
        if trials:
            run = sum(_epochs_run(trial, data.records[trial.number]) for trial in trials)
            rows.append((state.name, len(trials), run, sum(data.max_epochs_of(trial) for trial in trials)))
    table = pd.DataFrame(rows, columns=["state", "trials", "epochs_run", "epochs_at_max"])
    if not table.empty:
        table.loc[len(table)] = ["total", *table[["trials", "epochs_run", "epochs_at_max"]].sum()]
    table["epochs_saved"] = table["epochs_at_max"] - table["epochs_run"]
    table["saved_percent"] = 100 * table["epochs_saved"] / table["epochs_at_max"]
    return table


def timeline_table(data: ReportData) -> pd.DataFrame:
    """Each started trial's worker ("host:pid"), host, state and start and end as stored."""
    rows = []
    for trial in data.trials:
        if trial.datetime_start is None:
            continue
        worker = data.records[trial.number].worker or UNRECORDED_WORKER
        end = trial.datetime_complete or trial.datetime_start
        rows.append((trial.number, worker, worker.rsplit(":", 1)[0], trial.state.name, trial.datetime_start, end))
    table = pd.DataFrame(rows, columns=["number", "worker", "host", "state", "start", "end"])
    table["seconds"] = (pd.to_datetime(table["end"]) - pd.to_datetime(table["start"])).dt.total_seconds()
    return table


def workers_table(timeline: pd.DataFrame) -> pd.DataFrame:
    """Trials per worker and state, and the seconds each worker spent in trials."""
    if timeline.empty:
        return pd.DataFrame(columns=["worker", "trials", "seconds"])
    counts = pd.crosstab(timeline["worker"], timeline["state"])
    table = counts.assign(trials=counts.sum(axis=1), seconds=timeline.groupby("worker")["seconds"].sum())
    return table.reset_index()


def failures_table(data: ReportData) -> pd.DataFrame:
    """FAIL trials, interrupted trials and retries: the reason and which trial retried which."""
    retried_by: dict[int, list[int]] = {}
    for number, record in data.records.items():
        if record.retry_of is not None:
            retried_by.setdefault(record.retry_of, []).append(number)
    rows = []
    for trial in data.trials:
        record = data.records[trial.number]
        if trial.state != TrialState.FAIL and record.retry_of is None and record.reason != Reason.INTERRUPTED:
            continue
        reason = shown_reason(trial, record) or ""
        rows.append(
            (
                trial.number,
                trial.state.name,
                reason,
                record.worker or UNRECORDED_WORKER,
                record.retry_of,
                ", ".join(map(str, retried_by.get(trial.number, []))),
            )
        )
    return pd.DataFrame(rows, columns=["number", "state", "reason", "worker", "retry_of", "retried_by"])


def stopped_by_fault(data: ReportData, trial: FrozenTrial) -> bool:
    """A PRUNED trial that the pruner did not stop: its loss became NaN, or it ran out of memory."""
    return trial.state == TrialState.PRUNED and data.records[trial.number].reason in (Reason.NAN, Reason.OOM)


def _epochs_run(trial: FrozenTrial, record: TrialRecord) -> int:
    """Epochs the trial trained; for a trial killed before storing its record, the epochs it reported."""
    return record.epochs_run if record.epochs_run is not None else len(trial.intermediate_values)
