"""The flips and rotations of training images, done by the device inside the compiled training step.

`DihedralTraining` wraps a segmentation network for training: each image of a batch is shown in one of
the 8 flips/rotations of the square (4 flips/180-degree rotations when it is not square), drawn at random
per image in every step, and the network's output is turned back before the loss sees it. The masks
therefore never move: the project's losses and metrics sum over all pixels, so comparing the turned-back
output with the mask gives exactly the loss of the turned output against the turned mask, which is what
the host-side augmentation of `TrainingBatches` trains on. Outside training (validation, prediction) the
wrapper is the network itself. Save `network`, not the wrapper: the saved model stays a plain model.
"""

from __future__ import annotations

import keras
from keras import ops

TRANSFORMS = 8
"""Transform t flips left-right when t >= 4, then turns by t % 4 quarter turns (as `np.rot90`)."""


def _flip(batch, flipped):
    return ops.where(flipped[:, None, None, None], ops.flip(batch, axis=2), batch)


def _turn(batch, turns, square: bool):
    """Each sample turned by its number of quarter turns (0-3; only 0 or 2 when not square)."""
    if square:
        quarter = ops.flip(ops.transpose(batch, (0, 2, 1, 3)), axis=1)
        batch = ops.where((turns % 2 == 1)[:, None, None, None], quarter, batch)
    half = ops.flip(batch, axis=(1, 2))
    return ops.where((turns >= 2)[:, None, None, None], half, batch)


def dihedral(batch, transforms, square: bool = True):
    """Each sample of (N, H, W, C) `batch` in its transform's view (see `TRANSFORMS`)."""
    return _turn(_flip(batch, transforms >= 4), transforms % 4, square)


def undo_dihedral(batch, transforms, square: bool = True):
    """The inverse of `dihedral` with the same transforms."""
    return _flip(_turn(batch, (4 - transforms % 4) % 4, square), transforms >= 4)


class DihedralTraining(keras.Model):
    """`network` trained on a random flip/rotation of each image (see the module's docstring)."""

    def __init__(self, network: keras.Model, seed: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.network = network
        self.seed_generator = keras.random.SeedGenerator(seed)
        height, width = network.input_shape[1:3]
        self.square = height == width

    def call(self, inputs, training: bool = False):
        if not training:
            return self.network(inputs, training=False)
        choices = TRANSFORMS if self.square else TRANSFORMS // 2
        transforms = keras.random.randint((ops.shape(inputs)[0],), 0, choices, seed=self.seed_generator)
        if not self.square:
            transforms = transforms * 2
        outputs = self.network(dihedral(inputs, transforms, self.square), training=True)
        return undo_dihedral(outputs, transforms, self.square)
