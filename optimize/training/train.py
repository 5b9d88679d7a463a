"""Train one configuration: the unit of work of every trial, with no Optuna inside.

Uses only `keras` and `keras.ops`, so the same code runs on TensorFlow and on JAX.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

import losses
import models
from data import DihedralTraining, TrainingBatches, device_batches, epoch_batches
from optimize.keras_import import hidden
from optimize.search.settings import TrainSettings
from optimize.training.device import training_device
from optimize.training.history import EpochHistory

Arrays = tuple[np.ndarray, np.ndarray]


@dataclass
class TrainResult:
    """What a finished training run tells the search."""

    history: list[dict[str, float]]
    best_epoch: int
    best_val_jaccard: float
    epochs_run: int
    param_count: int
    train_seconds: float
    diverged: bool = False
    model: keras.Model | None = None
    """The trained model with its best epoch's weights (early stopping restores them at the end)."""


def set_random_seed(seed: int) -> None:
    """`keras.utils.set_random_seed`, without loading TensorFlow under another backend.

    Keras seeds TensorFlow too whenever it is installed (for `tf.data`, which nothing here uses): a JAX worker
    loaded it at its first trial, 1.9 s of CPU, 410 MiB and TensorFlow's start-up lines in its output
    (bench/RESULTS.md). Keras then treats TensorFlow as not installed, as on a machine that has only JAX.
    """
    if keras.backend.backend() == "tensorflow":
        keras.utils.set_random_seed(seed)
        return
    with hidden(("tensorflow",)):
        keras.utils.set_random_seed(seed)


def train(
    settings: TrainSettings,
    train_data: Arrays,
    val_data: Arrays,
    *,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    history: EpochHistory | None = None,
    save_path: str | Path | None = None,
    verbose: int = 0,
) -> TrainResult:
    """Build, compile and fit one model; return its per-epoch history and best validation Jaccard.

    `history` lets the caller keep the epochs recorded so far when a callback in `callbacks`
    raises (a pruner stopping the trial). `save_path` writes the best model as `.keras`.
    """
    history = history if history is not None else EpochHistory()
    set_random_seed(settings.seed)
    started = time.perf_counter()
    with dtype_policy(settings.precision):
        network = build_model(settings, input_shape=train_data[0].shape[1:])
        batches, model, validation = training_inputs(settings, network, train_data, val_data)
        steps = epoch_batches(len(train_data[0]), settings.micro_batch_size, settings.drop_remainder)
        model.compile(
            optimizer=make_optimizer(settings, steps_per_epoch=steps),
            loss=losses.get(settings.loss, **settings.loss_params()),
            metrics=losses.metrics(),
            jit_compile=settings.jit_compile,
            run_eagerly=settings.run_eagerly,
            steps_per_execution=steps_per_execution(settings, steps),
        )
        # Created lazily, the optimizer's variables would make TensorFlow trace the training step twice.
        model.optimizer.build(model.trainable_variables)
        if model is not network:
            # The network is what is saved: compiled alike, its file restores the loss, metrics and optimizer.
            network.compile(
                optimizer=model.optimizer,
                loss=model.loss,
                metrics=losses.metrics(),
                jit_compile=settings.jit_compile,
                run_eagerly=settings.run_eagerly,
            )
        fit_callbacks = [
            history,
            keras.callbacks.TerminateOnNaN(),
            *standard_callbacks(settings, save_path, network=network),
        ]
        model.fit(
            batches,
            validation_data=validation,
            validation_batch_size=settings.micro_batch_size if isinstance(validation, tuple) else None,
            epochs=settings.max_epochs,
            shuffle=False,  # the batches shuffle themselves, every epoch
            callbacks=[*fit_callbacks, *callbacks],
            verbose=verbose,
        )
    best_epoch, best_value = history.best("val_jaccard")
    return TrainResult(
        history=history.rows,
        best_epoch=best_epoch,
        best_val_jaccard=best_value,
        epochs_run=len(history.rows),
        param_count=network.count_params(),
        train_seconds=time.perf_counter() - started,
        diverged=has_diverged(history.rows),
        model=network,
    )


def build_model(settings: TrainSettings, input_shape: tuple[int, ...]) -> keras.Model:
    """The architecture named in `settings`, sized for `input_shape`."""
    return models.build(
        settings.architecture,
        input_shape=tuple(input_shape),
        base_filters=settings.base_filters,
        depth=settings.depth,
        dropout=settings.dropout,
        norm=settings.norm,
    )


