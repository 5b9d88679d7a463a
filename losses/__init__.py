"""Segmentation losses and metrics for the microbead U-Nets.

Written with ``keras.ops`` only, so they run on every Keras backend (TensorFlow, JAX). Inputs are
cast to float32 before reducing (safe under mixed precision) and probabilities are clipped to
[ε, 1 − ε] wherever a log is taken. Losses return one scalar per batch (whole-batch reduction).

The names, parameters and the training settings that set them load without Keras; the losses and
metrics themselves import it on first use (PEP 562), so that commands which only read a study never
pay for it. ``CUSTOM_OBJECTS`` names everything of this package a saved compiled model may hold;
asking for it registers them with Keras, so that ``keras.models.load_model`` restores the loss and metrics.
"""

import importlib

from losses._catalogue import LOSS_NAMES, LOSS_SETTINGS, default_params, losses_taking, params_from_settings
from losses._combined import weighted_sum

_KERAS_MEMBERS = {
    "CUSTOM_OBJECTS": "losses._saving",
    "bce_loss": "losses._focal",
    "dice_loss": "losses._overlap",
    "focal_loss": "losses._focal",
    "focal_tversky_loss": "losses._overlap",
    "get": "losses._registry",
    "iou_at_05": "losses._metrics",
    "jaccard": "losses._metrics",
    "metrics": "losses._metrics",
    "tversky_index": "losses._overlap",
    "tversky_loss": "losses._overlap",
}
"""Public names whose module imports Keras, and that module."""

__all__ = [
    "CUSTOM_OBJECTS",
    "LOSS_NAMES",
    "LOSS_SETTINGS",
    "bce_loss",
    "default_params",
    "dice_loss",
    "focal_loss",
    "focal_tversky_loss",
    "get",
    "iou_at_05",
    "jaccard",
    "losses_taking",
    "metrics",
    "params_from_settings",
    "tversky_index",
    "tversky_loss",
    "weighted_sum",
]


def __getattr__(name: str) -> object:
    if name in _KERAS_MEMBERS:
        return getattr(importlib.import_module(_KERAS_MEMBERS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
