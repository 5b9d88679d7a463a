"""Between trials a collection frees the trial's model, and walks only what the trials made."""

from __future__ import annotations

import gc
import weakref

import keras
import numpy as np

import models
from optimize.training.garbage import release_memory, startup_objects_frozen


class Node:
    """An object that can hold itself: a cycle only the collector frees."""


def test_a_trials_model_is_freed_while_start_up_objects_are_frozen_and_collectable_afterwards():
    started_with = Node()
    started_with.itself = started_with
    with startup_objects_frozen():
        assert gc.get_freeze_count() > 0
        model = models.build("unet", (32, 32, 1), 4, 2)
        model.compile(optimizer="adam", loss="binary_crossentropy")
        model.train_on_batch(np.zeros((2, 32, 32, 1), np.float32), np.zeros((2, 32, 32, 1), np.float32))
        trained = weakref.ref(model)
        del model
        release_memory()
        assert trained() is None, "the trial's model survived release_memory"
        unreachable = weakref.ref(started_with)
        del started_with
        gc.collect()
        assert unreachable() is not None, "an object frozen at the start was collected inside the block"
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert unreachable() is None, "a start-up object stayed uncollectable after the block"
    keras.backend.clear_session()


def test_a_collection_between_trials_skips_the_start_up_objects():
    """A full collection walks every tracked object: Keras' start-up leaves hundreds of thousands."""
    models.build("unet", (32, 32, 1), 4, 2)
    keras.backend.clear_session()
    with startup_objects_frozen():
        walked_inside = len(gc.get_objects())
    assert gc.get_freeze_count() == 0
    assert len(gc.get_objects()) > 50_000 > 100 * walked_inside
