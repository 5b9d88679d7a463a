"""`optimize import-results`: an earlier search's results as COMPLETE trials of a study, so that its sampler
(TPE) builds on them from its first suggestion instead of starting from random configurations.

It lives in `search/` because it decides what a row means in a study's search space and writes trials into
the study with the space's own distributions (`SearchSpace.distributions`); `results/` only reads studies
back. No Keras here: the command loads the study's data (for the data check and, as `optimize run` does, to
create or join the study), then hands the study to `add_imported`.

Two kinds of file, told apart by their columns (both may be called `search_results.csv`):

- the users' own search scripts: `search_results_final.csv` (or the `search_results.csv` they rewrite after
  each configuration), one row per configuration with `architecture`, `batch_size`, `learning_rate`,
  `dropout`, `loss_function` (older scripts: `loss_type`), `best_val_jacard` (`best_val_jaccard` is read
  too), `best_epoch`, `total_epochs`, `final_val_jacard` and `checkpoint_path`. The Keras history of each
  configuration beside it, `history_<architecture>_bs<batch>_dr<dropout>_<loss>.csv` (older scripts:
  `history_lr<lr>_bs<batch>_dr<dropout>_<loss>.csv`), one row per epoch with `val_jacard_coef`, gives the
  trial's intermediate values and history, if its best val Jaccard and its number of epochs (`total_epochs`,
  when given) are the row's: a random search that drew a configuration twice kept only the last run's
  history, which belongs to that run's row alone;
- `optimize export-best`'s `search_results.csv` (columns `number`, `state`, `value`, ...), with the
  `histories/trial_NNNN.csv` it writes beside it and the data statistics of its `best_hyperparameters.json`.

A row is imported when it gives a value for every parameter the study searches, inside the study's space,
and, for each setting the study does not search that the file has a column for, the value the study trains
with (its `[training]` value or the default); a setting the file does not state is taken to be the study's.
Otherwise it is skipped, with the reason. Its value is the study's metric (the users' files hold the val
Jaccard only); export-best's rows must be COMPLETE (the state read in any case).

A file that cannot be read as such (not CSV text, empty or a header without rows, a missing column, a cell
that is not of its column's type or outside its range (`RECORD_RANGES`), an architecture, loss or trial
state that exists nowhere) is refused whole, before any trial is added, with one line naming the file, the
row (counted as a spreadsheet shows it: the header is row 1) and the column. So is a row at odds with
itself: a best epoch after its last epoch, or an export-best row whose history's best val Jaccard is not
the row's (its `histories/` belongs to another export). Every row is read and checked before the study is
opened, so a refused file changes nothing.

Each imported trial gets the user attrs `imported_from` ("FILE:ROW") and `imported_hash`, a hash of the row's
cells. A row is not added again when the study holds its hash or a trial with its state, parameters and
value, so importing a file twice, the same file saved again by a spreadsheet, or a study's own export adds
only what is new.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from losses import LOSS_NAMES
from models import ARCHITECTURES
from optimize.errors import UserError
from optimize.results.record import (
    BEST_EPOCH,
    BEST_VAL_JACCARD,
    EPOCHS_RUN,
    FINAL_VAL_JACCARD,
    HISTORY_ATTR,
    HISTORY_COLUMNS,
    IMPORTED_FROM,
    IMPORTED_HASH,
    OBJECT_METRICS,
    PARAM_COUNT,
    STABILITY,
    TRAIN_SECONDS,
    TRAIN_VAL_GAP,
    VAL_COUNT_ERROR,
    VAL_JACCARD,
    history_columns,
)
from optimize.search.config import StudyConfig
from optimize.search.settings import field_names, field_types
from optimize.storage import with_retry

USERS = "the users' search results"
EXPORT = "export-best's search_results.csv"

SETTING_ALIASES = {"loss_function": "loss", "loss_type": "loss"}
"""The users' column names for a training setting (every other setting column is named as the setting)."""
USERS_VALUE_COLUMNS = ("best_val_jacard", "best_val_jaccard")
"""The users' best val Jaccard, in their spelling and the usual one."""
USERS_RECORD_COLUMNS = {
    "best_epoch": BEST_EPOCH,
    "total_epochs": EPOCHS_RUN,
    "final_val_jacard": FINAL_VAL_JACCARD,
    "final_val_jaccard": FINAL_VAL_JACCARD,
}
"""The users' columns kept as the trial's record (user attrs)."""
EXPORT_RECORD_COLUMNS = (
    BEST_EPOCH,
    EPOCHS_RUN,
    FINAL_VAL_JACCARD,
    "stability",
    "train_val_gap",
    "param_count",
    "train_seconds",
    *OBJECT_METRICS,
)
"""export-best's columns kept as the trial's record, under the same names."""
VOLATILE_COLUMNS = ("rank",)
"""Cells left out of a row's hash: export-best ranks the trials anew as the study grows."""
ARCHITECTURE_ALIASES = {"res_unet": "resunet", "att_unet": "attention_unet", "att_res_unet": "attention_resunet"}
LOSS_ALIASES = {"binary_focal": "focal", "binary_crossentropy": "bce", "binary_cross_entropy": "bce"}
HISTORY_VALUE_COLUMNS = ("val_jacard_coef", "val_jaccard_coef", "val_jacard", "val_jaccard")
"""The val Jaccard per epoch in the users' Keras histories (the metric was their `jacard_coef`)."""
USERS_HISTORY_COLUMNS = {
    "loss": ("loss",),
    "val_loss": ("val_loss",),
    "jaccard": ("jacard_coef", "jaccard_coef", "jacard", "jaccard"),
    "val_jaccard": HISTORY_VALUE_COLUMNS,
    "lr": ("lr", "learning_rate"),
}
"""Our history's columns (`HISTORY_COLUMNS`) and the users' names for them."""
SAME_BEST = 1e-6
"""How close a history's best val Jaccard must be to its row's to be that row's run (both are float32s)."""
SAME_EXPORTED_BEST = 1e-5
"""How close export-best's history's best val Jaccard must be to its row's: histories are stored rounded to
6 decimals (`history_columns`), and an imported users' history was within `SAME_BEST` of its row."""
TRIAL_STATES = tuple(state.name for state in TrialState)
RECORD_RANGES: dict[str, tuple[bool, float | None, float | None]] = {
    BEST_EPOCH: (True, 0, None),
    EPOCHS_RUN: (True, 1, None),
    BEST_VAL_JACCARD: (False, 0.0, 1.0),
    FINAL_VAL_JACCARD: (False, 0.0, 1.0),
    STABILITY: (False, 0.0, None),
    TRAIN_VAL_GAP: (False, -1.0, 1.0),
    PARAM_COUNT: (True, 1, None),
    TRAIN_SECONDS: (False, 0.0, None),
    **{name: (False, 0.0, None if name == VAL_COUNT_ERROR else 1.0) for name in OBJECT_METRICS},
}
"""Each record user attr as a cell holds it: (an integer?, lowest, highest). A best epoch may be 0 (the users'
scripts may count epochs from 0); a trial with a value ran at least one epoch; Jaccards and the bead-level
metrics but the count error are fractions; a standard deviation and seconds are not negative."""
SAME_DATA_STATS = ("image_height", "image_width", "n_images", "objects_per_image_mean", "foreground_fraction")


