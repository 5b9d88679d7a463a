"""Free one trial's Keras objects before the next trial builds its own, at little cost per trial.

A model and its compiled functions hold reference cycles, so only Python's cycle collector frees them; that
runs after every trial (Keras' `clear_session` and Optuna's `gc_after_trial` both call it). A full collection
walks every object the process tracks, and Keras with TensorFlow leaves about 360,000 of them at start-up:
0.2–0.25 s per collection on a CPU, three times per trial. The start-up objects live as long as the worker,
so the trial loop freezes them out of every collection (`gc.freeze`) and each one walks only what the trials
made (bench/RESULTS.md, "Garbage collection between trials").
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

import keras


def release_memory() -> None:
    """Free the finished trial's model and graphs (Keras' state, then a collection of their cycles)."""
    keras.backend.clear_session(free_memory=True)


@contextmanager
def startup_objects_frozen() -> Iterator[None]:
    """Within the block, collections skip every object alive at its start (collected once first, so that no
    garbage is frozen); they are collectable again afterwards, for a caller that goes on in this process."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
