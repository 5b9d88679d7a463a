"""Keras callback that reports validation Jaccard to the Optuna trial every epoch and prunes.

Like `optuna_integration.KerasPruningCallback`, but steps are epochs counted from 1, the last epoch never
prunes, a missing metric fails at once instead of silently never pruning, and a NaN loss prunes with reason
`nan`.
"""

from __future__ import annotations

import math

import keras
import optuna

from optimize.results.record import Reason, describe_reason


class PrunedWithReason(optuna.TrialPruned):
    """`optuna.TrialPruned` that says why (`reason`: pruned, nan or oom) and, when known, at which epoch."""

    def __init__(self, reason: Reason, epoch: int | None = None) -> None:
        super().__init__(describe_reason(reason, pruned_epoch=epoch))
        self.reason = reason
        self.epoch = epoch


class ReportToTrial(keras.callbacks.Callback):
    """Reports `monitor` at the end of each epoch and raises `PrunedWithReason` when the pruner says so, except
    after `final_epoch`: a trial that trained all its epochs completes. (An ASHA rung at max_epochs, as in the
    shipped studies, would otherwise turn finished trials, the best among them, into PRUNED ones, which
    Optuna's best trial and `export-best` never pick.)"""

    def __init__(self, trial: optuna.Trial, final_epoch: int, monitor: str = "val_jaccard") -> None:
        super().__init__()
        self.trial = trial
        self.final_epoch = final_epoch
        self.monitor = monitor

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        if self.monitor not in logs:
            raise KeyError(f"metric {self.monitor!r} missing from Keras logs (have: {', '.join(sorted(logs))})")
        step = epoch + 1
        loss = float(logs.get("loss", math.nan))
        value = float(logs[self.monitor])
        if not (math.isfinite(loss) and math.isfinite(value)):
            raise PrunedWithReason(Reason.NAN, step)
        self.trial.report(value, step)
        if step < self.final_epoch and self.trial.should_prune():
            raise PrunedWithReason(Reason.PRUNED, step)