@dataclass(frozen=True)
class Skipped:
    """A row left out, and why."""

    row: int
    reason: str


@dataclass(frozen=True)
class Planned:
    """A row as the COMPLETE trial it becomes."""

    row: int
    key: str
    trial: FrozenTrial


@dataclass
class ImportPlan:
    """What a results file holds for a study, read and checked whole before anything is written."""

    path: Path
    kind: str
    rows: int = 0
    planned: list[Planned] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data_stats: dict | None = None
    """The statistics of the data its trials trained on, when the file says (export-best's JSON does)."""


@dataclass(frozen=True)
class ImportResult:
    """What `add_imported` did: the trials it added and the rows the study already held (row, trial number)."""

    added: list[int]
    present: list[tuple[int, int]]


class Table:
    """A CSV file's header and rows, with errors that name the file, the row and the column."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.header, self.rows = _read_csv(path)

    def error(self, row: int, column: str | None, problem: str) -> UserError:
        where = f"{self.path} row {row}" + (f", column {column}" if column else "")
        return UserError(f"{where}: {problem}")

    def column(self, *names: str, required: str | None = None) -> str | None:
        """The first of `names` the header has; with `required` (what it is for), a missing one is an error."""
        found = next((name for name in names if name in self.header), None)
        if found is None and required is not None:
            spelled = " or ".join(names)
            raise self.error(1, names[0], f"missing column {spelled} ({required}); the header has {self.shown()}")
        return found

    def shown(self) -> str:
        return ", ".join(self.header)


def read_results(path: str | Path, config: StudyConfig) -> ImportPlan:
    """Every row of the results file `path` as a trial of the study `config`, or skipped with its reason.

    Raises `UserError` (one line: file, row, column) for a file that cannot be read as results, before
    anything is written.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    table = Table(path)
    if not table.rows:
        raise UserError(
            f"{path} holds no rows, only its header (row 1); expected one row per configuration or trial below it"
        )
    if "state" in table.header and "number" in table.header:
        return _read_export(table, config)
    return _read_users(table, config)


