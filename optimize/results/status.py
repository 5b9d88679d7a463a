"""`optimize status`: where a study stands, read from its database."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

import optuna
from optuna.trial import FrozenTrial, TrialState

from optimize.results.formatting import format_params, format_scores
from optimize.results.record import (
    OBJECT_METRICS,
    VAL_JACCARD,
    read_record,
    shown_reason,
    study_metric,
    trial_value,
)
from optimize.search.study import budget_used

RECENT_REASONS = 10


def status_text(study: optuna.Study) -> str:
    """Trials per state, the best so far (its bead-level metrics on the next line), running trials with their
    epoch, and recent reasons."""
    trials = study.get_trials(deepcopy=False)
    counts = Counter(trial.state for trial in trials)
    lines = [f"study {study.study_name}: {len(trials)} trials"]
    lines.append("  " + "  ".join(f"{state.name} {counts.get(state, 0)}" for state in TrialState))
    max_trials = study.user_attrs.get("max_trials")
    if isinstance(max_trials, int) and not isinstance(max_trials, bool) and max_trials > 0:  # ours, not a user's
        lines.append(f"  budget: {budget_used(study)} of {max_trials} trials (COMPLETE + PRUNED + RUNNING)")
    complete = [trial for trial in trials if trial.state == TrialState.COMPLETE]
    if complete:
        lines.append(f"best: {best_text(study, study.best_trial)}")
        if read_record(study.best_trial).val_object_f1 is not None:
            lines.append(object_metrics_line(study.best_trial))
    else:
        lines.append("best: no COMPLETE trial yet")
    running = [trial for trial in trials if trial.state == TrialState.RUNNING]
    if running:
        lines.append("running:")
        now = datetime.now()  # Optuna stores a trial's start as the worker's naive local time
        for trial in running:
            epoch = trial.last_step or 0
            last = trial.intermediate_values.get(epoch)
            started = trial.datetime_start or now
            lines.append(
                f"  trial {trial.number:4d}  epoch {epoch:3d}  val_jaccard "
                f"{'   -  ' if last is None else f'{last:.4f}'}  for {(now - started).total_seconds():6.0f} s"
                f"  {format_params(trial.params)}"
            )
    ended = [(trial, text) for trial in trials if (text := shown_reason(trial, read_record(trial)))][-RECENT_REASONS:]
    if ended:
        lines.append("reasons (latest):")
        lines += [f"  trial {trial.number:4d}  {trial.state.name:<8} {text}" for trial, text in ended]
    return "\n".join(lines)


def best_text(study: optuna.Study, best: FrozenTrial) -> str:
    """'trial 7  val_jaccard 0.2456  object_f1 0.8120 at epoch 31  PARAMS', led by the study's metric when it
    is not val Jaccard."""
    record = read_record(best)
    metric = study_metric(study)
    chosen = "" if metric == VAL_JACCARD else f"{metric} {best.value:.4f}: "
    at_epoch = "" if record.best_epoch is None else f" at epoch {record.best_epoch}"  # a trial not written by us
    return (
        f"{chosen}trial {best.number}  {format_scores(trial_value(best, record), record.val_object_f1)}{at_epoch}  "
        f"{format_params(best.params)}"
    )


def object_metrics_line(trial: FrozenTrial) -> str:
    """The trial's bead-level metrics on the validation images, as one line."""
    record = read_record(trial)
    values = "  ".join(f"{name.removeprefix('val_')} {score(getattr(record, name))}" for name in OBJECT_METRICS)
    return f"      beads (IoU 0.5): {values}"


def score(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
