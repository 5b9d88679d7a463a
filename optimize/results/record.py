"""What a trial stores about itself: the one module that names, writes and reads a trial's record.

User attrs (optuna-dashboard lists them on the trial's page):

- `worker` ("host:pid"), written as the trial starts, so that a trial whose worker dies names it;
- `retry_of`: the trial this one runs again (`retry_of` also reads the links below);
- `reason`, one of `Reason`, with `pruned_epoch` (a number) or `error` (one line): why it did not complete;
- the run's summary: `epochs_run`, `best_epoch`, `best_val_jaccard`, `final_val_jaccard`, `stability`,
  `train_val_gap`, `param_count`, `train_seconds`, `micro_batch_size`, `gradient_accumulation_steps`,
  `images_per_epoch` and `oom_micro_batches` (the micro-batches that ran out of memory);
- bead-level metrics on the validation images at the best epoch's weights (`data.evaluate_objects`, IoU
  0.5): `val_object_f1`, `val_object_ap50`, `val_count_error`, `val_matched_iou`, `val_panoptic_quality`,
  and the seconds they took, `object_metrics_seconds`;
- `program`: what the trial compiled (architecture, width and depth, image shape, micro-batch, precision,
  XLA), which trials of the same program share in the compile cache (where its time went is the system
  attr `optimize:time_split`, below);
- in a confirmation study (`optimize confirm`, study `NAME-confirm`): `confirm_of`, the trial of study
  NAME whose configuration this run trains again, and `confirm_seed` (the new seed of weights and data
  order) or `confirm_fold` (the cross-validation fold it validates on, counted from 0);
- `enqueued`: a baseline of the study file's `[[enqueue]]`; `requeued_from` and `requeued`: the copy of
  an interrupted trial, queued again;
- `imported_from` ("FILE:ROW", the row counted as a spreadsheet shows it, the header being row 1) and
  `imported_hash` (a hash of the row's cells, which makes a second import of the same row add nothing): a
  trial made by `optimize import-results` from an earlier search's results file.

System attrs (in the database, not on the dashboard):

- `optimize:history`, the per-epoch history: one list per column of `HISTORY_COLUMNS`, one value per
  epoch. Not a user attr: the dashboard prints every user attr as one unwrapped line, so a dozen epochs
  stretched the page to 7,000 px, and it cuts JSON values past 1,024 characters;
- `optimize:val_counts`: true and predicted beads per validation image, as lists `true` and `predicted`;
- `failed_trial` and `retry_history`: the retry of a heartbeat-stale trial (named as Optuna's own callback
  names them); `fixed_params`: Optuna's, the parameters of a queued trial.

Studies written before stored the history as the user attr `history` and the reason as a sentence
("pruned at epoch 3", "budget reached: not run", "ValueError: ..."); `stored_history` and `read_record`
read both forms, here and nowhere else.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from optimize.errors import UserError

WORKER = "worker"
RETRY_OF = "retry_of"
REASON = "reason"
PRUNED_EPOCH = "pruned_epoch"
ERROR = "error"
EPOCHS_RUN = "epochs_run"
BEST_EPOCH = "best_epoch"
BEST_VAL_JACCARD = "best_val_jaccard"
FINAL_VAL_JACCARD = "final_val_jaccard"
STABILITY = "stability"
TRAIN_VAL_GAP = "train_val_gap"
PARAM_COUNT = "param_count"
TRAIN_SECONDS = "train_seconds"
MICRO_BATCH_SIZE = "micro_batch_size"
GRADIENT_ACCUMULATION_STEPS = "gradient_accumulation_steps"
IMAGES_PER_EPOCH = "images_per_epoch"
OOM_MICRO_BATCHES = "oom_micro_batches"
VAL_OBJECT_F1 = "val_object_f1"
VAL_OBJECT_AP50 = "val_object_ap50"
VAL_COUNT_ERROR = "val_count_error"
VAL_MATCHED_IOU = "val_matched_iou"
VAL_PANOPTIC_QUALITY = "val_panoptic_quality"
OBJECT_METRICS_SECONDS = "object_metrics_seconds"
PROGRAM = "program"
CONFIRM_OF = "confirm_of"
CONFIRM_SEED = "confirm_seed"
CONFIRM_FOLD = "confirm_fold"
ENQUEUED = "enqueued"
REQUEUED_FROM = "requeued_from"
REQUEUED = "requeued"
IMPORTED_FROM = "imported_from"
IMPORTED_HASH = "imported_hash"

HISTORY_ATTR = "optimize:history"
VAL_COUNTS_ATTR = "optimize:val_counts"
TIME_SPLIT_ATTR = "optimize:time_split"
"""A system attr, as the history is: a user attr's one-line JSON would widen the dashboard's trial page."""
LEGACY_HISTORY_ATTR = "history"
FAILED_TRIAL = "failed_trial"
RETRY_HISTORY = "retry_history"
FIXED_PARAMS = "fixed_params"

OBJECT_METRICS = {
    VAL_OBJECT_F1: "object_f1",
    VAL_OBJECT_AP50: "object_ap50",
    VAL_COUNT_ERROR: "count_error",
    VAL_MATCHED_IOU: "matched_iou",
    VAL_PANOPTIC_QUALITY: "panoptic_quality",
}
"""Each bead-level metric's user attr and its name in `data.ObjectEvaluation.summary()`."""
VAL_JACCARD = "val_jaccard"
SEARCH_METRICS = (VAL_JACCARD, VAL_OBJECT_F1, VAL_OBJECT_AP50, VAL_MATCHED_IOU, VAL_PANOPTIC_QUALITY)
"""What a study file's `metric` may name for the search to maximize (the count error is minimized, and a
study has one direction, which the pruner's val Jaccard also follows)."""
SPLIT_COMPILE = "compile"
SPLIT_TRAIN_STEPS = "train_steps"
SPLIT_VALIDATION = "validation"
SPLIT_BEAD_METRICS = "bead_metrics"
SPLIT_DATABASE = "database"
SPLIT_HOST = "host"
TIME_SPLIT_PARTS = (
    SPLIT_COMPILE,
    SPLIT_TRAIN_STEPS,
    SPLIT_VALIDATION,
    SPLIT_BEAD_METRICS,
    SPLIT_DATABASE,
    SPLIT_HOST,
)
"""The parts of a trial's time split (system attr `optimize:time_split`), in seconds, which add up to the
trial's wall time in its worker (from suggesting its parameters to storing its summary, that last write
excepted): `compile` (the first training
and the first validation batch of each model, which trace and compile the steps), `train_steps` (the other
training batches), `validation` (the rest of the per-epoch validation), `bead_metrics` (the bead-level metrics
at the end), `database` (the worker's storage calls on the trial's thread; null on a journal file, whose calls
are then in `host`) and `host`, the rest: building the model, callbacks, pruning decisions, saving a best
model. `optimize.training.timing` measures them and says what a batch's window holds on each backend."""
HISTORY_COLUMNS = ("epoch", "loss", "val_loss", "jaccard", "val_jaccard", "lr", "seconds")
MAX_ERROR_CHARS = 500
LEGACY_PRUNED = re.compile(r"pruned at epoch (\d+)")
BUDGET_TEXT = "budget reached: not run"
HEARTBEAT_LOST = "worker lost (heartbeat)"
"""What a FAIL trial without a reason shows: a heartbeat check failed it (its worker died or lost the database)."""


