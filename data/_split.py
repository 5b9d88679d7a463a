"""Train/validation splits (one split, or K cross-validation folds) that keep sparse and crowded images on
every side."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

from data._errors import DataError
from data._stats import objects_per_image


def stratified_split(
    masks: np.ndarray, val_fraction: float = 0.15, n_bins: int = 5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted train and validation indices, stratified by quantile bins of objects per image.

    With ~73 images a plain random split can put most crowded images on one side; binning the
    connected-component counts keeps both sides alike. Uses at most as many bins as either side
    has images, and falls back to an unstratified split (with a warning) when a bin has fewer
    than two images. Deterministic for a seed.
    """
    n_images = len(masks)
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction = {val_fraction} must be between 0 and 1")
    if n_images < 2:
        raise DataError(f"cannot split {n_images} image(s) into training and validation; need at least 2 images")
    n_val = min(max(math.ceil(n_images * val_fraction), 1), n_images - 1)
    n_bins = min(n_bins, n_val, n_images - n_val)
    bins = pd.qcut(objects_per_image(masks), q=n_bins, labels=False, duplicates="drop")
    bins = np.nan_to_num(bins, nan=0).astype(int)
    stratify = bins if np.bincount(bins).min() >= 2 else None
    if stratify is None:
        warnings.warn(
            f"{n_images} images are too few to stratify by objects per image into {n_bins} bins; using a random split",
            UserWarning,
            stacklevel=2,
        )
    train, val = train_test_split(np.arange(n_images), test_size=n_val, random_state=seed, stratify=stratify)
    return np.sort(train), np.sort(val)


def stratified_folds(masks: np.ndarray, k: int, seed: int = 0, n_bins: int = 5) -> list[np.ndarray]:
    """The sorted validation indices of each of `k` cross-validation folds: every image in exactly one.

    Stratified like `stratified_split`, by quantile bins of objects per image, so each fold holds sparse
    and crowded images alike (nnU-Net's 5-fold cross-validation, with beads). Uses at most as many bins as
    leave `k` images in each, and falls back to unstratified folds (with a warning) when a bin has fewer
    than `k` images. Deterministic for a seed.
    """
    n_images = len(masks)
    if k < 2:
        raise DataError(f"{k} fold(s): cross-validation needs at least 2 folds")
    if n_images < k:
        raise DataError(f"cannot split {n_images} image(s) into {k} folds; need at least one image per fold")
    n_bins = max(1, min(n_bins, n_images // k))
    bins = pd.qcut(objects_per_image(masks), q=n_bins, labels=False, duplicates="drop")
    bins = np.nan_to_num(bins, nan=0).astype(int)
    indices = np.arange(n_images)
    if np.bincount(bins).min() >= k:
        folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(indices, bins)
    else:
        warnings.warn(
            f"{n_images} images are too few to stratify {k} folds by objects per image; using random folds",
            UserWarning,
            stacklevel=2,
        )
        folds = KFold(n_splits=k, shuffle=True, random_state=seed).split(indices)
    return [np.sort(val) for _, val in folds]
