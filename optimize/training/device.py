"""Where trials train: the GPUs the Keras backend sees, or the CPU and why.

A run says it before any trial starts (`optimize.training.device_check`); by it, `steps_per_execution`
picks one call per epoch on a GPU (`optimize.training.train`).
"""

from __future__ import annotations

import keras


def training_gpus() -> list[str]:
    """Names of the GPUs the Keras backend sees; it trains on the first."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return [device.name.removeprefix("/physical_device:") for device in tf.config.list_physical_devices("GPU")]
    if backend == "jax":
        import jax

        return [str(device) for device in jax.devices() if device.platform != "cpu"]
    if backend == "torch":
        import torch

        return [torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())]
    return []


def training_device() -> tuple[str, str]:
    """('GPU', names) or ('CPU', why) for the device the Keras backend trains on."""
    gpus = training_gpus()
    if gpus:
        return "GPU", ", ".join(gpus)
    return "CPU", f"no GPU visible to the {keras.backend.backend()} backend"
