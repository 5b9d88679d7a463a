"""A confirmation study (`optimize confirm`): its plan and how its re-runs compare with the single runs.

A search ranks configurations by one training run each, and a run's val Jaccard moves with the seed of
its weights and data order. `optimize confirm` re-trains the top configurations of study NAME, with new
seeds or on cross-validation folds, as trials of study `NAME-confirm`; each trial names the source trial
it repeats (`record.CONFIRM_OF`) and its seed or fold. The plan (source study, `--top-k`, the seeds or
the number of folds, the source trials) is the confirmation study's user attr `confirm`, written once by
the worker that creates it, so every node runs the same re-runs and a node with other options is refused.

`confirmation_table` is what the command prints at its end, and what `export-best` and the report can show.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from optimize.results.formatting import format_params, is_missing
from optimize.results.record import read_record, study_metric
from optimize.search.study import confirm_study_name

CONFIRM_ATTR = "confirm"
"""The confirmation study's user attr holding its plan: `source`, `top_k`, `seeds` (a list, empty with
folds), `folds` (None with seeds) and `source_trials` (numbers of the source study, best first)."""
CONFIGURATION_PARAMS_EXCLUDED = ("seed", "fold")
"""Parameters of a confirmation trial that tell its runs apart rather than its configuration."""
TABLE_COLUMNS = (
    "source_trial",
    "rank_single_run",
    "runs",
    "value_mean",
    "value_std",
    "val_jaccard_mean",
    "val_jaccard_std",
    "object_f1_mean",
    "object_f1_std",
    "single_run_value",
)
"""The columns of `confirmation_table`; the source trial's parameters come between `rank_single_run` and `runs`."""


def ranked_complete(trials: Iterable[FrozenTrial]) -> list[FrozenTrial]:
    """COMPLETE trials, best value first (the study maximizes), earlier trial first among equal values."""
    complete = [trial for trial in trials if trial.state == TrialState.COMPLETE and trial.value is not None]
    return sorted(complete, key=lambda trial: (-trial.value, trial.number))


def configuration(params: dict) -> dict:
    """The parameters that make a configuration: a confirmation trial's without its seed or fold."""
    return {name: value for name, value in params.items() if name not in CONFIGURATION_PARAMS_EXCLUDED}


def confirmation_plan(study: optuna.Study) -> dict | None:
    """The plan stored with a confirmation study (`CONFIRM_ATTR`), or None for any other study."""
    plan = study.user_attrs.get(CONFIRM_ATTR)
    return plan if isinstance(plan, dict) else None


def confirmation_table(confirm_study: optuna.Study, source_study: optuna.Study) -> pd.DataFrame:
    """One row per confirmed configuration, in the order of its single run's rank in the source study.

    Columns: `source_trial` (its number in the source study), `rank_single_run` (1 = the source study's best),
    the source trial's parameters, `runs` (COMPLETE re-runs), `value_mean` and `value_std` (the re-runs'
    values: the study's metric), `val_jaccard_mean` and `val_jaccard_std`
    (each re-run's val Jaccard at its best epoch, user attr `best_val_jaccard`), `object_f1_mean` and
    `object_f1_std` (`val_object_f1`), and `single_run_value` (the source trial's value: the source study's
    metric). The std is the sample std (NaN for fewer than two runs); configurations without a COMPLETE
    re-run yet have 0 runs and NaN means.
    """
    source_trials = {trial.number: trial for trial in source_study.get_trials(deepcopy=False)}
    ranks = {trial.number: rank for rank, trial in enumerate(ranked_complete(source_trials.values()), start=1)}
    runs: dict[int, list[FrozenTrial]] = {}
    for trial in confirm_study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        source = read_record(trial).confirm_of
        if source is not None:
            runs.setdefault(int(source), []).append(trial)
    plan = confirmation_plan(confirm_study)
    numbers = list(plan["source_trials"]) if plan else sorted(runs)
    rows = []
    for number in sorted(numbers, key=lambda number: (ranks.get(number, math.inf), number)):
        source = source_trials.get(number)
        records = [read_record(trial) for trial in runs.get(number, [])]
        values = pd.Series([trial.value for trial in runs.get(number, [])], dtype=float)
        jaccards = pd.Series([r.best_val_jaccard for r in records], dtype=float)
        f1s = pd.Series([r.val_object_f1 for r in records], dtype=float)
        rows.append(
            {
                "source_trial": number,
                "rank_single_run": ranks.get(number),
                **(source.params if source is not None else {}),
                "runs": len(records),
                "value_mean": values.mean(),
                "value_std": values.std(),
                "val_jaccard_mean": jaccards.mean(),
                "val_jaccard_std": jaccards.std(),
                "object_f1_mean": f1s.mean(),
                "object_f1_std": f1s.std(),
                "single_run_value": source.value if source is not None else None,
            }
        )
    frame = pd.DataFrame(rows)
    params = [column for column in frame.columns if column not in TABLE_COLUMNS]
    ordered = [*TABLE_COLUMNS[:2], *params, *TABLE_COLUMNS[2:]]
    return frame.reindex(columns=ordered)


