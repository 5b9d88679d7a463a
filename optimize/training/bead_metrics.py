"""Bead-level metrics of a trained model on the validation images: what a trial reports besides pixel Jaccard.

Called once per completed training run, with the weights of its best epoch (early stopping restores them),
so the metrics describe the same model as the trial's val Jaccard.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import keras
import numpy as np

from data import ObjectEvaluation, evaluate_objects


@dataclass(frozen=True)
class BeadMetrics:
    """The evaluation of the predicted beads and the seconds prediction and matching took."""

    evaluation: ObjectEvaluation
    seconds: float

    @property
    def true_counts(self) -> list[int]:
        return [scores[0].n_true for scores in self.evaluation.per_image]

    @property
    def predicted_counts(self) -> list[int]:
        return [scores[0].n_pred for scores in self.evaluation.per_image]


def bead_metrics(model: keras.Model, images: np.ndarray, true_beads: np.ndarray, batch_size: int) -> BeadMetrics:
    """Predict `images`, threshold at 0.5 and match the predicted beads to `true_beads` (label images or
    binary masks, see `data.bead_labels`) one-to-one at IoU 0.5.

    The model is called directly, batch by batch: `model.predict` would trace a new prediction function for
    every trial's model, which costs more than predicting a validation set.
    """
    started = time.perf_counter()
    probabilities = np.concatenate(
        [
            keras.ops.convert_to_numpy(model(images[start : start + batch_size], training=False)).astype(np.float32)
            for start in range(0, len(images), batch_size)
        ]
    )
    evaluation = evaluate_objects(true_beads, probabilities)
    return BeadMetrics(evaluation, time.perf_counter() - started)
