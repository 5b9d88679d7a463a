"""Segmentation metrics: soft Jaccard (the users' ``jacard_coef``) and IoU of masks thresholded at 0.5.

Keras averages these per-batch values over the batches of an epoch (a mean of batch ratios, not one
ratio over the whole data set), exactly as the users' function metric did.

The functions and the metric class are registered with Keras (package ``microbead``), so a saved
compiled model restores its metrics once this package is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
from keras import ops

from ._overlap import tversky_index
from ._types import Tensor


@keras.saving.register_keras_serializable(package="microbead")
def jaccard(y_true: Tensor, y_pred: Tensor) -> Tensor:
    """Soft Jaccard over the whole batch, the users' ``jacard_coef``: (Σyŷ + 1) / (Σy + Σŷ − Σyŷ + 1)."""
    return tversky_index(y_true, y_pred, alpha=1.0, beta=1.0, smooth=1.0)


def _binarise(x: Tensor) -> Tensor:
    return ops.cast(ops.cast(x, "float32") >= 0.5, "float32")


@keras.saving.register_keras_serializable(package="microbead", name="iou_at_0.5")
def iou_at_05(y_true: Tensor, y_pred: Tensor) -> Tensor:
    """IoU of the thresholded masks (y ≥ 0.5, ŷ ≥ 0.5) with the same +1 smoothing as ``jaccard``."""
    return jaccard(_binarise(y_true), _binarise(y_pred))


iou_at_05.__name__ = iou_at_05.__qualname__ = "iou_at_0.5"


@keras.saving.register_keras_serializable(package="microbead")
class MaximisedMean(keras.metrics.MeanMetricWrapper):
    """The batch mean of ``fn``, marked as a score to maximise.

    The mark lets callbacks with mode="auto" (EarlyStopping, ReduceLROnPlateau, ModelCheckpoint) know to
    maximise; a class rather than an attribute set on an instance, so that a loaded model keeps it.
    """

    def __init__(self, fn: Callable[[Tensor, Tensor], Tensor], name: str | None = None, **kwargs: Any) -> None:
        super().__init__(fn, name=name, **kwargs)
        self._direction = "up"


def _maximised(fn: Callable[[Tensor, Tensor], Tensor], name: str) -> keras.metrics.Metric:
    return MaximisedMean(fn, name=name)


def metrics() -> list[keras.metrics.Metric]:
    """Fresh ``[jaccard, iou_at_0.5]`` metric objects for ``model.compile(metrics=...)``.

    Use these rather than the bare functions: Keras snake-cases a function's name, which would turn
    ``iou_at_0.5`` into the history key ``iou_at_05``.
    """
    return [_maximised(jaccard, "jaccard"), _maximised(iou_at_05, "iou_at_0.5")]
