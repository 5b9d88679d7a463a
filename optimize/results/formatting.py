"""How values look where a person reads them: parameters, numbers and durations, one way everywhere."""

from __future__ import annotations

import math
import numbers


def format_params(params: dict) -> str:
    return " ".join(f"{name}={format_value(value)}" for name, value in params.items())


def format_value(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_duration(seconds: float) -> str:
    """'40 s', '12 min' or '3.5 h': as precise as a person watching needs."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def format_scores(val_jaccard: float | None, object_f1: float | None) -> str:
    """'val_jaccard 0.2456  object_f1 0.8120': the pixel score, then the bead score when the trial has one (a NaN,
    which a user's own study may store, counts as none)."""
    text = f"val_jaccard {'  -   ' if is_missing(val_jaccard) else f'{val_jaccard:.4f}'}"
    return text if is_missing(object_f1) else f"{text}  object_f1 {object_f1:.4f}"


def is_missing(value: object) -> bool:
    """None or NaN: a number a trial does not have (a NaN is what a user's own study, or pandas, may hold)."""
    return value is None or (isinstance(value, numbers.Real) and math.isnan(value))
