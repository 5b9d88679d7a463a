"""Overlap (region) losses: Dice, Tversky and Focal Tversky.

Every overlap term is reduced over the *whole batch*: all pixels of all images are summed before the
ratio is taken, like the users' ``jacard_coef``. The result is one scalar per batch, so an image with
an empty mask cannot produce a degenerate per-image ratio.
"""

from keras import config, ops

from ._types import Tensor


def _sums(y_true: Tensor, y_pred: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Return (TP, Σy, Σŷ) over the whole batch, in float32 so that mixed precision is safe."""
    y_true = ops.cast(y_true, "float32")
    y_pred = ops.cast(y_pred, "float32")
    return ops.sum(y_true * y_pred), ops.sum(y_true), ops.sum(y_pred)


def tversky_index(y_true: Tensor, y_pred: Tensor, *, alpha: float, beta: float, smooth: float) -> Tensor:
    """Soft Tversky index TI = (TP + s) / (TP + α·FN + β·FP + s) over the whole batch.

    α weights false negatives and β false positives. α = β = ½ gives Dice (with s/2), α = β = 1 gives
    Jaccard, so this is the single implementation behind all overlap losses and metrics.
    """
    tp, sum_true, sum_pred = _sums(y_true, y_pred)
    false_neg = sum_true - tp
    false_pos = sum_pred - tp
    return (tp + smooth) / (tp + alpha * false_neg + beta * false_pos + smooth)


def dice_loss(y_true: Tensor, y_pred: Tensor, *, smooth: float) -> Tensor:
    """Soft Dice loss 1 − (2Σyŷ + s) / (Σy + Σŷ + s), whole-batch reduction."""
    return 1.0 - tversky_index(y_true, y_pred, alpha=0.5, beta=0.5, smooth=smooth / 2)


def tversky_loss(y_true: Tensor, y_pred: Tensor, *, alpha: float, beta: float, smooth: float) -> Tensor:
    """Tversky loss 1 − TI (Salehi et al. 2017); α = 0.7 penalises missed beads more than false alarms."""
    return 1.0 - tversky_index(y_true, y_pred, alpha=alpha, beta=beta, smooth=smooth)


def focal_tversky_loss(
    y_true: Tensor,
    y_pred: Tensor,
    *,
    alpha: float,
    beta: float,
    gamma: float,
    smooth: float,
) -> Tensor:
    """Focal Tversky loss FTL = (1 − TI)^(1/γ), as in Abraham & Khan (2019), with the paper's γ = 4/3.

    γ > 1 raises the loss (and its gradient) when TI is already high, focusing training on the hard,
    nearly-correct cases; γ = 1 recovers the Tversky loss. 1 − TI is floored at ε because the
    derivative of x^(1/γ) is infinite at x = 0 (a perfect prediction would otherwise give NaN gradients).
    """
    ti = tversky_index(y_true, y_pred, alpha=alpha, beta=beta, smooth=smooth)
    return ops.power(ops.maximum(1.0 - ti, config.epsilon()), 1.0 / gamma)
