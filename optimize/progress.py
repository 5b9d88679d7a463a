"""What a person watching `optimize run` sees: a line per finished trial and the running trial's epochs."""

from __future__ import annotations

import time
from typing import TextIO

import keras
import optuna
from optuna.trial import FrozenTrial

NON_TTY_EPOCH_INTERVAL = 30.0


def format_params(params: dict) -> str:
    return " ".join(f"{name}={format_value(value)}" for name, value in params.items())


def format_value(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def trial_line(trial: FrozenTrial) -> str:
    """One line: number, state, val Jaccard, epochs, seconds, reason and parameters."""
    attrs = trial.user_attrs
    value = trial.value if trial.value is not None else attrs.get("best_val_jaccard")
    value_text = f"{value:.4f}" if isinstance(value, float) else "  -   "
    seconds = trial.duration.total_seconds() if trial.duration else 0.0
    reason = attrs.get("reason")
    reason_text = f"  ({reason})" if reason and trial.state != optuna.trial.TrialState.COMPLETE else ""
    return (
        f"trial {trial.number:4d}  {trial.state.name:<8}  val_jaccard {value_text}  "
        f"epochs {attrs.get('epochs_run', 0):3d}  {seconds:7.1f} s  {format_params(trial.params)}{reason_text}"
    )


def print_trial(stream: TextIO):
    """A `study.optimize` callback that prints each finished trial (over the live epoch line)."""

    clear_line = "\r\x1b[K" if stream.isatty() else ""

    def callback(study: optuna.Study, trial: FrozenTrial) -> None:
        print(clear_line + trial_line(trial), file=stream, flush=True)

    return callback


class EpochProgress(keras.callbacks.Callback):
    """The running trial's epochs: one rewritten line on a terminal, a line every 30 s in a log file."""

    def __init__(self, trial_number: int, max_epochs: int, stream: TextIO) -> None:
        super().__init__()
        self.trial_number = trial_number
        self.max_epochs = max_epochs
        self.stream = stream
        self.interactive = stream.isatty()
        self.best = float("-inf")
        self.last_print = time.monotonic()
        self.epoch_started = time.monotonic()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch_started = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        value = float(logs.get("val_jaccard", float("nan")))
        self.best = max(self.best, value) if value == value else self.best
        line = (
            f"  trial {self.trial_number} epoch {epoch + 1}/{self.max_epochs}  loss {logs.get('loss', 0):.4f}  "
            f"val_jaccard {value:.4f} (best {self.best:.4f})  {time.monotonic() - self.epoch_started:.1f} s/epoch"
        )
        if self.interactive:
            print("\r" + line + "\x1b[K", end="", file=self.stream, flush=True)
        elif time.monotonic() - self.last_print >= NON_TTY_EPOCH_INTERVAL:
            print(line, file=self.stream, flush=True)
            self.last_print = time.monotonic()

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.interactive:
            print("\r\x1b[K", end="", file=self.stream, flush=True)
