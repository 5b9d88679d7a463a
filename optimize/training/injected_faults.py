"""Test hooks that cause a worker's faults for real: the backend's own out-of-memory error, a batch
that takes minutes, and an error in our own code. Off unless their environment variable is set.
"""

from __future__ import annotations

import os
import time

import keras

from optimize.search.settings import TrainSettings
from optimize.training.out_of_memory import backend_out_of_memory_error

INJECT_OOM_ENV = "OPTIMIZE_TEST_OOM_ABOVE_MICRO_BATCH"
INJECT_SLOW_STEP_ENV = "OPTIMIZE_TEST_SLOW_STEP"
INJECT_ERROR_ENV = "OPTIMIZE_TEST_ERROR"


class InjectedOutOfMemory(keras.callbacks.Callback):
    """Test hook: raises the backend's real out-of-memory error for micro-batches above a size."""

    def __init__(self, above_micro_batch: int, micro_batch_size: int) -> None:
        super().__init__()
        self.above_micro_batch = above_micro_batch
        self.micro_batch_size = micro_batch_size

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        if self.micro_batch_size > self.above_micro_batch:
            raise backend_out_of_memory_error(f"injected OOM at micro-batch {self.micro_batch_size}")


def oom_injection(settings: TrainSettings) -> list[keras.callbacks.Callback]:
    """The test hook's callback when `$OPTIMIZE_TEST_OOM_ABOVE_MICRO_BATCH` is set, else nothing."""
    limit = os.environ.get(INJECT_OOM_ENV)
    if not limit:
        return []
    return [InjectedOutOfMemory(int(limit), settings.micro_batch_size)]


class InjectedSlowStep(keras.callbacks.Callback):
    """Test hook: one training or validation batch (`phase`) blocks the main thread for `seconds`.

    Stands in for a batch of a GPU-sized model on a CPU, during which no Keras callback runs. In
    training it is the second batch, a steady step (the first one also compiles); in validation the first.
    """

    def __init__(self, phase: str, seconds: float) -> None:
        super().__init__()
        self.phase = phase
        self.seconds = seconds
        self.done = False

    def _block(self) -> None:
        if not self.done:
            self.done = True
            print(f"injected slow {self.phase} step: {self.seconds:g} s", flush=True)
            deadline = time.monotonic() + self.seconds
            while (left := deadline - time.monotonic()) > 0:
                time.sleep(left)

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        if self.phase == "train" and batch == 1:
            self._block()

    def on_test_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        if self.phase == "val":
            self._block()


def slow_step_injection() -> list[keras.callbacks.Callback]:
    """The test hook's callback when `$OPTIMIZE_TEST_SLOW_STEP` is `train:SECONDS` or `val:SECONDS`, else nothing."""
    setting = os.environ.get(INJECT_SLOW_STEP_ENV)
    if not setting:
        return []
    phase, seconds = setting.split(":")
    return [InjectedSlowStep(phase, float(seconds))]


class InjectedError(keras.callbacks.Callback):
    """Test hook: a bug in our own code, raised as `ValueError(message)` at a trial's first training batch."""

    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        raise ValueError(self.message)


def error_injection() -> list[keras.callbacks.Callback]:
    """The test hook's callback when `$OPTIMIZE_TEST_ERROR` holds a message, else nothing."""
    message = os.environ.get(INJECT_ERROR_ENV)
    return [InjectedError(message)] if message else []