def data_problem(plan: ImportPlan, study_stats: dict) -> str | None:
    """Why the file's trials may not have trained on the study's data, or None when its data are the study's.

    Only export-best's files say what their data were (`data_stats` of its `best_hyperparameters.json`);
    for the users' files the data are unknown.
    """
    study = _describe_data(study_stats)
    if plan.data_stats is None:
        return f"{plan.path} does not say which images its trials trained on (the study trains on {study})"
    different = [key for key in SAME_DATA_STATS if not _close(plan.data_stats.get(key), study_stats.get(key))]
    if not different:
        return None
    return (
        f"{plan.path}'s trials trained on other data: {_describe_data(plan.data_stats)}, "
        f"the study's {study} (different {', '.join(different)})"
    )


def add_imported(study: optuna.Study, plan: ImportPlan) -> ImportResult:
    """Add the planned trials the study does not hold yet; returns what was added.

    The study holds a planned trial when one of its trials has the row's `imported_hash` (the same cells) or
    the same state, parameters and value (the same result written otherwise: numbers a spreadsheet saved
    again, a state's case, or the study's own trials in its export). Each trial is one write; were the
    database to fail in between, running the import again adds the rest.
    """
    trials = with_retry(lambda: study.get_trials(deepcopy=False), "reading trials")
    by_hash = {trial.user_attrs[IMPORTED_HASH]: trial.number for trial in trials if trial.user_attrs.get(IMPORTED_HASH)}
    present, new = [], []
    for planned in plan.planned:
        held = by_hash.get(planned.key)
        if held is None:
            held = next((trial.number for trial in trials if _same_result(trial, planned.trial)), None)
        if held is None:
            new.append(planned)
        else:
            present.append((planned.row, held))
    before = {trial.number for trial in study.get_trials(deepcopy=False)}
    for planned in new:
        with_retry(lambda planned=planned: study.add_trial(planned.trial), "adding an imported trial")
    added = sorted({trial.number for trial in study.get_trials(deepcopy=False)} - before)
    return ImportResult(added=added, present=present)


