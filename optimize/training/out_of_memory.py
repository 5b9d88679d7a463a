"""Running out of accelerator memory: recognised, and answered with a smaller micro-batch.

Out-of-memory is recognised by the backend's own error (TensorFlow's `ResourceExhaustedError`,
JAX's `RESOURCE_EXHAUSTED`, PyTorch's `OutOfMemoryError`), never by a class of ours.
"""

from __future__ import annotations

import keras

from optimize.search.settings import TrainSettings

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
