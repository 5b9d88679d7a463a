"""The Optuna objective: suggest a configuration, train it, and store what happened with the trial.

Whatever a trial's end (COMPLETE, PRUNED, FAIL), its record is stored as `optimize.results.record`
defines it: summary and reason as user attrs, which the dashboard lists, the per-epoch history as a
system attr, which `export-best` and `report` read; other nodes see both. Storage calls survive a
dropped database connection in the worker's storage (`optimize.storage.resilient`). Each trial also
stores where its time went (system attr `optimize:time_split`, measured by `optimize.training.timing`)
and the program it compiled.
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import optuna
from optuna.exceptions import UpdateFinishedTrialError

from data import epoch_images
from optimize.errors import DatabaseUnreachable
from optimize.results import record
from optimize.results.record import Reason
from optimize.search.config import StudyConfig
from optimize.search.settings import TrainSettings
from optimize.storage.resilient import ResilientStorage
from optimize.storage.retries import requeue
from optimize.training.bead_metrics import bead_metrics
from optimize.training.garbage import release_memory
from optimize.training.history import EpochHistory, best_row
from optimize.training.out_of_memory import is_out_of_memory, smaller_micro_batch
from optimize.training.timing import FitTiming, compiled_program, trial_time_split
from optimize.training.train import Arrays, TrainResult, train
from optimize.workers.interrupt import Interrupted
from optimize.workers.pruning import PrunedWithReason, ReportToTrial

STABILITY_EPOCHS = 10
LEAVES_TRIAL = (UpdateFinishedTrialError, DatabaseUnreachable)
"""Errors on which this worker leaves its trial (`TrialAbandoned`) rather than fails it."""


class TrialAbandoned(BaseException):
    """This worker leaves its trial without telling the study how it ended.

    Raised when another worker already finished the trial (it marked it FAIL after this worker's
    heartbeat went stale, and queued a retry), or when the database stayed unreachable past the
    limit (`cause` is then `DatabaseUnreachable`; the trial stays RUNNING until it goes stale and is
    retried). A `BaseException`, so that `study.optimize` neither records the trial nor catches it.
    """

    def __init__(self, number: int, cause: Exception) -> None:
        super().__init__(f"trial {number}: {cause}")
        self.number = number
        self.cause = cause


class Objective:
    """Callable for `study.optimize`: one trial = one `train()` run on the study's data; counts the trials `started`.

    A completed run is scored on the validation images at its best epoch: val Jaccard, and the bead-level
    metrics against `val_labels` (the validation masks when not given); the trial's value is the study
    file's `metric`. `before_trial` runs first (it may end the trial before it trains); `on_error` is told
    of an exception that fails a trial (not of one on which it leaves the trial), after its reason is
    recorded and before it is raised again. `data_for(trial)`, when given, gives each trial its own train,
    val and val-label arrays (a cross-validation fold, `optimize confirm --folds`) in place of the study's.
    """

    def __init__(
        self,
        config: StudyConfig,
        train_data: Arrays,
        val_data: Arrays,
        *,
        callbacks: Callable[[optuna.Trial, TrainSettings], list[keras.callbacks.Callback]] | None = None,
        verbose: int = 0,
        before_trial: Callable[[optuna.Trial], None] | None = None,
        on_error: Callable[[optuna.Trial, Exception], None] | None = None,
        val_labels: np.ndarray | None = None,
        keep_model: Callable[[optuna.Trial, float, keras.Model], None] | None = None,
        data_for: Callable[[optuna.Trial], tuple[Arrays, Arrays, np.ndarray]] | None = None,
    ) -> None:
        self.config = config
        self.data_for = data_for
        self.train_data = train_data
        self.val_data = val_data
        self.val_labels = val_data[1] if val_labels is None else val_labels
        self.keep_model = keep_model
        self.callbacks = callbacks
        self.verbose = verbose
        self.before_trial = before_trial
        self.on_error = on_error
        self.started = 0
        self.running: tuple[optuna.Trial, EpochHistory, dict[str, Any]] | None = None
        self.handed_back: int | None = None
        """The number of the trial a stop signal interrupted and queued again, if any."""

    def __call__(self, trial: optuna.Trial) -> float:
        self.started += 1
        try:
            return self.run(trial)
        except LEAVES_TRIAL as error:
            raise TrialAbandoned(trial.number, error) from None
        finally:
            release_memory()

    def run(self, trial: optuna.Trial) -> float:
        """Train the trial's configuration; return its `metric` at the best epoch or raise `optuna.TrialPruned`."""
        if self.before_trial is not None:
            self.before_trial(trial)
        if self.data_for is not None:
            self.train_data, self.val_data, self.val_labels = self.data_for(trial)
        started = time.perf_counter()
        database_seconds = database_clock(trial)
        database_before = database_seconds() if database_seconds else 0.0
        history = EpochHistory()
        timing = FitTiming()
        worker = f"{socket.gethostname()}:{os.getpid()}"
        summary: dict[str, Any] = {record.WORKER: worker}
        self.running = (trial, history, summary)
        record.store_worker(trial, worker)  # at once: a trial whose worker dies names it
        retry_of = record.retry_of(trial._cached_frozen_trial)
        if retry_of is not None:
            summary[record.RETRY_OF] = retry_of
        try:
            settings = self.config.training.replace(**self.config.search.suggest(trial))
            result = self.train_within_memory(trial, settings, history, summary, timing)
            summary[record.PARAM_COUNT] = result.param_count
            summary[record.TRAIN_SECONDS] = round(result.train_seconds, 2)
            if result.diverged or not math.isfinite(result.best_val_jaccard):
                raise PrunedWithReason(Reason.NAN)
            return self.score(trial, result, settings, summary)
        except PrunedWithReason as pruned:
            summary.update(record.reason_attrs(pruned.reason, pruned_epoch=pruned.epoch))
            raise
        except optuna.TrialPruned:
            summary.update(record.reason_attrs(Reason.PRUNED, pruned_epoch=len(history.rows) or None))
            raise
        except Interrupted:
            summary.update(record.reason_attrs(Reason.INTERRUPTED))
            requeue(trial, Reason.INTERRUPTED)
            self.handed_back = trial.number
            trial.study.stop()
            raise
        except Exception as error:
            summary.update(record.reason_attrs(Reason.ERROR, error=record.error_text(error)))
            if self.on_error is not None and not isinstance(error, LEAVES_TRIAL):
                self.on_error(trial, error)
            raise
        finally:
            summary.update(history_summary(history.rows))
            split = trial_time_split(
                timing,
                time.perf_counter() - started,
                database=database_seconds() - database_before if database_seconds else None,
                bead_metrics=summary.get(record.OBJECT_METRICS_SECONDS) or 0.0,
            )
            self.running = None
            record.store_summary(trial, history.rows, summary)
            record.store_time_split(trial, split)

    def score(
        self, trial: optuna.Trial, result: TrainResult, settings: TrainSettings, summary: dict[str, Any]
    ) -> float:
        """Add the bead-level metrics of the trained model to `summary` and return the study's metric;
        `keep_model` then sees the model with that value (it keeps the study's best models).

        An object metric that is undefined for this model (no predicted bead matched) scores 0.
        """
        beads = bead_metrics(result.model, self.val_data[0], self.val_labels, settings.micro_batch_size)
        metrics = record.object_metric_attrs(beads.evaluation.summary())
        summary.update(metrics)
        summary[record.OBJECT_METRICS_SECONDS] = round(beads.seconds, 3)
        record.store_val_counts(trial, beads.true_counts, beads.predicted_counts)
        value = result.best_val_jaccard if self.config.metric == record.VAL_JACCARD else metrics[self.config.metric]
        value = value or 0.0
        if self.keep_model is not None:
            self.keep_model(trial, value, result.model)
        return value

    def hand_back_running(self) -> str:
        """Store the running trial as FAIL `interrupted` and queue it again; called by the stop watchdog
        (`optimize.workers.interrupt`) from its own thread while this one is stuck in a batch."""
        if self.running is None:
            return "no trial was running"
        trial, history, summary = self.running
        rows = list(history.rows)
        summary.update(record.reason_attrs(Reason.INTERRUPTED), **history_summary(rows))
        record.store_summary(trial, rows, summary)
        requeue(trial, Reason.INTERRUPTED)
        trial.study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
        return f"trial {trial.number} was handed back to the study"

    def train_within_memory(
        self,
        trial: optuna.Trial,
        settings: TrainSettings,
        history: EpochHistory,
        summary: dict[str, Any],
        timing: FitTiming,
    ) -> TrainResult:
        """Train; on out-of-memory retry with half the micro-batch (same effective batch) down to 1.

        `timing` measures every attempt: a retry's compile and epochs are the trial's time too.

        A configuration that fits at no micro-batch is pruned with reason `oom` and marked infeasible
        (`trial.set_constraint`), so TPE learns to avoid it; FAIL trials would be invisible to TPE.
        """
        while True:
            summary[record.MICRO_BATCH_SIZE] = settings.micro_batch_size
            summary[record.GRADIENT_ACCUMULATION_STEPS] = settings.gradient_accumulation_steps
            summary[record.IMAGES_PER_EPOCH] = epoch_images(
                len(self.train_data[0]), settings.micro_batch_size, settings.drop_remainder
            )
            summary[record.PROGRAM] = compiled_program(settings, self.train_data[0].shape[1:])
            try:
                extra = self.callbacks(trial, settings) if self.callbacks else []
                return train(
                    settings,
                    self.train_data,
                    self.val_data,
                    callbacks=[timing, ReportToTrial(trial, settings.max_epochs), *extra],
                    history=history,
                    verbose=self.verbose,
                )
            except Exception as error:
                if not is_out_of_memory(error):
                    raise
                release_memory()
                history.rows.clear()
                tried = summary.get(record.OOM_MICRO_BATCHES, [])
                summary[record.OOM_MICRO_BATCHES] = [*tried, settings.micro_batch_size]
                smaller = smaller_micro_batch(settings)
                if smaller is None:
                    trial.set_constraint("oom", 1.0)
                    raise PrunedWithReason(Reason.OOM) from error
                settings = smaller


