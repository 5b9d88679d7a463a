"""Tests for ``losses``: every loss and metric against an independent float64 NumPy reference.

Run directly (``python tests/test_losses.py``) this file repeats the reference and gradient checks on
whatever backend ``KERAS_BACKEND`` selects; ``test_jax_backend`` does that under JAX in a subprocess.
"""

import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import losses
from data import make_microbeads
from optimize.search.config import load_config
from optimize.search.settings import TrainSettings
from optimize.training.train import train

EPS = 1e-7
SHAPES_AND_SEEDS = [((2, 16, 16, 1), 0), ((2, 16, 16, 1), 1), ((1, 8, 8, 1), 2), ((3, 5, 7, 1), 3)]


# --- NumPy references (float64, written from the formulas, not from the package) ---------------------
def ref_tversky_index(y, p, alpha=0.7, beta=0.3, smooth=1.0):
    y, p = np.float64(y), np.float64(p)
    tp = np.sum(y * p)
    fn = np.sum(y * (1 - p))
    fp = np.sum((1 - y) * p)
    return (tp + smooth) / (tp + alpha * fn + beta * fp + smooth)


def ref_dice(y, p, smooth=1.0):
    y, p = np.float64(y), np.float64(p)
    return 1 - (2 * np.sum(y * p) + smooth) / (np.sum(y) + np.sum(p) + smooth)


def ref_tversky(y, p, alpha=0.7, beta=0.3, smooth=1.0):
    return 1 - ref_tversky_index(y, p, alpha, beta, smooth)


def ref_focal_tversky(y, p, alpha=0.7, beta=0.3, gamma=4 / 3, smooth=1.0):
    return (1 - ref_tversky_index(y, p, alpha, beta, smooth)) ** (1 / gamma)


def ref_focal(y, p, alpha=0.25, gamma=2.0):
    y, p = np.float64(y), np.clip(np.float64(p), EPS, 1 - EPS)
    p_t = np.where(y == 1, p, 1 - p)
    alpha_t = np.where(y == 1, alpha, 1 - alpha)
    return np.mean(-alpha_t * (1 - p_t) ** gamma * np.log(p_t))


def ref_bce(y, p):
    y, p = np.float64(y), np.clip(np.float64(p), EPS, 1 - EPS)
    return np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p)))


def ref_jaccard(y, p):
    y, p = np.float64(y).ravel(), np.float64(p).ravel()
    intersection = np.sum(y * p)
    return (intersection + 1.0) / (np.sum(y) + np.sum(p) - intersection + 1.0)


def ref_iou_at_05(y, p):
    return ref_jaccard(np.float64(y) >= 0.5, np.float64(p) >= 0.5)


REFERENCES = {
    "dice": ref_dice,
    "focal": ref_focal,
    "tversky": ref_tversky,
    "focal_tversky": ref_focal_tversky,
    "bce": ref_bce,
    "combined": lambda y, p: 0.7 * ref_dice(y, p) + 0.3 * ref_focal(y, p),
    "combined_tversky": lambda y, p: 0.6 * ref_tversky(y, p) + 0.4 * ref_focal(y, p),
}
METRICS = {"jaccard": (losses.jaccard, ref_jaccard), "iou_at_0.5": (losses.iou_at_05, ref_iou_at_05)}


# --- helpers shared by pytest and the JAX subprocess ------------------------------------------------
def make_batch(shape, seed):
    rng = np.random.default_rng(seed)
    y = (rng.random(shape) < 0.3).astype("float32")
    p = rng.random(shape).astype("float32")
    return y, p


def value(fn, y, p):
    return float(keras.ops.convert_to_numpy(fn(y, p)))


def gradient(fn, y, p):
    """d fn(y, p) / d p as a NumPy array, on the active backend."""
    if keras.backend.backend() == "jax":
        import jax

        return np.asarray(jax.grad(lambda q: fn(y, q))(p))
    import tensorflow as tf

    p = tf.Variable(p)
    with tf.GradientTape() as tape:
        out = fn(y, p)
    grad = tape.gradient(out, p)
    return np.zeros(p.shape) if grad is None else grad.numpy()


def check_against_reference(name, shape, seed):
    y, p = make_batch(shape, seed)
    fn, ref = METRICS[name] if name in METRICS else (losses.get(name), REFERENCES[name])
    np.testing.assert_allclose(value(fn, y, p), ref(y, p), rtol=1e-5, atol=1e-6, err_msg=name)


def check_gradients_finite(name):
    y, _ = make_batch((2, 16, 16, 1), seed=5)
    saturated = (np.random.default_rng(6).random(y.shape) < 0.5).astype("float32")
    for p in (y, 1 - y, saturated, np.zeros_like(y), np.ones_like(y)):
        grad = gradient(losses.get(name), y, p)
        assert np.all(np.isfinite(grad)), f"{name}: non-finite gradient at ŷ ∈ {{0, 1}}"


