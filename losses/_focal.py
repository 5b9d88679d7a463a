"""Pixel-wise cross-entropy losses: binary cross-entropy and binary focal loss.

Both average over every pixel of the whole batch (one scalar per batch, like the overlap losses).
"""

from keras import config, ops

from ._types import Tensor


def _cross_entropy(y_true: Tensor, y_pred: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Return float32 (y, clipped ŷ, element-wise BCE); ŷ is clipped to [ε, 1 − ε] so logs stay finite."""
    y_true = ops.cast(y_true, "float32")
    eps = config.epsilon()
    y_pred = ops.clip(ops.cast(y_pred, "float32"), eps, 1.0 - eps)
    bce = -(y_true * ops.log(y_pred) + (1.0 - y_true) * ops.log(1.0 - y_pred))
    return y_true, y_pred, bce


def bce_loss(y_true: Tensor, y_pred: Tensor) -> Tensor:
    """Binary cross-entropy on probabilities, averaged over all pixels of the batch."""
    return ops.mean(_cross_entropy(y_true, y_pred)[2])


def focal_loss(y_true: Tensor, y_pred: Tensor, *, alpha: float, gamma: float) -> Tensor:
    """Binary focal loss −α_t (1 − p_t)^γ log p_t (Lin et al. 2017), averaged over all pixels.

    α_t = α on foreground (y = 1) and 1 − α on background; (1 − p_t)^γ down-weights easy pixels.
    """
    y_true, y_pred, bce = _cross_entropy(y_true, y_pred)
    p_t = y_true * y_pred + (1.0 - y_true) * (1.0 - y_pred)
    alpha_t = y_true * alpha + (1.0 - y_true) * (1.0 - alpha)
    return ops.mean(alpha_t * ops.power(1.0 - p_t, gamma) * bce)
