"""Using a trained model: segment images of any size, count and measure their beads (`optimize predict`),
and write a `.keras` file that plain Keras loads.

The names from `predict` (which loads Keras to load a model) are imported on first use (PEP 562), so that
the read-only commands may use `write_portable_model` and never reach Keras.
"""

import importlib

from optimize.inference.beads import Beads, find_beads
from optimize.inference.portable import file_sha256, write_portable_model
from optimize.inference.tiling import TiledPrediction, predict_tiled, tile_starts, tile_weights

_KERAS_MEMBERS = {
    "DEFAULT_BATCH_SIZE": "optimize.inference.predict",
    "DEFAULT_THRESHOLD": "optimize.inference.predict",
    "PredictionSummary": "optimize.inference.predict",
    "check_images": "optimize.inference.predict",
    "image_inputs": "optimize.inference.predict",
    "load_model": "optimize.inference.predict",
    "open_model": "optimize.inference.predict",
    "predict_folder": "optimize.inference.predict",
}
"""Public names whose module reaches Keras, and that module."""

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_THRESHOLD",
    "Beads",
    "PredictionSummary",
    "TiledPrediction",
    "check_images",
    "file_sha256",
    "find_beads",
    "image_inputs",
    "load_model",
    "open_model",
    "predict_folder",
    "predict_tiled",
    "tile_starts",
    "tile_weights",
    "write_portable_model",
]


def __getattr__(name: str) -> object:
    if name in _KERAS_MEMBERS:
        return getattr(importlib.import_module(_KERAS_MEMBERS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
