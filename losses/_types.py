"""Type aliases shared by the loss modules."""

from collections.abc import Callable
from typing import Any, TypeAlias

Tensor: TypeAlias = Any
"""A backend tensor (TensorFlow, JAX) or anything ``keras.ops`` accepts, e.g. a NumPy array."""

LossFn: TypeAlias = Callable[[Tensor, Tensor], Tensor]
"""A Keras-compatible loss: ``loss(y_true, y_pred) -> scalar tensor``."""
