"""The trainer: real learning on synthetic beads, history that survives a raising callback, and options."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from data import make_microbeads, stratified_split
from optimize.results.record import HISTORY_COLUMNS
from optimize.search.settings import TrainSettings
from optimize.training.device import training_device
from optimize.training.history import EpochHistory
from optimize.training.train import (
    make_optimizer,
    steps_per_execution,
    train,
)


def split(n_images: int, size: int, seed: int = 0):
    images, masks = make_microbeads(n_images, size, seed)
    train_index, val_index = stratified_split(masks, val_fraction=0.15, seed=seed)
    return (images[train_index], masks[train_index]), (images[val_index], masks[val_index])


@pytest.fixture(scope="module")
def tiny_split():
    return split(16, 32)


def tiny_settings(**changes) -> TrainSettings:
    """A 2-level, 4-filter U-Net run eagerly: on 32² images tracing a graph would cost more than training."""
    base = TrainSettings(
        base_filters=4, depth=2, batch_size=4, max_epochs=2, patience=5, learning_rate=3e-3, run_eagerly=True
    )
    return base.replace(**changes)


def test_small_unet_really_learns_beads():
    train_data, val_data = split(96, 128)
    settings = TrainSettings(
        architecture="unet",
        base_filters=8,
        depth=3,
        loss="combined",
        learning_rate=3e-3,
        batch_size=8,
        max_epochs=10,
        patience=10,
        seed=0,
    )
    result = train(settings, train_data, val_data)
    assert result.best_val_jaccard >= 0.6, result.history
    assert result.epochs_run <= 10
    assert result.history[result.best_epoch - 1]["val_jaccard"] == result.best_val_jaccard
    assert result.param_count > 0 and not result.diverged


def test_history_rows_have_every_column(tiny_split):
    result = train(tiny_settings(), *tiny_split)
    assert [row["epoch"] for row in result.history] == [1, 2]
    for row in result.history:
        assert tuple(row) == HISTORY_COLUMNS
        assert all(math.isfinite(row[column]) for column in HISTORY_COLUMNS)
        assert row["lr"] == pytest.approx(3e-3)


class RaiseAtEpoch(keras.callbacks.Callback):
    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            raise RuntimeError("stop here")


def test_history_survives_a_raising_callback(tiny_split):
    history = EpochHistory()
    with pytest.raises(RuntimeError, match="stop here"):
        train(tiny_settings(max_epochs=4), *tiny_split, callbacks=[RaiseAtEpoch(2)], history=history)
    assert [row["epoch"] for row in history.rows] == [1, 2]


def test_gradient_accumulation_keeps_the_effective_batch(tiny_split):
    settings = tiny_settings(batch_size=8, gradient_accumulation_steps=4)
    assert settings.micro_batch_size == 2
    optimizer = make_optimizer(settings, steps_per_epoch=7)
    assert optimizer.gradient_accumulation_steps == 4
    result = train(settings, *tiny_split)
    assert result.epochs_run == 2 and math.isfinite(result.history[-1]["loss"])


def test_cosine_schedule_warms_up_then_decays(tiny_split):
    result = train(tiny_settings(schedule="cosine", warmup_epochs=1, max_epochs=3), *tiny_split)
    rates = [row["lr"] for row in result.history]
    assert rates[0] == pytest.approx(3e-3, rel=1e-3)  # end of warmup
    assert rates[0] > rates[1] > rates[2]


def test_plateau_schedule_lowers_the_rate(tiny_split):
    result = train(
        tiny_settings(schedule="plateau", plateau_patience=1, plateau_factor=0.5, max_epochs=6, learning_rate=1e-6),
        *tiny_split,
    )
    assert min(row["lr"] for row in result.history) < 1e-6


def test_clipnorm_mixed_precision_and_saving(tiny_split, tmp_path):
    """The saved and the returned model are the plain network, not the wrapper that flips images in training."""
    path = tmp_path / "best.keras"
    settings = tiny_settings(precision="mixed_bfloat16", clipnorm=1.0, run_eagerly=False)
    result = train(settings, *tiny_split, save_path=path)
    assert path.exists()
    model = keras.models.load_model(path, compile=False)
    assert type(model).__name__ == type(result.model).__name__ == "Functional"
    assert [w.shape for w in model.weights] == [w.shape for w in result.model.weights]
    compiled = keras.models.load_model(path)  # compiled alike: the file restores loss and metrics
    assert {"loss", "jaccard"} <= set(compiled.evaluate(*tiny_split[1], verbose=0, return_dict=True))
    assert model.output.dtype == "float32"
    assert keras.config.dtype_policy().name == "float32"
    assert math.isfinite(result.best_val_jaccard)


def test_early_stopping_on_val_jaccard(tiny_split):
    result = train(tiny_settings(learning_rate=1e-7, max_epochs=10, patience=1), *tiny_split)
    assert result.epochs_run < 10


def test_divergence_is_reported(tiny_split):
    images, masks = tiny_split[0]
    poisoned = (np.where(np.arange(images.size).reshape(images.shape) == 0, np.nan, images).astype("float32"), masks)
    result = train(tiny_settings(), poisoned, tiny_split[1])
    assert result.diverged


@pytest.mark.parametrize(
    "bad",
    [
        {"batch_size": 6, "gradient_accumulation_steps": 4},
        {"loss": "hinge"},
        {"augment_on": "gpu"},
        {"steps_per_execution": -1},
    ],
)
def test_invalid_settings_are_rejected(bad):
    with pytest.raises(ValueError):
        TrainSettings(**bad)


@pytest.mark.parametrize(
    ("changes", "model_class"),
    [
        ({"augment_on": "host"}, "Functional"),
        ({"augment_on": "device"}, "DihedralTraining"),
        ({"augment_on": "device", "augment": False}, "Functional"),
        ({"augment_on": "device", "steps_per_execution": 3}, "DihedralTraining"),
    ],
)
def test_each_input_path_trains_every_epoch(tiny_split, changes, model_class):
    trained = []

    class Trained(keras.callbacks.Callback):
        def on_train_end(self, logs=None):
            trained.append((type(self.model).__name__, self.model.steps_per_execution))

    settings = tiny_settings(**changes)
    result = train(settings, *tiny_split, callbacks=[Trained()])
    assert [row["epoch"] for row in result.history] == [1, 2]
    assert all(math.isfinite(row["val_jaccard"]) for row in result.history)
    assert trained == [(model_class, settings.steps_per_execution or 1)]


def test_steps_per_execution_is_one_epoch_on_a_gpu_and_one_step_on_a_cpu(monkeypatch):
    assert training_device()[0] == "CPU"  # CI has no GPU
    assert steps_per_execution(TrainSettings(), steps_per_epoch=9) == 1
    assert steps_per_execution(TrainSettings(steps_per_execution=4), steps_per_epoch=9) == 4
    monkeypatch.setattr("optimize.training.train.training_device", lambda: ("GPU", "a test's GPU"))
    assert steps_per_execution(TrainSettings(), steps_per_epoch=9) == 9
