"""Read a study's results back from storage as tables: what export, status and report share."""

from __future__ import annotations

import tomllib
from pathlib import Path

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from optimize.errors import ConfigError
from optimize.results.record import (
    HISTORY_COLUMNS,
    OBJECT_METRICS,
    read_record,
    stored_history,
    trial_value,
)
from optimize.search.config import StudyConfig, parse_config
from optimize.search.fingerprint import FINGERPRINT_ATTR, recorded_pruner

RECORD_COLUMNS = (
    "best_epoch",
    "epochs_run",
    "final_val_jaccard",
    "stability",
    "train_val_gap",
    "param_count",
    "train_seconds",
    "object_metrics_seconds",
    "reason",
    "pruned_epoch",
    "error",
    "worker",
)
"""Fields of the trial's `TrialRecord` that `trials_frame` lists, under the same names."""


def trials_frame(trials: list[FrozenTrial]) -> pd.DataFrame:
    """One row per trial: COMPLETE trials by value first, then the others by the best val Jaccard they reached.

    Columns: number, state, value (Optuna's: the study's metric), val_jaccard (best reached), the bead-level
    metrics (`OBJECT_METRICS`), every parameter, `RECORD_COLUMNS` (the reason as its code: pruned, nan, ...),
    duration_seconds, retry_of, started and finished.
    """
    rows = []
    for trial in trials:
        record = read_record(trial)
        row = {
            "number": trial.number,
            "state": trial.state.name,
            "value": trial.value,
            "val_jaccard": trial_value(trial, record),
            **{name: getattr(record, name) for name in OBJECT_METRICS},
        }
        row.update(trial.params)
        row.update({name: getattr(record, name) for name in RECORD_COLUMNS})
        row["reason"] = record.reason.value if record.reason else None
        row["duration_seconds"] = trial.duration.total_seconds() if trial.duration else None
        row["retry_of"] = record.retry_of
        row["started"] = trial.datetime_start
        row["finished"] = trial.datetime_complete
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame["complete"] = frame["state"] == TrialState.COMPLETE.name
    frame["score"] = frame["value"].where(frame["complete"], frame["val_jaccard"])
    frame = frame.sort_values(["complete", "score", "number"], ascending=[False, False, True], na_position="last").drop(
        columns=["complete", "score"]
    )
    frame.insert(0, "rank", range(1, len(frame) + 1))
    return frame.reset_index(drop=True)


WHOLE_NUMBER_COLUMNS = (
    "number",
    "epoch",
    "best_epoch",
    "epochs_run",
    "pruned_epoch",
    "param_count",
    "retry_of",
    "runs",
    "count",
    "trials",
    "rank",
)
"""Columns of counts and numbers: written to CSV as integers, not as the floats pandas makes of a column with an
empty cell (or of a history's epochs)."""


def whole_numbers(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with its `WHOLE_NUMBER_COLUMNS` as nullable integers where every value is a whole number, for CSV."""
    frame = frame.copy()
    for column in WHOLE_NUMBER_COLUMNS:
        if column not in frame or not pd.api.types.is_numeric_dtype(frame[column]):
            continue
        values = frame[column].dropna()
        if pd.api.types.is_float_dtype(frame[column]) and (values % 1 == 0).all():
            frame[column] = frame[column].astype("Int64")
    return frame


def history_frame(trial: FrozenTrial) -> pd.DataFrame:
    """The trial's per-epoch history; for a trial killed before storing it, its reported values."""
    history = stored_history(trial)
    if history is not None:
        return pd.DataFrame(history, columns=list(HISTORY_COLUMNS))
    steps = sorted(trial.intermediate_values)
    frame = pd.DataFrame({column: [None] * len(steps) for column in HISTORY_COLUMNS})
    frame["epoch"] = steps
    frame["val_jaccard"] = [trial.intermediate_values[step] for step in steps]
    return frame


def stored_config(study: optuna.Study) -> StudyConfig | None:
    """The config the study ran with, parsed from its stored text; None when absent or no longer valid."""
    text = study.user_attrs.get("config_toml")
    if not text:
        return None
    try:
        path = Path(study.user_attrs.get("config_file", f"{study.study_name}.toml"))
        config = parse_config(tomllib.loads(text), path=path, text=text)
    except (ConfigError, tomllib.TOMLDecodeError, ValueError):
        return None
    return recorded_pruner(config, study.user_attrs.get(FINGERPRINT_ATTR))[0]
