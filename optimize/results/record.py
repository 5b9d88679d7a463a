"""What a trial stores about itself: the one place that writes and reads a trial's record.

A trial's per-epoch history is stored as the trial system attr `optimize:history` (`HISTORY_ATTR`): one
list per column, one value per epoch. Not as a user attr: optuna-dashboard prints every user attr as one
unwrapped line on the trial's page, so a history of a dozen epochs stretched that page to 7,000 px,
and it cuts JSON values past 1,024 characters. Trial system attrs are in the database (copied by
`optuna.copy_study`, listed by `study.trials_dataframe()`) but not on the dashboard, which shows the
short summary user attrs instead. Studies written before stored the same columns as the user attr
`history`; `stored_history` reads both.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from optimize.errors import UserError

HISTORY_COLUMNS = ("epoch", "loss", "val_loss", "jaccard", "val_jaccard", "lr", "seconds")
HISTORY_ATTR = "optimize:history"
LEGACY_HISTORY_ATTR = "history"


def history_columns(rows: list[dict[str, float]]) -> dict[str, list[float | None]]:
    """Rows as JSON-safe columns (NaN and infinity become null, which every JSON reader accepts)."""
    return {column: [finite_or_none(round(float(row[column]), 6)) for row in rows] for column in HISTORY_COLUMNS}


def store_history(trial: optuna.Trial, rows: list[dict[str, float]]) -> None:
    """Store the trial's per-epoch history in the database, where the dashboard does not list it."""
    trial.storage.set_trial_system_attr(trial._trial_id, HISTORY_ATTR, history_columns(rows))


def stored_history(trial: FrozenTrial) -> dict[str, list[float | None]] | None:
    """The trial's stored history as `HISTORY_COLUMNS` (a column it lacks is all null); None when it has none.

    Reads the system attr `optimize:history` and, for studies written before it, the user attr `history`.
    """
    if HISTORY_ATTR in trial.system_attrs:
        where, stored = f"system attr {HISTORY_ATTR!r}", trial.system_attrs[HISTORY_ATTR]
    elif LEGACY_HISTORY_ATTR in trial.user_attrs:
        where, stored = f"user attr {LEGACY_HISTORY_ATTR!r}", trial.user_attrs[LEGACY_HISTORY_ATTR]
    else:
        return None
    if not stored:
        return None
    columns = stored if isinstance(stored, Mapping) else {}
    lengths = {len(values) if isinstance(values, list) else -1 for values in columns.values()}
    if len(lengths) != 1 or -1 in lengths:
        raise UserError(
            f"trial {trial.number}: {where} is not a per-epoch history "
            f"(lists of equal length named {', '.join(HISTORY_COLUMNS)}): {str(stored)[:120]}"
        )
    n_epochs = lengths.pop()
    return {column: list(columns.get(column, [None] * n_epochs)) for column in HISTORY_COLUMNS}


def finite_or_none(value: Any) -> float | None:
    """The value as a float, or None for NaN and infinity (which JSON cannot hold)."""
    value = float(value)
    return value if math.isfinite(value) else None
