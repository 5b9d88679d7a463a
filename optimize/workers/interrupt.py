"""SIGTERM and SIGINT (PBS walltime, Ctrl-C): stop at the next batch, hand the trial back, exit 143 / 130.

The first signal asks the running trial to stop after its current batch; the objective then marks
it FAIL with reason `interrupted` and enqueues its parameters again. No new trial starts after it.
A second signal, more than two seconds later, stops at once.

A batch can take minutes (a GPU-sized model on a CPU), and while the backend runs it Python's signal
handlers wait. So a watchdog thread wakes on the signal itself (`signal.set_wakeup_fd`): when the
batch has not ended within `STOP_WITHIN` seconds, it hands the trial back itself and ends the process.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

import keras
import optuna
from optuna.trial import FrozenTrial

from optimize.stop_signals import raise_if_stopped, signal_exit_code

HANDLED = (signal.SIGTERM, signal.SIGINT)
# PBS may signal a worker directly and through `optimize run --gpus` at once: that is one request.
DUPLICATE_SECONDS = 2.0
STOP_WITHIN = 5.0
"""Seconds a stop signal waits for the current batch to end before the watchdog hands the trial back."""


class Interrupted(Exception):
    """The worker was asked to stop; the current trial is handed back to the study."""


class InterruptWatch:
    """Installs the signal handlers and the watchdog, and remembers the first signal received.

    `hand_back` (set by the run) stores the running trial as interrupted and queues it again; the
    watchdog calls it from its own thread when the main thread is stuck in a batch. Whichever of the
    two threads acts on the signal first owns the hand-back; the other leaves it alone.
    """

    def __init__(self, stop_within: float = STOP_WITHIN, stream: TextIO | None = None) -> None:
        self.signal_number: int | None = None
        self.first_at = 0.0
        self.stop_within = stop_within
        self.stream = stream or sys.stdout
        self.hand_back: Callable[[], str] | None = None
        self._previous: dict[int, object] = {}
        self._owner: str | None = None
        self._owner_lock = threading.Lock()
        self._left = threading.Event()

    def __enter__(self) -> InterruptWatch:
        raise_if_stopped()  # one that a library swallowed before trials started
        self._previous = {number: signal.signal(number, self._handle) for number in HANDLED}
        self._wakeup, writer = socket.socketpair()
        writer.setblocking(False)
        self._writer = writer
        self._previous_wakeup = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        threading.Thread(target=self._watchdog, name="stop-watchdog", daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._left.set()
        signal.set_wakeup_fd(self._previous_wakeup)
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._writer.close()
        self._wakeup.close()

    @property
    def requested(self) -> bool:
        return self.signal_number is not None

    @property
    def exit_code(self) -> int:
        """The exit code of a worker that this stop signal ended (`signal_exit_code`)."""
        return signal_exit_code(self.signal_number or 0)

    def _handle(self, number: int, frame: object) -> None:
        if self.signal_number is None:
            self.signal_number, self.first_at = number, time.monotonic()
        elif time.monotonic() - self.first_at > DUPLICATE_SECONDS:
            raise KeyboardInterrupt(f"second signal {signal.Signals(number).name}: stopping at once")

    def raise_if_requested(self) -> None:
        """Raise `Interrupted` once a signal has been received (or wait for the watchdog's exit if it acts)."""
        if self.signal_number is None:
            return
        if not self._claim("main"):
            self._left.wait()
        raise Interrupted(f"signal {signal.Signals(self.signal_number).name}")

    def _claim(self, thread: str) -> bool:
        """Whether `thread` owns the hand-back: the first to ask gets it."""
        with self._owner_lock:
            self._owner = self._owner or thread
            return self._owner == thread

    def _watchdog(self) -> None:
        """Wait for a stop signal; if the main thread has not acted on it within `stop_within`, hand back and exit."""
        try:
            while (received := self._wakeup.recv(1)) and received[0] not in HANDLED:
                pass
        except OSError:
            return
        if not received or self._left.wait(self.stop_within) or not self._claim("watchdog"):
            return
        self.signal_number = self.signal_number or received[0]
        try:
            handed_back = self.hand_back() if self.hand_back is not None else "no trial was running"
        except Exception as error:
            handed_back = (
                f"the trial could not be handed back ({type(error).__name__}: {error}); "
                "it is retried once its heartbeat is stale"
            )
        print(
            f"interrupted: the current batch did not end within {self.stop_within:g} s of "
            f"{signal.Signals(self.signal_number).name}; {handed_back}; exiting {self.exit_code}",
            file=self.stream,
            flush=True,
        )
        sys.stderr.flush()
        os._exit(self.exit_code)

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
