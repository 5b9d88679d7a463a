"""SIGTERM and SIGINT (PBS walltime, Ctrl-C): stop at the next batch, hand the trial back, exit 143 / 130.

The first signal asks the running trial to stop after its current batch; the objective then marks
it FAIL with reason `interrupted` and enqueues its parameters again. No new trial starts after it.
A second signal, more than two seconds later, stops at once.
"""

from __future__ import annotations

import signal
import time

import keras
import optuna
from optuna.trial import FrozenTrial

HANDLED = (signal.SIGTERM, signal.SIGINT)
# PBS may signal a worker directly and through `optimize run --gpus` at once: that is one request.
DUPLICATE_SECONDS = 2.0


class Interrupted(Exception):
    """The worker was asked to stop; the current trial is handed back to the study."""


class InterruptWatch:
    """Installs the signal handlers and remembers the first signal received."""

    def __init__(self) -> None:
        self.signal_number: int | None = None
        self.first_at = 0.0
        self._previous: dict[int, object] = {}

    def __enter__(self) -> InterruptWatch:
        self._previous = {number: signal.signal(number, self._handle) for number in HANDLED}
        return self

    def __exit__(self, *exc_info: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)

    @property
    def requested(self) -> bool:
        return self.signal_number is not None

    @property
    def exit_code(self) -> int:
        """128 + signal number, as shells report a process ended by that signal."""
        return 128 + (self.signal_number or 0)

    def _handle(self, number: int, frame: object) -> None:
        if self.signal_number is None:
            self.signal_number, self.first_at = number, time.monotonic()
        elif time.monotonic() - self.first_at > DUPLICATE_SECONDS:
            raise KeyboardInterrupt(f"second signal {signal.Signals(number).name}: stopping at once")

    def raise_if_requested(self) -> None:
        """Raise `Interrupted` once a signal has been received."""
        if self.signal_number is not None:
            raise Interrupted(f"signal {signal.Signals(self.signal_number).name}")

    def stop_study(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """A `study.optimize` callback: start no new trial once a signal has been received."""
        if self.signal_number is not None:
            study.stop()

    def callback(self) -> keras.callbacks.Callback:
        """A Keras callback that raises `Interrupted` after the batch in which a signal arrived."""
        return StopOnSignal(self)


class StopOnSignal(keras.callbacks.Callback):
    """Raises `Interrupted` at the end of the batch during which the watch saw a signal.

    Also before the first batch, so a signal received while the model was built stops the trial
    before its training step is compiled.
    """

    def __init__(self, watch: InterruptWatch) -> None:
        super().__init__()
        self.watch = watch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.watch.raise_if_requested()

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.watch.raise_if_requested()

    on_test_batch_end = on_train_batch_end
