"""The Optuna objective: suggest a configuration, train it, and store what happened with the trial.

Whatever a trial's end (COMPLETE, PRUNED, FAIL), its summary and reason are stored as trial user
attrs, which the dashboard lists, and its per-epoch history as a system attr (`optimize.history`),
which `export-best` and `report` read; other nodes see both. Storage calls
survive a dropped database connection in the worker's storage (`optimize.resilient_storage`).
"""

from __future__ import annotations

import gc
import math
import os
import socket
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np
import optuna
from optuna.exceptions import UpdateFinishedTrialError

from data import epoch_images
from optimize.errors import DatabaseUnreachable
from optimize.results.record import finite_or_none, store_history
from optimize.search.config import ParamSpec, StudyConfig
from optimize.search.retries import requeue, retried_trial_number
from optimize.search.settings import TrainSettings
from optimize.training.history import EpochHistory, best_row
from optimize.training.out_of_memory import is_out_of_memory, smaller_micro_batch
from optimize.training.train import Arrays, TrainResult, train
from optimize.workers.interrupt import Interrupted
from optimize.workers.pruning import ReportToTrial, TrialPruned

STABILITY_EPOCHS = 10


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


def suggest(trial: optuna.Trial, search: Sequence[ParamSpec]) -> dict[str, Any]:
    """Draw every searched parameter from the trial."""
    params: dict[str, Any] = {}
    for param in search:
        if param.is_categorical:
            params[param.name] = trial.suggest_categorical(param.name, list(param.choices))
        elif isinstance(param.low, int):
            params[param.name] = trial.suggest_int(
                param.name, param.low, param.high, step=int(param.step or 1), log=param.log
            )
        else:
            params[param.name] = trial.suggest_float(param.name, param.low, param.high, step=param.step, log=param.log)
    return params


class Objective:
    """Callable for `study.optimize`: one trial = one `train()` run on the study's data; counts the trials `started`."""

    def __init__(
        self,
        config: StudyConfig,
        train_data: Arrays,
        val_data: Arrays,
        *,
        callbacks: Callable[[optuna.Trial, TrainSettings], list[keras.callbacks.Callback]] | None = None,
        verbose: int = 0,
        before_trial: Callable[[optuna.Trial], None] | None = None,
    ) -> None:
        self.config = config
        self.train_data = train_data
        self.val_data = val_data
        self.callbacks = callbacks
        self.verbose = verbose
        self.before_trial = before_trial
        self.started = 0
        self.running: tuple[optuna.Trial, EpochHistory, dict[str, Any]] | None = None

    def __call__(self, trial: optuna.Trial) -> float:
        self.started += 1
        try:
            return self.run(trial)
        except (UpdateFinishedTrialError, DatabaseUnreachable) as error:
            raise TrialAbandoned(trial.number, error) from None
        finally:
            release_memory()

    def run(self, trial: optuna.Trial) -> float:
        """Train the trial's configuration; return its best val Jaccard or raise `TrialPruned`."""
        if self.before_trial is not None:
            self.before_trial(trial)
        settings = self.config.training.replace(**suggest(trial, self.config.search))
        history = EpochHistory()
        summary: dict[str, Any] = {"worker": f"{socket.gethostname()}:{os.getpid()}"}
        self.running = (trial, history, summary)
        trial.set_user_attr("worker", summary["worker"])  # at once: a trial whose worker dies names it
        retry_of = retried_trial_number(trial)
        if retry_of is not None:
            summary["retry_of"] = retry_of
        try:
            result = self.train_within_memory(trial, settings, history, summary)
            summary.update(param_count=result.param_count, train_seconds=round(result.train_seconds, 2))
            if result.diverged or not math.isfinite(result.best_val_jaccard):
                raise TrialPruned("nan")
            return result.best_val_jaccard
        except TrialPruned as pruned:
            summary["reason"] = pruned.reason
            raise
        except optuna.TrialPruned as pruned:
            summary["reason"] = str(pruned) or "pruned"
            raise
        except Interrupted:
            summary["reason"] = "interrupted"
            requeue(trial, "interrupted")
            trial.study.stop()
            raise
        except Exception as error:
            summary["reason"] = f"{type(error).__name__}: {error}"[:500]
            raise
        finally:
            summary.update(history_summary(history.rows))
            self.running = None
            store_trial_attrs(trial, history.rows, summary)

    def hand_back_running(self) -> str:
        """Store the running trial as FAIL `interrupted` and queue it again; called by the stop watchdog
        (`optimize.interrupt`) from its own thread while this one is stuck in a batch."""
        if self.running is None:
            return "no trial was running"
        trial, history, summary = self.running
        rows = list(history.rows)
        summary.update(reason="interrupted", **history_summary(rows))
        store_trial_attrs(trial, rows, summary)
        requeue(trial, "interrupted")
        trial.study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
        return f"trial {trial.number} was handed back to the study"

    def train_within_memory(
        self, trial: optuna.Trial, settings: TrainSettings, history: EpochHistory, summary: dict[str, Any]
    ) -> TrainResult:
        """Train; on out-of-memory retry with half the micro-batch (same effective batch) down to 1.

        A configuration that fits at no micro-batch is pruned with reason `oom` and marked infeasible
        (`trial.set_constraint`), so TPE learns to avoid it; FAIL trials would be invisible to TPE.
        """
        while True:
            summary.update(
                micro_batch_size=settings.micro_batch_size,
                gradient_accumulation_steps=settings.gradient_accumulation_steps,
                images_per_epoch=epoch_images(
                    len(self.train_data[0]), settings.micro_batch_size, settings.drop_remainder
                ),
            )
            try:
                extra = self.callbacks(trial, settings) if self.callbacks else []
                return train(
                    settings,
                    self.train_data,
                    self.val_data,
                    callbacks=[ReportToTrial(trial), *extra],
                    history=history,
                    verbose=self.verbose,
                )
            except Exception as error:
                if not is_out_of_memory(error):
                    raise
                release_memory()
                history.rows.clear()
                summary["oom_micro_batches"] = [*summary.get("oom_micro_batches", []), settings.micro_batch_size]
                smaller = smaller_micro_batch(settings)
                if smaller is None:
                    trial.set_constraint("oom", 1.0)
                    raise TrialPruned("oom") from error
                settings = smaller


def history_summary(rows: list[dict[str, float]]) -> dict[str, Any]:
    """Best epoch, epochs run, stability (std of val loss over the last epochs) and train–val gap."""
    if not rows:
        return {"epochs_run": 0}
    best = best_row(rows) or rows[-1]
    last_val_losses = np.array([row["val_loss"] for row in rows[-STABILITY_EPOCHS:]], dtype=float)
    return {
        "epochs_run": len(rows),
        "best_epoch": int(best["epoch"]),
        "best_val_jaccard": finite_or_none(best["val_jaccard"]),
        "final_val_jaccard": finite_or_none(rows[-1]["val_jaccard"]),
        "stability": finite_or_none(float(np.std(last_val_losses))) if len(rows) >= 2 else None,
        "train_val_gap": finite_or_none(best["jaccard"] - best["val_jaccard"]),
    }


def store_trial_attrs(trial: optuna.Trial, rows: list[dict[str, float]], summary: dict[str, Any]) -> None:
    """Write the history (as `optimize.history` stores it) and the summary as user attrs."""
    store_history(trial, rows)
    for key, value in summary.items():
        trial.set_user_attr(key, value)


def release_memory() -> None:
    """Free the finished trial's model and graphs before the next trial builds its own."""
    keras.backend.clear_session()
    gc.collect()