# --- tests --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape, seed", SHAPES_AND_SEEDS)
@pytest.mark.parametrize("name", [*losses.LOSS_NAMES, *METRICS])
def test_matches_numpy_reference(name, shape, seed):
    check_against_reference(name, shape, seed)


@pytest.mark.parametrize(
    "name, params, reference",
    [
        ("dice", {"smooth": 10.0}, lambda y, p: ref_dice(y, p, smooth=10.0)),
        ("focal", {"gamma": 3.0}, lambda y, p: ref_focal(y, p, gamma=3.0)),
        ("focal", {"alpha": 0.5, "gamma": 0.0}, lambda y, p: 0.5 * ref_bce(y, p)),
        ("tversky", {"alpha": 0.5, "beta": 0.5, "smooth": 2.0}, lambda y, p: ref_dice(y, p, smooth=4.0)),
        ("focal_tversky", {"gamma": 1.0}, ref_tversky),
        (
            "focal_tversky",
            {"alpha": 0.3, "beta": 0.7, "gamma": 2.0},
            lambda y, p: ref_focal_tversky(y, p, 0.3, 0.7, 2.0),
        ),
        (
            "combined",
            {"weights": (0.5, 0.5), "dice_smooth": 2.0, "focal_gamma": 3.0},
            lambda y, p: 0.5 * ref_dice(y, p, smooth=2.0) + 0.5 * ref_focal(y, p, gamma=3.0),
        ),
        (
            "combined_tversky",
            {"weights": [1.0, 2.0], "tversky_alpha": 0.9, "tversky_beta": 0.1, "focal_alpha": 0.6},
            lambda y, p: ref_tversky(y, p, alpha=0.9, beta=0.1) + 2.0 * ref_focal(y, p, alpha=0.6),
        ),
    ],
)
def test_keyword_override(name, params, reference):
    y, p = make_batch((2, 16, 16, 1), seed=7)
    overridden = value(losses.get(name, **params), y, p)
    np.testing.assert_allclose(overridden, reference(y, p), rtol=1e-5, atol=1e-6)
    assert not np.isclose(overridden, value(losses.get(name), y, p))


@pytest.mark.parametrize(
    "name, parts",
    [("combined", [(0.7, "dice"), (0.3, "focal")]), ("combined_tversky", [(0.6, "tversky"), (0.4, "focal")])],
)
def test_combined_is_weighted_sum_of_parts(name, parts):
    y, p = make_batch((2, 16, 16, 1), seed=8)
    expected = sum(weight * value(losses.get(part), y, p) for weight, part in parts)
    np.testing.assert_allclose(value(losses.get(name), y, p), expected, rtol=1e-6)
    by_helper = losses.weighted_sum([(weight, losses.get(part)) for weight, part in parts])
    np.testing.assert_allclose(value(by_helper, y, p), expected, rtol=1e-6)


@pytest.mark.parametrize("name", losses.LOSS_NAMES)
def test_perfect_prediction_has_zero_loss(name):
    y, _ = make_batch((2, 16, 16, 1), seed=9)
    assert abs(value(losses.get(name), y, y)) < 1e-5


def test_perfect_prediction_metrics_are_one():
    y, _ = make_batch((2, 16, 16, 1), seed=9)
    assert value(losses.jaccard, y, y) == pytest.approx(1.0, abs=1e-7)
    assert value(losses.iou_at_05, y, y) == pytest.approx(1.0, abs=1e-7)


def test_empty_mask_and_empty_prediction():
    empty = np.zeros((2, 16, 16, 1), "float32")
    assert value(losses.jaccard, empty, empty) == 1.0
    assert value(losses.iou_at_05, empty, empty) == 1.0
    for name in ("dice", "tversky"):
        assert value(losses.get(name), empty, empty) == 0.0
    assert value(losses.get("focal_tversky"), empty, empty) < 1e-5


@pytest.mark.parametrize("name", losses.LOSS_NAMES)
def test_gradients_finite_at_zero_and_one(name):
    check_gradients_finite(name)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("name", [*losses.LOSS_NAMES, *METRICS])
def test_mixed_precision(name, dtype):
    y, p = make_batch((2, 16, 16, 1), seed=10)
    fn = METRICS[name][0] if name in METRICS else losses.get(name)
    y_low, p_low = keras.ops.cast(y, dtype), keras.ops.cast(p, dtype)
    out = fn(y_low, p_low)
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    p_rounded = keras.ops.convert_to_numpy(keras.ops.cast(p_low, "float32"))
    np.testing.assert_allclose(float(out), value(fn, y, p_rounded), rtol=1e-6)
    if name != "iou_at_0.5":  # thresholding may flip pixels that rounding moved across 0.5
        np.testing.assert_allclose(float(out), value(fn, y, p), rtol=5e-2 if dtype == "bfloat16" else 5e-3)


def test_unknown_name_lists_known_names():
    with pytest.raises(ValueError, match="dyce") as err:
        losses.get("dyce")
    assert all(name in str(err.value) for name in losses.LOSS_NAMES)


