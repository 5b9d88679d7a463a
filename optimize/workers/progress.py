"""What a person watching `optimize run` sees: a line per finished trial and the running trial's epochs."""

from __future__ import annotations

import time
from typing import TextIO

import keras
import optuna
from optuna.trial import FrozenTrial

from optimize.results.formatting import format_duration, format_params, format_scores
from optimize.results.record import read_record, trial_value

NON_TTY_EPOCH_INTERVAL = 30.0
IN_EPOCH_AFTER = 3.0
"""Seconds into an epoch after which its batches are shown too."""
IN_EPOCH_REFRESH = 1.0


def trial_line(trial: FrozenTrial) -> str:
    """One line: number, state, val Jaccard (and object F1), epochs, seconds, reason and parameters."""
    record = read_record(trial)
    scores = format_scores(trial_value(trial, record), record.val_object_f1)
    seconds = trial.duration.total_seconds() if trial.duration else 0.0
    reason = record.reason_text
    reason_text = f"  ({reason})" if reason and trial.state != optuna.trial.TrialState.COMPLETE else ""
    return (
        f"trial {trial.number:4d}  {trial.state.name:<8}  {scores}  "
        f"epochs {record.epochs_run or 0:3d}  {seconds:7.1f} s  {format_params(trial.params)}{reason_text}"
    )


def print_trial(stream: TextIO):
    """A `study.optimize` callback that prints each finished trial (over the live epoch line)."""

    clear_line = "\r\x1b[K" if stream.isatty() else ""

    def callback(study: optuna.Study, trial: FrozenTrial) -> None:
        print(clear_line + trial_line(trial), file=stream, flush=True)

    return callback


class EpochProgress(keras.callbacks.Callback):
    """The running trial's epochs: one rewritten line on a terminal, a line every 30 s in a log file.

    An epoch that lasts longer than `IN_EPOCH_AFTER` seconds also shows its batches on that line:
    batches done, images per second, and the time left for the epoch and (at most) for the trial, timed
    from the end of the epoch's first batch (which, in a trial's first epoch, includes compilation).
    """

    def __init__(self, trial_number: int, max_epochs: int, stream: TextIO, images_per_step: int = 1) -> None:
        super().__init__()
        self.trial_number = trial_number
        self.max_epochs = max_epochs
        self.stream = stream
        self.images_per_step = images_per_step
        self.interactive = stream.isatty()
        self.best = float("-inf")
        self.last_print = time.monotonic()
        self.last_batches_print = float("-inf")
        self.epoch = 0
        self.epoch_started = time.monotonic()
        self.first_batch_ended = self.epoch_started
        self.validation_started = time.monotonic()
        self.last_validation_seconds = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch = epoch
        self.epoch_started = time.monotonic()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        now = time.monotonic()
        if batch == 0:
            self.first_batch_ended = now
        if not self.batches_due():
            return
        steps = (self.params or {}).get("steps") or 0
        done = batch + 1
        if done == 1:  # no speed yet: the first batch of a trial also compiles the training step
            self.show_batches(f"batch 1/{steps or '?'}")
            return
        seconds_per_step = (now - self.first_batch_ended) / (done - 1)
        progress = f"batch {done}/{steps or '?'}  {self.images_per_step / seconds_per_step:.1f} img/s"
        if steps:
            epoch = steps * seconds_per_step + self.last_validation_seconds
            epoch_left = (steps - done) * seconds_per_step + self.last_validation_seconds
            trial_left = epoch_left + (self.max_epochs - self.epoch - 1) * epoch
            progress += f"  epoch left {format_duration(epoch_left)}, trial left at most {format_duration(trial_left)}"
        self.show_batches(progress)

    def on_test_begin(self, logs: dict | None = None) -> None:
        self.validation_started = time.monotonic()

    def on_test_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self.batches_due():
            self.show_batches(f"validating, batch {batch + 1}")

    def on_test_end(self, logs: dict | None = None) -> None:
        self.last_validation_seconds = time.monotonic() - self.validation_started

    def batches_due(self) -> bool:
        """Whether to show the in-epoch line now: once the epoch has run `IN_EPOCH_AFTER` s, then every
        second on a terminal and every 30 s in a log."""
        now = time.monotonic()
        interval = IN_EPOCH_REFRESH if self.interactive else NON_TTY_EPOCH_INTERVAL
        return now - self.epoch_started >= IN_EPOCH_AFTER and now - self.last_batches_print >= interval

    def show_batches(self, progress: str) -> None:
        """Write the in-epoch line with `progress`: batches done, speed and time left."""
        self.write(f"  trial {self.trial_number} epoch {self.epoch + 1}/{self.max_epochs}  {progress}")
        self.last_batches_print = self.last_print = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        epoch_seconds = time.monotonic() - self.epoch_started
        value = float(logs.get("val_jaccard", float("nan")))
        self.best = max(self.best, value) if value == value else self.best
        line = (
            f"  trial {self.trial_number} epoch {epoch + 1}/{self.max_epochs}  loss {logs.get('loss', 0):.4f}  "
            f"val_jaccard {value:.4f} (best {self.best:.4f})  {epoch_seconds:.1f} s/epoch"
        )
        if self.interactive or time.monotonic() - self.last_print >= NON_TTY_EPOCH_INTERVAL:
            self.write(line)
            self.last_print = time.monotonic()

    def write(self, line: str) -> None:
        """On a terminal, rewrite the one live line; in a log file, append a line."""
        if self.interactive:
            print("\r" + line + "\x1b[K", end="", file=self.stream, flush=True)
        else:
            print(line, file=self.stream, flush=True)

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.interactive:
            print("\r\x1b[K", end="", file=self.stream, flush=True)