class Reason(StrEnum):
    """Why a trial did not complete: the whole set of values of the user attr `reason`."""

    INTERRUPTED = "interrupted"
    """A stop signal (SIGTERM, SIGINT) came: FAIL, its parameters queued again."""
    OOM = "oom"
    """Out of memory even at a micro-batch of 1: PRUNED and marked infeasible."""
    NAN = "nan"
    """The loss or val Jaccard became NaN or infinite: PRUNED (at `pruned_epoch` when seen at an epoch's end)."""
    PRUNED = "pruned"
    """The pruner stopped it; the epoch is the user attr `pruned_epoch`."""
    ERROR = "error"
    """An exception ended it: FAIL; its one-line text is the user attr `error`."""
    BUDGET = "budget"
    """Started after the study's budget was reached, so never run: FAIL."""


@dataclass(frozen=True)
class TrialRecord:
    """A trial's record, read by `read_record`; a field the trial did not store is None."""

    worker: str | None
    retry_of: int | None
    reason: Reason | None
    pruned_epoch: int | None
    error: str | None
    epochs_run: int | None
    best_epoch: int | None
    best_val_jaccard: float | None
    final_val_jaccard: float | None
    stability: float | None
    train_val_gap: float | None
    param_count: int | None
    train_seconds: float | None
    micro_batch_size: int | None
    gradient_accumulation_steps: int | None
    images_per_epoch: int | None
    oom_micro_batches: tuple[int, ...]
    val_object_f1: float | None
    val_object_ap50: float | None
    val_count_error: float | None
    val_matched_iou: float | None
    val_panoptic_quality: float | None
    object_metrics_seconds: float | None
    time_split: dict[str, float | None] | None
    program: str | None
    confirm_of: int | None
    confirm_seed: int | None
    confirm_fold: int | None
    enqueued: bool
    requeued_from: int | None
    imported_from: str | None
    imported_hash: str | None

    @property
    def reason_text(self) -> str | None:
        """The reason as a person reads it ("pruned at epoch 3", "ValueError: boom"); None for no reason."""
        return None if self.reason is None else describe_reason(self.reason, self.pruned_epoch, self.error)


