"""Training batches for `model.fit`: flipped and rotated on the host (`TrainingBatches`), or cut on the
device from arrays put there once (`device_batches`), for a model that flips and rotates them itself."""

from __future__ import annotations

import math

import keras
import numpy as np


class TrainingBatches(keras.utils.PyDataset):
    """(image, mask) float32 batches from arrays shaped (N, H, W, C), reshuffled every epoch.

    Augmentation applies one of the 8 flips/rotations of the square (4 flips/180-degree
    rotations for non-square images) to each image and the same one to its mask. Order and
    transforms depend only on (seed, epoch, batch index), so batches are reproducible whichever
    worker computes them. `drop_remainder` leaves out the last, smaller batch (different samples
    each epoch) so that every step has one shape: a compiled (XLA) step is compiled again for each
    new shape. `pydataset_kwargs` (`workers`, `max_queue_size`, ...) go to PyDataset.
    """

    def __init__(
        self,
        images: np.ndarray,
        masks: np.ndarray,
        batch_size: int,
        *,
        augment: bool = True,
        shuffle: bool = True,
        drop_remainder: bool = False,
        seed: int = 0,
        **pydataset_kwargs,
    ) -> None:
        super().__init__(**pydataset_kwargs)
        if len(images) != len(masks) or len(images) == 0:
            raise ValueError(f"need as many masks as images, at least one: got {len(images)} and {len(masks)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.images = np.asarray(images, np.float32)
        self.masks = np.asarray(masks, np.float32)
        self.batch_size = batch_size
        self.augment = augment
        self.shuffle = shuffle
        self.drop_remainder = drop_remainder
        self.seed = seed
        self.epoch = 0
        self._order = self._epoch_order()
        height, width = self.images.shape[1:3]
        self._transforms = np.arange(8) if height == width else np.array([0, 2, 4, 6])

    def __len__(self) -> int:
        return epoch_batches(len(self.images), self.batch_size, self.drop_remainder)

    def samples(self, index: int) -> np.ndarray:
        """The indices of batch `index` of this epoch."""
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range for {len(self)} batches")
        return self._order[index * self.batch_size : (index + 1) * self.batch_size]

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        samples = self.samples(index)
        images, masks = self.images[samples], self.masks[samples]
        if self.augment:
            rng = np.random.default_rng((self.seed, self.epoch, index))
            transforms = rng.choice(self._transforms, len(samples))
            images, masks = _dihedral(images, transforms), _dihedral(masks, transforms)
        return images, masks

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self._order = self._epoch_order()

    def _epoch_order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(len(self.images))
        return np.random.default_rng((self.seed, self.epoch)).permutation(len(self.images))


def epoch_images(n_images: int, batch_size: int, drop_remainder: bool) -> int:
    """Images one epoch trains on: all of them, or only full batches when the remainder is dropped
    (all of them when there are fewer than one batch)."""
    if drop_remainder and n_images >= batch_size:
        return n_images - n_images % batch_size
    return n_images


def epoch_batches(n_images: int, batch_size: int, drop_remainder: bool) -> int:
    """Batches (training steps) in one epoch."""
    return math.ceil(epoch_images(n_images, batch_size, drop_remainder) / batch_size)


def _dihedral(batch: np.ndarray, transforms: np.ndarray) -> np.ndarray:
    """Each sample rotated by `transform % 4` quarter turns, after a left-right flip when `transform >= 4`."""
    out = np.empty_like(batch)
    for transform in np.unique(transforms):
        chosen = transforms == transform
        samples = batch[chosen][:, :, ::-1] if transform >= 4 else batch[chosen]
        out[chosen] = np.rot90(samples, k=transform % 4, axes=(1, 2))
    return out


class DeviceBatches(TrainingBatches):
    """`TrainingBatches` without flips, cut on the device from arrays put there once, for `model.fit`.

    The flips/rotations are the model's job here (`DihedralTraining`); the host only draws each epoch's
    order. Under JAX the batches stay device arrays, which Keras hands to the compiled step as they are.
    Under TensorFlow use `device_batches`, which builds a `tf.data` pipeline instead: TensorFlow copies a
    PyDataset's batches through the host.
    """

    def __init__(
        self,
        images: np.ndarray,
        masks: np.ndarray,
        batch_size: int,
        *,
        shuffle: bool = True,
        drop_remainder: bool = False,
        seed: int = 0,
    ) -> None:
        options = {"shuffle": shuffle, "drop_remainder": drop_remainder, "seed": seed}
        super().__init__(images, masks, batch_size, augment=False, **options)
        self.on_device = (keras.ops.convert_to_tensor(self.images), keras.ops.convert_to_tensor(self.masks))

    def __getitem__(self, index: int):
        samples = keras.ops.convert_to_tensor(self.samples(index).astype(np.int32))
        return tuple(keras.ops.take(array, samples, axis=0) for array in self.on_device)


def device_batches(
    images: np.ndarray,
    masks: np.ndarray,
    batch_size: int,
    *,
    shuffle: bool = True,
    drop_remainder: bool = False,
    seed: int = 0,
):
    """Batches for `model.fit` (or its validation) that the backend keeps and cuts on its device, unflipped.

    A `tf.data` pipeline under TensorFlow (reshuffled every epoch when `shuffle`, prefetched; an unshuffled
    one is cached), a `DeviceBatches` otherwise. An epoch has `len(images) // batch_size` full batches when
    `drop_remainder` (all images when there are fewer than one batch), as `TrainingBatches` has.
    """
    options = {"shuffle": shuffle, "drop_remainder": drop_remainder, "seed": seed}
    if keras.backend.backend() != "tensorflow":
        return DeviceBatches(images, masks, batch_size, **options)
    import tensorflow as tf

    drop = drop_remainder and len(images) >= batch_size
    pairs = tf.data.Dataset.from_tensor_slices((np.asarray(images, np.float32), np.asarray(masks, np.float32)))
    if not shuffle:
        return pairs.batch(batch_size, drop_remainder=drop).cache().prefetch(tf.data.AUTOTUNE)
    shuffled = pairs.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    return shuffled.batch(batch_size, drop_remainder=drop).prefetch(tf.data.AUTOTUNE)
