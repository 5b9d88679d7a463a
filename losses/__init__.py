"""Segmentation losses and metrics for the microbead U-Nets.

Written with ``keras.ops`` only, so they run on every Keras backend (TensorFlow, JAX). Inputs are
cast to float32 before reducing (safe under mixed precision) and probabilities are clipped to
[ε, 1 − ε] wherever a log is taken. Losses return one scalar per batch (whole-batch reduction).
"""

from ._combined import weighted_sum
from ._focal import bce_loss, focal_loss
from ._metrics import iou_at_05, jaccard, metrics
from ._overlap import dice_loss, focal_tversky_loss, tversky_index, tversky_loss
from ._registry import LOSS_NAMES, default_params, get

__all__ = [
    "LOSS_NAMES",
    "bce_loss",
    "default_params",
    "dice_loss",
    "focal_loss",
    "focal_tversky_loss",
    "get",
    "iou_at_05",
    "jaccard",
    "metrics",
    "tversky_index",
    "tversky_loss",
    "weighted_sum",
]