def read_record(trial: FrozenTrial) -> TrialRecord:
    """The trial's record, from a study written now or before (see the module's docstring).

    A value of another type than this project writes (an attr a user's own script or a hand edit stored) is
    read as not stored, so that one odd trial cannot stop `status`, `export-best` or `report`.
    """
    attrs = trial.user_attrs
    reason, pruned_epoch, error = _stored_reason(attrs)
    return TrialRecord(
        worker=_text(attrs.get(WORKER)),
        retry_of=retry_of(trial),
        reason=reason,
        pruned_epoch=pruned_epoch,
        error=error,
        epochs_run=_integer(attrs.get(EPOCHS_RUN)),
        best_epoch=_integer(attrs.get(BEST_EPOCH)),
        best_val_jaccard=_number(attrs.get(BEST_VAL_JACCARD)),
        final_val_jaccard=_number(attrs.get(FINAL_VAL_JACCARD)),
        stability=_number(attrs.get(STABILITY)),
        train_val_gap=_number(attrs.get(TRAIN_VAL_GAP)),
        param_count=_integer(attrs.get(PARAM_COUNT)),
        train_seconds=_number(attrs.get(TRAIN_SECONDS)),
        micro_batch_size=_integer(attrs.get(MICRO_BATCH_SIZE)),
        gradient_accumulation_steps=_integer(attrs.get(GRADIENT_ACCUMULATION_STEPS)),
        images_per_epoch=_integer(attrs.get(IMAGES_PER_EPOCH)),
        oom_micro_batches=_integers(attrs.get(OOM_MICRO_BATCHES)),
        **{name: _number(attrs.get(name)) for name in OBJECT_METRICS},
        object_metrics_seconds=_number(attrs.get(OBJECT_METRICS_SECONDS)),
        time_split=_time_split(trial.system_attrs.get(TIME_SPLIT_ATTR)),
        program=_text(attrs.get(PROGRAM)),
        confirm_of=_integer(attrs.get(CONFIRM_OF)),
        confirm_seed=_integer(attrs.get(CONFIRM_SEED)),
        confirm_fold=_integer(attrs.get(CONFIRM_FOLD)),
        enqueued=bool(attrs.get(ENQUEUED)),
        requeued_from=_integer(attrs.get(REQUEUED_FROM)),
        imported_from=_text(attrs.get(IMPORTED_FROM)),
        imported_hash=_text(attrs.get(IMPORTED_HASH)),
    )