def import_summary(plan: ImportPlan, result: ImportResult | None, study_name: str) -> str:
    """The table the command prints: rows read, imported, skipped (each with its reason), already present."""
    added = result.added if result else []
    present = result.present if result else []
    trials = f"  (trials {added[0]} to {added[-1]})" if len(added) > 1 else f"  (trial {added[0]})" if added else ""
    lines = [
        f"{plan.path} ({plan.kind}) into study {study_name}:",
        f"  rows read        {plan.rows:>5}",
        f"  imported         {len(added):>5}{trials}",
        f"  skipped          {len(plan.skipped):>5}",
        f"  already present  {len(present):>5}",
    ]
    if plan.skipped or present:
        lines.append("rows (counted as a spreadsheet shows them: the header is row 1):")
        outcomes = [(skip.row, f"skipped: {skip.reason}") for skip in plan.skipped]
        outcomes += [(row, f"already present as trial {number}") for row, number in present]
        lines += [f"  row {row}: {text}" for row, text in sorted(outcomes)]
    lines += [f"note: {note}" for note in plan.notes]
    return "\n".join(lines)


def _read_users(table: Table, config: StudyConfig) -> ImportPlan:
    """The users' `search_results_final.csv` and the `history_*.csv` files beside it."""
    plan = ImportPlan(table.path, USERS)
    value_column = table.column(*USERS_VALUE_COLUMNS, required="the best val Jaccard of each configuration")
    if config.metric != VAL_JACCARD:
        raise table.error(
            1,
            config.metric,
            f"the study maximizes {config.metric}, which the users' files do not hold (only the val Jaccard, "
            f"{value_column}); import them into a study whose metric is {VAL_JACCARD}",
        )
    settings = _setting_columns(table, config)
    for number, cells in table.rows:
        plan.rows += 1
        value = _number(table, number, value_column, cells[value_column], low=0.0, high=1.0)
        params = _row_params(table, number, cells, settings, config)
        if isinstance(params, str):
            plan.skipped.append(Skipped(number, params))
            continue
        if value is None:
            plan.skipped.append(Skipped(number, f"no {value_column}"))
            continue
        record = {BEST_VAL_JACCARD: value}
        columns = {attr: column for column, attr in USERS_RECORD_COLUMNS.items() if column in cells}
        for attr, column in columns.items():
            cell = _record_cell(table, number, column, cells[column], attr)
            if cell is not None:
                record[attr] = cell
        _check_epochs(table, number, record, columns)
        history = _users_history(table, number, cells, value, record.get(EPOCHS_RUN), plan)
        _plan(plan, table, number, cells, params, value, record, history, config)
    return plan


def _read_export(table: Table, config: StudyConfig) -> ImportPlan:
    """export-best's `search_results.csv`, `histories/trial_NNNN.csv` and `best_hyperparameters.json`."""
    plan = ImportPlan(table.path, EXPORT, data_stats=_exported_data_stats(table.path))
    value_column = config.metric
    table.column(value_column, required=f"the study's metric, {config.metric}")
    settings = _setting_columns(table, config)
    for number, cells in table.rows:
        plan.rows += 1
        trial_number = _number(table, number, "number", cells["number"], integer=True, low=0)
        state = _state(table, number, cells["state"])
        value = _number(table, number, value_column, cells[value_column], low=0.0, high=1.0)
        if state != TrialState.COMPLETE.name:
            plan.skipped.append(Skipped(number, f"a {state or 'stateless'} trial; only COMPLETE trials are imported"))
            continue
        params = _row_params(table, number, cells, settings, config)
        if isinstance(params, str):
            plan.skipped.append(Skipped(number, params))
            continue
        if value is None:
            plan.skipped.append(Skipped(number, f"no {value_column} (the study's metric)"))
            continue
        record = {}
        columns = {}
        for column in (VAL_JACCARD, *EXPORT_RECORD_COLUMNS):
            if column in cells:
                attr = BEST_VAL_JACCARD if column == VAL_JACCARD else column
                columns[attr] = column
                cell = _record_cell(table, number, column, cells[column], attr)
                if cell is not None:
                    record[attr] = cell
        _check_epochs(table, number, record, columns)
        history = None
        if trial_number is not None:
            history_path = table.path.parent / "histories" / f"trial_{trial_number:04d}.csv"
            history = _export_history(history_path)
            _check_exported_best(table, number, record.get(BEST_VAL_JACCARD), history, history_path)
        _plan(plan, table, number, cells, params, value, record, history, config)
    return plan