def load_confirmation(study: optuna.Study) -> optuna.Study | None:
    """The study's confirmation study (`NAME-confirm`) in the same storage, or None when it was never made."""
    name = confirm_study_name(study.study_name)
    if name not in optuna.get_all_study_names(storage=study._storage):
        return None
    return optuna.load_study(study_name=name, storage=study._storage)


@dataclass(frozen=True)
class ConfirmedPick:
    """The configuration the confirmation picks, by the mean of the study's metric over its re-runs."""

    table: pd.DataFrame
    metric: str
    pick: int | None
    """The source trial of the pick; None until every planned re-run is COMPLETE."""
    single_run_best: int
    runs_done: int
    runs_planned: int
    runs_failed: int = 0
    """Planned re-runs that ended without completing and are not queued again (an error), so that
    `optimize confirm` cannot finish the confirmation."""

    @property
    def complete(self) -> bool:
        return self.pick is not None

    @property
    def differs(self) -> bool:
        return self.complete and self.pick != self.single_run_best

    def summary(self) -> str:
        """One plain sentence: which configuration the confirmation picks and whether that changes the answer."""
        if not self.complete and self.runs_failed:
            return (
                f"confirmation incomplete ({self.runs_done} of {self.runs_planned} re-runs COMPLETE, "
                f"{self.runs_failed} failed and not queued again: see their errors with `optimize status` on the "
                f"confirmation study): export-best exports the single-run best, trial {self.single_run_best}"
            )
        if not self.complete:
            return (
                f"confirmation incomplete ({self.runs_done} of {self.runs_planned} re-runs COMPLETE): export-best "
                f"exports the single-run best, trial {self.single_run_best}; run `optimize confirm` to finish it"
            )
        row = self.table.set_index("source_trial").loc[self.pick]
        runs = int(row["runs"])
        mean = f"mean {self.metric} {_mean_std(row['value_mean'], row['value_std'])} over {runs} run{'s' * (runs != 1)}"
        if not self.differs:
            return f"confirmed: trial {self.pick} ({mean}) is also the single-run best"
        if self.single_run_best not in set(self.table["source_trial"]):
            return (
                f"the confirmed pick, trial {self.pick} ({mean}), is not the single-run best, trial "
                f"{self.single_run_best}, which finished after the confirmation was planned and was not re-trained: "
                f"export-best exports trial {self.pick}"
            )
        best = self.table.set_index("source_trial").loc[self.single_run_best]
        return (
            f"the confirmed pick, trial {self.pick} ({mean}), differs from the single-run best, trial "
            f"{self.single_run_best} (single run {best['single_run_value']:.4f}, mean "
            f"{_mean_std(best['value_mean'], best['value_std'])}): export-best exports trial {self.pick}"
        )


def confirmed_pick(study: optuna.Study, confirm_study: optuna.Study) -> ConfirmedPick:
    """Rank the confirmed configurations by their mean metric; a pick only once every planned re-run is done."""
    table = confirmation_table(confirm_study, study)
    plan = confirmation_plan(confirm_study) or {}
    per_configuration = len(plan.get("seeds") or []) or plan.get("folds") or 0
    planned = per_configuration * len(table)
    done = int(table["runs"].sum()) if not table.empty else 0
    open_runs = len(confirm_study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING)))
    scored = table[table["runs"] > 0]
    pick = None
    if not scored.empty and planned > 0 and done >= planned:
        ranked = scored.sort_values(["value_mean", "rank_single_run"], ascending=[False, True])
        pick = int(ranked.iloc[0]["source_trial"])
    return ConfirmedPick(
        table=table,
        metric=study_metric(study),
        pick=pick,
        single_run_best=ranked_complete(study.get_trials(deepcopy=False))[0].number,
        runs_done=done,
        runs_planned=planned,
        runs_failed=max(planned - done - open_runs, 0),
    )


def format_confirmation(frame: pd.DataFrame) -> str:
    """`confirmation_table` as the lines `optimize confirm` ends with: the source trial, its rank, the re-runs'
    mean ± std beside the single run's value (the source study's metric), and the configuration's parameters."""
    lines = [
        f"{'trial':>5}  {'rank':>4}  {'runs':>4}  {'val_jaccard':<17}  {'object_f1':<17}  {'single run':<11}  params"
    ]
    params = [column for column in frame.columns if column not in TABLE_COLUMNS]
    for row in frame.to_dict("records"):
        shown = {name: row[name] for name in params if not is_missing(row[name])}
        lines.append(
            f"{row['source_trial']:>5}  {_integer(row['rank_single_run']):>4}  {row['runs']:>4}  "
            f"{_mean_std(row['val_jaccard_mean'], row['val_jaccard_std']):<17}  "
            f"{_mean_std(row['object_f1_mean'], row['object_f1_std']):<17}  "
            f"{_number(row['single_run_value']):<11}  {format_params(shown)}"
        )
    return "\n".join(lines)


def _mean_std(mean: float, std: float) -> str:
    if is_missing(mean):
        return "-"
    return f"{mean:.4f}" if is_missing(std) else f"{mean:.4f} ± {std:.4f}"


def _number(value: float | None) -> str:
    return "-" if is_missing(value) else f"{value:.4f}"


def _integer(value: float | None) -> str:
    return "-" if is_missing(value) else str(int(value))
