"""Segmentation metrics: soft Jaccard (the users' ``jacard_coef``) and IoU of masks thresholded at 0.5.

Keras averages these per-batch values over the batches of an epoch (a mean of batch ratios, not one
ratio over the whole data set), exactly as the users' function metric did.
"""

from collections.abc import Callable

import keras
from keras import ops

from ._overlap import tversky_index
from ._types import Tensor


def jaccard(y_true: Tensor, y_pred: Tensor) -> Tensor:
    """Soft Jaccard over the whole batch, the users' ``jacard_coef``: (Σyŷ + 1) / (Σy + Σŷ − Σyŷ + 1)."""
    return tversky_index(y_true, y_pred, alpha=1.0, beta=1.0, smooth=1.0)


def _binarise(x: Tensor) -> Tensor:
    return ops.cast(ops.cast(x, "float32") >= 0.5, "float32")


def iou_at_05(y_true: Tensor, y_pred: Tensor) -> Tensor:
    """IoU of the thresholded masks (y ≥ 0.5, ŷ ≥ 0.5) with the same +1 smoothing as ``jaccard``."""
    return jaccard(_binarise(y_true), _binarise(y_pred))


iou_at_05.__name__ = iou_at_05.__qualname__ = "iou_at_0.5"


def _maximised(fn: Callable[[Tensor, Tensor], Tensor], name: str) -> keras.metrics.Metric:
    metric = keras.metrics.MeanMetricWrapper(fn, name=name)
    # Lets callbacks with mode="auto" (EarlyStopping, ReduceLROnPlateau, ModelCheckpoint) know to maximise.
    metric._direction = "up"
    return metric


def metrics() -> list[keras.metrics.Metric]:
    """Fresh ``[jaccard, iou_at_0.5]`` metric objects for ``model.compile(metrics=...)``.

    Use these rather than the bare functions: Keras snake-cases a function's name, which would turn
    ``iou_at_0.5`` into the history key ``iou_at_05``.
    """
    return [_maximised(jaccard, "jaccard"), _maximised(iou_at_05, "iou_at_0.5")]