def _plan(
    plan: ImportPlan,
    table: Table,
    number: int,
    cells: dict[str, str],
    params: dict[str, Any],
    value: float,
    record: dict[str, Any],
    history: list[dict[str, float]] | None,
    config: StudyConfig,
) -> None:
    """Add the row's trial to the plan (a row equal to an earlier one is that row again)."""
    key = _row_hash(cells)
    earlier = next((planned.row for planned in plan.planned if planned.key == key), None)
    if earlier is not None:
        plan.skipped.append(Skipped(number, f"the same cells as row {earlier}"))
        return
    intermediate = {}
    system_attrs = {}
    if history:
        intermediate = {
            int(row["epoch"]): float(row["val_jaccard"]) for row in history if math.isfinite(row["val_jaccard"])
        }
        system_attrs[HISTORY_ATTR] = history_columns(history)
    trial = optuna.trial.create_trial(
        value=value,
        params=params,
        distributions=_distributions(config, params),
        user_attrs={**record, IMPORTED_FROM: f"{table.path.name}:{number}", IMPORTED_HASH: key},
        system_attrs=system_attrs,
        intermediate_values=intermediate,
    )
    same = next((planned.row for planned in plan.planned if _same_result(planned.trial, trial)), None)
    if same is not None:
        plan.skipped.append(Skipped(number, f"the same state, parameters and value as row {same}"))
        return
    plan.planned.append(Planned(number, key, trial))


def _distributions(config: StudyConfig, params: dict[str, Any]) -> dict[str, BaseDistribution]:
    return {name: distribution for name, distribution in config.search.distributions().items() if name in params}


def _setting_columns(table: Table, config: StudyConfig) -> dict[str, str]:
    """Each training setting the file has a column for, and that column; every searched one must have one."""
    columns: dict[str, str] = {}
    for column in table.header:
        setting = SETTING_ALIASES.get(column, column)
        if setting not in field_names():
            continue
        if setting in columns:
            raise table.error(1, column, f"gives {setting}, as column {columns[setting]} does; keep one")
        columns[setting] = column
    for name in config.search.names():
        if name not in columns:
            spelled = " or ".join([name, *(alias for alias, setting in SETTING_ALIASES.items() if setting == name)])
            raise table.error(
                1, name, f"missing column {spelled}: the study searches {name}, so every row must give it"
            )
    return columns


def _row_params(
    table: Table, number: int, cells: dict[str, str], settings: dict[str, str], config: StudyConfig
) -> dict[str, Any] | str:
    """The row's searched parameters, or why the row is skipped; a cell of the wrong type is an error."""
    values = {name: _setting(table, number, column, cells[column], name) for name, column in settings.items()}
    params: dict[str, Any] = {}
    for name, distribution in config.search.distributions().items():
        value = values[name]
        if value is None:
            return f"no {settings[name]}, which the study searches"
        inside = _in_space(distribution, value)
        if inside is None:
            return f"{settings[name]} = {value!r} is outside the study's space ({config.search.get(name).expected()})"
        params[name] = inside
    for name, value in values.items():
        if name in params or value is None:
            continue
        fixed = getattr(config.training, name)
        if not _same(value, fixed):
            return f"{settings[name]} = {value!r}, but the study trains with {name} = {fixed!r} (not searched)"
    try:
        config.training.replace(**params)
    except ValueError as error:
        return f"not a valid configuration: {error}"
    return params


