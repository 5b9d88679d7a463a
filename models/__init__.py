"""U-Net family for microbead segmentation: ``build(name, ...)`` for each name in ``ARCHITECTURES``.

The names load without Keras; ``build`` imports it on first use (PEP 562), so that checking a study file
or reading a finished study never loads it.
"""

import importlib

from models._names import ARCHITECTURES, NORMS

_KERAS_MEMBERS = {"build": "models._registry"}
"""Public names whose module imports Keras, and that module."""

__all__ = ["ARCHITECTURES", "NORMS", "build"]


def __getattr__(name: str) -> object:
    if name in _KERAS_MEMBERS:
        return getattr(importlib.import_module(_KERAS_MEMBERS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