def _integer(value: Any) -> int | None:
    """An int as stored (JSON may give 3.0 for 3); None for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value) if math.isfinite(value) and value == int(value) else None


def _number(value: Any) -> float | None:
    """A number as stored (NaN and inf kept: a diverged trial's values); None for anything else."""
    return None if isinstance(value, bool) or not isinstance(value, int | float) else value


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _integers(value: Any) -> tuple[int, ...]:
    numbers = [_integer(item) for item in value] if isinstance(value, list | tuple) else []
    return tuple(number for number in numbers if number is not None)


def _time_split(value: Any) -> dict[str, float | None] | None:
    if not isinstance(value, dict):
        return None
    return {str(part): _number(seconds) for part, seconds in value.items()}


def _stored_reason(attrs: Mapping[str, Any]) -> tuple[Reason | None, int | None, str | None]:
    """(reason, pruned epoch, error text) from the user attrs; an old study's sentence is parsed."""
    stored = attrs.get(REASON)
    if not stored:
        return None, None, None
    try:
        return Reason(stored), _integer(attrs.get(PRUNED_EPOCH)), _text(attrs.get(ERROR))
    except ValueError:
        pass
    pruned = LEGACY_PRUNED.fullmatch(str(stored))
    if pruned:
        return Reason.PRUNED, int(pruned.group(1)), None
    if stored == BUDGET_TEXT:
        return Reason.BUDGET, None, None
    return Reason.ERROR, None, str(stored)


def shown_reason(trial: FrozenTrial, record: TrialRecord) -> str | None:
    """The trial's reason as status and the report show it; a FAIL trial without one was failed by a heartbeat
    check (`HEARTBEAT_LOST`)."""
    if record.reason_text is None and trial.state == TrialState.FAIL:
        return HEARTBEAT_LOST
    return record.reason_text


def describe_reason(reason: Reason, pruned_epoch: int | None = None, error: str | None = None) -> str:
    """How status, the run's trial lines and the report show a reason."""
    if reason == Reason.PRUNED and pruned_epoch is not None:
        return f"pruned at epoch {pruned_epoch}"
    if reason == Reason.BUDGET:
        return BUDGET_TEXT
    if reason == Reason.ERROR and error:
        return error
    return reason.value


def retry_of(trial: FrozenTrial) -> int | None:
    """The trial this one runs again, after a heartbeat-stale failure or an interruption; None for a first run.

    The objective writes `retry_of` when the copy starts; before that (a queued copy) the link is the
    system attr `failed_trial` (a heartbeat-stale trial's retry) or the user attr `requeued_from`.
    """
    candidates = (
        trial.user_attrs.get(RETRY_OF),
        trial.system_attrs.get(FAILED_TRIAL),
        trial.user_attrs.get(REQUEUED_FROM),
    )
    return next((number for number in map(_integer, candidates) if number is not None), None)


def error_text(error: BaseException) -> str:
    """The exception as one stored line: "ValueError: ...", cut at `MAX_ERROR_CHARS`."""
    text = f"{type(error).__name__}: {error}"
    return " ".join(text.split())[:MAX_ERROR_CHARS]


def reason_attrs(reason: Reason, *, pruned_epoch: int | None = None, error: str | None = None) -> dict[str, Any]:
    """The user attrs that record why a trial did not complete."""
    attrs: dict[str, Any] = {REASON: reason.value}
    if pruned_epoch is not None:
        attrs[PRUNED_EPOCH] = int(pruned_epoch)
    if error is not None:
        attrs[ERROR] = error[:MAX_ERROR_CHARS]
    return attrs


def store_reason(
    trial: optuna.Trial, reason: Reason, *, pruned_epoch: int | None = None, error: str | None = None
) -> None:
    """Record why the trial did not complete."""
    _store_attrs(trial, reason_attrs(reason, pruned_epoch=pruned_epoch, error=error))


def store_worker(trial: optuna.Trial, worker: str) -> None:
    """Name the worker ("host:pid") running the trial."""
    trial.set_user_attr(WORKER, worker)


def store_summary(trial: optuna.Trial, rows: list[dict[str, float]], summary: Mapping[str, Any]) -> None:
    """Store the per-epoch history and the summary, user attrs keyed by this module's names (None is stored)."""
    store_history(trial, rows)
    _store_attrs(trial, summary)


def _store_attrs(trial: optuna.Trial, attrs: Mapping[str, Any]) -> None:
    for key, value in attrs.items():
        trial.set_user_attr(key, value)


def requeued_attrs(original: int, reason: Reason | str) -> dict[str, Any]:
    """The user attrs of an interrupted trial's queued copy: which trial it repeats, and why."""
    return {REQUEUED_FROM: original, REQUEUED: str(reason)}


def fixed_params(trial: FrozenTrial) -> dict[str, Any] | None:
    """The parameters a queued trial was given (Optuna's system attr); None for a sampled one."""
    return trial.system_attrs.get(FIXED_PARAMS)


def retry_chain(trial: FrozenTrial) -> list[int]:
    """The heartbeat-stale trials this trial's retry would repeat: earlier ones, then this one."""
    return [*trial.system_attrs.get(RETRY_HISTORY, []), trial.number]


def stale_retry_link(trial: FrozenTrial) -> dict[str, Any]:
    """The system attrs of a heartbeat-stale trial's retry: the first trial of the chain and the chain.

    A queued trial that died before it drew its parameters also passes on its fixed parameters.
    """
    link: dict[str, Any] = {
        FAILED_TRIAL: trial.system_attrs.get(FAILED_TRIAL, trial.number),
        RETRY_HISTORY: retry_chain(trial),
    }
    fixed = fixed_params(trial)
    if fixed and not trial.params:
        link[FIXED_PARAMS] = fixed
    return link


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


def object_metric_attrs(summary: Mapping[str, float]) -> dict[str, float | None]:
    """`data.ObjectEvaluation.summary()` as the trial's user attrs (an undefined ratio, NaN, is stored as None)."""
    return {name: finite_or_none(summary[key]) for name, key in OBJECT_METRICS.items()}


def store_val_counts(trial: optuna.Trial, true_counts: list[int], predicted_counts: list[int]) -> None:
    """Store the true and predicted beads of each validation image (for the report's count figure)."""
    counts = {"true": [int(n) for n in true_counts], "predicted": [int(n) for n in predicted_counts]}
    trial.storage.set_trial_system_attr(trial._trial_id, VAL_COUNTS_ATTR, counts)


def store_time_split(trial: optuna.Trial, split: Mapping[str, float | None]) -> None:
    """Store where the trial's time went (`TIME_SPLIT_PARTS`, seconds) as the system attr `optimize:time_split`."""
    trial.storage.set_trial_system_attr(trial._trial_id, TIME_SPLIT_ATTR, dict(split))


def stored_val_counts(trial: FrozenTrial) -> dict[str, list[int]] | None:
    """The trial's stored bead counts per validation image (`true`, `predicted`); None when it has none."""
    counts = trial.system_attrs.get(VAL_COUNTS_ATTR)
    return counts if isinstance(counts, Mapping) and {"true", "predicted"} <= set(counts) else None


def finite_or_none(value: Any) -> float | None:
    """The value as a float, or None for NaN and infinity (which JSON cannot hold)."""
    value = float(value)
    return value if math.isfinite(value) else None


def trial_value(trial: FrozenTrial, record: TrialRecord) -> float | None:
    """The trial's val Jaccard: the best epoch's as stored, else (an old or killed trial) its value when
    COMPLETE (before the study file's `metric` existed, the value was the val Jaccard) or its best report."""
    if record.best_val_jaccard is not None and not math.isnan(record.best_val_jaccard):
        return record.best_val_jaccard
    if trial.state == TrialState.COMPLETE:
        return trial.value
    values = [v for v in trial.intermediate_values.values() if v == v]
    return max(values) if values else None


def study_metric(study: optuna.Study) -> str:
    """The metric the study maximizes (its Optuna metric name); val Jaccard for studies that did not name one."""
    return (study.metric_names or [VAL_JACCARD])[0]
