"""Which losses exist, the parameters each takes with their defaults, and the training settings that set them.

No Keras here: a study file's checks ask this catalogue for names and parameters, and commands that only
read a study never load Keras.
"""

from collections.abc import Mapping
from typing import Any

BASE_LOSSES: dict[str, dict[str, float]] = {
    "dice": {"smooth": 1.0},
    "focal": {"alpha": 0.25, "gamma": 2.0},
    "tversky": {"alpha": 0.7, "beta": 0.3, "smooth": 1.0},
    "focal_tversky": {"alpha": 0.7, "beta": 0.3, "gamma": 4 / 3, "smooth": 1.0},
    "bce": {},
}
"""Each base loss's keyword-only parameters and their defaults (focal Tversky's γ = 4/3 is the paper's)."""

COMBINED_LOSSES: dict[str, tuple[tuple[str, float], ...]] = {
    "combined": (("dice", 0.7), ("focal", 0.3)),
    "combined_tversky": (("tversky", 0.6), ("focal", 0.4)),
}
"""Each weighted sum: its (component, default weight) terms, in order."""

LOSS_NAMES: tuple[str, ...] = (*BASE_LOSSES, *COMBINED_LOSSES)

LOSS_SETTINGS: dict[str, dict[str, str]] = {
    "focal_alpha": {"focal": "alpha", "combined": "focal_alpha", "combined_tversky": "focal_alpha"},
    "focal_gamma": {"focal": "gamma", "combined": "focal_gamma", "combined_tversky": "focal_gamma"},
    "tversky_alpha": {"tversky": "alpha", "focal_tversky": "alpha", "combined_tversky": "tversky_alpha"},
    "tversky_beta": {"tversky": "beta", "focal_tversky": "beta", "combined_tversky": "tversky_beta"},
    "combined_focal_weight": {"combined": "weights"},
    "combined_tversky_focal_weight": {"combined_tversky": "weights"},
}
"""Training settings (fields of `TrainSettings`) that set loss parameters: for each, the losses that take it
and the name of the parameter in `get(loss, ...)`. A `*_focal_weight` w is the focal term's weight in a
combined loss; the other term gets 1 − w."""


def default_params(name: str) -> dict[str, Any]:
    """Parameters that ``get(name, ...)`` accepts, with their defaults."""
    if name in BASE_LOSSES:
        return dict(BASE_LOSSES[name])
    if name in COMBINED_LOSSES:
        components = COMBINED_LOSSES[name]
        params: dict[str, Any] = {"weights": tuple(weight for _, weight in components)}
        for part, _ in components:
            params.update({f"{part}_{key}": value for key, value in BASE_LOSSES[part].items()})
        return params
    raise ValueError(f"Unknown loss {name!r}; known losses: {', '.join(LOSS_NAMES)}")


def losses_taking(setting: str) -> tuple[str, ...]:
    """The losses whose parameters the training setting `setting` (a key of `LOSS_SETTINGS`) sets."""
    return tuple(LOSS_SETTINGS[setting])


def params_from_settings(name: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments of ``get(name, ...)`` from training settings: only those loss `name` takes."""
    params = {}
    for setting, taken_by in LOSS_SETTINGS.items():
        if name not in taken_by:
            continue
        value = settings[setting]
        params[taken_by[name]] = (1.0 - value, value) if taken_by[name] == "weights" else value
    return params
