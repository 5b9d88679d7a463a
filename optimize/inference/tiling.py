"""Probability maps of images of any size from a model that takes one fixed tile size.

A U-Net is built for one input size (the training size). An image of exactly that size is one tile. Any
other image is cut into overlapping tiles of the model's size:

- along each axis the tiles start every ``stride = tile - overlap`` pixels from 0, and the last tile is
  placed flush with the image's far edge (so it may overlap its neighbour by more than ``overlap``);
- an axis shorter than the tile is first padded by reflection up to the tile size, and the padding is
  cropped from the result;
- where tiles overlap, their probabilities are averaged with weights that fall linearly towards each
  tile's edges over the width of the overlap (a tile's border pixels, which see least context, count
  least); every weight is positive, so a pixel seen by one tile takes that tile's value unchanged, and a
  model that maps each pixel on its own gives the same map tiled as untiled.

Keras-free: the model is any function from a batch of tiles (N, tile_h, tile_w, C) to probabilities
(N, tile_h, tile_w, 1); tiles go to it in batches of at most `batch_size`, each padded with zeros up to a
power of two (or `batch_size`), so that a compiled model sees a few shapes only and an image of 4 tiles is
not predicted as a batch of 1024.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

PredictBatch = Callable[[np.ndarray], np.ndarray]
"""(N, tile_h, tile_w, C) float32 tiles -> (N, tile_h, tile_w, 1) probabilities."""


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of the tiles along one axis of `length` pixels (after padding up to `tile`).

    Every ``tile - overlap`` pixels from 0, then one more tile flush with the end if the last one falls short.
    """
    if tile < 1 or not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in 0..{tile - 1} for tiles of {tile} px, got {overlap}")
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    return [*starts, length - tile]


def tile_weights(height: int, width: int, overlap: int) -> np.ndarray:
    """(height, width) blending weights: 1 in the middle, falling linearly over `overlap` pixels to each edge.

    The ramp never reaches 0 (the outermost pixel weighs 0.5 / overlap), so every pixel of a tile counts.
    """

    def ramp(size: int) -> np.ndarray:
        if overlap == 0:
            return np.ones(size)
        position = np.arange(size) + 0.5
        return np.minimum(1.0, np.minimum(position, size - position) / overlap)

    return np.outer(ramp(height), ramp(width))


@dataclass(frozen=True)
class TiledPrediction:
    """A probability map and how it was made."""

    probabilities: np.ndarray
    """(H, W) float32 probabilities, the image's own size."""
    tiles: int
    """How many model inputs the image took (1 for an image of the model's size)."""


def predict_tiled(
    image: np.ndarray,
    predict_batch: PredictBatch,
    tile_shape: tuple[int, int],
    overlap: int,
    batch_size: int = 8,
) -> TiledPrediction:
    """The probability map of one (H, W, C) image from tiles of `tile_shape` (see the module docstring)."""
    if image.ndim != 3:
        raise ValueError(f"expected one (height, width, channels) image, got shape {image.shape}")
    height, width = image.shape[:2]
    tile_h, tile_w = tile_shape
    padded = _pad_to(image, tile_h, tile_w)
    rows = tile_starts(padded.shape[0], tile_h, overlap)
    cols = tile_starts(padded.shape[1], tile_w, overlap)
    corners = [(row, col) for row in rows for col in cols]
    weights = tile_weights(tile_h, tile_w, overlap) if len(corners) > 1 else np.ones((tile_h, tile_w))
    total = np.zeros(padded.shape[:2])
    weight_sum = np.zeros(padded.shape[:2])
    for first in range(0, len(corners), batch_size):
        chunk = corners[first : first + batch_size]
        tiles = np.zeros((padded_batch_size(len(chunk), batch_size), tile_h, tile_w, image.shape[2]), np.float32)
        for index, (row, col) in enumerate(chunk):
            tiles[index] = padded[row : row + tile_h, col : col + tile_w]
        probabilities = np.asarray(predict_batch(tiles))
        if probabilities.shape[:3] != tiles.shape[:3] or probabilities.shape[3:] not in ((), (1,)):
            raise ValueError(
                f"the model maps tiles of shape {tiles.shape} to {probabilities.shape}; expected one channel"
            )
        for index, (row, col) in enumerate(chunk):
            total[row : row + tile_h, col : col + tile_w] += weights * probabilities[index].reshape(tile_h, tile_w)
            weight_sum[row : row + tile_h, col : col + tile_w] += weights
    result = total / weight_sum
    return TiledPrediction(result[:height, :width].astype(np.float32), len(corners))


def padded_batch_size(tiles: int, batch_size: int) -> int:
    """The batch that `tiles` tiles are padded to: the next power of two, at most `batch_size`."""
    return min(batch_size, 1 << max(tiles - 1, 0).bit_length())


def _pad_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """`image` padded by reflection at the bottom and right up to at least (height, width)."""
    pad_h, pad_w = max(height - image.shape[0], 0), max(width - image.shape[1], 0)
    if not pad_h and not pad_w:
        return image
    return np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="reflect")
