"""Tests for the U-Net family in ``models``: shapes, parameter counts, options, errors, backends."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import models

# Parameter counts the users reported for their own models at 512x512x1, base 64, depth 4.
REFERENCE_PARAMS = {"unet": 31.4e6, "resunet": 33.2e6, "attention_resunet": 34.2e6}


@pytest.fixture(autouse=True)
def _fresh_session():
    yield
    keras.backend.clear_session()


@pytest.fixture(params=["mixed_bfloat16", "mixed_float16"])
def mixed_policy(request):
    keras.mixed_precision.set_dtype_policy(request.param)
    try:
        yield request.param
    finally:
        keras.mixed_precision.set_dtype_policy("float32")


def _batch(size: int, n: int = 2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.random((n, size, size, 1), dtype=np.float32)
    return x, (x > 0.5).astype(np.float32)


def _train_step(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    # Eager: tracing/XLA-compiling a graph for a single step costs 6-15 s on a small CPU.
    model.compile(optimizer="adam", loss="binary_crossentropy", run_eagerly=True)
    return model.train_on_batch(x, y)


def _layer_types(model: keras.Model) -> set[type]:
    return {type(layer) for layer in model.layers}


def test_architectures_listed():
    assert models.ARCHITECTURES == ("unet", "resunet", "attention_unet", "attention_resunet")


@pytest.mark.parametrize("name", models.ARCHITECTURES)
def test_builds_predicts_and_trains(name):
    model = models.build(name, input_shape=(64, 64, 1), base_filters=8, depth=3, dropout=0.1)
    x, y = _batch(64)
    pred = keras.ops.convert_to_numpy(model(x))
    assert model.name == name
    assert pred.shape == (2, 64, 64, 1)
    assert np.all((pred >= 0) & (pred <= 1))
    assert np.isfinite(_train_step(model, x, y))


@pytest.mark.parametrize("name", models.ARCHITECTURES)
def test_full_size_param_count_matches_reference(name):
    count = models.build(name).count_params()
    if name in REFERENCE_PARAMS:
        assert count == pytest.approx(REFERENCE_PARAMS[name], rel=0.10)
    else:
        assert 31.0e6 <= count <= 32.5e6


def test_residual_blocks_and_gates_add_params():
    counts = {
        name: models.build(name, input_shape=(32, 32, 1), base_filters=8, depth=3).count_params()
        for name in models.ARCHITECTURES
    }
    assert counts["unet"] < counts["resunet"] < counts["attention_resunet"]
    assert counts["unet"] < counts["attention_unet"] < counts["attention_resunet"]


def test_norm_variants():
    built = {norm: models.build("unet", (32, 32, 1), 8, 3, norm=norm) for norm in models.NORMS}
    counts = {norm: model.count_params() for norm, model in built.items()}
    assert counts["batch"] > counts["group"] > counts["none"]
    # Batch norm = group norm's gamma/beta plus the non-trainable moving mean/variance.
    batch_non_trainable = sum(np.prod(w.shape) for w in built["batch"].non_trainable_weights)
    assert counts["batch"] - counts["group"] == batch_non_trainable
    assert keras.layers.BatchNormalization in _layer_types(built["batch"])
    assert keras.layers.GroupNormalization in _layer_types(built["group"])
    assert not {keras.layers.BatchNormalization, keras.layers.GroupNormalization} & _layer_types(built["none"])


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_dropout_layers_only_when_requested(dropout):
    model = models.build("resunet", (32, 32, 1), 8, 2, dropout=dropout)
    assert (keras.layers.SpatialDropout2D in _layer_types(model)) == (dropout > 0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "vnet"}, r"unknown architecture 'vnet'; known: unet, resunet, attention_unet"),
        ({"name": "unet", "norm": "layer"}, r"unknown norm 'layer'; allowed: batch, group, none"),
        (
            {"name": "unet", "input_shape": (100, 100, 1)},
            r"input size 100x100 is not divisible by 2\*\*4 = 16; use e\.g\. 96 or 112",
        ),
        ({"name": "unet", "input_shape": (96, 100, 1)}, r"96x100 .* use e\.g\. 96x96 or 96x112"),
        ({"name": "unet", "input_shape": (12, 12, 1), "depth": 3}, r"2\*\*3 = 8; use e\.g\. 8 or 16"),
        ({"name": "unet", "input_shape": (8, 8, 1)}, r"use e\.g\. 16$"),
        ({"name": "unet", "dropout": 1.0}, r"dropout must be in \[0, 1\), got 1\.0"),
        ({"name": "unet", "dropout": -0.1}, r"dropout must be in \[0, 1\)"),
        ({"name": "unet", "depth": 0}, r"depth and base_filters must be >= 1"),
    ],
)
def test_invalid_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        models.build(**kwargs)


def test_mixed_precision_output_is_float32(mixed_policy):
    model = models.build("attention_resunet", (32, 32, 1), 8, 2, dropout=0.1, norm="group")
    x, y = _batch(32)
    conv = next(layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D))
    assert conv.compute_dtype == mixed_policy.removeprefix("mixed_")
    assert keras.backend.standardize_dtype(model(x).dtype) == "float32"
    assert np.isfinite(_train_step(model, x, y))


def test_jax_backend_builds_the_same_model():
    # JAX compiles every weight initializer per shape; unoptimized XLA cuts that from ~15 s to ~3 s on CPU.
    xla_flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()
    script = (
        "import json, numpy as np, keras, models\n"
        "m = models.build('attention_resunet', (32, 32, 1), 4, 2, dropout=0.1)\n"
        "y = keras.ops.convert_to_numpy(m(np.zeros((1, 32, 32, 1), 'float32')))\n"
        "print(json.dumps([keras.backend.backend(), m.count_params(), list(y.shape)]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "KERAS_BACKEND": "jax", "XLA_FLAGS": xla_flags},
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    backend, count, shape = json.loads(result.stdout.strip().splitlines()[-1])
    assert backend == "jax"
    assert shape == [1, 32, 32, 1]
    assert count == models.build("attention_resunet", (32, 32, 1), 4, 2, dropout=0.1).count_params()
