"""The images a study trains on: loaded (or generated) once per worker and split once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data import DataError, dataset_stats, load_dataset, make_microbeads, stratified_split

from .config import StudyConfig
from .errors import UserError


@dataclass
class StudyData:
    """Training and validation arrays plus the statistics of the whole set."""

    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray]
    stats: dict
    source: str


def load_study_data(config: StudyConfig, data_dir: str | Path | None = None) -> StudyData:
    """The config's data (or `data_dir`, which overrides it), split as configured."""
    settings = config.data
    directory = Path(data_dir).resolve() if data_dir else config.data_dir()
    try:
        if directory is not None:
            images, masks = load_dataset(directory, image_size=settings.image_size)
            source = str(directory)
        else:
            synthetic = settings.synthetic
            images, masks = make_microbeads(synthetic.n_images, synthetic.size, synthetic.seed)
            source = f"synthetic microbeads: {synthetic.n_images} images of {synthetic.size}x{synthetic.size}"
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
    )
