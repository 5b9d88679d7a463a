"""Where trials train: the GPUs the Keras backend sees, or the CPU and why.

A run says it before any trial starts (`optimize.training.device_check`); by it, `steps_per_execution`
picks one call per epoch on a GPU (`optimize.training.train`).
"""

from __future__ import annotations

import keras


def training_device() -> tuple[str, str]:
    """('GPU', names) or ('CPU', why) for the device the Keras backend trains on."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = [device.name.removeprefix("/physical_device:") for device in tf.config.list_physical_devices("GPU")]
    elif backend == "jax":
        import jax

        gpus = [str(device) for device in jax.devices() if device.platform != "cpu"]
    elif backend == "torch":
        import torch

        gpus = [torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())]
    else:
        gpus = []
    if gpus:
        return "GPU", ", ".join(gpus)
    return "CPU", f"no GPU visible to the {backend} backend"
