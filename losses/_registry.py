"""Loss registry: look up a loss by name and override its parameters by keyword.

Base losses take their keyword-only parameters directly, e.g. ``get("focal", gamma=3.0)``.
Combined losses take ``weights`` (one per component, in order) and their components' parameters
prefixed with the component name, e.g. ``get("combined_tversky", weights=(0.5, 0.5), tversky_alpha=0.8,
focal_gamma=3.0)``; the prefix keeps Tversky's α and focal's α apart.
"""

import functools
import inspect
from typing import Any

from ._combined import weighted_sum
from ._focal import bce_loss, focal_loss
from ._overlap import dice_loss, focal_tversky_loss, tversky_loss
from ._types import LossFn, Tensor

_BASE_LOSSES: dict[str, LossFn] = {
    "dice": dice_loss,
    "focal": focal_loss,
    "tversky": tversky_loss,
    "focal_tversky": focal_tversky_loss,
    "bce": bce_loss,
}
_COMBINED_LOSSES: dict[str, tuple[tuple[str, float], ...]] = {
    "combined": (("dice", 0.7), ("focal", 0.3)),
    "combined_tversky": (("tversky", 0.6), ("focal", 0.4)),
}
LOSS_NAMES: tuple[str, ...] = (*_BASE_LOSSES, *_COMBINED_LOSSES)


def _base_params(name: str) -> dict[str, Any]:
    parameters = inspect.signature(_BASE_LOSSES[name]).parameters.values()
    return {p.name: p.default for p in parameters if p.kind is p.KEYWORD_ONLY}


def default_params(name: str) -> dict[str, Any]:
    """Parameters that ``get(name, ...)`` accepts, with their defaults."""
    if name in _BASE_LOSSES:
        return _base_params(name)
    if name in _COMBINED_LOSSES:
        components = _COMBINED_LOSSES[name]
        params: dict[str, Any] = {"weights": tuple(weight for _, weight in components)}
        for part, _ in components:
            params.update({f"{part}_{key}": value for key, value in _base_params(part).items()})
        return params
    raise ValueError(f"Unknown loss {name!r}; known losses: {', '.join(LOSS_NAMES)}")


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

    if name in _BASE_LOSSES:
        return _named(functools.partial(_BASE_LOSSES[name], **settings), name)

    components = _COMBINED_LOSSES[name]
    weights = tuple(settings["weights"])
    if len(weights) != len(components):
        parts = [part for part, _ in components]
        raise ValueError(f"Loss {name!r} needs {len(parts)} weights (for {parts}), got {weights}")
    terms = [
        (weight, get(part, **{key: settings[f"{part}_{key}"] for key in _base_params(part)}))
        for weight, (part, _) in zip(weights, components, strict=True)
    ]
    return _named(weighted_sum(terms), name)