@pytest.mark.parametrize(
    "name, params, fragments",
    [
        ("dice", {"gamma": 2.0}, ["'dice'", "gamma", "smooth"]),
        ("combined", {"alpha": 0.5}, ["'combined'", "alpha", "focal_alpha", "dice_smooth", "weights"]),
        ("combined", {"weights": (1.0,)}, ["'combined'", "2 weights"]),
    ],
)
def test_bad_parameters_are_reported(name, params, fragments):
    with pytest.raises(ValueError) as err:
        losses.get(name, **params)
    assert all(fragment in str(err.value) for fragment in fragments), str(err.value)


def test_names_and_defaults():
    assert losses.LOSS_NAMES == ("dice", "focal", "tversky", "focal_tversky", "bce", "combined", "combined_tversky")
    assert all(losses.get(name).__name__ == name for name in losses.LOSS_NAMES)
    assert losses.jaccard.__name__ == "jaccard"
    assert losses.iou_at_05.__name__ == "iou_at_0.5"
    assert losses.default_params("combined") == {
        "weights": (0.7, 0.3),
        "dice_smooth": 1.0,
        "focal_alpha": 0.25,
        "focal_gamma": 2.0,
    }
    first, second = losses.metrics(), losses.metrics()
    assert [m.name for m in first] == ["jaccard", "iou_at_0.5"]
    assert all(a is not b for a, b in zip(first, second, strict=True))


def test_keras_training_history_keys_and_metric_values():
    y, _ = make_batch((4, 16, 16, 1), seed=11)
    x = np.random.default_rng(12).normal(size=y.shape).astype("float32")
    model = keras.Sequential(
        [keras.Input((16, 16, 1)), keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")]
    )
    model.compile(optimizer="adam", loss=losses.get("combined"), metrics=losses.metrics())
    stop = keras.callbacks.EarlyStopping(monitor="val_jaccard", patience=1)  # mode="auto" must resolve
    history = model.fit(x, y, batch_size=4, epochs=1, validation_data=(x, y), callbacks=[stop], verbose=0)
    assert set(history.history) == {"loss", "jaccard", "iou_at_0.5", "val_loss", "val_jaccard", "val_iou_at_0.5"}
    assert all(np.all(np.isfinite(w.numpy())) for w in model.weights)
    p = model.predict(x, verbose=0)
    results = model.evaluate(x, y, batch_size=4, verbose=0, return_dict=True)
    assert results["jaccard"] == pytest.approx(ref_jaccard(y, p), rel=1e-5)
    assert results["iou_at_0.5"] == pytest.approx(ref_iou_at_05(y, p), rel=1e-5)
    assert results["loss"] == pytest.approx(REFERENCES["combined"](y, p), rel=1e-5)


@pytest.mark.parametrize("name", losses.LOSS_NAMES)
def test_default_training_settings_give_each_loss_exactly_as_before(name):
    params = TrainSettings(loss=name).loss_params()
    assert params.items() <= losses.default_params(name).items()
    y, p = make_batch((2, 16, 16, 1), seed=13)
    assert value(losses.get(name, **params), y, p) == value(losses.get(name), y, p)


def test_loss_settings_change_the_loss_trained_on(tmp_path):
    train_data, val_data = tiny_beads()
    path = tmp_path / "focal.toml"
    head = "[data]\ndir = 'x'\n[training]\nloss = 'focal'\nbase_filters = 4\ndepth = 2\nbatch_size = 4\n"
    runs = {}
    for gamma in ("", "focal_gamma = 0.5\n"):
        path.write_text(f"{head}max_epochs = 1\nrun_eagerly = true\n{gamma}")
        settings = load_config(str(path)).training
        runs[settings.focal_gamma] = train(settings, train_data, val_data).history[0]
    assert set(runs) == {2.0, 0.5}
    assert runs[0.5]["loss"] > runs[2.0]["loss"] > 0
    assert runs[0.5]["val_loss"] != runs[2.0]["val_loss"]


def test_importing_losses_loads_no_keras():
    code = (
        "import sys, losses\n"
        "print(losses.LOSS_NAMES[0], losses.default_params('focal'), losses.weighted_sum.__name__)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('keras', 'tensorflow', 'jax')))\n"
        "print(losses.get('dice').__name__, 'keras' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "dice {'alpha': 0.25, 'gamma': 2.0} weighted_sum",
        "[]",
        "dice True",
    ]


def tiny_beads():
    images, masks = make_microbeads(12, 32, 0)
    return (images[:8], masks[:8]), (images[8:], masks[8:])


def test_jax_backend():
    root = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run([sys.executable, __file__], env=env, cwd=root, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "backend=jax OK" in result.stdout


if __name__ == "__main__":
    for loss_or_metric in [*losses.LOSS_NAMES, *METRICS]:
        for shape, seed in SHAPES_AND_SEEDS:
            check_against_reference(loss_or_metric, shape, seed)
    for loss in losses.LOSS_NAMES:
        check_gradients_finite(loss)
    print(f"backend={keras.backend.backend()} OK")