def _in_space(distribution: BaseDistribution, value: Any) -> Any:
    """`value` as the distribution's own value (a choice, an int, a float), or None when it is outside."""
    if isinstance(distribution, CategoricalDistribution):
        return next((choice for choice in distribution.choices if _same(value, choice)), None)
    if isinstance(value, str):
        return None
    try:
        internal = distribution.to_internal_repr(value)
    except ValueError:
        return None
    return distribution.to_external_repr(internal) if distribution._contains(internal) else None


def _same_result(trial: FrozenTrial, other: FrozenTrial) -> bool:
    """The same state, parameters and value (numbers equal to float round-off)."""
    return (
        trial.state == other.state
        and trial.params.keys() == other.params.keys()
        and all(_same(trial.params[name], other.params[name]) for name in trial.params)
        and _same(trial.value, other.value)
    )


def _same(value: Any, other: Any) -> bool:
    if isinstance(value, float) or isinstance(other, float):
        both_numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (value, other))
        return both_numbers and math.isclose(value, other, rel_tol=1e-9, abs_tol=1e-12)
    return type(value) is type(other) and value == other


def _setting(table: Table, number: int, column: str, cell: str, name: str) -> Any:
    """A cell as the setting `name`'s type (None when empty); an unknown architecture or loss is an error."""
    text = cell.strip()
    if not text:
        return None
    kind = field_types()[name]
    if kind is bool:
        lowered = text.lower()
        if lowered not in ("true", "false", "1", "0"):
            raise table.error(number, column, f"{text!r} is not true or false")
        return lowered in ("true", "1")
    if kind is int:
        return _number(table, number, column, text, integer=True)
    if kind is float:
        return _number(table, number, column, text)
    if name == "architecture":
        return _known_name(table, number, column, text, ARCHITECTURES, ARCHITECTURE_ALIASES, "architecture")
    if name == "loss":
        return _known_name(table, number, column, text, LOSS_NAMES, LOSS_ALIASES, "loss", suffix="_loss")
    return text


def _known_name(
    table: Table,
    number: int,
    column: str,
    text: str,
    names: tuple[str, ...],
    aliases: dict[str, str],
    what: str,
    suffix: str = "",
) -> str:
    """The project's name for the users' spelling ("Attention_ResUNet", "U-Net", "dice_loss")."""
    key = text.lower().replace("-", "").replace(" ", "_")
    if suffix:
        key = key.removesuffix(suffix)
    key = aliases.get(key, key)
    if key not in names:
        raise table.error(number, column, f"unknown {what} {text!r}; known: {', '.join(names)}")
    return key


