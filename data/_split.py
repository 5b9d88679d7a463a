"""Train/validation splits (one split, or K cross-validation folds) that keep sparse and crowded images on
every side.

Images are binned by quantiles of their objects per image, then drawn per bin. The bins and draws are those
of pandas' `qcut` and scikit-learn's `train_test_split(stratify=...)`, `StratifiedKFold` and `KFold`, which
this module called until 2026-12 (pandas 3.1, scikit-learn 1.9), with the same random draws, so that existing
studies keep their split. Written out here so that a worker does not import either library for it (0.7 CPU s
of every start) and no library upgrade on one node can move a study's images between training and validation.
`tests/test_data.py` checks them against both libraries.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

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
    return split_by_counts(objects_per_image(masks), val_fraction, n_bins, seed)


def split_by_counts(counts: np.ndarray, val_fraction: float, n_bins: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`stratified_split` of images holding `counts` objects each (at least 2 images)."""
    n_images = len(counts)
    n_val = min(max(math.ceil(n_images * val_fraction), 1), n_images - 1)
    n_bins = min(n_bins, n_val, n_images - n_val)
    bins = quantile_bins(counts, n_bins)
    rng = np.random.RandomState(seed)
    if np.bincount(bins).min() >= 2:
        train, val = stratified_draw(bins, n_val, rng)
    else:
        warnings.warn(
            f"{n_images} images are too few to stratify by objects per image into {n_bins} bins; using a random split",
            UserWarning,
            stacklevel=3,
        )
        order = rng.permutation(n_images)
        train, val = order[n_val:], order[:n_val]
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
    return folds_by_counts(objects_per_image(masks), k, seed, n_bins)


def folds_by_counts(counts: np.ndarray, k: int, seed: int, n_bins: int) -> list[np.ndarray]:
    """`stratified_folds` of images holding `counts` objects each (at least `k` images)."""
    n_images = len(counts)
    bins = quantile_bins(counts, max(1, min(n_bins, n_images // k)))
    rng = np.random.RandomState(seed)
    if np.bincount(bins).min() >= k:
        fold_of_image = stratified_fold_numbers(bins, k, rng)
        return [np.flatnonzero(fold_of_image == fold) for fold in range(k)]
    warnings.warn(
        f"{n_images} images are too few to stratify {k} folds by objects per image; using random folds",
        UserWarning,
        stacklevel=3,
    )
    order = np.arange(n_images)
    rng.shuffle(order)
    sizes = np.full(k, n_images // k)
    sizes[: n_images % k] += 1
    return [np.sort(fold) for fold in np.split(order, np.cumsum(sizes)[:-1])]


def quantile_bins(values: np.ndarray, n_bins: int) -> np.ndarray:
    """Which of `n_bins` quantile bins each value falls in, equal edges merged into one bin:
    pandas' `qcut(values, n_bins, labels=False, duplicates="drop")`, with 0 where it gives NaN."""
    quantiles = np.linspace(0, 1, n_bins + 1)
    np.putmask(quantiles, n_bins * quantiles != np.arange(n_bins + 1), np.nextafter(quantiles, 1))
    edges = np.quantile(values, quantiles)
    distinct = np.array(list(dict.fromkeys(edges.tolist())))
    if len(distinct) < len(edges) and len(edges) != 2:
        edges = distinct
    above = np.searchsorted(edges, values, side="left")  # bins are (low, high]; the lowest edge belongs to bin 0
    above[values == edges[0]] = 1
    outside = (above == 0) | (above == len(edges))
    return np.where(outside, 0, above - 1)


def stratified_draw(bins: np.ndarray, n_val: int, rng: np.random.RandomState) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation indices with each bin's share of `n_val` (scikit-learn's `StratifiedShuffleSplit`)."""
    _, bin_of_image, bin_sizes = np.unique(bins, return_inverse=True, return_counts=True)
    images_of_bin = np.split(np.argsort(bin_of_image, kind="stable"), np.cumsum(bin_sizes)[:-1])
    n_train = len(bins) - n_val
    train_per_bin = approximate_mode(bin_sizes, n_train, rng)
    val_per_bin = approximate_mode(bin_sizes - train_per_bin, n_val, rng)
    train, val = [], []
    for images, n_bin_train, n_bin_val in zip(images_of_bin, train_per_bin, val_per_bin, strict=True):
        shuffled = images[rng.permutation(len(images))]
        train.extend(shuffled[:n_bin_train])
        val.extend(shuffled[n_bin_train : n_bin_train + n_bin_val])
    return np.array(train, dtype=int), np.array(val, dtype=int)


def approximate_mode(sizes: np.ndarray, n_draws: int, rng: np.random.RandomState) -> np.ndarray:
    """How many of `n_draws` to take from each group: its proportional share rounded down, then one more for
    the groups with the largest remainders, ties broken at random (scikit-learn's `_approximate_mode`)."""
    exact = sizes / sizes.sum() * n_draws
    drawn = np.floor(exact)
    missing = int(n_draws - drawn.sum())
    if missing > 0:
        remainder = exact - drawn
        for value in np.sort(np.unique(remainder))[::-1]:
            (tied,) = np.where(remainder == value)
            n_now = min(len(tied), missing)
            drawn[rng.choice(tied, size=n_now, replace=False)] += 1
            missing -= n_now
            if missing == 0:
                break
    return drawn.astype(int)


def stratified_fold_numbers(bins: np.ndarray, k: int, rng: np.random.RandomState) -> np.ndarray:
    """The fold of each image, each bin dealt round-robin over the folds, then shuffled within the bin
    (scikit-learn's `StratifiedKFold(shuffle=True)`); bins are taken in order of first appearance."""
    _, first_image, bin_of_image = np.unique(bins, return_index=True, return_inverse=True)
    _, bin_rank = np.unique(first_image, return_inverse=True)
    bin_of_image = bin_rank[bin_of_image]
    n_bins = len(first_image)
    in_bin_order = np.sort(bin_of_image)
    per_fold = np.asarray([np.bincount(in_bin_order[fold::k], minlength=n_bins) for fold in range(k)])
    fold_of_image = np.empty(len(bins), dtype=int)
    for bin_number in range(n_bins):
        folds = np.arange(k).repeat(per_fold[:, bin_number])
        rng.shuffle(folds)
        fold_of_image[bin_of_image == bin_number] = folds
    return fold_of_image
