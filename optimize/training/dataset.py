"""The images a study trains on: loaded (or generated) once per worker and split once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data import DataError, dataset_stats, load_dataset, make_microbeads, stratified_folds, stratified_split
from optimize.errors import UserError
from optimize.search.config import StudyConfig

Arrays = tuple[np.ndarray, np.ndarray]
"""Images and masks, as `optimize.training.train` takes them."""


@dataclass
class StudyData:
    """Training and validation arrays plus the statistics of the whole set.

    Masks are {0, 1} for training; `val_labels` are the validation images' true beads for bead-level
    metrics: the user's label images when the masks are label images, else the binary masks, whose
    connected components are the beads.
    """

    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray]
    stats: dict
    source: str
    directory: Path | None = None
    val_labels: np.ndarray | None = None
    whole: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    """Every image, mask and label image before the split, for cross-validation folds (`fold_data`)."""


def load_study_data(config: StudyConfig, data_dir: str | Path | None = None) -> StudyData:
    """The config's data (or `data_dir`, which overrides it), split as configured."""
    settings = config.data
    directory = Path(data_dir).resolve() if data_dir else config.data_dir()
    try:
        if directory is not None:
            images, labels = load_dataset(directory, image_size=settings.image_size, labels=True)
            masks = (labels != 0).astype(np.float32)
            source = str(directory)
        else:
            synthetic = settings.synthetic
            images, masks = make_microbeads(synthetic.n_images, synthetic.size, synthetic.seed)
            labels = masks
            source = f"synthetic microbeads: {synthetic.n_images} images of {synthetic.size}x{synthetic.size}"
        check_trainable(config, images, masks, directory)
        train_index, val_index = stratified_split(masks, val_fraction=settings.val_fraction, seed=settings.split_seed)
    except DataError as error:
        raise UserError(f"data: {error}") from None
    stats = dataset_stats(masks)
    stats.update(n_train=len(train_index), n_val=len(val_index), source=source)
    return StudyData(
        train=(images[train_index], masks[train_index]),
        val=(images[val_index], masks[val_index]),
        stats=stats,
        source=source,
        directory=directory,
        val_labels=labels[val_index],
        whole=(images, masks, labels),
    )


def fold_data(data: StudyData, k: int, fold: int, seed: int) -> tuple[Arrays, Arrays, np.ndarray]:
    """Train, val and val-label arrays of cross-validation fold `fold` of `k` (`data.stratified_folds` with
    `seed`): it validates on that fold's images and trains on all the others."""
    images, masks, labels = data.whole
    try:
        val_index = stratified_folds(masks, k, seed=seed)[fold]
    except DataError as error:
        raise UserError(f"data: {error}") from None
    train_index = np.setdiff1d(np.arange(len(images)), val_index)
    return (images[train_index], masks[train_index]), (images[val_index], masks[val_index]), labels[val_index]


def check_trainable(config: StudyConfig, images: np.ndarray, masks: np.ndarray, directory: Path | None) -> None:
    """Refuse, before any trial, data no trial can learn from: images the deepest U-Net of the study
    cannot pool down, masks without a single bead or masks that are bead everywhere (the trials would
    complete with meaningless values)."""
    height, width = images.shape[1:3]
    resized = f" after resizing to [data] image_size = {config.data.image_size}" if config.data.image_size else ""
    folder = "synthetic images" if directory is None else f"images in {directory / 'images'}"
    sides = (("", width),) if height == width else (("width ", width), ("height ", height))
    problems = [f"{side}{problem}" for side, size in sides if (problem := config.image_size_problem(size))]
    if problems:
        hint = "" if resized or directory is None else f"; resize them or set [data] image_size in {config.path}"
        raise UserError(f"data: {folder} are {width}x{height} px{resized}, {'; '.join(problems)}{hint}")
    if not masks.any():
        where = "every synthetic mask" if directory is None else f"every mask in {directory / 'masks'}"
        raise UserError(
            f"data: {where} is empty{resized} ({len(masks)} masks without a bead pixel); "
            "a mask marks beads with non-zero pixels"
        )
    if masks.all():
        where = "every synthetic mask" if directory is None else f"every mask in {directory / 'masks'}"
        raise UserError(
            f"data: {where} is entirely bead{resized} ({len(masks)} masks without a background pixel); "
            "a mask marks beads with non-zero pixels and background with 0"
        )
