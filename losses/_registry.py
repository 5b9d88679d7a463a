"""Loss registry: look up a loss by name and override its parameters by keyword.

Base losses take their keyword-only parameters directly, e.g. ``get("focal", gamma=3.0)``.
Combined losses take ``weights`` (one per component, in order) and their components' parameters
prefixed with the component name, e.g. ``get("combined_tversky", weights=(0.5, 0.5), tversky_alpha=0.8,
focal_gamma=3.0)``; the prefix keeps Tversky's α and focal's α apart. Names, parameters and defaults
are in ``_catalogue``.
"""

import functools
from typing import Any

from ._catalogue import BASE_LOSSES, COMBINED_LOSSES, default_params
from ._combined import weighted_sum
from ._focal import bce_loss, focal_loss
from ._overlap import dice_loss, focal_tversky_loss, tversky_loss
from ._types import LossFn, Tensor

_FUNCTIONS: dict[str, LossFn] = {
    "dice": dice_loss,
    "focal": focal_loss,
    "tversky": tversky_loss,
    "focal_tversky": focal_tversky_loss,
    "bce": bce_loss,
}


def _named(loss: LossFn, name: str) -> LossFn:
    """Wrap ``loss`` in a fresh function called ``name``, which is what Keras displays."""

    def named_loss(y_true: Tensor, y_pred: Tensor) -> Tensor:
        return loss(y_true, y_pred)

    named_loss.__name__ = named_loss.__qualname__ = name
    return named_loss


def get(name: str, **params: Any) -> LossFn:
    """Return the loss ``name`` as ``loss(y_true, y_pred) -> scalar``, with ``params`` overriding defaults.

    Raises ``ValueError`` for an unknown name or parameter (the message lists the valid ones).
    """
    settings = default_params(name)
    unknown = sorted(set(params) - set(settings))
    if unknown:
        raise ValueError(f"Loss {name!r} got unknown parameter(s) {unknown}; allowed: {sorted(settings)}")
    settings.update(params)

    if name in _FUNCTIONS:
        return _named(functools.partial(_FUNCTIONS[name], **settings), name)

    components = COMBINED_LOSSES[name]
    weights = tuple(settings["weights"])
    if len(weights) != len(components):
        parts = [part for part, _ in components]
        raise ValueError(f"Loss {name!r} needs {len(parts)} weights (for {parts}), got {weights}")
    terms = [
        (weight, get(part, **{key: settings[f"{part}_{key}"] for key in BASE_LOSSES[part]}))
        for weight, (part, _) in zip(weights, components, strict=True)
    ]
    return _named(weighted_sum(terms), name)
