"""Microbead data: loading a user's folders, synthetic beads, statistics, bead-level metrics, the split,
training batches and the flips/rotations done on the device (`DihedralTraining`).

The training batches and the device's flips/rotations load Keras, so they are imported on first use
(PEP 562): `optimize data-stats` and `make-data` never load it.
"""

import importlib

from data._errors import DataError
from data._loader import IMAGE_EXTENSIONS, load_dataset, load_mask_pairs
from data._objects import ObjectEvaluation, ObjectScores, bead_labels, evaluate_objects, format_object_table
from data._split import stratified_folds, stratified_split
from data._stats import dataset_stats, format_stats_table, objects_per_image
from data._synthetic import make_microbeads, write_microbeads

_KERAS_MEMBERS = {
    "DeviceBatches": "data._batches",
    "DihedralTraining": "data._dihedral",
    "TrainingBatches": "data._batches",
    "device_batches": "data._batches",
    "dihedral": "data._dihedral",
    "epoch_batches": "data._batches",
    "epoch_images": "data._batches",
    "undo_dihedral": "data._dihedral",
}
"""Public names whose module imports Keras, and that module."""

__all__ = [
    "IMAGE_EXTENSIONS",
    "DataError",
    "DeviceBatches",
    "DihedralTraining",
    "ObjectEvaluation",
    "ObjectScores",
    "TrainingBatches",
    "bead_labels",
    "dataset_stats",
    "device_batches",
    "dihedral",
    "epoch_batches",
    "epoch_images",
    "evaluate_objects",
    "format_object_table",
    "format_stats_table",
    "load_dataset",
    "load_mask_pairs",
    "make_microbeads",
    "objects_per_image",
    "stratified_folds",
    "stratified_split",
    "undo_dihedral",
    "write_microbeads",
]


def __getattr__(name: str) -> object:
    if name in _KERAS_MEMBERS:
        return getattr(importlib.import_module(_KERAS_MEMBERS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