def training_inputs(
    settings: TrainSettings, network: keras.Model, train_data: Arrays, val_data: Arrays
) -> tuple[object, keras.Model, object]:
    """The training batches for `fit`, the model it trains (`network` or its `DihedralTraining` wrapper),
    and the validation data.

    With `augment_on = "device"` the images go to the device once and the flips/rotations run inside the
    compiled step; with "host" each batch is cut, flipped and rotated by NumPy (`TrainingBatches`) and
    Keras batches the validation arrays itself.
    """
    batch_size = settings.micro_batch_size
    options = {"drop_remainder": settings.drop_remainder, "seed": settings.seed}
    if settings.augment_on == "host":
        return TrainingBatches(*train_data, batch_size, augment=settings.augment, **options), network, val_data
    batches = device_batches(*train_data, batch_size, **options)
    validation = device_batches(*val_data, batch_size, shuffle=False)
    model = DihedralTraining(network, seed=settings.seed) if settings.augment else network
    return batches, model, validation


def steps_per_execution(settings: TrainSettings, steps_per_epoch: int) -> int:
    """Training steps per call into the compiled program: the setting, or by device when it is 0.

    On a GPU, one call per epoch: Keras then runs the callbacks once per epoch, so no step waits for the
    host to read its loss, and validation (which uses the same setting) is one call too. Validation keeps
    the micro-batch: val Jaccard is a mean of per-batch values, so its batches are part of what it
    measures. On a CPU a step lasts far longer than that wait, and one step per call keeps the in-epoch
    progress line and a stop signal's response to one step.
    """
    if settings.steps_per_execution:
        return settings.steps_per_execution
    return steps_per_epoch if training_device()[0] == "GPU" else 1


def make_optimizer(settings: TrainSettings, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """Adam with the configured clipping, gradient accumulation and cosine schedule.

    `steps_per_epoch` counts micro-batches, as the optimizer's iteration counter does.
    """
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule = settings.learning_rate
    if settings.schedule == "cosine":
        warmup_steps = settings.warmup_epochs * steps_per_epoch
        total_steps = settings.max_epochs * steps_per_epoch
        learning_rate = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=settings.learning_rate / 10 if warmup_steps else settings.learning_rate,
            decay_steps=max(total_steps - warmup_steps, 1),
            alpha=0.01,
            warmup_target=settings.learning_rate if warmup_steps else None,
            warmup_steps=warmup_steps,
        )
    accumulation = settings.gradient_accumulation_steps
    return keras.optimizers.Adam(
        learning_rate=learning_rate,
        clipnorm=settings.clipnorm or None,
        gradient_accumulation_steps=accumulation if accumulation > 1 else None,
    )


def standard_callbacks(
    settings: TrainSettings, save_path: str | Path | None, network: keras.Model | None = None
) -> list[keras.callbacks.Callback]:
    """Early stopping on validation Jaccard, the plateau schedule and best-model saving.

    `network` is the model to save when `fit` trains a wrapper of it (`DihedralTraining`).
    """
    callbacks: list[keras.callbacks.Callback] = [
        keras.callbacks.EarlyStopping(
            monitor="val_jaccard", mode="max", patience=settings.patience, restore_best_weights=True
        )
    ]
    if settings.schedule == "plateau":
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_jaccard",
                mode="max",
                factor=settings.plateau_factor,
                patience=settings.plateau_patience,
                min_lr=settings.learning_rate / 1000,
            )
        )
    if save_path is not None:
        callbacks.append(SaveBest(str(save_path), network))
    return callbacks


class SaveBest(keras.callbacks.ModelCheckpoint):
    """`ModelCheckpoint` of the best val Jaccard that saves `network` (the trained model when None)."""

    def __init__(self, path: str, network: keras.Model | None = None) -> None:
        super().__init__(path, monitor="val_jaccard", mode="max", save_best_only=True)
        self.network = network

    def set_model(self, model: keras.Model) -> None:
        super().set_model(self.network or model)


def has_diverged(rows: list[dict[str, float]]) -> bool:
    """True when the last epoch's training loss is NaN or infinite."""
    return bool(rows) and not math.isfinite(rows[-1]["loss"])


@contextmanager
def dtype_policy(name: str):
    """Set Keras' global dtype policy for one run and restore the previous one afterwards."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
