"""`optimize status`: where a study stands, read from its database."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import optuna
from optuna.trial import TrialState

from optimize.results.formatting import format_params
from optimize.results.record import read_record
from optimize.search.study import budget_used

RECENT_REASONS = 10


def status_text(study: optuna.Study) -> str:
    """Trials per state, the best so far, running trials with their epoch, and recent reasons."""
    trials = study.get_trials(deepcopy=False)
    counts = Counter(trial.state for trial in trials)
    lines = [f"study {study.study_name}: {len(trials)} trials"]
    lines.append("  " + "  ".join(f"{state.name} {counts.get(state, 0)}" for state in TrialState))
    max_trials = study.user_attrs.get("max_trials")
    if max_trials:
        lines.append(f"  budget: {budget_used(study)} of {max_trials} trials (COMPLETE + PRUNED + RUNNING)")
    complete = [trial for trial in trials if trial.state == TrialState.COMPLETE]
    if complete:
        best = study.best_trial
        lines.append(
            f"best: trial {best.number}  val_jaccard {best.value:.4f} at epoch {read_record(best).best_epoch}"
            f"  {format_params(best.params)}"
        )
    else:
        lines.append("best: no COMPLETE trial yet")
    running = [trial for trial in trials if trial.state == TrialState.RUNNING]
    if running:
        lines.append("running:")
        now = datetime.now(UTC)
        for trial in running:
            epoch = trial.last_step or 0
            last = trial.intermediate_values.get(epoch)
            started = trial.datetime_start.replace(tzinfo=UTC) if trial.datetime_start else now
            lines.append(
                f"  trial {trial.number:4d}  epoch {epoch:3d}  val_jaccard "
                f"{'   -  ' if last is None else f'{last:.4f}'}  for {(now - started).total_seconds():6.0f} s"
                f"  {format_params(trial.params)}"
            )
    ended = [(trial, text) for trial in trials if (text := read_record(trial).reason_text)][-RECENT_REASONS:]
    if ended:
        lines.append("reasons (latest):")
        lines += [f"  trial {trial.number:4d}  {trial.state.name:<8} {text}" for trial, text in ended]
    return "\n".join(lines)
