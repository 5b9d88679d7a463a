"""Faults a worker survives: running out of accelerator memory, a batch that takes minutes, and test
hooks that cause them for real.

Out-of-memory is recognised by the backend's own error (TensorFlow's `ResourceExhaustedError`,
JAX's `RESOURCE_EXHAUSTED`, PyTorch's `OutOfMemoryError`), never by a class of ours.
"""

from __future__ import annotations

import os
import time

import keras

from .settings import TrainSettings

INJECT_OOM_ENV = "OPTIMIZE_TEST_OOM_ABOVE_MICRO_BATCH"
INJECT_SLOW_STEP_ENV = "OPTIMIZE_TEST_SLOW_STEP"
OOM_MARKERS = ("RESOURCE_EXHAUSTED", "ResourceExhaustedError", "OutOfMemoryError", "out of memory", "OOM when")


def is_out_of_memory(error: BaseException) -> bool:
    """Whether `error` is the backend telling us the configuration does not fit in device memory."""
    text = f"{type(error).__name__}: {error}"
    return any(marker in text for marker in OOM_MARKERS)


def smaller_micro_batch(settings: TrainSettings) -> TrainSettings | None:
    """The same effective batch with half the micro-batch (twice the accumulation), or None at 1."""
    if settings.micro_batch_size <= 1:
        return None
    steps = settings.gradient_accumulation_steps * 2
    if settings.batch_size % steps:
        steps = settings.batch_size
    return settings.replace(gradient_accumulation_steps=steps)


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


def backend_out_of_memory_error(message: str) -> BaseException:
    """An instance of the current backend's own out-of-memory exception."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        from tensorflow.errors import ResourceExhaustedError

        return ResourceExhaustedError(None, None, f"OOM when allocating tensor: {message}")
    if backend == "jax":
        from jax.errors import JaxRuntimeError

        return JaxRuntimeError(f"RESOURCE_EXHAUSTED: Out of memory: {message}")
    if backend == "torch":
        import torch

        return torch.OutOfMemoryError(f"CUDA out of memory: {message}")
    return MemoryError(f"out of memory: {message}")