def history_summary(rows: list[dict[str, float]]) -> dict[str, Any]:
    """Best epoch, epochs run, stability (std of val loss over the last epochs) and train–val gap."""
    if not rows:
        return {record.EPOCHS_RUN: 0}
    best = best_row(rows) or rows[-1]
    last_val_losses = np.array([row["val_loss"] for row in rows[-STABILITY_EPOCHS:]], dtype=float)
    return {
        record.EPOCHS_RUN: len(rows),
        record.BEST_EPOCH: int(best["epoch"]),
        record.BEST_VAL_JACCARD: record.finite_or_none(best["val_jaccard"]),
        record.FINAL_VAL_JACCARD: record.finite_or_none(rows[-1]["val_jaccard"]),
        record.STABILITY: record.finite_or_none(float(np.std(last_val_losses))) if len(rows) >= 2 else None,
        record.TRAIN_VAL_GAP: record.finite_or_none(best["jaccard"] - best["val_jaccard"]),
    }


def database_clock(trial: optuna.Trial) -> Callable[[], float] | None:
    """The seconds this thread has spent in the trial's storage calls, as a function to read before and after;
    None when the storage is not the worker's `ResilientStorage` (a journal file), whose calls are not timed."""
    storage = trial.storage
    return storage.seconds_in_calls if isinstance(storage, ResilientStorage) else None