def _number(
    table: Table,
    number: int,
    column: str,
    cell: str,
    *,
    integer: bool = False,
    low: float | None = None,
    high: float | None = None,
    non_finite: bool = False,
) -> Any:
    """A cell as a finite number (an integer, with `integer`; `16.0` counts) in [`low`, `high`] (either bound may
    be None), None when empty; else an error. With `non_finite`, `nan` and `inf` cells read as NaN (a Keras
    history of a run that diverged holds them)."""
    text = cell.strip()
    if not text:
        return None
    expected = "an integer" if integer else "a number"
    if low is not None and high is not None:
        expected += f" in [{low:g}, {high:g}]"
    elif low is not None:
        expected += f" of at least {low:g}"
    try:
        value = float(text)
    except ValueError:
        raise table.error(number, column, f"{text!r} is not {expected}") from None
    if non_finite and not math.isfinite(value):
        return math.nan
    if not math.isfinite(value) or (integer and not value.is_integer()):
        raise table.error(number, column, f"{text!r} is not {expected}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise table.error(number, column, f"{text!r} is not {expected}")
    return int(value) if integer else value


def _record_cell(table: Table, number: int, column: str, cell: str, attr: str) -> Any:
    """A cell kept as the record's user attr `attr`, of that attr's type and range (`RECORD_RANGES`)."""
    integer, low, high = RECORD_RANGES[attr]
    return _number(table, number, column, cell, integer=integer, low=low, high=high)


def _check_epochs(table: Table, number: int, record: dict[str, Any], columns: dict[str, str]) -> None:
    """Error when the row's best epoch comes after its last epoch (`columns`: each record attr's column)."""
    best, last = record.get(BEST_EPOCH), record.get(EPOCHS_RUN)
    if best is not None and last is not None and best > last:
        raise table.error(
            number,
            columns[BEST_EPOCH],
            f"{best} is after the last epoch, {columns[EPOCHS_RUN]} {last}; the best epoch must be one of the "
            "epochs run",
        )


def _state(table: Table, number: int, cell: str) -> str:
    """export-best's state cell as Optuna names it, in any case ("complete" is COMPLETE); "" when empty;
    a name that is no trial state is an error."""
    state = cell.strip().upper()
    if state and state not in TRIAL_STATES:
        raise table.error(number, "state", f"{cell.strip()!r} is not a trial state; known: {', '.join(TRIAL_STATES)}")
    return state


def _check_exported_best(
    table: Table, number: int, best_value: float | None, history: list[dict[str, float]] | None, path: Path
) -> None:
    """Error when the row's best val Jaccard is not its history's: export-best writes both from one trial, so
    a difference means `histories/` comes from another export (the trial numbers of another study)."""
    if best_value is None or not history:
        return
    best = max((row["val_jaccard"] for row in history if math.isfinite(row["val_jaccard"])), default=None)
    if best is not None and abs(best - best_value) > SAME_EXPORTED_BEST:
        raise table.error(
            number,
            VAL_JACCARD,
            f"{best_value:.6g} is not the best val_jaccard of {path} ({best:.6g}); expected the histories/ that "
            "export-best wrote with this file",
        )


def _users_history(
    table: Table, number: int, cells: dict[str, str], value: float, epochs_run: int | None, plan: ImportPlan
) -> list[dict[str, float]] | None:
    """The row's Keras history beside the file, when there is one, its best val Jaccard is the row's and it
    has as many epochs as the row's `total_epochs` (when the row states them)."""
    path = next((path for path in _users_history_names(table.path.parent, cells) if path.is_file()), None)
    if path is None:
        return None
    history = Table(path)
    found = {ours: history.column(*theirs) for ours, theirs in USERS_HISTORY_COLUMNS.items()}
    history.column(*HISTORY_VALUE_COLUMNS, required="the val Jaccard of each epoch")
    rows = []
    for epoch, (row, values) in enumerate(history.rows, start=1):
        parsed = {"epoch": float(epoch), "seconds": math.nan}
        for ours, column in found.items():
            cell = None if column is None else _number(history, row, column, values[column], non_finite=True)
            parsed[ours] = math.nan if cell is None else cell
        rows.append(parsed)
    best = max((row["val_jaccard"] for row in rows if math.isfinite(row["val_jaccard"])), default=None)
    if best is None or abs(best - value) > SAME_BEST:
        plan.notes.append(
            f"row {number}: {path.name} is another run of the same configuration (its best val Jaccard "
            f"{'none' if best is None else f'{best:.6g}'}, the row's {value:.6g}); imported without per-epoch values"
        )
        return None
    if epochs_run is not None and len(rows) != epochs_run:
        plan.notes.append(
            f"row {number}: {path.name} is another run of the same configuration (its {len(rows)} epochs, the "
            f"row's {epochs_run}); imported without per-epoch values"
        )
        return None
    return rows


def _users_history_names(folder: Path, cells: dict[str, str]) -> Iterator[Path]:
    """The names the users' scripts give a configuration's history, from the row's cells as written."""
    loss = next((cells[column].strip() for column in ("loss_function", "loss_type") if column in cells), None)
    batch, dropout = cells.get("batch_size", "").strip(), cells.get("dropout", "").strip()
    if not (loss and batch and dropout):
        return
    if cells.get("architecture", "").strip():
        yield folder / f"history_{cells['architecture'].strip()}_bs{batch}_dr{dropout}_{loss}.csv"
    if cells.get("learning_rate", "").strip():
        yield folder / f"history_lr{cells['learning_rate'].strip()}_bs{batch}_dr{dropout}_{loss}.csv"


def _export_history(path: Path) -> list[dict[str, float]] | None:
    """export-best's history of one trial (`HISTORY_COLUMNS`), when the file is there."""
    if not path.is_file():
        return None
    history = Table(path)
    history.column("epoch", required="the epoch of each row")
    history.column(VAL_JACCARD, required="the val Jaccard of each epoch")
    rows = []
    for row, values in history.rows:
        parsed = {}
        for column in HISTORY_COLUMNS:
            cell = (
                _number(history, row, column, values[column], integer=column == "epoch", non_finite=True)
                if column in values
                else None
            )
            parsed[column] = math.nan if cell is None else float(cell)
        if math.isfinite(parsed["epoch"]):
            rows.append(parsed)
    return rows


def _exported_data_stats(path: Path) -> dict | None:
    """The data statistics of the study export-best wrote the file from (its `best_hyperparameters.json`)."""
    summary = path.parent / "best_hyperparameters.json"
    try:
        stats = json.loads(summary.read_text(encoding="utf-8")).get("data_stats")
    except (OSError, ValueError, AttributeError):
        return None
    return stats if isinstance(stats, dict) else None


def _describe_data(stats: dict) -> str:
    try:
        return (
            f"{stats['n_images']:.0f} images of {stats['image_width']:.0f}x{stats['image_height']:.0f} px, "
            f"{stats['objects_per_image_mean']:.1f} beads per image"
        )
    except (KeyError, TypeError, ValueError):
        return "unknown data"


def _close(before: Any, after: Any) -> bool:
    if not all(isinstance(v, int | float) for v in (before, after)):
        return False
    return math.isclose(before, after, rel_tol=1e-6, abs_tol=1e-9)


def _row_hash(cells: dict[str, str]) -> str:
    """A hash of the row's non-empty cells by column (`rank` left out): the same row gives the same hash in
    any column order, and an export of the same trial after more trials gives it too."""
    kept = sorted(
        (column, cell.strip()) for column, cell in cells.items() if cell.strip() and column not in VOLATILE_COLUMNS
    )
    return hashlib.sha256(json.dumps(kept).encode()).hexdigest()[:16]


def _read_csv(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """The header and the rows (each with its spreadsheet row number) of a CSV text file."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise UserError(f"{path}: not a CSV text file (byte {error.start} is not UTF-8 text)") from None
    if "\x00" in text:
        raise UserError(f"{path}: not a CSV text file (it holds NUL bytes)")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        records = list(reader)
    except csv.Error as error:
        where = f"line {reader.line_num}"
        if str(error) == "unexpected end of data":
            raise UserError(f"{path} {where}: not a CSV file: a quoted cell is never closed") from None
        raise UserError(f"{path} {where}: not a CSV file: {error}") from None
    if not records or not any(cell.strip() for cell in records[0]):
        raise UserError(f"{path} row 1: empty; expected a header row of column names")
    header = [cell.strip() for cell in records[0]]
    separator = next((mark for mark in (";", "\t", "|") if len(header) == 1 and mark in header[0]), None)
    if separator is not None:
        raise UserError(
            f"{path} row 1: one column, its cells separated by {separator!r}; expected commas between cells "
            "(save it as comma-separated CSV)"
        )
    for index, name in enumerate(header):
        if not name:
            raise UserError(f"{path} row 1, column {index + 1}: empty column name")
        if name in header[:index]:
            raise UserError(f"{path} row 1, column {name}: appears twice")
    rows = []
    for number, record in enumerate(records[1:], start=2):
        if not any(cell.strip() for cell in record):
            continue
        if len(record) != len(header):
            raise UserError(f"{path} row {number}: {len(record)} cells, but the header has {len(header)} columns")
        rows.append((number, dict(zip(header, record, strict=True))))
    return header, rows
