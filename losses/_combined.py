"""Generic weighted sum of losses; every combined loss in the registry is built with it."""

from collections.abc import Sequence

from ._types import LossFn, Tensor


def weighted_sum(terms: Sequence[tuple[float, LossFn]]) -> LossFn:
    """Return the loss Σ wᵢ · lossᵢ(y_true, y_pred) for ``terms = [(w₁, loss₁), (w₂, loss₂), ...]``."""
    terms = tuple(terms)
    if not terms:
        raise ValueError("weighted_sum needs at least one (weight, loss) term")

    def weighted_sum_loss(y_true: Tensor, y_pred: Tensor) -> Tensor:
        return sum(weight * loss(y_true, y_pred) for weight, loss in terms)

    return weighted_sum_loss
