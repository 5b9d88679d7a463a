"""Loss registry: look up a loss by name and override its parameters by keyword.

Base losses take their keyword-only parameters directly, e.g. ``get("focal", gamma=3.0)``.
Combined losses take ``weights`` (one per component, in order) and their components' parameters
prefixed with the component name, e.g. ``get("combined_tversky", weights=(0.5, 0.5), tversky_alpha=0.8,
focal_gamma=3.0)``; the prefix keeps Tversky's α and focal's α apart. Names, parameters and defaults
are in ``_catalogue``.

``get`` returns a `RegisteredLoss`: a plain callable that a `.keras` file stores as its name and
parameters, so that a saved compiled model restores its loss (once this package is imported, which
registers the class with Keras; Keras itself never imports modules outside its own).
"""

from __future__ import annotations

import functools
from typing import Any

import keras

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
    return RegisteredLoss(name, **params)


@keras.saving.register_keras_serializable(package="microbead")
class RegisteredLoss:
    """The loss ``name`` of this registry with ``params``: called like the function ``get`` used to return.

    Not a ``keras.losses.Loss``: ``compile`` wraps it in Keras' function wrapper exactly as it wrapped the
    plain function, so training computes the same numbers. Its config is the name and the full parameter
    set (defaults included), so a saved model keeps the loss it trained with even if defaults change.
    """

    def __init__(self, name: str, **params: Any) -> None:
        settings = _settings(name, params)
        self._fn = _build(name, settings)
        self.loss = name
        self.params = settings
        self.__name__ = self.__qualname__ = name

    def __call__(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        return self._fn(y_true, y_pred)

    def __repr__(self) -> str:
        return f"RegisteredLoss({self.loss!r}, {self.params!r})"

    def get_config(self) -> dict[str, Any]:
        return {"name": self.loss, "params": dict(self.params)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> RegisteredLoss:
        return cls(config["name"], **config["params"])


def _settings(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """The defaults of loss ``name`` overridden by ``params``; ValueError for an unknown name or parameter."""
    settings = default_params(name)
    unknown = sorted(set(params) - set(settings))
    if unknown:
        raise ValueError(f"Loss {name!r} got unknown parameter(s) {unknown}; allowed: {sorted(settings)}")
    settings.update(params)
    if "weights" in settings:
        settings["weights"] = tuple(settings["weights"])  # a list after a round trip through JSON
    return settings


def _build(name: str, settings: dict[str, Any]) -> LossFn:
    """The loss function ``name`` with its full ``settings``."""
    if name in _FUNCTIONS:
        return _named(functools.partial(_FUNCTIONS[name], **settings), name)

    components = COMBINED_LOSSES[name]
    weights = settings["weights"]
    if len(weights) != len(components):
        parts = [part for part, _ in components]
        raise ValueError(f"Loss {name!r} needs {len(parts)} weights (for {parts}), got {weights}")
    terms = [
        (weight, _build(part, {key: settings[f"{part}_{key}"] for key in BASE_LOSSES[part]}))
        for weight, (part, _) in zip(weights, components, strict=True)
    ]
    return _named(weighted_sum(terms), name)
