"""Microbead data: loading a user's folders, synthetic beads, statistics, the split and training batches."""

from data._batches import TrainingBatches, epoch_images
from data._errors import DataError
from data._loader import IMAGE_EXTENSIONS, load_dataset
from data._split import stratified_split
from data._stats import dataset_stats, format_stats_table, objects_per_image
from data._synthetic import make_microbeads, write_microbeads

__all__ = [
    "IMAGE_EXTENSIONS",
    "DataError",
    "TrainingBatches",
    "dataset_stats",
    "epoch_images",
    "format_stats_table",
    "load_dataset",
    "make_microbeads",
    "objects_per_image",
    "stratified_split",
    "write_microbeads",
]
